package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// waitUntil polls cond every 200 ms until it holds or within passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// prop returns `systemctl show -P NAME UNIT`.
func (c *Container) prop(t *testing.T, unit, name string) string {
	t.Helper()
	return strings.TrimSpace(c.Run(t, "systemctl", "show", "-P", name, unit))
}

// sysfs reads /sys/class/net/IF/ATTR in the container ("" if it is gone).
func (c *Container) sysfs(ifname, attr string) string {
	out, err := c.RunErr("cat", "/sys/class/net/"+ifname+"/"+attr)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// busProp reads a property of a bridge's D-Bus object with busctl.
func (c *Container) busProp(t *testing.T, ifname, prop string) string {
	t.Helper()
	out, _ := c.RunErr("busctl", "get-property", "io.github.vethd.Bridge1."+ifname,
		"/io/github/vethd/Bridge1/"+ifname, "io.github.vethd.Bridge1", prop)
	return strings.TrimSpace(out)
}

// journal returns the unit's journal in the container.
func (c *Container) journal(unit string) string {
	out, _ := c.RunErr("journalctl", "--no-pager", "-o", "cat", "-u", unit)
	return out
}

// TestE2EService drives vethd@.service with the container's real systemd
// and system bus, over the staged `make install`: enable --now, readiness,
// vethctl and busctl, a second DHCP lease through veth1, restart keeping
// the interface, reload, stop removing it, a broken config failing once
// with 78, a parent that appears after the start, and `vethctl add --now`.
func TestE2EService(t *testing.T) {
	stage := stageInstall(t)
	c := Boot(t, stage)
	c.ReloadBus(t)
	lan := c.LAN(t)
	logJournal := func(units ...string) {
		if t.Failed() {
			for _, u := range units {
				t.Logf("--- journal of %s ---\n%s", u, c.journal(u))
			}
		}
	}
	defer logJournal("vethd@veth1.service", "vethd@veth2.service", "vethd@veth3.service", "vethd@veth4.service")

	// The host's own lease on eth0, as on a real machine.
	eth0Addr := c.DHCP(t, lan.Parent)

	// 1. enable --now: active once READY=1, with a readable status.
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent=eth0\n")
	c.Run(t, "systemctl", "enable", "--now", "vethd@veth1.service")
	const u1 = "vethd@veth1.service"
	if st := c.prop(t, u1, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after enable --now", u1, st)
	}
	if s := c.prop(t, u1, "StatusText"); !strings.Contains(s, "veth1 running on eth0") {
		t.Errorf("StatusText = %q", s)
	}
	if en, _ := c.RunErr("systemctl", "is-enabled", u1); strings.TrimSpace(en) != "enabled" {
		t.Errorf("is-enabled = %q", en)
	}
	mac := c.sysfs("veth1", "address")
	if mac == "" {
		t.Fatal("veth1 does not exist")
	}

	// 2. vethctl and busctl see it, with the right MAC.
	if want := strings.TrimSpace(c.Run(t, "vethctl", "mac", "veth1")); want != mac {
		t.Errorf("veth1 has %s, vethctl mac says %s", mac, want)
	}
	t.Logf("systemctl status %s:\n%s", u1, func() string { o, _ := c.RunErr("systemctl", "status", "--no-pager", "--lines=0", u1); return o }())
	list := c.Run(t, "vethctl", "list")
	t.Logf("vethctl list:\n%s", list)
	if !strings.Contains(list, "veth1") || !strings.Contains(list, mac) || !strings.Contains(list, "running") {
		t.Errorf("vethctl list:\n%s", list)
	}
	if got := c.busProp(t, "veth1", "MACAddress"); got != fmt.Sprintf("s %q", mac) {
		t.Errorf("busctl MACAddress = %s, want %s", got, mac)
	}
	if got := c.busProp(t, "veth1", "State"); got != `s "running"` {
		t.Errorf("busctl State = %s", got)
	}
	// Anyone may read; only root may call methods (policy, then vethd).
	if out, err := c.RunErr("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "vethctl", "list"); err != nil || !strings.Contains(out, "veth1") {
		t.Errorf("vethctl list as nobody: %v\n%s", err, out)
	}
	if out, err := c.RunErr("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"busctl", "call", "io.github.vethd.Bridge1.veth1", "/io/github/vethd/Bridge1/veth1", "io.github.vethd.Bridge1", "ResetCounters"); err == nil {
		t.Errorf("ResetCounters as nobody succeeded: %s", out)
	}

	// 3. A second lease, through vethd, on the same wire.
	veth1Addr := c.DHCP(t, "veth1")
	if veth1Addr.Addr() == eth0Addr.Addr() || !lan.Prefix.Contains(veth1Addr.Addr()) {
		t.Fatalf("veth1 got %v (eth0 has %v)", veth1Addr, eth0Addr)
	}
	leases := lan.Leases(t)
	if !strings.Contains(leases, mac+" "+veth1Addr.Addr().String()) {
		t.Errorf("dnsmasq's leases do not show veth1's MAC with its address:\n%s", leases)
	}
	c.Run(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "1", "-W", "2", veth1Addr.Addr().String())

	// 4. restart keeps the interface, its ifindex and its address.
	ifindex := c.sysfs("veth1", "ifindex")
	pid := c.prop(t, u1, "MainPID")
	c.Run(t, "systemctl", "restart", u1)
	if st := c.prop(t, u1, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after restart", u1, st)
	}
	if c.prop(t, u1, "MainPID") == pid {
		t.Error("restart did not start a new process")
	}
	if got := c.sysfs("veth1", "ifindex"); got != ifindex {
		t.Errorf("restart changed veth1's ifindex %s → %s", ifindex, got)
	}
	t.Logf("after restart: ifindex %s, %v", c.sysfs("veth1", "ifindex"), c.Addrs4(t, "veth1"))
	if got := c.Addrs4(t, "veth1"); len(got) != 1 || got[0] != veth1Addr {
		t.Errorf("veth1's addresses after restart: %v, want %v", got, veth1Addr)
	}
	if j := c.journal(u1); !strings.Contains(j, "Adopted veth1 from systemd's fd store") {
		t.Errorf("journal does not say the TAP was adopted")
	}
	if j := c.Run(t, "journalctl", "-b", "--no-pager", "-o", "cat"); strings.Contains(j, fdStoreWarning) {
		t.Errorf("restart: systemd warned about the fd store: %s", grepLines(j, fdStoreWarning))
	}
	c.Run(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "1", "-W", "2", veth1Addr.Addr().String())

	// 5. reload applies an edited file in place.
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent=eth0\nMTU=1400\n")
	c.Run(t, "systemctl", "reload", u1)
	waitUntil(t, 5*time.Second, "MTU 1400 after reload", func() (bool, string) {
		m := c.sysfs("veth1", "mtu")
		return m == "1400", m
	})
	if got := c.sysfs("veth1", "ifindex"); got != ifindex {
		t.Errorf("reload changed veth1's ifindex")
	}

	// 6. stop removes the interface.
	c.Run(t, "systemctl", "stop", u1)
	waitUntil(t, 5*time.Second, "veth1 removed by stop", func() (bool, string) {
		return c.sysfs("veth1", "ifindex") == "", "still there"
	})

	// 7. a broken config: failed, status 78, no restart loop.
	const u3 = "vethd@veth3.service"
	c.WriteFile(t, "/etc/vethd/veth3.conf", "[Bridge]\nParent=eth0\nMTU=big\n")
	if out, err := c.RunErr("systemctl", "start", u3); err == nil {
		t.Errorf("starting %s with a broken config succeeded: %s", u3, out)
	}
	time.Sleep(3 * time.Second) // longer than RestartSec=2s
	if st := c.prop(t, u3, "ActiveState"); st != "failed" {
		t.Errorf("%s is %s, want failed", u3, st)
	}
	if st := c.prop(t, u3, "ExecMainStatus"); st != "78" {
		t.Errorf("%s ExecMainStatus = %s, want 78", u3, st)
	}
	if n := c.prop(t, u3, "NRestarts"); n != "0" {
		t.Errorf("%s restarted %s times", u3, n)
	}
	if j := c.journal(u3); !strings.Contains(j, "/etc/vethd/veth3.conf:3: MTU=") {
		t.Errorf("journal of %s does not name file, line and key:\n%s", u3, j)
	}

	// 8. a parent that appears after the start.
	const u4 = "vethd@veth4.service"
	c.WriteFile(t, "/etc/vethd/veth4.conf", "[Bridge]\nParent=eth5\n")
	c.Run(t, "systemctl", "start", u4)
	if st := c.prop(t, u4, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s while its parent is missing, want active", u4, st)
	}
	if s := c.prop(t, u4, "StatusText"); !strings.Contains(s, "waiting for parent eth5") {
		t.Errorf("StatusText = %q", s)
	}
	if got := c.busProp(t, "veth4", "State"); got != `s "waiting-parent"` {
		t.Errorf("busctl State = %s", got)
	}
	c.Run(t, "ip", "link", "add", "eth5", "type", "veth", "peer", "name", "lan5", "netns", lan.Netns)
	c.Run(t, "ip", "-n", lan.Netns, "link", "set", "lan5", "up")
	c.Run(t, "ip", "link", "set", "eth5", "up")
	waitUntil(t, 10*time.Second, "veth4 attached to eth5", func() (bool, string) {
		s := c.busProp(t, "veth4", "State")
		return s == `s "running"`, s
	})
	if c.sysfs("veth4", "carrier") != "1" {
		t.Error("veth4 has no carrier once eth5 is up")
	}
	c.Run(t, "systemctl", "stop", u4)

	// 9. vethctl add --now: a second instance, configured and enabled
	// through systemd's D-Bus API.
	c.Run(t, "vethctl", "add", "veth2", "--parent", "eth0", "--now")
	const u2 = "vethd@veth2.service"
	if st := c.prop(t, u2, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after vethctl add --now", u2, st)
	}
	if en, _ := c.RunErr("systemctl", "is-enabled", u2); strings.TrimSpace(en) != "enabled" {
		t.Errorf("%s is-enabled = %q", u2, en)
	}
	if conf := c.Run(t, "cat", "/etc/vethd/veth2.conf"); !strings.Contains(conf, "Parent=eth0") {
		t.Errorf("/etc/vethd/veth2.conf:\n%s", conf)
	}
	veth2Addr := c.DHCP(t, "veth2")
	if !lan.Prefix.Contains(veth2Addr.Addr()) {
		t.Errorf("veth2 got %v", veth2Addr)
	}
	list = c.Run(t, "vethctl", "list")
	t.Logf("vethctl list:\n%s", list)
	for _, want := range []string{"veth2", "veth3", "failed"} {
		if !strings.Contains(list, want) {
			t.Errorf("vethctl list lacks %q:\n%s", want, list)
		}
	}
	stats := c.Run(t, "vethctl", "stats", "veth2")
	t.Logf("vethctl stats veth2:\n%s", stats)
	if !strings.Contains(stats, "veth2") {
		t.Errorf("vethctl stats veth2:\n%s", stats)
	}
	// vethctl reload goes through systemd (ReloadUnit) to vethd's SIGHUP.
	c.WriteFile(t, "/etc/vethd/veth2.conf", "[Bridge]\nParent=eth0\nMTU=1450\n")
	c.Run(t, "vethctl", "reload", "veth2")
	waitUntil(t, 5*time.Second, "veth2 MTU 1450 after vethctl reload", func() (bool, string) {
		m := c.sysfs("veth2", "mtu")
		return m == "1450", m
	})
	// A bad file: vethctl reload refuses before signalling (exit 1).
	c.WriteFile(t, "/etc/vethd/veth2.conf", "[Bridge]\nParent=eth0\nMTU=lots\n")
	if _, err := c.RunErr("vethctl", "reload", "veth2"); exitCode(err) != 1 {
		t.Errorf("vethctl reload of a bad file: %v, want exit 1", err)
	}
	if st := c.prop(t, u2, "ActiveState"); st != "active" {
		t.Errorf("%s is %s after a refused reload", u2, st)
	}

	c.Run(t, "vethctl", "remove", "veth2")
	waitUntil(t, 5*time.Second, "veth2 removed", func() (bool, string) {
		return c.sysfs("veth2", "ifindex") == "", "still there"
	})
	if en, _ := c.RunErr("systemctl", "is-enabled", u2); strings.TrimSpace(en) == "enabled" {
		t.Errorf("%s still enabled after vethctl remove", u2)
	}
	if _, err := c.RunErr("test", "-e", "/etc/vethd/veth2.conf"); err == nil {
		t.Error("/etc/vethd/veth2.conf still there after vethctl remove")
	}
	if _, err := c.RunErr("vethctl", "remove", "veth2"); exitCode(err) != 4 {
		t.Errorf("vethctl remove of a removed bridge: %v, want exit 4", err)
	}

	// 10. systemd-networkd configures a vethd interface like any NIC.
	c.Run(t, "vethctl", "add", "veth5", "--parent", "eth0", "--now")
	c.WriteFile(t, "/etc/systemd/network/60-veth5.network", "[Match]\nName=veth5\n\n[Network]\nDHCP=ipv4\n")
	c.Run(t, "networkctl", "reload")
	waitUntil(t, 20*time.Second, "networkd configures veth5 by DHCP", func() (bool, string) {
		out, _ := c.RunErr("networkctl", "status", "--no-pager", "veth5")
		for _, a := range c.Addrs4(t, "veth5") {
			if lan.Prefix.Contains(a.Addr()) && strings.Contains(out, "configured") {
				return true, ""
			}
		}
		return false, out
	})
	out, _ := c.RunErr("networkctl", "list", "--no-pager")
	t.Logf("networkctl list:\n%s", out)
	if !strings.Contains(out, "veth5") || !strings.Contains(out, "routable") {
		t.Errorf("networkctl does not show veth5 routable")
	}
}

// TestE2EAll drives vethd.service (vethd --all) with the container's
// systemd: both configured bridges come up in one process, the watchdog
// (shortened to 2 s by a drop-in) is fed, a restart keeps both interfaces
// and their ifindexes, a reload picks up a new file, and stop removes them
// all. Non-root vethctl may read but not add.
func TestE2EAll(t *testing.T) {
	stage := stageInstall(t)
	c := Boot(t, stage)
	c.ReloadBus(t)
	c.LAN(t)
	const u = "vethd.service"
	defer func() {
		if t.Failed() {
			t.Logf("--- journal of %s ---\n%s", u, c.journal(u))
		}
	}()
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent=eth0\n")
	c.WriteFile(t, "/etc/vethd/veth2.conf", "[Bridge]\nParent=eth0\nMACAddress=random\n")
	c.WriteFile(t, "/etc/systemd/system/vethd.service.d/watchdog.conf", "[Service]\nWatchdogSec=2s\n")
	c.DaemonReload(t)
	c.Run(t, "systemctl", "start", u)
	if st := c.prop(t, u, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s", u, st)
	}
	if s := c.prop(t, u, "StatusText"); !strings.Contains(s, "2 bridges") {
		t.Errorf("StatusText = %q", s)
	}
	idx1, idx2, mac2 := c.sysfs("veth1", "ifindex"), c.sysfs("veth2", "ifindex"), c.sysfs("veth2", "address")
	if idx1 == "" || idx2 == "" {
		t.Fatal("veth1 or veth2 missing")
	}
	pid := c.prop(t, u, "MainPID")
	time.Sleep(5 * time.Second) // more than twice WatchdogSec
	if c.prop(t, u, "MainPID") != pid || c.prop(t, u, "NRestarts") != "0" || c.prop(t, u, "ActiveState") != "active" {
		t.Errorf("watchdog: the service was restarted or stopped (MainPID %s → %s, NRestarts %s)", pid, c.prop(t, u, "MainPID"), c.prop(t, u, "NRestarts"))
	}
	if ts := c.prop(t, u, "WatchdogTimestampMonotonic"); ts == "0" || ts == "" {
		t.Errorf("no WATCHDOG=1 seen by systemd (WatchdogTimestampMonotonic=%q)", ts)
	}

	c.Run(t, "systemctl", "restart", u)
	if j := c.Run(t, "journalctl", "-b", "--no-pager", "-o", "cat"); strings.Contains(j, fdStoreWarning) {
		t.Errorf("restart: systemd warned about the fd store: %s", grepLines(j, fdStoreWarning))
	}
	if got1, got2 := c.sysfs("veth1", "ifindex"), c.sysfs("veth2", "ifindex"); got1 != idx1 || got2 != idx2 {
		t.Errorf("restart changed ifindexes %s,%s → %s,%s", idx1, idx2, got1, got2)
	}
	if got := c.sysfs("veth2", "address"); got != mac2 {
		t.Errorf("restart changed veth2's random MAC %s → %s", mac2, got)
	}

	c.WriteFile(t, "/etc/vethd/veth3.conf", "[Bridge]\nParent=eth0\n")
	c.Run(t, "systemctl", "reload", u)
	waitUntil(t, 5*time.Second, "veth3 after reload", func() (bool, string) {
		return c.sysfs("veth3", "ifindex") != "", "missing"
	})
	list := c.Run(t, "vethctl", "list")
	t.Logf("vethctl list:\n%s", list)
	for _, n := range []string{"veth1", "veth2", "veth3"} {
		if !strings.Contains(list, n) {
			t.Errorf("vethctl list lacks %s", n)
		}
	}

	// Not root: reading works, changing does not (77).
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	if out, err := c.RunErr(append(nobody, "vethctl", "show", "veth1")...); err != nil || !strings.Contains(out, "veth1") {
		t.Errorf("vethctl show as nobody: %v\n%s", err, out)
	}
	_, err := c.RunErr(append(nobody, "vethctl", "reset", "veth1")...)
	if code := exitCode(err); code != 77 {
		t.Errorf("vethctl reset as nobody: exit %d (%v), want 77", code, err)
	}
	_, err = c.RunErr(append(nobody, "vethctl", "add", "veth9", "--parent", "eth0")...)
	if code := exitCode(err); code != 77 {
		t.Errorf("vethctl add as nobody: exit %d (%v), want 77", code, err)
	}

	// With vethd.service running, vethctl add --now hands the new bridge
	// to it (a reload) instead of starting a second vethd for it.
	c.Run(t, "vethctl", "add", "veth4", "--parent", "eth0", "--now")
	waitUntil(t, 5*time.Second, "veth4 under vethd.service", func() (bool, string) {
		return c.sysfs("veth4", "ifindex") != "", "missing"
	})
	if st := c.prop(t, "vethd@veth4.service", "ActiveState"); st == "active" {
		t.Error("vethd@veth4.service was started although vethd.service runs veth4")
	}

	c.Run(t, "systemctl", "stop", u)
	waitUntil(t, 5*time.Second, "all TAPs removed by stop", func() (bool, string) {
		var left []string
		for _, n := range []string{"veth1", "veth2", "veth3", "veth4"} {
			if c.sysfs(n, "ifindex") != "" {
				left = append(left, n)
			}
		}
		return len(left) == 0, strings.Join(left, " ")
	})
}

// exitCode is the exit status inside err (from Container.RunErr), or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
