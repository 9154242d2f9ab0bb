package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// busOwner is the PID (in the container) of the process that owns the
// bridge's bus name, 0 if none does.
func (c *Container) busOwner(t *testing.T, ifname string) int {
	t.Helper()
	out, err := c.RunErr("busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
		"GetConnectionUnixProcessID", "s", "io.github.vethd.Bridge1."+ifname)
	if err != nil {
		return 0 // NameHasNoOwner
	}
	f := strings.Fields(out) // "u 123"
	if len(f) != 2 {
		t.Fatalf("GetConnectionUnixProcessID: %q", out)
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("GetConnectionUnixProcessID: %q", out)
	}
	return pid
}

// tapHolders lists the processes (container PIDs) other than systemd
// itself (whose fd store holds a copy) that have ifname's TAP open: the
// kernel's fdinfo of a TUN descriptor says "iff:\tNAME".
func (c *Container) tapHolders(t *testing.T, ifname string) []int {
	t.Helper()
	out, _ := c.RunErr("sh", "-c", `grep -l "^iff:[[:space:]]*$1\$" /proc/[0-9]*/fdinfo/* 2>/dev/null`, "sh", ifname)
	var pids []int
	for _, p := range strings.Fields(out) {
		// /proc/PID/fdinfo/FD
		parts := strings.Split(p, "/")
		if len(parts) < 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil || pid == 1 || slices.Contains(pids, pid) {
			continue
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids
}

// mainPID is the unit's MainPID (0 if it has none).
func (c *Container) mainPID(t *testing.T, unit string) int {
	t.Helper()
	pid, err := strconv.Atoi(c.prop(t, unit, "MainPID"))
	if err != nil {
		t.Fatalf("MainPID of %s: %v", unit, err)
	}
	return pid
}

// listEntry is a row of `vethctl list --json`.
type listEntry struct {
	Name      string `json:"name"`
	Unit      string `json:"unit"`
	UnitState string `json:"unit_state"`
	State     string `json:"state"`
	PID       *int   `json:"pid"`
}

// vethctlList runs `vethctl list --json`, logs the table and returns the
// rows by name.
func (c *Container) vethctlList(t *testing.T) map[string]listEntry {
	t.Helper()
	t.Logf("vethctl list:\n%s", c.Run(t, "vethctl", "list"))
	var es []listEntry
	out := c.Run(t, "vethctl", "list", "--json")
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatalf("vethctl list --json: %v\n%s", err, out)
	}
	m := map[string]listEntry{}
	for _, e := range es {
		m[e.Name] = e
	}
	return m
}

// fdStoreWarning is what systemd logs when a service stores more
// descriptors than FileDescriptorStoreMax= allows (issue 8: each restart
// of vethd@NAME.service did).
const fdStoreWarning = "Cannot store more fds than FileDescriptorStoreMax="

// runsIn checks that the bridge ifname runs in unit and only there: unit
// is active with no restarts, its main process owns the bus name and is
// the one process that holds the TAP, and `vethctl list` (rows) names
// unit with that PID.
func (c *Container) runsIn(t *testing.T, rows map[string]listEntry, ifname, unit string) {
	t.Helper()
	if st := c.prop(t, unit, "ActiveState"); st != "active" {
		t.Errorf("%s is %s, want active", unit, st)
	}
	if n := c.prop(t, unit, "NRestarts"); n != "0" {
		t.Errorf("%s restarted %s times", unit, n)
	}
	pid := c.mainPID(t, unit)
	if got := c.busOwner(t, ifname); got != pid {
		t.Errorf("%s's bus name is owned by PID %d, want %s's main PID %d", ifname, got, unit, pid)
	}
	if got := c.tapHolders(t, ifname); !slices.Equal(got, []int{pid}) {
		t.Errorf("%s's TAP is held by PIDs %v, want only %s's main PID %d", ifname, got, unit, pid)
	}
	e, ok := rows[ifname]
	switch {
	case !ok:
		t.Errorf("vethctl list has no %s", ifname)
	case e.Unit != unit || e.State != "running" || e.UnitState != "active" || e.PID == nil || *e.PID != pid:
		t.Errorf("vethctl list says %s: unit %s (%s), state %s, pid %v; want %s (active), running, %d",
			ifname, e.Unit, e.UnitState, e.State, e.PID, unit, pid)
	}
}

// TestE2ECoexist: vethd.service and vethd@NAME.service enabled side by
// side, as on a system where something enabled every unit with an
// [Install] section (Debian's postinst enables a package's units whatever
// the presets say; an image's "enable *" preset does too), never fight
// over a bridge, across enable --now, restarts in any order, vethctl add
// --now, a start of everything at once and a real reboot; and a restart
// of vethd@NAME.service no longer makes systemd warn about its fd store.
func TestE2ECoexist(t *testing.T) {
	stage := stageInstall(t)
	etc := EtcDir(t)
	c := BootWith(t, stage, BootOptions{Etc: etc})
	c.ReloadBus(t)
	c.LAN(t)
	const (
		all = "vethd.service"
		u1  = "vethd@veth1.service"
	)
	defer func() { // c is the container of the moment
		if t.Failed() {
			for _, u := range []string{all, u1} {
				t.Logf("--- journal of %s ---\n%s", u, c.journal(u))
			}
		}
	}()

	// 1. The stock state of issue 8: vethd.service enabled and running
	// veth1, from a file of its own.
	c.Run(t, "systemctl", "enable", "--now", all)
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent=eth0\n")
	c.Run(t, "systemctl", "reload", all)
	waitUntil(t, 10*time.Second, "veth1 under vethd.service", func() (bool, string) {
		return c.busOwner(t, "veth1") == c.mainPID(t, all), c.sysfs("veth1", "ifindex")
	})
	allPID := c.mainPID(t, all)

	// 2. systemctl enable --now vethd@veth1: vethd.service hands veth1
	// over, vethd@veth1 runs it, first time, and vethd.service goes on.
	began := time.Now()
	c.Run(t, "systemctl", "enable", "--now", u1)
	t.Logf("enable --now %s took %.1fs beside a running %s", u1, time.Since(began).Seconds(), all)
	rows := c.vethctlList(t)
	c.runsIn(t, rows, "veth1", u1)
	if c.mainPID(t, all) != allPID || c.prop(t, all, "NRestarts") != "0" {
		t.Errorf("%s was restarted", all)
	}
	if s := c.prop(t, all, "StatusText"); s != "No bridges of its own; left to their own units: veth1" {
		t.Errorf("%s StatusText = %q", all, s)
	}
	j1, jAll := c.journal(u1), c.journal(all)
	for _, want := range []string{
		fmt.Sprintf("veth1 is run by vethd.service (PID %d); asking it to hand veth1 over to vethd@veth1.service", allPID),
		"vethd.service handed veth1 over",
	} {
		if !strings.Contains(j1, want) {
			t.Errorf("journal of %s lacks %q", u1, want)
		}
	}
	if want := "Reload: handing veth1 over to vethd@veth1.service (enabled, activating): stopping it in this process"; !strings.Contains(jAll, want) {
		t.Errorf("journal of %s lacks %q", all, want)
	}
	if strings.Contains(j1, "already in use") || strings.Contains(j1, "bus name already taken") {
		t.Errorf("%s fought over veth1:\n%s", u1, j1)
	}

	// 3. Restarts keep veth1 (ifindex) in vethd@veth1, and systemd does
	// not warn about the fd store.
	ifindex := c.sysfs("veth1", "ifindex")
	for i := range 3 {
		c.Run(t, "systemctl", "restart", u1)
		if got := c.sysfs("veth1", "ifindex"); got != ifindex {
			t.Errorf("restart %d changed veth1's ifindex %s → %s", i+1, ifindex, got)
		}
	}
	if n := strings.Count(c.journal(u1), "Adopted veth1 from systemd's fd store"); n != 3 {
		t.Errorf("%d adoptions in 3 restarts", n)
	}
	c.Run(t, "systemctl", "restart", all) // vethd.service leaves veth1 alone
	c.runsIn(t, c.vethctlList(t), "veth1", u1)
	if got := c.sysfs("veth1", "ifindex"); got != ifindex {
		t.Errorf("a restart of %s changed veth1's ifindex %s → %s", all, ifindex, got)
	}
	if j := c.journal(all); !strings.Contains(j, "Leaving veth1 to vethd@veth1.service (enabled, active): not running it in this process") {
		t.Errorf("journal of %s does not say it leaves veth1 to its unit", all)
	}

	// 4. vethctl add --now with vethd.service enabled: vethd.service runs
	// the new bridge; list names each bridge's real unit.
	c.Run(t, "vethctl", "add", "veth2", "--parent", "eth0", "--now")
	if en, _ := c.RunErr("systemctl", "is-enabled", "vethd@veth2.service"); strings.TrimSpace(en) != "disabled" {
		t.Errorf("vethctl add enabled vethd@veth2.service (%s) beside an enabled %s", strings.TrimSpace(en), all)
	}
	rows = c.vethctlList(t)
	c.runsIn(t, rows, "veth1", u1)
	c.runsIn(t, rows, "veth2", all)

	// 5. Restarts in either order, and everything started at once as at
	// boot (one transaction: stop both, start multi-user.target).
	for _, order := range [][]string{{u1, all}, {all, u1}} {
		for _, u := range order {
			c.Run(t, "systemctl", "restart", u)
		}
		rows = c.vethctlList(t)
		c.runsIn(t, rows, "veth1", u1)
		c.runsIn(t, rows, "veth2", all)
	}
	c.Run(t, "systemctl", "stop", all, u1)
	c.DaemonReload(t)
	c.Run(t, "systemctl", "start", "multi-user.target")
	rows = c.vethctlList(t)
	c.runsIn(t, rows, "veth1", u1)
	c.runsIn(t, rows, "veth2", all)
	if j := c.Run(t, "journalctl", "-b", "--no-pager", "-o", "cat"); strings.Contains(j, fdStoreWarning) {
		t.Errorf("systemd warned about the fd store: %s", grepLines(j, fdStoreWarning))
	}

	// 6. A reboot: the same /etc, a new boot (not a first one: no
	// preset-all), both units started by multi-user.target.
	c.Poweroff(t)
	c = BootWith(t, stage, BootOptions{Etc: etc})
	if strings.Contains(c.Console(), presetAllLine) {
		t.Error("the second boot ran preset-all: not a reboot")
	}
	c.ReloadBus(t)
	c.LAN(t)
	// The parent came after the boot: both bridges wait, then attach.
	waitUntil(t, 15*time.Second, "both bridges running after the reboot", func() (bool, string) {
		s1, s2 := c.busProp(t, "veth1", "State"), c.busProp(t, "veth2", "State")
		return s1 == `s "running"` && s2 == `s "running"`, s1 + " " + s2
	})
	rows = c.vethctlList(t)
	c.runsIn(t, rows, "veth1", u1)
	c.runsIn(t, rows, "veth2", all)
	j := c.Run(t, "journalctl", "-b", "--no-pager", "-o", "cat")
	for _, bad := range []string{fdStoreWarning, "already in use", "bus name already taken", "Failed to start vethd"} {
		if strings.Contains(j, bad) {
			t.Errorf("after the reboot the journal says %q: %s", bad, grepLines(j, bad))
		}
	}

	// 7. Disabled and stopped, vethd@veth1 lets vethd.service have veth1
	// again at its next reload (as documented).
	c.Run(t, "systemctl", "disable", "--now", u1)
	c.Run(t, "systemctl", "reload", all)
	waitUntil(t, 10*time.Second, "veth1 back under vethd.service", func() (bool, string) {
		return c.busOwner(t, "veth1") == c.mainPID(t, all), fmt.Sprint(c.busOwner(t, "veth1"))
	})
	rows = c.vethctlList(t)
	c.runsIn(t, rows, "veth1", all)
	if j := c.journal(all); !strings.Contains(j, "Reload: vethd@veth1.service no longer claims veth1 (disabled, inactive); starting it here") {
		t.Errorf("journal of %s does not say it took veth1 back", all)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
