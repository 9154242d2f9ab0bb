package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Least privilege (docs/design.md, "Privileges"; vethd(8), SECURITY): the
// units run vethd as the system user vethd with only CAP_NET_ADMIN,
// CAP_NET_RAW and CAP_BPF, ambient.

// wantCaps is CapEff, CapPrm, CapAmb and CapBnd of vethd run by the units:
// CAP_NET_ADMIN (12), CAP_NET_RAW (13) and CAP_BPF (39, for the kernel
// data path's programs).
const wantCaps = "0000008000003000"

// maxExposure is the highest `systemd-analyze security` exposure the units
// may have. The issue asked for 1.2; what keeps them above it is
// wantExposed, each needed (docs/design.md, "Privileges"); CAP_BPF and
// bpf() (in @privileged) for the kernel data path took it from 1.4 to 1.5.
const maxExposure = 1.5

// wantExposed are the only checks of `systemd-analyze security` the units
// may fail (systemd 252), each for a reason in docs/design.md.
var wantExposed = []string{
	"AmbientCapabilities=",
	"CapabilityBoundingSet=~CAP_BPF",
	"CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)",
	"CapabilityBoundingSet=~CAP_NET_ADMIN",
	"DeviceAllow=",
	"PrivateNetwork=",
	"PrivateUsers=",
	"RestrictAddressFamilies=~AF_NETLINK",
	"RestrictAddressFamilies=~AF_PACKET",
	"RestrictAddressFamilies=~AF_UNIX",
	"RootDirectory=/RootImage=",
	"SystemCallFilter=~@privileged",
}

var exposureLine = regexp.MustCompile(`Overall exposure level for (\S+): (\d+\.\d+) (\S+)`)

// exposure returns unit's overall exposure level, its word ("OK") and the
// checks it fails, from `systemd-analyze security` in the container.
func (c *Container) exposure(t *testing.T, unit string) (float64, string, []string) {
	t.Helper()
	out, _ := c.RunErr("systemd-analyze", "security", "--no-pager", unit)
	m := exposureLine.FindStringSubmatch(out)
	if m == nil || m[1] != unit {
		t.Fatalf("systemd-analyze security %s: no \"Overall exposure level\" line:\n%s", unit, out)
	}
	level, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		t.Fatalf("systemd-analyze security %s: level %q: %v", unit, m[2], err)
	}
	js, _ := c.RunErr("systemd-analyze", "security", "--no-pager", "--json=short", unit)
	var checks []struct {
		Name     string          `json:"name"`
		Exposure json.RawMessage `json:"exposure"`
	}
	if err := json.Unmarshal([]byte(js), &checks); err != nil {
		t.Fatalf("systemd-analyze security --json=short %s: %v\n%s", unit, err, js)
	}
	var exposed []string
	for _, ch := range checks {
		if e := strings.Trim(string(ch.Exposure), `"`); e != "" && e != "null" && e != "0" && e != "0.0" {
			exposed = append(exposed, ch.Name)
		}
	}
	slices.Sort(exposed)
	return level, m[3], exposed
}

