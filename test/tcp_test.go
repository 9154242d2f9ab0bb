package integration

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestTCPBothWays moves 128 MiB of TCP each way through veth1 with the
// veth pair's default offloads on (TSO, GSO, checksum offload: the LAN side
// hands vethd GSO super-frames with partial checksums), and verifies every
// byte by SHA-256 on both ends. eth0 has no address, so the only route to
// the LAN is through veth1.
func TestTCPBothWays(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	needTools(t, "ethtool")
	l.StartVethd(t, "veth1", "eth0")
	requireDefaultOffloads(t, l)
	t.Logf("veth1 offloads: %s", offloadSummary(t, l.Host, "veth1"))
	checkTCP(t, l, "veth1", 128<<20)
}

// requireDefaultOffloads fails the test if the wire does not have the
// offloads this test is about.
func requireDefaultOffloads(t *testing.T, l *LAN) {
	t.Helper()
	for _, side := range []struct {
		ns  *Netns
		dev string
	}{{l.Host, "eth0"}, {l.LANNS, "lan0"}} {
		s := offloadSummary(t, side.ns, side.dev)
		for _, f := range []string{"tx-checksumming: on", "tcp-segmentation-offload: on", "generic-segmentation-offload: on"} {
			if !strings.Contains(s, f) {
				t.Fatalf("%s: want %q (veth default), have: %s", side.dev, f, s)
			}
		}
	}
}

// offloadSummary returns the top-level lines of `ethtool -k dev`.
func offloadSummary(t *testing.T, ns *Netns, dev string) string {
	t.Helper()
	out := ns.MustRun(t, "ethtool", "-k", dev)
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		for _, k := range []string{"rx-checksumming", "tx-checksumming", "scatter-gather", "tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"} {
			if strings.HasPrefix(line, k+":") {
				keep = append(keep, strings.TrimSpace(line))
			}
		}
	}
	return strings.Join(keep, ", ")
}

// checkTCP gives virt a static address and runs two TCP connections
// through it: the host dials the LAN and sends size bytes, then the LAN
// dials the host and sends size bytes. Sockets are opened inside the
// namespaces with Netns.Do.
func checkTCP(t *testing.T, l *LAN, virt string, size int64) {
	hostAddr := l.SetStatic(t, virt, 50)
	l.Host.WaitPing(t, 10*time.Second, "-I", virt, l.Router4.String())

	tx0, rx0 := l.Host.Stat(t, virt, "tx_bytes"), l.Host.Stat(t, virt, "rx_bytes")
	upload := transfer(t, "host→LAN", "tcp4", l.Host, l.LANNS, netip.AddrPortFrom(l.Router4, 5201), hostAddr, size, 1)
	download := transfer(t, "LAN→host", "tcp4", l.LANNS, l.Host, netip.AddrPortFrom(hostAddr, 5202), l.Router4, size, 2)
	t.Logf("host→LAN %s, LAN→host %s", upload, download)
	// The data went through virt, not some other path.
	if tx, rx := l.Host.Stat(t, virt, "tx_bytes")-tx0, l.Host.Stat(t, virt, "rx_bytes")-rx0; tx < uint64(size) || rx < uint64(size) {
		t.Errorf("%s counted %d bytes out, %d in; want ≥ %d each way", virt, tx, rx, size)
	}
}

