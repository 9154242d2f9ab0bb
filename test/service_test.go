package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vethd/vethd/internal/sdnotify/sdnotifytest"
)

// writeConf writes DIR/NAME.conf.
func writeConf(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".conf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// confDir makes a configuration directory for the test under the LAN's files.
func confDir(t *testing.T, l *LAN) string {
	t.Helper()
	dir := filepath.Join(l.Dir, "etc-vethd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startService runs vethd ARGS… in the host namespace under the fake
// systemd, as systemd would: NOTIFY_SOCKET, WATCHDOG_USEC, and the stored
// descriptors in LISTEN_FDS/LISTEN_FDNAMES with LISTEN_PID set to vethd's
// own pid (a shell sets it, then execs vethd).
func startService(t *testing.T, l *LAN, sd *sdnotifytest.Systemd, watchdog time.Duration, fds map[string]*os.File, args ...string) *Proc {
	t.Helper()
	needVethd(t)
	var names []string
	var files []*os.File
	for n, f := range fds {
		// A copy: the fake systemd may close its own while vethd starts.
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
		files = append(files, os.NewFile(uintptr(fd), f.Name()))
	}
	setup := func(c *exec.Cmd) {
		// No system bus here (vethd must say so once and run on).
		c.Env = append(os.Environ(), "NOTIFY_SOCKET="+sd.Path, "JOURNAL_STREAM=",
			"DBUS_SYSTEM_BUS_ADDRESS=unix:path="+filepath.Join(l.Dir, "no-such-bus"))
		if watchdog > 0 {
			c.Env = append(c.Env, fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds()))
		}
		if len(files) > 0 {
			c.ExtraFiles = files
			c.Env = append(c.Env, fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
		}
	}
	argv := append([]string{"sh", "-c", `LISTEN_PID=$$ exec "$@"`, "sh", vethdBin}, args...)
	p := startProcWith(t, l.Host, "vethd "+strings.Join(args, " "), setup, argv...)
	for _, f := range files {
		f.Close() // the child has its own now
	}
	return p
}

func ifindex(t *testing.T, l *LAN, name string) int {
	t.Helper()
	return l.Host.MustLink(t, name).Attrs().Index
}

// TestServiceNotifyRestartKeepsInterface runs vethd --instance under a fake
// systemd: READY=1 once attached, STATUS, WATCHDOG=1, the TAP's descriptor
// in the fd store; SIGHUP re-reads the file (RELOADING=1 … READY=1) and
// applies a new MTU in place; then a "restart" — SIGTERM, and a new vethd
// handed the stored descriptor — keeps the interface, its ifindex and its
// IPv4 and IPv6 addresses, and traffic flows again.
func TestServiceNotifyRestartKeepsInterface(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\n")
	sd := sdnotifytest.NewIn(t, l.Dir)
	args := []string{"--instance", "veth1", "--config-dir", dir}

	p := startService(t, l, sd, 300*time.Millisecond, nil, args...)
	ready := sd.WaitFor(t, 0, 10*time.Second, "READY=1")
	msgs := sd.Messages()
	if st := sdnotifytest.Parse(msgs[ready])["STATUS"]; !strings.Contains(st, "veth1 running on eth0") {
		t.Errorf("STATUS with READY=1 is %q, want it to say veth1 runs on eth0", st)
	}
	if got := sd.Stored("tap"); len(got) != 1 {
		t.Fatalf("%d descriptors stored as tap before READY, want 1", len(got))
	}
	if !slices.ContainsFunc(msgs[:ready], func(m string) bool { return sdnotifytest.Parse(m)["FDSTORE"] == "1" }) {
		t.Error("FDSTORE=1 came after READY=1")
	}
	sd.WaitFor(t, ready, 2*time.Second, "WATCHDOG=1")
	idx := ifindex(t, l, "veth1")
	virt4 := l.SetStatic(t, "veth1", 50)
	l.Host.IP(t, "addr", "add", fmt.Sprintf("2001:db8:%x::50/64", l.X), "dev", "veth1", "nodad")
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())

	// Reload: a new MTU applies without touching the interface.
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nMTU=1400\n")
	n := len(sd.Messages())
	p.Signal(syscall.SIGHUP)
	r := sd.WaitFor(t, n, 5*time.Second, "RELOADING=1")
	sd.WaitFor(t, r, 5*time.Second, "READY=1")
	waitFor(t, 5*time.Second, "MTU 1400", func() (bool, string) {
		m := l.Host.MustLink(t, "veth1").Attrs().MTU
		return m == 1400, fmt.Sprint(m)
	})
	if got := ifindex(t, l, "veth1"); got != idx {
		t.Fatalf("reload changed ifindex %d → %d", idx, got)
	}

	// Restart: stop (the fake systemd still holds the TAP) …
	n = len(sd.Messages())
	p.Signal(syscall.SIGTERM)
	sd.WaitFor(t, n, 5*time.Second, "STOPPING=1")
	if st := p.Wait(5 * time.Second); st == nil || st.ExitCode() != 0 {
		t.Fatalf("vethd did not exit 0 on SIGTERM: %v", st)
	}
	if l.Host.Link("veth1") == nil {
		t.Fatal("veth1 vanished although its descriptor is in the fd store")
	}
	before := addrsOf(t, l.Host, "veth1", unix.AF_UNSPEC, false)
	slices.SortFunc(before, netip.Addr.Compare)
	// … and start again with the stored descriptor.
	stored := sd.Stored("tap")
	n0 := len(sd.Messages())
	p2 := startService(t, l, sd, 0, map[string]*os.File{"tap": stored[0]}, args...)
	if err := p2.WaitLine("Adopted veth1 from systemd's fd store", 10*time.Second); err != nil {
		t.Fatalf("restart did not adopt the TAP: %v\n%s", err, p2.Output())
	}
	sd.WaitFor(t, n0, 5*time.Second, "READY=1")
	if n := len(sd.Stored("tap")); n != 1 {
		t.Errorf("%d descriptors in the store after the restart, want the one TAP once", n)
	}
	if got := ifindex(t, l, "veth1"); got != idx {
		t.Errorf("restart changed ifindex %d → %d", idx, got)
	}
	after := addrsOf(t, l.Host, "veth1", unix.AF_UNSPEC, false)
	slices.SortFunc(after, netip.Addr.Compare)
	if !slices.Equal(before, after) || len(after) < 3 {
		t.Errorf("addresses before restart %v, after %v (want the same: v4, v6, link-local)", before, after)
	}
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())

	// A real stop: vethd exits and the store is emptied: the TAP goes.
	p2.Stop(5 * time.Second)
	sd.Drop("tap")
	waitFor(t, 5*time.Second, "veth1 removed", func() (bool, string) { return l.Host.Link("veth1") == nil, "" })
}

// TestServiceWaitsForParent: with --instance, a parent that does not exist
// yet is a state (waiting-parent, READY=1 with that STATUS, no carrier),
// and the bridge attaches when it appears.
func TestServiceWaitsForParent(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	l.DeleteWire("eth0")
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\n")
	sd := sdnotifytest.NewIn(t, l.Dir)
	p := startService(t, l, sd, 0, nil, "--instance", "veth1", "--config-dir", dir)
	ready := sd.WaitFor(t, 0, 10*time.Second, "READY=1")
	if st := sdnotifytest.Parse(sd.Messages()[ready])["STATUS"]; !strings.Contains(st, "waiting for parent eth0") {
		t.Errorf("STATUS = %q, want waiting for parent eth0", st)
	}
	if l.Host.Link("veth1") == nil {
		t.Fatal("veth1 not created while waiting for the parent")
	}
	carrierIs(t, l, "veth1", false, 2*time.Second)
	l.RecreateWire()
	if err := p.WaitLine("Attached veth1 into eth0", 10*time.Second); err != nil {
		t.Fatalf("not attached once eth0 appeared: %v", err)
	}
	carrierIs(t, l, "veth1", true, 5*time.Second)
	virt4 := l.SetStatic(t, "veth1", 51)
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())
	// A reload to a parent that does not exist, with an explicit MTU:
	// waiting again, no carrier, and the MTU applied all the same.
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth7\nMTU=1300\n")
	p.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "MTU 1300, no carrier", func() (bool, string) {
		lk := l.Host.MustLink(t, "veth1").Attrs()
		return lk.MTU == 1300 && l.Host.SysfsCarrier("veth1") == "0", fmt.Sprint(lk.MTU, l.Host.SysfsCarrier("veth1"))
	})
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\n")
	p.Signal(syscall.SIGHUP)
	carrierIs(t, l, "veth1", true, 5*time.Second)
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())
	if n := strings.Count(p.Output(), "No system bus"); n != 1 {
		t.Errorf("without a system bus vethd said so %d times, want once:\n%s", n, p.Output())
	}
}

