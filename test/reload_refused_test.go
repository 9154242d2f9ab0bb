package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// TestReloadRefusedKeepsBridge (issue 9 leftovers and item 7): a reload
// to a parent that is not an Ethernet device (lo), or to the parent's own
// MAC address, is refused: vethd relays on as before, LastError says why.
// A reload of a file that is a link to someone's secrets leaves in
// LastError (any user reads it) the file, line and key, not the value.
func TestReloadRefusedKeepsBridge(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	bus, dir, p := startOnBus(t, l, "[Bridge]\nParent=eth0\n")
	c := dbusapi.NewClient(bus.Conn(t))
	ctx := context.Background()
	waitFor(t, 5*time.Second, "veth1 running", func() (bool, string) {
		st, _, err := c.Get(ctx, "veth1")
		return err == nil && st.State == "running", fmt.Sprint(st.State, err)
	})
	virt4 := l.SetStatic(t, "veth1", 61)
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())
	eth0 := l.Host.MustLink(t, "eth0").Attrs()
	veth1 := l.Host.MustLink(t, "veth1").Attrs()

	for _, tc := range []struct{ conf, want string }{
		{"[Bridge]\nParent=lo\n", "parent lo is not an Ethernet device (type loopback)"},
		{"[Bridge]\nParent=eth0\nMACAddress=" + eth0.HardwareAddr.String() + "\n", "is eth0's own: the virtual interface needs an address of its own"},
	} {
		writeConf(t, dir, "veth1", tc.conf)
		if err := c.Reload(ctx, "veth1"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Reload of %q: %v, want %q", tc.conf, err, tc.want)
		}
		st, _, err := c.Get(ctx, "veth1")
		if err != nil || st.State != "running" || st.Parent != "eth0" || int(st.ParentIfIndex) != eth0.Index ||
			st.MACAddress != veth1.HardwareAddr.String() || !strings.Contains(st.LastError, tc.want) {
			t.Errorf("after the refused reload of %q: %+v %v", tc.conf, st, err)
		}
		l.LANNS.WaitPing(t, 5*time.Second, virt4.String())
	}

	secret := filepath.Join(l.Dir, "secrets")
	if err := os.WriteFile(secret, []byte("[Bridge]\nParent=eth0\nMTU=hunter2x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "veth1.conf")
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, conf); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx, "veth1"); err == nil || !strings.Contains(err.Error(), `"hunter2x"`) {
		t.Errorf("Reload of a bad file: %v (root's reply keeps the value)", err)
	}
	// SIGHUP: the journal keeps the value too.
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitLine(`Reload failed; keeping the running configuration: `+conf+`:3: MTU=: "hunter2x" is not a number`, 5*time.Second); err != nil {
		t.Errorf("the log lost the value: %v\n%s", err, p.Output())
	}
	st, _, _ := c.Get(ctx, "veth1")
	if want := "reload: " + conf + `:3: MTU=: the value is not a number or "inherit"`; st.LastError != want || st.State != "running" {
		t.Errorf("LastError %q, state %s; want %q", st.LastError, st.State, want)
	}
	if !p.Running() {
		t.Fatalf("vethd exited:\n%s", p.Output())
	}
}