// transfer listens on listen inside dstNS, dials it from srcNS (bound to
// from) over network ("tcp4" or "tcp6"), streams size pseudo-random bytes (seeded with seed) and checks
// the receiver's count and SHA-256 against the sender's. It returns the
// throughput.
func transfer(t *testing.T, what, network string, srcNS, dstNS *Netns, listen netip.AddrPort, from netip.Addr, size int64, seed uint64) string {
	t.Helper()
	recvc := hashSink(t, what, network, dstNS, listen, 90*time.Second)

	var conn net.Conn
	if err := srcNS.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
		conn, err = d.Dial(network, listen.String())
		return err
	}); err != nil {
		t.Fatalf("%s: dial %s from %s: %v", what, listen, from, err)
	}
	start := time.Now()
	conn.SetDeadline(start.Add(90 * time.Second))
	rng := rand.NewChaCha8([32]byte{byte(seed), 'v', 'e', 't', 'h', 'd'})
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var sent int64
	var werr error
	for sent < size {
		chunk := buf[:min(int64(len(buf)), size-sent)]
		rng.Read(chunk)
		h.Write(chunk)
		n, err := conn.Write(chunk)
		sent += int64(n)
		if err != nil {
			werr = err
			break
		}
	}
	conn.Close()
	if werr != nil {
		// Still collect the receiver's view for the message.
		r := <-recvc
		t.Fatalf("%s: write failed after %d of %d bytes: %v (receiver got %d, err %v)", what, sent, size, werr, r.n, r.err)
	}
	var r sinkResult
	select {
	case r = <-recvc:
	case <-time.After(95 * time.Second):
		t.Fatalf("%s: receiver did not finish", what)
	}
	elapsed := time.Since(start)
	if r.err != nil && !errors.Is(r.err, io.EOF) {
		t.Fatalf("%s: receive after %d bytes: %v", what, r.n, r.err)
	}
	if r.n != size {
		t.Fatalf("%s: received %d bytes, sent %d", what, r.n, size)
	}
	if want := h.Sum(nil); string(r.sum[:]) != string(want) {
		t.Fatalf("%s: SHA-256 mismatch: sent %x, received %x", what, want, r.sum)
	}
	return fmt.Sprintf("%d MiB in %v (%.2f Gbit/s), sha256 ok", size>>20, elapsed.Round(time.Millisecond),
		float64(size)*8/elapsed.Seconds()/1e9)
}

// sinkResult is what a hashSink received: the byte count, their SHA-256,
// and the error that ended the copy.
type sinkResult struct {
	n   int64
	sum [32]byte
	err error
}

// hashSink listens on listen inside ns, accepts one connection, reads it to
// the end (for at most timeout) and sends the count and SHA-256 of what
// came on the channel. The listener is closed once it has accepted (or
// when the test ends, if nobody dialled).
func hashSink(t *testing.T, what, network string, ns *Netns, listen netip.AddrPort, timeout time.Duration) <-chan sinkResult {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen(network, listen.String())
		return err
	}); err != nil {
		t.Fatalf("%s: listen: %v", what, err)
	}
	t.Cleanup(func() { ln.Close() })
	recvc := make(chan sinkResult, 1)
	go func() {
		c, err := ln.Accept()
		ln.Close() // one connection: the address is free again at once
		if err != nil {
			recvc <- sinkResult{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		h := sha256.New()
		n, err := io.Copy(h, c)
		r := sinkResult{n: n, err: err}
		copy(r.sum[:], h.Sum(nil))
		recvc <- r
	}()
	return recvc
}

// TestTCPOffloadVariants runs checkTCP (32 MiB each way) on the other two
// wire conditions of the benchmarks: "like a real NIC" (the LAN side
// computes checksums and segments in software, the parent has GRO on) and
// plain MTU-sized frames with every offload off on both ends of the wire.
func TestTCPOffloadVariants(t *testing.T) {
	for _, v := range []struct {
		name      string
		lan, host []string // ethtool -K features for lan0 and eth0
	}{
		{"RealNICLike", []string{"tx", "off", "tso", "off", "gso", "off"}, []string{"gro", "on"}},
		{"NoOffloads", []string{"tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off"},
			[]string{"tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			l := newLANWithOffloads(t, v.lan, v.host)
			checkTCP(t, l, "veth1", 32<<20)
		})
	}
}

// newLANWithOffloads builds a LAN whose wire has the given `ethtool -K`
// features on lan0 and on eth0, starts vethd (veth1 on eth0) and logs the
// offloads in effect.
func newLANWithOffloads(t *testing.T, lan, host []string) *LAN {
	t.Helper()
	l := NewLAN(t, LANConfig{})
	needTools(t, "ethtool")
	l.LANNS.MustRun(t, append([]string{"ethtool", "-K", "lan0"}, lan...)...)
	l.Host.MustRun(t, append([]string{"ethtool", "-K", "eth0"}, host...)...)
	l.StartVethd(t, "veth1", "eth0")
	t.Logf("lan0: %s", offloadSummary(t, l.LANNS, "lan0"))
	t.Logf("eth0: %s", offloadSummary(t, l.Host, "eth0"))
	return l
}