// procStatus returns the fields of /proc/PID/status of the unit's main
// process in the container.
func (c *Container) procStatus(t *testing.T, unit string) map[string]string {
	t.Helper()
	pid := c.prop(t, unit, "MainPID")
	if pid == "" || pid == "0" {
		t.Fatalf("%s has no main process", unit)
	}
	out := c.Run(t, "cat", "/proc/"+pid+"/status")
	st := map[string]string{"PID": pid}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			st[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return st
}

// checkPrivileges checks that the unit's main process runs as uid with
// only CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF, and owns the bridge's bus name as uid.
func (c *Container) checkPrivileges(t *testing.T, unit, uid, bridge string) {
	t.Helper()
	st := c.procStatus(t, unit)
	if want := strings.Repeat(uid+" ", 3) + uid; st["Uid"] != want || st["Gid"] != want {
		t.Errorf("%s (PID %s): Uid %q Gid %q, want %q", unit, st["PID"], st["Uid"], st["Gid"], want)
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapBnd"} {
		if st[k] != wantCaps {
			t.Errorf("%s (PID %s): %s %s, want %s (CAP_NET_ADMIN CAP_NET_RAW CAP_BPF)", unit, st["PID"], k, st[k], wantCaps)
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("%s (PID %s): NoNewPrivs %q", unit, st["PID"], st["NoNewPrivs"])
	}
	t.Logf("%s: PID %s Uid %s CapEff %s CapAmb %s CapBnd %s NoNewPrivs %s",
		unit, st["PID"], st["Uid"], st["CapEff"], st["CapAmb"], st["CapBnd"], st["NoNewPrivs"])
	out := c.Run(t, "busctl", "status", "io.github.vethd.Bridge1."+bridge)
	lines := strings.Split(out, "\n")
	if !slices.Contains(lines, "UID="+uid) || !slices.Contains(lines, "PID="+st["PID"]) {
		t.Errorf("io.github.vethd.Bridge1.%s is not owned by PID %s as uid %s:\n%s", bridge, st["PID"], uid, out)
	}
}

// systemUser returns the uid of the system user vethd in the container,
// which systemd-sysusers made at boot from the installed sysusers.d file.
func (c *Container) systemUser(t *testing.T) string {
	t.Helper()
	out, err := c.RunErr("getent", "passwd", "vethd")
	f := strings.Split(strings.TrimSpace(out), ":")
	if err != nil || len(f) < 7 {
		t.Fatalf("no user vethd in the container (systemd-sysusers, /usr/lib/sysusers.d/vethd.conf): %v", err)
	}
	if n, err := strconv.Atoi(f[2]); err != nil || n == 0 || n >= 1000 {
		t.Fatalf("user vethd has uid %s, want a system uid (1-999)", f[2])
	}
	if !strings.HasSuffix(f[6], "nologin") {
		t.Errorf("user vethd has the shell %s", f[6])
	}
	return f[2]
}

// TestE2ESecurity checks the units' privileges in the container: the
// exposure `systemd-analyze security` gives both units, and every feature
// working with vethd as the user vethd with CAP_NET_ADMIN, CAP_NET_RAW and
// CAP_BPF only: the TAP kind (creation, MAC, carrier, ARP settings, a DHCP lease
// through it, source routing, adoption from the fd store on restart), the
// veth kind (creation with its nftables guard, addr_gen_mode on the peer,
// adoption on restart), Namespace= (both kinds created in a netns of
// /run/netns, and adopted there on restart), vethd.service (--all) and
// its handover to vethd@NAME, vethctl, and vethd run by hand as root
// owning a bus name.
func TestE2ESecurity(t *testing.T) {
	stage := stageInstall(t)
	c := Boot(t, stage)
	defer func() {
		if t.Failed() {
			for _, u := range []string{"vethd@veth1.service", "vethd@veth2.service", "vethd@veth3.service", "vethd@veth4.service", "vethd.service"} {
				t.Logf("--- journal of %s ---\n%s", u, c.journal(u))
			}
		}
	}()

	// 1. The exposure of both units, and the checks they fail.
	for _, u := range []string{"vethd@veth1.service", "vethd.service"} {
		level, word, exposed := c.exposure(t, u)
		t.Logf("systemd-analyze security %s: %.1f %s; fails %s", u, level, word, strings.Join(exposed, " "))
		if level > maxExposure {
			t.Errorf("%s: exposure %.1f %s, want at most %.1f", u, level, word, maxExposure)
		}
		if !slices.Equal(exposed, wantExposed) {
			t.Errorf("%s fails\n  %s\nwant\n  %s", u, strings.Join(exposed, " "), strings.Join(wantExposed, " "))
		}
		for prop, want := range map[string]string{"User": "vethd", "MemoryMax": map[string]string{"vethd@veth1.service": "134217728", "vethd.service": "1073741824"}[u]} {
			if got := c.prop(t, u, prop); got != want {
				t.Errorf("%s: %s=%s, want %s", u, prop, got, want)
			}
		}
	}
	uid := c.systemUser(t)
	c.ReloadBus(t)
	lan := c.LAN(t)
	c.Run(t, "ip", "netns", "add", "ctr1")

	// 2. The TAP kind.
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent=eth0\nMACAddress=02:00:5e:10:00:11\n")
	const u1 = "vethd@veth1.service"
	c.Run(t, "systemctl", "start", u1)
	c.checkPrivileges(t, u1, uid, "veth1")
	if mac := c.sysfs("veth1", "address"); mac != "02:00:5e:10:00:11" {
		t.Errorf("veth1 has MAC %q", mac)
	}
	if carrier := c.sysfs("veth1", "carrier"); carrier != "1" {
		t.Errorf("veth1 carrier %q", carrier)
	}
	for _, ifname := range []string{"veth1", lan.Parent} {
		if v := strings.TrimSpace(c.Run(t, "cat", "/proc/sys/net/ipv4/conf/"+ifname+"/arp_ignore")); v != "1" {
			t.Errorf("%s: arp_ignore %s, want 1 (ARP isolation)", ifname, v)
		}
	}
	addr := c.DHCP(t, "veth1")
	c.Run(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "1", "-W", "2", addr.Addr().String())
	waitUntil(t, 5*time.Second, "source routing rule for veth1", func() (bool, string) {
		out := c.Run(t, "ip", "rule", "show")
		return strings.Contains(out, "from "+addr.Addr().String()+" lookup "), out
	})
	if list := c.Run(t, "vethctl", "list"); !strings.Contains(list, "veth1") || !strings.Contains(list, "running") {
		t.Errorf("vethctl list:\n%s", list)
	}
	ifindex, pid := c.sysfs("veth1", "ifindex"), c.prop(t, u1, "MainPID")
	c.Run(t, "systemctl", "restart", u1)
	if c.prop(t, u1, "MainPID") == pid || c.sysfs("veth1", "ifindex") != ifindex {
		t.Errorf("restart: PID %s → %s, ifindex %s → %s", pid, c.prop(t, u1, "MainPID"), ifindex, c.sysfs("veth1", "ifindex"))
	}
	if !slices.Contains(c.Addrs4(t, "veth1"), addr) {
		t.Errorf("veth1 lost %v on restart", addr)
	}
	if j := c.journal(u1); !strings.Contains(j, "Adopted veth1 from systemd's fd store") {
		t.Errorf("%s did not adopt veth1 from the fd store", u1)
	}
	c.checkPrivileges(t, u1, uid, "veth1")
	c.Run(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "1", "-W", "2", addr.Addr().String())

	// 3. The veth kind: pair, nftables guard, peer without IPv6
	// addresses, adoption on restart.
	c.WriteFile(t, "/etc/vethd/veth2.conf", "[Bridge]\nParent=eth0\nKind=veth\nMTU=1400\n")
	const u2 = "vethd@veth2.service"
	c.Run(t, "systemctl", "start", u2)
	c.checkPrivileges(t, u2, uid, "veth2")
	// The kernel data path (the veth kind's default) attached under the
	// units' sandbox: CAP_BPF and bpf() are allowed.
	waitUntil(t, 5*time.Second, "veth2 on the kernel data path", func() (bool, string) {
		out := c.Run(t, "busctl", "get-property", "io.github.vethd.Bridge1.veth2", "/io/github/vethd/Bridge1/veth2", "io.github.vethd.Bridge1", "DataPath")
		return strings.TrimSpace(out) == `s "kernel"`, "DataPath " + strings.TrimSpace(out)
	})
	if mtu := c.sysfs("veth2", "mtu"); mtu != "1400" {
		t.Errorf("veth2 MTU %q, want 1400", mtu)
	}
	if v := strings.TrimSpace(c.Run(t, "cat", "/proc/sys/net/ipv6/conf/vd-veth2/addr_gen_mode")); v != "1" {
		t.Errorf("vd-veth2: addr_gen_mode %s, want 1 (none)", v)
	}
	if j := c.journal(u2); !strings.Contains(j, "Guarded vd-veth2") {
		t.Errorf("%s set no nftables guard", u2)
	}
	ifindex = c.sysfs("veth2", "ifindex")
	c.Run(t, "systemctl", "restart", u2)
	if c.prop(t, u2, "ActiveState") != "active" || c.sysfs("veth2", "ifindex") != ifindex {
		t.Errorf("veth2 not adopted on restart: ifindex %s → %s", ifindex, c.sysfs("veth2", "ifindex"))
	}

	// 4. Namespace=, both kinds: created in /run/netns/ctr1.
	c.WriteFile(t, "/etc/vethd/veth3.conf", "[Bridge]\nParent=eth0\nKind=veth\nNamespace=ctr1\n")
	c.WriteFile(t, "/etc/vethd/veth4.conf", "[Bridge]\nParent=eth0\nNamespace=ctr1\n")
	c.Run(t, "systemctl", "start", "vethd@veth3.service", "vethd@veth4.service")
	for _, ifname := range []string{"veth3", "veth4"} {
		c.checkPrivileges(t, "vethd@"+ifname+".service", uid, ifname)
		if _, err := c.RunErr("ip", "-n", "ctr1", "link", "show", ifname); err != nil {
			t.Errorf("%s is not in netns ctr1: %v", ifname, err)
		}
	}
	// A restart adopts both there (the TAP from the fd store: it was a
	// restart loop, "a TAP descriptor to adopt with a namespace").
	nsIfindex := func(ifname string) string {
		out, _ := c.RunErr("ip", "netns", "exec", "ctr1", "cat", "/sys/class/net/"+ifname+"/ifindex")
		return strings.TrimSpace(out)
	}
	before := map[string]string{"veth3": nsIfindex("veth3"), "veth4": nsIfindex("veth4")}
	c.Run(t, "systemctl", "restart", "vethd@veth3.service", "vethd@veth4.service")
	time.Sleep(time.Second) // (a loop would show in NRestarts by now)
	for ifname, adopted := range map[string]string{"veth3": "Adopted veth3, a veth pair with vd-veth3", "veth4": "Adopted veth4 in its network namespace /run/netns/ctr1"} {
		u := "vethd@" + ifname + ".service"
		if st, n := c.prop(t, u, "ActiveState"), c.prop(t, u, "NRestarts"); st != "active" || n != "0" {
			t.Errorf("%s after restart: ActiveState=%s NRestarts=%s, want active 0", u, st, n)
		}
		if got := nsIfindex(ifname); got == "" || got != before[ifname] {
			t.Errorf("%s in ctr1: ifindex %s → %s on restart, want it kept", ifname, before[ifname], got)
		}
		if j := c.journal(u); !strings.Contains(j, adopted) {
			t.Errorf("%s: no %q in the journal", u, adopted)
		}
	}

	// 5. vethd.service runs them all, and hands veth1 over to its unit.
	c.Run(t, "systemctl", "stop", u1, u2, "vethd@veth3.service", "vethd@veth4.service")
	c.Run(t, "systemctl", "start", "vethd.service")
	c.checkPrivileges(t, "vethd.service", uid, "veth2")
	if list := c.Run(t, "vethctl", "list"); len(regexp.MustCompile(`(?m)^veth[1-4] +vethd\.service +running `).FindAllString(list, -1)) != 4 {
		t.Errorf("vethd.service does not run the 4 bridges:\n%s", list)
	}
	c.Run(t, "systemctl", "start", u1)
	c.checkPrivileges(t, u1, uid, "veth1")
	if list := c.Run(t, "vethctl", "list"); !regexp.MustCompile(`veth1 +vethd@veth1.service +running`).MatchString(list) {
		t.Errorf("vethd.service did not hand veth1 over:\n%s", list)
	}
	c.Run(t, "systemctl", "stop", "vethd.service", u1)

	// 6. vethd run by hand as root may own a name too.
	c.WriteFile(t, "/etc/vethd/veth5.conf", "[Bridge]\nParent=eth0\n")
	c.Run(t, "systemd-run", "--quiet", "--unit=vethd-by-hand.service", "--service-type=notify", "/usr/sbin/vethd", "--instance", "veth5")
	if out := c.Run(t, "busctl", "status", "io.github.vethd.Bridge1.veth5"); !slices.Contains(strings.Split(out, "\n"), "UID=0") {
		t.Errorf("vethd run as root does not own io.github.vethd.Bridge1.veth5:\n%s", out)
	}
	c.Run(t, "systemctl", "stop", "vethd-by-hand.service")
}

// TestE2EOOMRestart checks that the worst case of a memory attack is a
// restart that keeps the interface: vethd@veth1.service, OOM-killed by the
// kernel under a memory cap, is restarted by systemd, and veth1 keeps its
// ifindex and address (the TAP waits in the fd store).
//
// The container's memory controller is cgroup v1 mounted read-only (this
// machine's hierarchy; nspawn delegates only name=systemd), so the unit's
// MemoryMax= is not enforced here. The test caps vethd from the host
// instead: a v1 memory cgroup of its own, limited to 1 MiB of new charges
// (a moved task's pages stay charged where they were), which D-Bus calls
// exceed at once. systemd sees the kill as SIGKILL, as it does an OOM kill
// under MemoryMax= where memory.events is not readable.
func TestE2EOOMRestart(t *testing.T) {
	stage := stageInstall(t)
	c := Boot(t, stage)
	c.ReloadBus(t)
	lan := c.LAN(t)
	const u1 = "vethd@veth1.service"
	defer func() {
		if t.Failed() {
			t.Logf("--- journal of %s ---\n%s", u1, c.journal(u1))
		}
	}()
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent="+lan.Parent+"\n")
	c.Run(t, "systemctl", "start", u1)
	c.Run(t, "ip", "addr", "add", "198.18.50.20/24", "dev", "veth1")
	c.Run(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "1", "-W", "2", "198.18.50.20")
	ifindex := c.sysfs("veth1", "ifindex")
	cpid := c.prop(t, u1, "MainPID")
	host := c.hostPID(t, cpid)

	// A memory cgroup below vethd's, limited to 1 MiB.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", host))
	if err != nil {
		t.Fatal(err)
	}
	var memcg string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "memory" {
			memcg = f[2]
		}
	}
	root := "/sys/fs/cgroup/memory"
	if memcg == "" {
		skipOrFail(t, "no cgroup v1 memory controller on this machine (/proc/%d/cgroup)", host)
	}
	dir := filepath.Join(root, memcg, fmt.Sprintf("%se2e-oom-%d", namePrefix, os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		skipOrFail(t, "cannot make a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove memory cgroup %s: %v", dir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte("1M"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(host)), 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	calls := 0
	for ; calls < 2000; calls++ {
		if _, err := c.RunErr("busctl", "call", "io.github.vethd.Bridge1.veth1", "/io/github/vethd/Bridge1/veth1",
			"io.github.vethd.Bridge1", "Describe"); err != nil {
			break
		}
	}
	oc, _ := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if !strings.Contains(string(oc), "oom_kill 1") {
		t.Fatalf("vethd not OOM-killed after %d Describe calls under a 1 MiB cap:\n%s", calls, oc)
	}
	t.Logf("vethd (PID %s) OOM-killed after %d Describe calls (%.1fs)", cpid, calls, time.Since(start).Seconds())
	killed := time.Now()

	waitUntil(t, 15*time.Second, u1+" restarted", func() (bool, string) {
		st, p := c.prop(t, u1, "ActiveState"), c.prop(t, u1, "MainPID")
		return st == "active" && p != cpid && p != "0", st + " PID " + p
	})
	restartedIn := time.Since(killed)
	if n := c.prop(t, u1, "NRestarts"); n != "1" {
		t.Errorf("NRestarts=%s, want 1", n)
	}
	if j := c.journal(u1); !strings.Contains(j, "code=killed, status=9/KILL") || !strings.Contains(j, "Adopted veth1 from systemd's fd store") {
		t.Errorf("the journal does not show the kill and the adoption:\n%s", j)
	}
	if got := c.sysfs("veth1", "ifindex"); got != ifindex {
		t.Errorf("veth1's ifindex %s → %s across the OOM kill", ifindex, got)
	}
	want := netip.MustParsePrefix("198.18.50.20/24")
	if !slices.Contains(c.Addrs4(t, "veth1"), want) {
		t.Errorf("veth1 lost %v across the OOM kill: %v", want, c.Addrs4(t, "veth1"))
	}
	c.Run(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "1", "-W", "2", "198.18.50.20")
	t.Logf("%s restarted %.1fs after the kill: veth1 ifindex %s, %v kept", u1, restartedIn.Seconds(), ifindex, want)
}

// hostPID returns the host's PID of the container's process pid.
func (c *Container) hostPID(t *testing.T, pid string) int {
	t.Helper()
	for _, p := range pidsInNS(c.pidNS) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
				if f := strings.Fields(rest); len(f) >= 2 && f[len(f)-1] == pid {
					return p
				}
			}
		}
	}
	t.Fatalf("container PID %s not found in the host", pid)
	return 0
}
