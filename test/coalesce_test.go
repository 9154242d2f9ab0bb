package integration

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestTCPCoalescing moves SHA-256-verified TCP, IPv4 and IPv6, LAN → host
// and back, in the wire conditions where the LAN sends plain MTU frames
// and nothing coalesces them before vethd, so vethd's userspace GRO merges
// them before the TAP write:
//
//   - ChecksumOffload: lan0 keeps tx checksumming but no TSO/GSO, eth0 has
//     no GRO: the frames come with NEEDS_CSUM (checksum trusted, as the
//     kernel trusts it);
//   - SoftwareChecksum: the benchmarks' mtu-nogro (lan0 and eth0: tx, tso,
//     gso, gro off): no checksum flag at all, so vethd verifies every
//     checksum itself before merging.
//
// It also checks that merging happened, for IPv4 and IPv6 each: during
// each LAN→host transfer, veth1 must have received frames larger than the
// MTU on average.
func TestTCPCoalescing(t *testing.T) {
	for _, v := range []struct {
		name      string
		lan, host []string
	}{
		{"ChecksumOffload", []string{"tx", "on", "tso", "off", "gso", "off", "gro", "off"},
			[]string{"tx", "off", "tso", "off", "gso", "off", "gro", "off"}},
		{"SoftwareChecksum", []string{"tx", "off", "tso", "off", "gso", "off", "gro", "off"},
			[]string{"tx", "off", "tso", "off", "gso", "off", "gro", "off"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			l := NewLAN(t, LANConfig{})
			needTools(t, "ethtool")
			l.LANNS.MustRun(t, append([]string{"ethtool", "-K", "lan0"}, v.lan...)...)
			l.Host.MustRun(t, append([]string{"ethtool", "-K", "eth0"}, v.host...)...)
			l.StartVethd(t, "veth1", "eth0")
			t.Logf("lan0: %s", offloadSummary(t, l.LANNS, "lan0"))
			t.Logf("eth0: %s", offloadSummary(t, l.Host, "eth0"))

			host4 := l.SetStatic(t, "veth1", 50)
			host6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::50", l.X))
			l.Host.IP(t, "addr", "add", host6.String()+"/64", "dev", "veth1", "nodad")
			l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
			l.Host.WaitPing(t, 10*time.Second, "-6", "-I", "veth1", l.Router6.String())

			const size = 32 << 20
			// LAN→host, one family at a time, so that each must coalesce.
			for _, x := range []struct {
				name, network string
				listen        netip.AddrPort
				from          netip.Addr
				seed          uint64
			}{
				{"v4", "tcp4", netip.AddrPortFrom(host4, 5203), l.Router4, 3},
				{"v6", "tcp6", netip.AddrPortFrom(host6, 5204), l.Router6, 4},
			} {
				pk0, by0 := l.Host.Stat(t, "veth1", "rx_packets"), l.Host.Stat(t, "veth1", "rx_bytes")
				t.Logf("LAN→host %s: %s", x.name, transferNet(t, x.network, l.LANNS, l.Host, x.listen, x.from, size, x.seed))
				pk, by := l.Host.Stat(t, "veth1", "rx_packets")-pk0, l.Host.Stat(t, "veth1", "rx_bytes")-by0
				if pk == 0 || by/pk < 3000 {
					t.Errorf("LAN→host %s: veth1 received %d bytes in %d frames, want ≥ 3000 bytes per frame: too little coalescing", x.name, by, pk)
				} else {
					t.Logf("LAN→host %s: veth1 received %d bytes in %d frames (%d bytes per frame)", x.name, by, pk, by/pk)
				}
			}
			t.Log("host→LAN v4: " + transferNet(t, "tcp4", l.Host, l.LANNS, netip.AddrPortFrom(l.Router4, 5205), host4, size, 5))
			t.Log("host→LAN v6: " + transferNet(t, "tcp6", l.Host, l.LANNS, netip.AddrPortFrom(l.Router6, 5206), host6, size, 6))
		})
	}
}

// transferNet is transfer for either address family (network "tcp4" or
// "tcp6"): size pseudo-random bytes from srcNS (bound to from) to listen
// in dstNS, verified by count and SHA-256.
func transferNet(t *testing.T, network string, srcNS, dstNS *Netns, listen netip.AddrPort, from netip.Addr, size int64, seed uint64) string {
	t.Helper()
	var ln net.Listener
	if err := dstNS.Do(func() (err error) {
		ln, err = net.Listen(network, listen.String())
		return err
	}); err != nil {
		t.Fatalf("%s listen %s: %v", network, listen, err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	recvc := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recvc <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(90 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		r := result{n: n, err: err}
		copy(r.sum[:], h.Sum(nil))
		recvc <- r
	}()
	var conn net.Conn
	if err := srcNS.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
		conn, err = d.Dial(network, listen.String())
		return err
	}); err != nil {
		t.Fatalf("%s dial %s from %s: %v", network, listen, from, err)
	}
	start := time.Now()
	conn.SetDeadline(start.Add(90 * time.Second))
	rng := rand.NewChaCha8([32]byte{byte(seed), 'g', 'r', 'o'})
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for sent := int64(0); sent < size; {
		chunk := buf[:min(int64(len(buf)), size-sent)]
		rng.Read(chunk)
		h.Write(chunk)
		n, err := conn.Write(chunk)
		sent += int64(n)
		if err != nil {
			conn.Close()
			t.Fatalf("%s write after %d bytes: %v", network, sent, err)
		}
	}
	conn.Close()
	var r result
	select {
	case r = <-recvc:
	case <-time.After(95 * time.Second):
		t.Fatalf("%s: receiver did not finish", network)
	}
	elapsed := time.Since(start)
	if r.err != nil {
		t.Fatalf("%s receive after %d bytes: %v", network, r.n, r.err)
	}
	if r.n != size {
		t.Fatalf("%s: received %d bytes, sent %d", network, r.n, size)
	}
	if want := h.Sum(nil); string(r.sum[:]) != string(want) {
		t.Fatalf("%s: SHA-256 mismatch: sent %x, received %x", network, want, r.sum)
	}
	return fmt.Sprintf("%d MiB in %v (%.2f Gbit/s), sha256 ok", size>>20, elapsed.Round(time.Millisecond),
		float64(size)*8/elapsed.Seconds()/1e9)
}