// TestServiceConfigErrors: a bad file or a missing one ends vethd with 78
// and a message naming the file, the line and the key.
func TestServiceConfigErrors(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nMTU=big\n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--instance", "veth1"}, filepath.Join(dir, "veth1.conf") + ":3: MTU="},
		{[]string{"--instance", "veth2"}, filepath.Join(dir, "veth2.conf")},
		{[]string{"--all"}, filepath.Join(dir, "veth1.conf") + ":3: MTU="},
	} {
		p := l.SpawnVethd(t, append(c.args, "--config-dir", dir)...)
		st := p.Wait(10 * time.Second)
		if st == nil || st.ExitCode() != 78 {
			t.Errorf("%v: exit %v, want 78\n%s", c.args, st, p.Output())
			continue
		}
		if !strings.Contains(p.Output(), c.want) {
			t.Errorf("%v: output does not name %q:\n%s", c.args, c.want, p.Output())
		}
	}
	if l.Host.Link("veth1") != nil {
		t.Error("veth1 created from a bad file")
	}
}

// TestAllSupervises runs vethd --all with two bridges: when one's TAP is
// deleted the supervisor brings it back while the other runs on untouched;
// SIGHUP removes a bridge whose file went and starts one whose file came.
func TestAllSupervises(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\n")
	writeConf(t, dir, "veth2", "[Bridge]\nParent=eth0\nMACAddress=random\n")
	sd := sdnotifytest.NewIn(t, l.Dir)
	p := startService(t, l, sd, 0, nil, "--all", "--config-dir", dir)
	ready := sd.WaitFor(t, 0, 10*time.Second, "READY=1")
	if st := sdnotifytest.Parse(sd.Messages()[ready])["STATUS"]; !strings.Contains(st, "2 bridges") {
		t.Errorf("STATUS = %q, want 2 bridges", st)
	}
	for _, n := range []string{"tap-veth1", "tap-veth2"} {
		if len(sd.Stored(n)) != 1 {
			t.Errorf("%s: %d stored descriptors, want 1", n, len(sd.Stored(n)))
		}
	}
	idx1, idx2 := ifindex(t, l, "veth1"), ifindex(t, l, "veth2")
	virt4 := l.SetStatic(t, "veth1", 52)

	l.Host.IP(t, "link", "del", "veth2")
	waitFor(t, 10*time.Second, "veth2 re-created", func() (bool, string) {
		lk := l.Host.Link("veth2")
		return lk != nil && lk.Attrs().Index != idx2, ""
	})
	if !p.Running() {
		t.Fatal("vethd --all exited when one bridge failed")
	}
	if got := ifindex(t, l, "veth1"); got != idx1 {
		t.Errorf("veth1's ifindex changed %d → %d while veth2 was restarted", idx1, got)
	}
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())

	os.Remove(filepath.Join(dir, "veth2.conf"))
	writeConf(t, dir, "veth3", "[Bridge]\nParent=eth0\n")
	n := len(sd.Messages())
	p.Signal(syscall.SIGHUP)
	sd.WaitFor(t, n, 10*time.Second, "READY=1")
	waitFor(t, 10*time.Second, "veth2 gone, veth3 there", func() (bool, string) {
		return l.Host.Link("veth2") == nil && l.Host.Link("veth3") != nil, strings.Join(l.Host.LinkNames(t), " ")
	})
	if len(sd.Stored("tap-veth2")) != 0 {
		t.Error("veth2's descriptor is still in the fd store after it was removed")
	}
	if got := ifindex(t, l, "veth1"); got != idx1 {
		t.Errorf("reload changed veth1's ifindex")
	}
}

