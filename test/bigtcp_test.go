package integration

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// bigTCPSize is the LAN side's gso_max_size (and gso_ipv4_max_size) in the
// BIG TCP tests, as in issue 9's report: the LAN's TCP then hands the veth
// wire GSO frames of up to ~180 KiB, which eth0's packet socket passes to
// vethd as they are.
const bigTCPSize = 185000

// TestBigTCPFromLAN (issue 9 item 2): with BIG TCP on the LAN side, TCP
// from the LAN to the virtual NIC runs at full speed through vethd, both
// kinds, IPv6 (jumbo hop-by-hop header) and IPv4 (total length 0): the
// super-frames are passed whole to a TAP and split for the veth kind's
// peer, never dropped. Before the fix: ~20 Mbit/s with thousands of
// retransmits, the frames counted as oversize drops. It asserts at least
// 100 Mbit/s (5× the old rate; 1–4 Gbit/s seen, 0.29 under heavy load),
// retransmits below 1 % of the segments, every byte intact
// (SHA-256), and (almost) no frame dropped by vethd (its exit line: the
// total over all reasons, below 0.5 %; the veth kind sees a rare
// write-error when veth1's backlog is full).
func TestBigTCPFromLAN(t *testing.T) {
	for _, kind := range []string{"tap", "veth"} {
		for _, network := range []string{"tcp6", "tcp4"} {
			t.Run(kind+"/"+network, func(t *testing.T) {
				l := NewLAN(t, LANConfig{})
				setBigTCP(t, l.LANNS, "lan0", bigTCPSize)
				p := l.StartVethd(t, "veth1", "eth0", "--kind="+kind)
				var host, from netip.Addr
				if network == "tcp6" {
					host = netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::50", l.X))
					l.Host.IP(t, "addr", "add", host.String()+"/64", "dev", "veth1", "nodad")
					from = l.Router6
					l.LANNS.WaitPing(t, 10*time.Second, "-6", host.String())
				} else {
					host = l.SetStatic(t, "veth1", 50)
					from = l.Router4
					l.LANNS.WaitPing(t, 10*time.Second, host.String())
				}
				res := streamFor(t, network, l.LANNS, l.Host, netip.AddrPortFrom(host, 5301), from, 1500*time.Millisecond)
				p.Stop(5 * time.Second)
				dropped := exitCounter(t, p, "dropped")
				t.Logf("%s %s LAN→host: %.2f Gbit/s, %d bytes, %d of %d segments retransmitted; vethd dropped %d, rx_packets %d",
					kind, network, res.gbps(), res.bytes, res.retrans, res.segsOut, dropped, exitCounter(t, p, "rx_packets"))
				if res.gbps() < 0.1 {
					t.Errorf("%.3f Gbit/s, want ≥ 0.1", res.gbps())
				}
				if res.retrans*100 > res.segsOut {
					t.Errorf("%d of %d segments retransmitted, want < 1 %%", res.retrans, res.segsOut)
				}
				// Oversize drops are gone; what remains on the veth kind is
				// a rare write-error when veth1's backlog is full (the
				// kernel's NET_XMIT_DROP, ENOBUFS to the peer socket).
				if rx := exitCounter(t, p, "rx_packets"); dropped*200 > rx {
					t.Errorf("vethd dropped %d of %d frames, want < 0.5 %%\n%s", dropped, rx, p.Output())
				}
			})
		}
	}
}

// setBigTCP sets dev's gso_max_size and gso_ipv4_max_size (BIG TCP for
// IPv6 and IPv4) in ns, over netlink (Debian 12's iproute2 lacks
// gso_ipv4_max_size), and checks that the kernel took them.
func setBigTCP(t *testing.T, ns *Netns, dev string, size int) {
	t.Helper()
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetGSOMaxSize(l, size); err != nil {
			return fmt.Errorf("gso_max_size: %w", err)
		}
		if err := netlink.LinkSetGSOIPv4MaxSize(l, size); err != nil {
			return fmt.Errorf("gso_ipv4_max_size: %w", err)
		}
		l, err = netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		if a := l.Attrs(); a.GSOMaxSize != uint32(size) || a.GSOIPv4MaxSize != uint32(size) {
			return fmt.Errorf("%s: gso_max_size %d, gso_ipv4_max_size %d after setting %d", dev, a.GSOMaxSize, a.GSOIPv4MaxSize, size)
		}
		return nil
	}); err != nil {
		t.Fatalf("BIG TCP on %s: %v", dev, err)
	}
}

// streamResult is what streamFor measured.
type streamResult struct {
	bytes            int64
	took             time.Duration
	retrans, segsOut uint64 // the sender's tcpi_total_retrans and tcpi_segs_out
}

func (r streamResult) gbps() float64 { return float64(r.bytes) * 8 / r.took.Seconds() / 1e9 }

// streamFor listens on listen inside dstNS, dials it from srcNS (bound to
// from), streams pseudo-random bytes for d, and checks the receiver's count
// and SHA-256 against the sender's; it returns the bytes, the time and the
// sender's retransmission count (TCP_INFO).
func streamFor(t *testing.T, network string, srcNS, dstNS *Netns, listen netip.AddrPort, from netip.Addr, d time.Duration) streamResult {
	t.Helper()
	recvc := hashSink(t, "BIG TCP stream", network, dstNS, listen, d+30*time.Second)
	var conn *net.TCPConn
	if err := srcNS.Do(func() error {
		dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
		c, err := dl.Dial(network, listen.String())
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
		return nil
	}); err != nil {
		t.Fatalf("dial %s from %s: %v", listen, from, err)
	}
	defer conn.Close()
	rng := rand.NewChaCha8([32]byte{'b', 'i', 'g', 't', 'c', 'p'})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	start := time.Now()
	conn.SetDeadline(start.Add(d + 30*time.Second))
	var sent int64
	for time.Since(start) < d {
		rng.Read(buf)
		h.Write(buf)
		n, err := conn.Write(buf)
		sent += int64(n)
		if err != nil {
			t.Fatalf("write after %d bytes: %v", sent, err)
		}
	}
	var info *unix.TCPInfo
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	conn.CloseWrite()
	var r sinkResult
	select {
	case r = <-recvc:
	case <-time.After(d + 30*time.Second):
		t.Fatal("receiver did not finish")
	}
	took := time.Since(start)
	raw.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err != nil {
		t.Fatalf("TCP_INFO: %v", err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	if r.err != nil || r.n != sent || r.sum != sum {
		t.Fatalf("receiver got %d of %d bytes (err %v), checksum match %v", r.n, sent, r.err, r.sum == sum)
	}
	return streamResult{bytes: sent, took: took, retrans: uint64(info.Total_retrans), segsOut: uint64(info.Segs_out)}
}

// exitCounter returns the value of key=N in vethd's "Detached …" line.
func exitCounter(t *testing.T, p *Proc, key string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`Detached .* ` + key + `=(\d+)`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("no %s= in vethd's exit line:\n%s", key, p.Output())
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}
