package integration

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/net/ipv4"
)

// The veth kind's peer guard: what veth1 sends reaches vd-veth1, and so,
// without the guard, the host namespace's own IP stack, which takes
// limited broadcasts and 224.0.0.1 as if they came from the LAN. The guard
// (an nftables netdev ingress chain on the peer) drops them after the
// relay's packet socket has seen them.

const guardPort = 40067

// udpSeen is a UDP socket bound to 0.0.0.0:guardPort in a namespace and
// what it has received: for each payload, the ifindexes it arrived on.
type udpSeen struct {
	conn *ipv4.PacketConn
	mu   sync.Mutex
	got  map[string][]int
}

// listenGuardPort opens a udpSeen in ns (SO_BROADCAST, IP_PKTINFO); it is
// closed at cleanup.
func listenGuardPort(t *testing.T, ns *Netns) *udpSeen {
	t.Helper()
	u := &udpSeen{got: map[string][]int{}}
	err := ns.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
			})
			return errors.Join(err, serr)
		}}
		pc, err := lc.ListenPacket(t.Context(), "udp4", fmt.Sprintf("0.0.0.0:%d", guardPort))
		if err != nil {
			return err
		}
		u.conn = ipv4.NewPacketConn(pc)
		return u.conn.SetControlMessage(ipv4.FlagInterface, true)
	})
	if err != nil {
		t.Fatalf("listen on udp 0.0.0.0:%d: %v", guardPort, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, cm, _, err := u.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			ifindex := 0
			if cm != nil {
				ifindex = cm.IfIndex
			}
			u.mu.Lock()
			u.got[string(buf[:n])] = append(u.got[string(buf[:n])], ifindex)
			u.mu.Unlock()
		}
	}()
	t.Cleanup(func() { u.conn.Close(); <-done })
	return u
}

// arrived returns the ifindexes payload arrived on so far.
func (u *udpSeen) arrived(payload string) []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.got[payload]...)
}

// guardSender sends from veth1 (SO_BINDTODEVICE) in the host namespace,
// without an address (from 0.0.0.0, as a DHCP client does), multicasts not
// looped back.
func guardSender(t *testing.T, l *LAN) *ipv4.PacketConn {
	t.Helper()
	var pc *ipv4.PacketConn
	err := l.Host.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = errors.Join(syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1),
					syscall.BindToDevice(int(fd), "veth1"))
			})
			return errors.Join(err, serr)
		}}
		c, err := lc.ListenPacket(t.Context(), "udp4", "0.0.0.0:0")
		if err != nil {
			return err
		}
		pc = ipv4.NewPacketConn(c)
		ifi, err := net.InterfaceByName("veth1")
		if err != nil {
			return errors.Join(err, c.Close())
		}
		return errors.Join(pc.SetMulticastLoopback(false), pc.SetMulticastInterface(ifi))
	})
	if err != nil {
		t.Fatalf("socket on veth1: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// guardRound sends a limited broadcast and a datagram to 224.0.0.1 tagged
// tag from veth1, waits until the LAN has both (the relay passed them),
// and returns how many of them reached the host namespace's socket
// through the peer (peerIndex).
func guardRound(t *testing.T, snd *ipv4.PacketConn, lan, local *udpSeen, peerIndex int, tag string) int {
	t.Helper()
	payloads := []string{tag + " broadcast", tag + " all-hosts"}
	for i, dst := range []string{"255.255.255.255", "224.0.0.1"} {
		if _, err := snd.WriteTo([]byte(payloads[i]), nil, &net.UDPAddr{IP: net.ParseIP(dst), Port: guardPort}); err != nil {
			t.Fatalf("send to %s from veth1: %v", dst, err)
		}
	}
	waitFor(t, 3*time.Second, tag+" relayed to the LAN", func() (bool, string) {
		return len(lan.arrived(payloads[0])) > 0 && len(lan.arrived(payloads[1])) > 0, fmt.Sprint(lan.arrived(payloads[0]), lan.arrived(payloads[1]))
	})
	time.Sleep(100 * time.Millisecond) // (the host's copy, if any, came before the LAN's: it is one hop shorter)
	n := 0
	for _, p := range payloads {
		for _, i := range local.arrived(p) {
			if i == peerIndex {
				n++
			}
		}
	}
	return n
}

// guardChains lists the chains named peer in the host namespace's table
// netdev vethd.
func guardChains(t *testing.T, l *LAN, peer string) int {
	t.Helper()
	n := 0
	err := l.Host.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
		for _, ch := range chains {
			if ch.Table.Name == "vethd" && ch.Name == peer {
				n++
			}
		}
		return err
	})
	if err != nil {
		t.Fatalf("list nftables chains: %v", err)
	}
	return n
}

// flushRuleset is `nft flush ruleset` in the host namespace.
func flushRuleset(t *testing.T, l *LAN) {
	t.Helper()
	err := l.Host.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.FlushRuleset()
		return c.Flush()
	})
	if err != nil {
		t.Fatalf("nft flush ruleset: %v", err)
	}
}