// TestServiceStoredTAPDeleted: the TAP is deleted by someone else, vethd
// exits 1 (systemd restarts it) and the store still holds the dead
// descriptor; the next start sees that it is no longer a TAP, drops it
// from the store and creates the interface afresh.
func TestServiceStoredTAPDeleted(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\n")
	sd := sdnotifytest.NewIn(t, l.Dir)
	args := []string{"--instance", "veth1", "--config-dir", dir}
	p := startService(t, l, sd, 0, nil, args...)
	sd.WaitFor(t, 0, 10*time.Second, "READY=1")
	old := ifindex(t, l, "veth1")
	l.Host.IP(t, "link", "del", "veth1")
	if st := p.Wait(5 * time.Second); st == nil || st.ExitCode() != 1 {
		t.Fatalf("vethd did not exit 1 when its TAP was deleted: %v", st)
	}
	dead := sd.Stored("tap")
	if len(dead) != 1 {
		t.Fatalf("%d stored descriptors, want the dead one", len(dead))
	}
	n := len(sd.Messages())
	p2 := startService(t, l, sd, 0, map[string]*os.File{"tap": dead[0]}, args...)
	sd.WaitFor(t, n, 10*time.Second, "READY=1")
	if err := p2.WaitLine("no longer a TAP interface", time.Second); err != nil {
		t.Errorf("no word of the dead descriptor: %v\n%s", err, p2.Output())
	}
	sd.WaitFor(t, n, time.Second, "FDSTOREREMOVE=1", "FDNAME=tap")
	if got := sd.Stored("tap"); len(got) != 1 {
		t.Errorf("%d stored descriptors after the new start, want the new TAP only", len(got))
	}
	if idx := ifindex(t, l, "veth1"); idx == old {
		t.Errorf("veth1 has its old ifindex %d: not created afresh?", idx)
	}
	virt4 := l.SetStatic(t, "veth1", 53)
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())
}
