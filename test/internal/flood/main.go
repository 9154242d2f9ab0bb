// Command flood sends a broadcast/multicast storm out of one interface at
// a fixed rate, for the storm limiter's test and bench/storm.sh: raw
// Ethernet frames from an AF_PACKET socket, sendmmsg batches, paced each
// millisecond. It runs in a test namespace (ip netns exec), never on the
// machine's own interfaces. On SIGTERM or after -duration it prints
// "sent N frames in S s (R/s)" and exits 0.
//
// Kinds (-kinds, comma-separated, sent round-robin):
//
//	udp4  IPv4 UDP to 255.255.255.255:9 (ff:ff:ff:ff:ff:ff): generic broadcast
//	udp6  IPv6 UDP to ff02::1 port 9 (33:33:00:00:00:01): IPv6 multicast
//	arp   ARP who-has for a random address in -net (broadcast)
//	ns    ICMPv6 neighbour solicitations for random 2001:db8::/64 targets
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	ifname := flag.String("i", "lan0", "interface to send on")
	rate := flag.Int("rate", 100000, "frames per second")
	kinds := flag.String("kinds", "udp4", "comma-separated frame kinds: udp4, udp6, arp, ns")
	dur := flag.Duration("duration", 0, "stop after this long (0: until SIGTERM)")
	src := flag.String("src", "02:7e:ff:00:00:01", "source MAC")
	flag.Parse()
	if err := run(*ifname, *rate, strings.Split(*kinds, ","), *dur, *src); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

const batch = 64

func run(ifname string, rate int, kinds []string, dur time.Duration, srcMAC string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	src, err := net.ParseMAC(srcMAC)
	if err != nil {
		return err
	}
	// A pool of distinct frames per kind, so that nothing downstream can
	// take the storm for one repeated frame.
	var frames [][]byte
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 256; i++ {
		for _, k := range kinds {
			f, err := frame(k, src, rnd)
			if err != nil {
				return err
			}
			frames = append(frames, f)
		}
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("open packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("bind %s: %w", ifname, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	// PACKET_QDISC_BYPASS: straight to the driver, as pktgen-like tools do.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)

	msgs := make([]unix.Mmsghdr, batch)
	iovs := make([]unix.Iovec, batch)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	start := time.Now()
	var deadline <-chan time.Time
	if dur > 0 {
		deadline = time.After(dur)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var sent, next int
	for {
		select {
		case <-stop:
			return report(sent, start)
		case <-deadline:
			return report(sent, start)
		case <-tick.C:
		}
		due := int(time.Since(start).Seconds() * float64(rate))
		for sent < due {
			n := min(due-sent, batch)
			for i := range n {
				f := frames[next%len(frames)]
				next++
				iovs[i].Base = &f[0]
				iovs[i].SetLen(len(f))
				msgs[i].Hdr.Iov = &iovs[i]
				msgs[i].Hdr.SetIovlen(1)
			}
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
			if errno == unix.ENOBUFS || errno == unix.EAGAIN {
				break
			}
			if errno != 0 {
				return fmt.Errorf("sendmmsg on %s: %w", ifname, errno)
			}
			sent += int(r)
		}
		if due-sent > rate/10 {
			// More than 100 ms behind: the machine cannot keep up; do not
			// try to catch up in one burst.
			sent = due
		}
	}
}

func report(sent int, start time.Time) error {
	s := time.Since(start).Seconds()
	fmt.Printf("sent %d frames in %.1f s (%.0f/s)\n", sent, s, float64(sent)/s)
	return nil
}

// frame builds one frame of kind k.
func frame(k string, src net.HardwareAddr, rnd *rand.Rand) ([]byte, error) {
	switch k {
	case "udp4":
		ip := make([]byte, 20+8+18)
		ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint16(ip[4:], uint16(rnd.Uint32()))
		copy(ip[12:16], []byte{198, 19, 255, byte(1 + rnd.IntN(250))})
		copy(ip[16:20], []byte{255, 255, 255, 255})
		binary.BigEndian.PutUint16(ip[10:], csum(ip[:20]))
		binary.BigEndian.PutUint16(ip[20:], uint16(1024+rnd.IntN(60000)))
		binary.BigEndian.PutUint16(ip[22:], 9)
		binary.BigEndian.PutUint16(ip[24:], uint16(len(ip)-20))
		return eth(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src, unix.ETH_P_IP, ip), nil
	case "udp6":
		ip := make([]byte, 40+8+18)
		ip[0], ip[6], ip[7] = 0x60, unix.IPPROTO_UDP, 1
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
		copy(ip[8:24], net.ParseIP("fe80::7eff:fe00:1"))
		copy(ip[24:40], net.ParseIP("ff02::1"))
		binary.BigEndian.PutUint16(ip[40:], uint16(1024+rnd.IntN(60000)))
		binary.BigEndian.PutUint16(ip[42:], 9)
		binary.BigEndian.PutUint16(ip[44:], uint16(len(ip)-40))
		return eth(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, src, unix.ETH_P_IPV6, ip), nil
	case "arp":
		a := make([]byte, 28)
		binary.BigEndian.PutUint16(a[0:], 1)
		binary.BigEndian.PutUint16(a[2:], unix.ETH_P_IP)
		a[4], a[5] = 6, 4
		binary.BigEndian.PutUint16(a[6:], 1) // request
		copy(a[8:14], src)
		copy(a[14:18], []byte{198, 19, 255, 1})
		copy(a[24:28], []byte{198, 19, byte(rnd.IntN(255)), byte(1 + rnd.IntN(250))})
		return eth(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src, unix.ETH_P_ARP, a), nil
	case "ns":
		ip := make([]byte, 40+24)
		ip[0], ip[6], ip[7] = 0x60, unix.IPPROTO_ICMPV6, 255
		binary.BigEndian.PutUint16(ip[4:], 24)
		copy(ip[8:24], net.ParseIP("fe80::7eff:fe00:1"))
		target := net.ParseIP("2001:db8::").To16()
		for i := 13; i < 16; i++ {
			target[i] = byte(rnd.IntN(256))
		}
		dst := net.ParseIP("ff02::1:ff00:0").To16()
		copy(dst[13:], target[13:])
		copy(ip[24:40], dst)
		ip[40] = 135 // neighbour solicitation
		copy(ip[48:64], target)
		return eth(net.HardwareAddr{0x33, 0x33, 0xff, dst[13], dst[14], dst[15]}, src, unix.ETH_P_IPV6, ip), nil
	}
	return nil, fmt.Errorf("unknown kind %q (want udp4, udp6, arp or ns)", k)
}

func eth(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := make([]byte, 14+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], typ)
	copy(f[14:], payload)
	return f
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
