package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// The veth kind on a namespace LAN: veth1 is one end of a veth pair, its
// peer vd-veth1 relayed by the bridge.

const vethMAC = "02:00:5e:10:00:01"

// vethDataPaths runs f for each data path of the veth kind: the relay,
// and the kernel's tcx programs (-data-path kernel), whose bridge must say
// it uses them.
func vethDataPaths(t *testing.T, f func(t *testing.T, start func(l *LAN) *Proc)) {
	for _, dp := range []string{"relay", "kernel"} {
		t.Run(dp, func(t *testing.T) {
			f(t, func(l *LAN) *Proc {
				p := l.StartBridge(t, "veth", vethMAC, "-data-path", dp)
				if err := p.WaitLine("data_path="+dp, time.Second); err != nil {
					t.Fatalf("%v\n%s", err, p.Output())
				}
				return p
			})
		})
	}
}

func TestVethLeaseAndTCP(t *testing.T) { vethDataPaths(t, testVethLeaseAndTCP) }

func testVethLeaseAndTCP(t *testing.T, start func(*LAN) *Proc) {
	l := NewLAN(t, LANConfig{DHCP: true})
	requireDefaultOffloads(t, l)
	start(l)
	nic, ok := l.Host.MustLink(t, "veth1").(*netlink.Veth)
	if !ok {
		t.Fatalf("veth1 is a %s, not a veth", l.Host.MustLink(t, "veth1").Type())
	}
	peer := l.Host.MustLink(t, "vd-veth1")
	if a := peer.Attrs(); a.Alias != "vethd peer of veth1" || a.MTU != 65535 || a.RawFlags&syscall.IFF_NOARP == 0 ||
		a.ParentIndex != nic.Attrs().Index || nic.Attrs().HardwareAddr.String() != vethMAC || nic.Attrs().MTU != l.Host.MustLink(t, "eth0").Attrs().MTU {
		t.Fatalf("peer %+v, veth1 %+v", a, nic.Attrs())
	}
	if out := l.Host.IP(t, "-6", "addr", "show", "dev", "vd-veth1"); strings.Contains(out, "inet6") {
		t.Errorf("the peer has IPv6 addresses: %s", out)
	}
	lease := l.DHCP(t, "veth1")
	if got := l.Leases(t)[vethMAC]; got != lease.String() {
		t.Errorf("lease for %s: %q, want %s", vethMAC, got, lease)
	}
	l.Host.WaitPing(t, 10*time.Second, "-I", lease.String(), l.Router4.String())
	checkTCP(t, l, "veth1", 16<<20)
}

func TestVethCarrierAndMAC(t *testing.T) { vethDataPaths(t, testVethCarrierAndMAC) }

func testVethCarrierAndMAC(t *testing.T, start func(*LAN) *Proc) {
	l := NewLAN(t, LANConfig{})
	start(l)
	l.SetStatic(t, "veth1", 50)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	l.LANNS.IP(t, "link", "set", "lan0", "down")
	carrierIs(t, l, "veth1", false, 5*time.Second)
	if out := l.Host.IP(t, "link", "show", "veth1"); !strings.Contains(out, "NO-CARRIER") {
		t.Errorf("veth1 without NO-CARRIER: %s", out)
	}
	l.LANNS.IP(t, "link", "set", "lan0", "up")
	carrierIs(t, l, "veth1", true, 5*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())

	l.Host.IP(t, "link", "set", "eth0", "mtu", "1400")
	waitFor(t, 5*time.Second, "veth1 MTU 1400", func() (bool, string) {
		m := l.Host.MustLink(t, "veth1").Attrs().MTU
		return m == 1400, fmt.Sprint(m)
	})
	l.Host.IP(t, "link", "set", "veth1", "address", "02:00:5e:10:00:77")
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	if n := l.LANNS.Neighbour(t, "lan0", l.Addr4(50)); !strings.Contains(n, "02:00:5e:10:00:77") {
		t.Errorf("LAN's neighbour entry for veth1: %s", n)
	}

	// The parent deleted and made again: the bridge attaches to the new
	// one (the kernel path's programs went with the old).
	l.DeleteWire("eth0")
	carrierIs(t, l, "veth1", false, 5*time.Second)
	l.RecreateWire()
	carrierIs(t, l, "veth1", true, 5*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
}

func TestVethCloseReleaseAdopt(t *testing.T) { vethDataPaths(t, testVethCloseReleaseAdopt) }

func testVethCloseReleaseAdopt(t *testing.T, start func(*LAN) *Proc) {
	l := NewLAN(t, LANConfig{})
	p := start(l)
	l.SetStatic(t, "veth1", 50)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	index := l.Host.MustLink(t, "veth1").Attrs().Index

	// Release: the pair stays, with its carrier and address.
	p.Signal(syscall.SIGUSR1)
	if err := p.WaitLine("Released", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Wait(5 * time.Second)
	if !l.Host.LowerUp("veth1") {
		t.Error("veth1 lost its carrier at Release")
	}
	p2 := start(l)
	if err := p2.WaitLine("Adopted veth1", time.Second); err != nil {
		t.Errorf("%v\n%s", err, p2.Output())
	}
	if got := l.Host.MustLink(t, "veth1").Attrs().Index; got != index {
		t.Errorf("ifindex %d after adoption, want %d", got, index)
	}
	if a := l.Addrs4(t, "veth1"); len(a) != 1 || a[0] != l.Addr4(50) {
		t.Errorf("addresses after adoption: %v", a)
	}
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())

	// Our peer, its NIC renamed away: deleted and created again.
	p2.Signal(syscall.SIGUSR1)
	p2.WaitLine("Released", 5*time.Second)
	p2.Wait(5 * time.Second)
	l.Host.IP(t, "link", "set", "veth1", "name", "old1")
	p3 := start(l)
	if err := p3.WaitLine("deleting the pair and creating it again", time.Second); err != nil {
		t.Errorf("%v\n%s", err, p3.Output())
	}
	if l.Host.Link("old1") != nil {
		t.Error("the old pair is still there")
	}
	// Close: the pair goes.
	p3.Signal(syscall.SIGTERM)
	p3.Wait(5 * time.Second)
	for _, n := range []string{"veth1", "vd-veth1"} {
		if l.Host.Link(n) != nil {
			t.Errorf("%s outlived Close", n)
		}
	}
}
