package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// TestMTUEdges (issue 9 item 6) runs vethd --instance on a private system
// bus, for each kind, and checks the MTU's edges against the kernel: a
// parent MTU of 65535 is followed up to what the kind takes (TAP 65521,
// veth 65535) with no error; an MTU someone sets on the interface above
// the parent's is set back with a warning naming the limit, one below is
// kept; the MTU property always says what the interface has; an explicit
// MTU= wins on Reload.
func TestMTUEdges(t *testing.T) {
	for _, kind := range []string{"tap", "veth"} {
		t.Run(kind, func(t *testing.T) { testMTUEdges(t, kind) })
	}
}

func testMTUEdges(t *testing.T, kind string) {
	max := map[string]int{"tap": 65521, "veth": 65535}[kind]
	l := NewLAN(t, LANConfig{})
	l.Host.IP(t, "link", "set", "eth0", "mtu", "65535")
	bus, dir, p := startOnBus(t, l, "[Bridge]\nParent=eth0\nKind="+kind+"\n")
	c := dbusapi.NewClient(bus.Conn(t))
	ctx := context.Background()

	// both checks the interface's MTU and the property, and the state.
	both := func(what string, want int) {
		t.Helper()
		waitFor(t, 5*time.Second, what, func() (bool, string) {
			real := l.Host.MustLink(t, "veth1").Attrs().MTU
			st, _, err := c.Get(ctx, "veth1")
			ok := err == nil && real == want && int(st.MTU) == want && st.State == "running" && st.LastError == ""
			return ok, fmt.Sprintf("veth1 mtu %d, property %d, state %s, LastError %q, %v", real, st.MTU, st.State, st.LastError, err)
		})
	}
	start := time.Now()
	both("the kind's maximum at start", max)
	clamp := fmt.Sprintf("MTU of veth1 follows eth0 only up to the most a %s interface takes mtu=%d parent_mtu=65535", kind, max)
	if max < 65535 {
		if err := p.WaitLine(clamp, 5*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, p.Output())
		}
	}

	l.Host.IP(t, "link", "set", "eth0", "mtu", "1500")
	both("the parent's 1500", 1500)
	l.Host.IP(t, "link", "set", "eth0", "mtu", "65535")
	both("the kind's maximum again", max)
	if n := strings.Count(p.Output(), "only up to the most"); max < 65535 && n != 2 {
		t.Errorf("%d clamp lines, want one per change (2):\n%s", n, p.Output())
	}
	l.Host.IP(t, "link", "set", "eth0", "mtu", "1500")
	both("the parent's 1500 again", 1500)
	t.Logf("%s: parent MTU cases took %v", kind, time.Since(start).Round(time.Millisecond))

	// Someone sets 9000: above the 1500 eth0 carries: set back.
	start = time.Now()
	l.Host.IP(t, "link", "set", "veth1", "mtu", "9000")
	if err := p.WaitLine("MTU of veth1 changed by someone else to 9000, above the 1500 that eth0 carries: frames that large would vanish; setting it back mtu=1500", 5*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	both("1500, set back", 1500)
	t.Logf("%s: set back from 9000 in %v", kind, time.Since(start).Round(time.Millisecond))

	// Someone sets 1400: kept, and the property says so.
	l.Host.IP(t, "link", "set", "veth1", "mtu", "1400")
	both("1400, kept", 1400)
	if err := p.WaitLine("MTU of veth1 changed by someone else; keeping it mtu=1400", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// A reload following the parent as before keeps it; an explicit MTU= wins.
	if err := c.Reload(ctx, "veth1"); err != nil {
		t.Fatal(err)
	}
	both("1400 after a reload", 1400)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nKind="+kind+"\nMTU=1300\n")
	if err := c.Reload(ctx, "veth1"); err != nil {
		t.Fatal(err)
	}
	both("1300 after a reload with MTU=1300", 1300)
	l.Host.IP(t, "link", "set", "veth1", "mtu", "1280")
	both("1280, below MTU=1300 and eth0's: kept", 1280)
	if err := c.Reload(ctx, "veth1"); err != nil {
		t.Fatal(err)
	}
	both("MTU=1300 wins on reload", 1300)
	// MTU= above what the kind takes: the reload is refused, nothing changes.
	if kind == "tap" {
		writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nMTU=65535\n")
		if err := c.Reload(ctx, "veth1"); err == nil || !strings.Contains(err.Error(), "veth1.conf:3: MTU=: 65535 is above what an interface of Kind=tap takes: at most 65521") {
			t.Errorf("Reload with MTU=65535: %v", err)
		}
		if st, _, _ := c.Get(ctx, "veth1"); st.MTU != 1300 || st.State != "running" ||
			st.LastError != "reload: "+filepath.Join(dir, "veth1.conf")+":3: MTU=: the value is above what an interface of Kind=tap takes: at most 65521 (Kind=veth: 65535)" {
			t.Errorf("after a refused reload: MTU %d, state %s, LastError %q", st.MTU, st.State, st.LastError)
		}
	}
	if !p.Running() {
		t.Fatalf("vethd exited:\n%s", p.Output())
	}
}

// TestMTUConfigRefused (issue 9 item 6): MTU= above what Kind= takes makes
// vethd --instance exit 78 (EX_CONFIG: systemd does not restart it) at
// FILE:LINE naming the maximum, before any interface is created.
func TestMTUConfigRefused(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nMTU=65535\n")
	p := l.SpawnVethd(t, "--instance", "veth1", "--config-dir", dir)
	st := p.Wait(10 * time.Second)
	if st == nil {
		t.Fatal("vethd still running")
	}
	want := filepath.Join(dir, "veth1.conf") + ":3: MTU=: 65535 is above what an interface of Kind=tap takes: at most 65521 (Kind=veth: 65535)"
	if st.ExitCode() != 78 || !strings.Contains(p.Output(), want) {
		t.Errorf("exit %v, want 78 and %q:\n%s", st, want, p.Output())
	}
	if links := l.Host.LinkNames(t); len(links) != 2 {
		t.Errorf("links %v, want eth0 and lo only", links)
	}
}