// TestVethGuard runs on the relay (the data path the guard protects, also
// where the kernel path falls back to it); on the kernel path from_nic
// takes every frame before the stack (TestVethKernelNoLeak).
func TestVethGuard(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := l.StartBridge(t, "veth", vethMAC, "-data-path", "relay")
	carrierIs(t, l, "veth1", true, 5*time.Second)
	peerIndex := l.Host.MustLink(t, "vd-veth1").Attrs().Index
	if err := p.WaitLine("Guarded vd-veth1", time.Second); err != nil {
		t.Errorf("%v\n%s", err, p.Output())
	}
	if n := guardChains(t, l, "vd-veth1"); n != 1 {
		t.Fatalf("%d chains vd-veth1 in table netdev vethd, want 1", n)
	}
	local, lan := listenGuardPort(t, l.Host), listenGuardPort(t, l.LANNS)
	snd := guardSender(t, l)

	if n := guardRound(t, snd, lan, local, peerIndex, "guarded"); n != 0 {
		t.Fatalf("%d datagrams from veth1 reached the host namespace through vd-veth1 (guarded)", n)
	}

	// The control: right after `nft flush ruleset` the peer is open, and
	// a broadcast reaches the host's socket through it. (If the guard
	// comes back between the flush and the datagrams, flush again.)
	const again = "Installed the nftables guard of vd-veth1 again"
	exposed := false
	for try := 0; try < 5 && !exposed; try++ {
		before := strings.Count(p.Output(), again)
		flushRuleset(t, l)
		n := guardRound(t, snd, lan, local, peerIndex, fmt.Sprintf("flushed %d", try))
		exposed = n > 0 && strings.Count(p.Output(), again) == before
		waitFor(t, 5*time.Second, "the guard installed again", func() (bool, string) {
			return strings.Count(p.Output(), again) > before, p.Output()
		})
	}
	if !exposed {
		t.Fatalf("no datagram reached the host namespace through vd-veth1 after nft flush ruleset: the test cannot tell a guard from none\n%s", p.Output())
	}
	if !strings.Contains(p.Output(), "The nftables guard of vd-veth1 is gone or changed") {
		t.Errorf("no warning of the lost guard:\n%s", p.Output())
	}
	if n := guardRound(t, snd, lan, local, peerIndex, "re-installed"); n != 0 {
		t.Fatalf("%d datagrams from veth1 reached the host namespace through vd-veth1 after the guard came back", n)
	}

	// Release keeps it; adoption keeps one; Close removes it.
	p.Signal(syscall.SIGUSR1)
	if err := p.WaitLine("Released", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Wait(5 * time.Second)
	if n := guardChains(t, l, "vd-veth1"); n != 1 {
		t.Errorf("%d chains vd-veth1 after Release, want 1", n)
	}
	p2 := l.StartBridge(t, "veth", vethMAC)
	if err := p2.WaitLine("Adopted veth1", time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p2.Output())
	}
	if n := guardChains(t, l, "vd-veth1"); n != 1 {
		t.Errorf("%d chains vd-veth1 after adoption, want 1", n)
	}
	if n := guardRound(t, snd, lan, local, peerIndex, "adopted"); n != 0 {
		t.Errorf("%d datagrams reached the host namespace through vd-veth1 after adoption", n)
	}
	p2.Signal(syscall.SIGTERM)
	if err := p2.WaitLine("Closed", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p2.Wait(5 * time.Second)
	if n := guardChains(t, l, "vd-veth1"); n != 0 {
		t.Errorf("%d chains vd-veth1 after Close, want 0", n)
	}
	if out := p.Output() + p2.Output(); strings.Contains(out, "cannot install") {
		t.Errorf("a guard warning:\n%s", out)
	}
}

// TestVethKernelNoLeak: on the kernel data path nothing veth1 sends
// reaches the host namespace through vd-veth1, even with the guard
// flushed (what TestVethGuard's control shows leaking on the relay).
func TestVethKernelNoLeak(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := l.StartBridge(t, "veth", vethMAC, "-data-path", "kernel")
	if err := p.WaitLine("data_path=kernel", time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	carrierIs(t, l, "veth1", true, 5*time.Second)
	peerIndex := l.Host.MustLink(t, "vd-veth1").Attrs().Index
	local, lan := listenGuardPort(t, l.Host), listenGuardPort(t, l.LANNS)
	snd := guardSender(t, l)
	for try := 0; try < 3; try++ {
		flushRuleset(t, l)
		if n := guardRound(t, snd, lan, local, peerIndex, fmt.Sprintf("kernel, flushed %d", try)); n != 0 {
			t.Fatalf("%d datagrams from veth1 reached the host namespace through vd-veth1 on the kernel path", n)
		}
	}
}
