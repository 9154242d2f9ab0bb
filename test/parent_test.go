package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// carrierIs waits until veth1's carrier, seen both as IFF_LOWER_UP and as
// /sys/class/net/veth1/carrier inside the namespace, is want.
func carrierIs(t *testing.T, l *LAN, dev string, want bool, within time.Duration) {
	t.Helper()
	sysfs := "0"
	if want {
		sysfs = "1"
	}
	waitFor(t, within, fmt.Sprintf("%s carrier %v", dev, want), func() (bool, string) {
		lu, c := l.Host.LowerUp(dev), l.Host.SysfsCarrier(dev)
		return lu == want && c == sysfs, fmt.Sprintf("LOWER_UP=%v sysfs carrier=%q", lu, c)
	})
}

// startOnStaticLAN starts vethd on eth0 (which keeps no address) and gives
// veth1 198.18.X.50; it checks that the LAN answers through veth1.
func startOnStaticLAN(t *testing.T, l *LAN) *Proc {
	t.Helper()
	p := l.StartVethd(t, "veth1", "eth0")
	l.SetStatic(t, "veth1", 50)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	return p
}

// TestParentDownUp: the TAP comes up with the parent's MTU (a non-default
// 1400 here) and carrier; parent down → TAP carrier off; parent up →
// carrier on and traffic flows again.
func TestParentDownUp(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	l.Host.IP(t, "link", "set", "eth0", "mtu", "1400")
	l.LANNS.IP(t, "link", "set", "lan0", "mtu", "1400")
	p := startOnStaticLAN(t, l)
	attrs := l.Host.MustLink(t, "veth1").Attrs()
	if attrs.MTU != 1400 {
		t.Errorf("veth1 MTU %d, want the parent's 1400", attrs.MTU)
	}
	if attrs.RawFlags&unix.IFF_UP == 0 {
		t.Errorf("veth1 is not UP")
	}
	carrierIs(t, l, "veth1", true, time.Second)
	// A full-size frame goes through (don't fragment).
	l.Host.WaitPing(t, 5*time.Second, "-I", "veth1", "-M", "do", "-s", fmt.Sprint(1400-28), l.Router4.String())

	l.Host.IP(t, "link", "set", "eth0", "down")
	carrierIs(t, l, "veth1", false, 3*time.Second)
	if !p.Running() {
		t.Fatalf("vethd exited when the parent went down")
	}
	l.Host.IP(t, "link", "set", "eth0", "up")
	carrierIs(t, l, "veth1", true, 3*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())

	// The cable is pulled at the other end: eth0 stays administratively
	// up but loses its carrier (NO-CARRIER); veth1 must follow that too.
	l.LANNS.IP(t, "link", "set", "lan0", "down")
	waitFor(t, 3*time.Second, "eth0 to lose carrier", func() (bool, string) { return !l.Host.LowerUp("eth0"), "" })
	carrierIs(t, l, "veth1", false, 3*time.Second)
	l.LANNS.IP(t, "link", "set", "lan0", "up")
	carrierIs(t, l, "veth1", true, 3*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())

	// Once more, to see that a second transition is tracked too.
	l.Host.IP(t, "link", "set", "eth0", "down")
	carrierIs(t, l, "veth1", false, 3*time.Second)
	l.Host.IP(t, "link", "set", "eth0", "up")
	carrierIs(t, l, "veth1", true, 3*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
}

// TestStartWithParentDown: started on a parent that is down, the TAP comes
// up without carrier; when the parent comes up, carrier follows and
// traffic flows.
func TestStartWithParentDown(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	l.Host.IP(t, "link", "set", "eth0", "down")
	p := l.SpawnVethd(t, "-v", "veth1", "-e", "eth0")
	waitFor(t, 10*time.Second, "veth1 to appear", func() (bool, string) {
		return l.Host.Link("veth1") != nil, p.Output()
	})
	time.Sleep(300 * time.Millisecond) // room for a wrong carrier to show
	carrierIs(t, l, "veth1", false, 3*time.Second)
	l.Host.IP(t, "link", "set", "eth0", "up")
	carrierIs(t, l, "veth1", true, 3*time.Second)
	l.SetStatic(t, "veth1", 50)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	if !p.Running() {
		t.Fatalf("vethd exited")
	}
}

// TestMTUFollowsParent (DESIGN.md, link control: "MTU follows the
// parent"): changing the parent's MTU while vethd runs changes the TAP's;
// with jumbo frames on the whole wire, a 9000-byte packet passes unfragmented.
func TestMTUFollowsParent(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := startOnStaticLAN(t, l)
	for _, mtu := range []int{1280, 9000} {
		l.LANNS.IP(t, "link", "set", "lan0", "mtu", fmt.Sprint(mtu))
		l.Host.IP(t, "link", "set", "eth0", "mtu", fmt.Sprint(mtu))
		waitFor(t, 3*time.Second, fmt.Sprintf("veth1 MTU %d", mtu), func() (bool, string) {
			got := l.Host.MustLink(t, "veth1").Attrs().MTU
			return got == mtu, fmt.Sprint(got)
		})
	}
	l.Host.WaitPing(t, 5*time.Second, "-I", "veth1", "-M", "do", "-s", fmt.Sprint(9000-28), l.Router4.String())
	l.LANNS.WaitPing(t, 5*time.Second, "-M", "do", "-s", fmt.Sprint(9000-28), l.Addr4(50).String())
	if !p.Running() {
		t.Fatalf("vethd exited")
	}
}

// TestParentRecreated: the parent pair is deleted (the TAP stays, carrier
// off, vethd keeps running) and re-created under the same name; vethd
// rebinds by itself and traffic through veth1 resumes, same process, same
// TAP.
func TestParentRecreated(t *testing.T) {
	l := NewLAN(t, LANConfig{DHCP: true})
	p := startOnStaticLAN(t, l)
	ifindex := l.Host.MustLink(t, "veth1").Attrs().Index
	oldParent := l.Host.MustLink(t, "eth0").Attrs().Index

	l.DeleteWire("eth0")
	carrierIs(t, l, "veth1", false, 3*time.Second)
	time.Sleep(500 * time.Millisecond)
	if !p.Running() {
		t.Fatalf("vethd exited when its parent was deleted")
	}
	if l.Host.Link("veth1") == nil {
		t.Fatalf("veth1 vanished with its parent")
	}

	// Stays put while it waits.
	time.Sleep(300 * time.Millisecond)
	if !p.Running() || l.Host.Link("veth1") == nil {
		t.Fatalf("vethd or veth1 gone while waiting for the parent")
	}
	l.RecreateWire()
	if got := l.Host.MustLink(t, "eth0").Attrs().Index; got == oldParent {
		t.Fatalf("the new eth0 has the old ifindex %d: not a new link", got)
	}
	carrierIs(t, l, "veth1", true, 5*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	if !p.Running() {
		t.Fatalf("vethd exited")
	}
	if got := l.Host.MustLink(t, "veth1").Attrs().Index; got != ifindex {
		t.Errorf("veth1 ifindex %d, was %d: the TAP was re-created", got, ifindex)
	}
	// And the re-bound path carries DHCP (broadcast both ways) too, from
	// the restarted dnsmasq.
	l.Host.IP(t, "addr", "flush", "dev", "veth1")
	a := l.DHCP(t, "veth1")
	l.LANNS.WaitPing(t, 5*time.Second, a.String())
}

// TestParentRenamed: eth0 is renamed wan0 (down, rename, up); vethd keeps
// relaying, and still tracks the renamed link (its carrier still follows).
func TestParentRenamed(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := startOnStaticLAN(t, l)
	l.Host.IP(t, "link", "set", "eth0", "down")
	l.Host.IP(t, "link", "set", "eth0", "name", "wan0")
	l.Host.IP(t, "link", "set", "wan0", "up")
	carrierIs(t, l, "veth1", true, 3*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	l.LANNS.WaitPing(t, 5*time.Second, l.Addr4(50).String())

	l.Host.IP(t, "link", "set", "wan0", "down")
	carrierIs(t, l, "veth1", false, 3*time.Second)
	l.Host.IP(t, "link", "set", "wan0", "up")
	carrierIs(t, l, "veth1", true, 3*time.Second)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	if !p.Running() {
		t.Fatalf("vethd exited")
	}
}

// TestSIGTERMWhileWaitingForParent: with its parent deleted, vethd waits
// for it; SIGTERM still ends it with status 0 within a second, TAP removed.
func TestSIGTERMWhileWaitingForParent(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := l.StartVethd(t, "veth1", "eth0")
	l.DeleteWire("eth0")
	carrierIs(t, l, "veth1", false, 3*time.Second)
	stopWithin(t, l, p, syscall.SIGTERM, time.Second)
}

// stopWithin signals vethd and requires exit status 0 within d and its TAP
// (veth1) gone.
func stopWithin(t *testing.T, l *LAN, p *Proc, sig syscall.Signal, d time.Duration) {
	t.Helper()
	if err := p.Signal(sig); err != nil {
		t.Fatal(err)
	}
	st := p.Wait(d)
	if st == nil {
		t.Fatalf("%v: vethd still running after %v", sig, d)
	}
	if st.ExitCode() != 0 {
		t.Errorf("%v: vethd exited with %v, want status 0", sig, st)
	}
	if l.Host.Link("veth1") != nil {
		t.Errorf("%v: veth1 still exists after vethd exited", sig)
	}
}

// TestTAPRenamed: an administrator renames the virtual interface; vethd
// keeps relaying and the MTU still follows the parent (the TAP is tracked
// by index, not name). Renamed to the parent's name while the parent is
// gone, it must not be taken for the parent (that would loop frames back
// into the TAP at full CPU).
func TestTAPRenamed(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := startOnStaticLAN(t, l)
	l.Host.IP(t, "link", "set", "veth1", "down")
	l.Host.IP(t, "link", "set", "veth1", "name", "vx1")
	l.Host.IP(t, "link", "set", "vx1", "up")
	l.Host.IP(t, "addr", "replace", l.Addr4(50).String()+"/24", "dev", "vx1")
	l.Host.WaitPing(t, 10*time.Second, "-I", "vx1", l.Router4.String())

	l.Host.IP(t, "link", "set", "eth0", "mtu", "1300")
	waitFor(t, 3*time.Second, "vx1 MTU to follow eth0 to 1300", func() (bool, string) {
		m := l.Host.MustLink(t, "vx1").Attrs().MTU
		return m == 1300, fmt.Sprintf("MTU %d", m)
	})

	// Parent gone; the TAP takes the parent's name.
	l.DeleteWire("eth0")
	carrierIs(t, l, "vx1", false, 3*time.Second)
	l.Host.IP(t, "link", "set", "vx1", "down")
	l.Host.IP(t, "link", "set", "vx1", "name", "eth0")
	l.Host.IP(t, "link", "set", "eth0", "up")
	time.Sleep(500 * time.Millisecond)
	if !p.Running() {
		t.Fatalf("vethd exited:\n%s", p.Output())
	}
	if out := p.Output(); strings.Contains(out, "again") {
		t.Fatalf("vethd took its own TAP for the parent:\n%s", out)
	}
	if c := l.Host.SysfsCarrier("eth0"); c != "0" {
		t.Fatalf("TAP (now named eth0) carrier %q, want 0: it has no parent", c)
	}
}
