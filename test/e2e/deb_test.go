package e2e

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// debTools are what building and checking the package needs on this
// machine, by Debian package (scripts/deps.sh installs them).
var debTools = map[string]string{
	"dpkg-buildpackage": "dpkg-dev",
	"dh":                "debhelper",
	"lintian":           "lintian",
	"mmdebstrap":        "mmdebstrap",
	"dpkg-deb":          "dpkg",
}

// debBuild is one `make deb`: the .deb and -dbgsym of Version, and what
// lintian said.
type debBuild struct {
	Version string
	Deb     string
	Dbgsym  string
	Lintian []string // lintian's tag lines (E:, W:, I:, O:, …)
	Took    time.Duration
}

// makeDeb runs `make -C src deb DEBDIR=debdir` and finds what it built.
func makeDeb(src, debdir, version string) (*debBuild, error) {
	start := time.Now()
	cmd := exec.Command("make", "-C", src, "deb", "DEBDIR="+debdir, "GO="+goCommand())
	// No VCS stamping (debian/rules sets it too): as root in a tree owned
	// by someone else, git refuses ("dubious ownership").
	cmd.Env = append(nspawnEnv(), "GOFLAGS=-buildvcs=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("make -C %s deb DEBDIR=%s: %w\n%s", src, debdir, err, out)
	}
	arch, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg --print-architecture: %w", err)
	}
	a := strings.TrimSpace(string(arch))
	b := &debBuild{
		Version: version,
		Deb:     filepath.Join(debdir, fmt.Sprintf("vethd_%s_%s.deb", version, a)),
		Dbgsym:  filepath.Join(debdir, fmt.Sprintf("vethd-dbgsym_%s_%s.deb", version, a)),
		Took:    time.Since(start),
	}
	for _, f := range []string{b.Deb, b.Dbgsym} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("make deb did not build %s:\n%s", f, out)
		}
	}
	for _, line := range strings.Split(string(out), "\n") {
		if len(line) > 3 && strings.Contains("EWIPXO", line[:1]) && line[1:3] == ": " {
			b.Lintian = append(b.Lintian, line)
		}
	}
	return b, nil
}

// copyTree copies the source tree as make deb does (without .git and
// build output) to dst, to build another version from.
func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("sh", "-c",
		`tar -C "$1" -c --exclude=./.git --exclude=./bin --exclude=./vethd --exclude=./vethctl --exclude='*.test' . | tar -x -C "$2"`,
		"sh", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w\n%s", src, dst, err, out)
	}
	return nil
}

// bumpVersion makes the tree at dir version v: VERSION, and a new
// debian/changelog entry on top (the package's version is the
// changelog's; debian/rules checks that the two agree).
func bumpVersion(dir, v string) error {
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte(v+"\n"), 0o644); err != nil {
		return err
	}
	cl := filepath.Join(dir, "debian/changelog")
	old, err := os.ReadFile(cl)
	if err != nil {
		return err
	}
	// Signed by the maintainer of the entry below (lintian takes an entry
	// by anyone else for a non-maintainer upload, and warns).
	var by string
	for _, line := range strings.Split(string(old), "\n") {
		if rest, ok := strings.CutPrefix(line, " -- "); ok {
			by, _, _ = strings.Cut(rest, ">")
			by += ">"
			break
		}
	}
	if by == ">" || by == "" {
		return fmt.Errorf("%s: no maintainer line", cl)
	}
	entry := fmt.Sprintf("vethd (%s) unstable; urgency=medium\n\n  * Rebuilt by the end-to-end test to upgrade to.\n\n -- %s  %s\n\n",
		v, by, time.Now().UTC().Format(time.RFC1123Z))
	return os.WriteFile(cl, append([]byte(entry), old...), 0o644)
}

// checkDebContents unpacks the .deb and its -dbgsym and checks what
// lintian does not: the files make install puts there, compressed man
// pages, and binaries built with Debian's hardening and without cgo (PIE,
// full RELRO, stripped with their debug info in -dbgsym under their GNU
// build ID, -trimpath, no shared library, the version).
func checkDebContents(t *testing.T, b *debBuild) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{b.Deb, b.Dbgsym} {
		if out, err := exec.Command("dpkg-deb", "-x", d, dir).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x %s: %v\n%s", d, err, out)
		}
	}
	for _, f := range []string{
		"usr/sbin/vethd", "usr/bin/vethctl",
		"lib/systemd/system/vethd@.service", "lib/systemd/system/vethd.service",
		"lib/systemd/system/vethd-metrics.service", "lib/systemd/system/vethd-metrics.timer",
		"lib/systemd/system-preset/80-vethd.preset",
		"usr/share/dbus-1/system.d/io.github.vethd.Bridge1.conf",
		"usr/lib/sysusers.d/vethd.conf",
		"etc/dhcp/dhclient-exit-hooks.d/vethd",
		"lib/udev/rules.d/86-vethd.rules",
		"usr/lib/NetworkManager/conf.d/vethd.conf",
		"lib/systemd/network/10-vethd-peer.network",
		"usr/share/man/man8/vethd.8.gz", "usr/share/man/man1/vethctl.1.gz", "usr/share/man/man5/vethd.conf.5.gz",
		"usr/share/bash-completion/completions/vethctl", "usr/share/zsh/vendor-completions/_vethctl",
		"usr/share/doc/vethd/copyright", "usr/share/doc/vethd/changelog.gz",
		"usr/share/doc/vethd/guide.md", "usr/share/doc/vethd/examples/veth1.conf",
	} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the package lacks /%s", f)
		}
	}
	for _, bin := range []string{"usr/sbin/vethd", "usr/bin/vethctl"} {
		checkDebianGoBinary(t, filepath.Join(dir, bin), dir, b.Version)
	}
}

// checkDebianGoBinary checks one binary of the package (readelf -lWd and
// go version -m, in Go).
func checkDebianGoBinary(t *testing.T, path, root, version string) {
	t.Helper()
	name := "/" + strings.TrimPrefix(path, root+"/")
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	if f.Type != elf.ET_DYN {
		t.Errorf("%s: ELF type %v, want ET_DYN (PIE)", name, f.Type)
	}
	var relro, interp bool
	for _, p := range f.Progs {
		relro = relro || p.Type == elf.PT_GNU_RELRO
		interp = interp || p.Type == elf.PT_INTERP
	}
	if !relro || !interp {
		t.Errorf("%s: PT_GNU_RELRO %v, PT_INTERP %v: want both (a PIE executable with RELRO)", name, relro, interp)
	}
	flags, _ := f.DynValue(elf.DT_FLAGS)
	flags1, _ := f.DynValue(elf.DT_FLAGS_1)
	bindNow := (len(flags) > 0 && flags[0]&uint64(elf.DF_BIND_NOW) != 0) || (len(flags1) > 0 && flags1[0]&uint64(elf.DF_1_NOW) != 0)
	if !bindNow || len(flags1) == 0 || flags1[0]&uint64(elf.DF_1_PIE) == 0 {
		t.Errorf("%s: DT_FLAGS %v DT_FLAGS_1 %v: want BIND_NOW (full RELRO) and PIE", name, flags, flags1)
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") || s.Name == ".symtab" {
			t.Errorf("%s: not stripped: section %s", name, s.Name)
		}
	}
	// The GNU build ID (a 16-byte note header, then "GNU\0", then the ID)
	// names the file in the -dbgsym package.
	var id string
	if s := f.Section(".note.gnu.build-id"); s != nil {
		if d, err := s.Data(); err == nil && len(d) > 16 {
			id = hex.EncodeToString(d[16:])
		}
	}
	if len(id) < 4 {
		t.Errorf("%s: no GNU build ID", name)
	} else if _, err := os.Stat(filepath.Join(root, "usr/lib/debug/.build-id", id[:2], id[2:]+".debug")); err != nil {
		t.Errorf("%s: build ID %s, but vethd-dbgsym has no /usr/lib/debug/.build-id/%s/%s.debug", name, id, id[:2], id[2:])
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: Go build info: %v", name, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["-trimpath"] != "true" || settings["-buildmode"] != "pie" {
		t.Errorf("%s: -trimpath=%q -buildmode=%q, want true and pie", name, settings["-trimpath"], settings["-buildmode"])
	}
	if v, ok := settings["vcs.revision"]; ok {
		t.Errorf("%s: stamped with the VCS revision %s: the package's binaries must not depend on the checkout", name, v)
	}
	// Built without cgo (the Makefile's CGO_ENABLED=0): no shared library
	// is needed, so none (libc) is mapped at run time.
	if settings["CGO_ENABLED"] != "0" {
		t.Errorf("%s: CGO_ENABLED=%q, want 0 (the Makefile's build)", name, settings["CGO_ENABLED"])
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("%s: needs the shared libraries %q (%v): want none (a build without cgo)", name, libs, err)
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " "+version) {
		t.Errorf("%s --version: %q (%v), want %s", name, bytes.TrimSpace(out), err, version)
	}
	t.Logf("%s: PIE, GNU_RELRO + BIND_NOW, stripped, GNU build ID %s in -dbgsym, no cgo and no shared library, %s -trimpath, %s", name, id, bi.GoVersion, bytes.TrimSpace(out))
}

// TestDebPackage builds the package twice (`make deb`: lintian must find no
// error and no warning), checks what it contains, and then drives it with
// apt in a booted Debian container (BootTree: a minimal tree of this
// machine's release, cached in /var/cache/vethd-test): install (nothing
// enabled or started, the user vethd made), `vethctl add veth1 --parent
// eth0 --now` and a DHCP lease on veth1, remove (veth1 gone, its unit
// stopped, /etc/vethd kept, the metrics file gone), purge (/etc/vethd gone,
// the user kept), a reinstall, and an upgrade to the second build, which
// must keep veth1 (same ifindex, same address, still passing traffic)
// through systemd's fd store while vethd restarts on the new binary.
func TestDebPackage(t *testing.T) {
	requireRoot(t)
	for tool, pkg := range debTools {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s (Debian package %s; scripts/deps.sh installs it)", tool, pkg)
		}
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	vb, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	v1 := strings.TrimSpace(string(vb))
	v2 := v1 + "+e2e.1"

	// The first build, from the tree.
	b1, err := makeDeb(root, filepath.Join(suiteDir, "deb1"), v1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("make deb (%s) took %.1fs; lintian (%s):\n%s", v1, b1.Took.Seconds(), lintianVersion(), strings.Join(b1.Lintian, "\n"))
	for _, l := range b1.Lintian {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
	for _, f := range []string{b1.Deb, b1.Dbgsym} {
		if fi, err := os.Stat(f); err == nil {
			t.Logf("%s: %d bytes", filepath.Base(f), fi.Size())
		}
	}
	checkDebContents(t, b1)

	// The second, to upgrade to, builds while the container runs.
	type result struct {
		b   *debBuild
		err error
	}
	second := make(chan result, 1)
	go func() {
		src := filepath.Join(suiteDir, "src2")
		if err := copyTree(root, src); err != nil {
			second <- result{err: err}
			return
		}
		if err := bumpVersion(src, v2); err != nil {
			second <- result{err: err}
			return
		}
		b, err := makeDeb(src, filepath.Join(suiteDir, "deb2"), v2)
		second <- result{b, err}
	}()
	var b2 *debBuild
	waitSecond := func() *debBuild {
		if b2 == nil {
			r := <-second
			if r.err != nil {
				t.Fatal(r.err)
			}
			b2 = r.b
			t.Logf("make deb (%s) took %.1fs (alongside the container)", v2, b2.Took.Seconds())
		}
		return b2
	}
	t.Cleanup(func() {
		if b2 == nil {
			<-second // no build left running into a removed suite directory
		}
	})

	tree := debTree(t)
	c := BootTree(t, tree)
	step := func(what string, start time.Time) {
		t.Logf("%s: %.1fs", what, time.Since(start).Seconds())
	}

	// Install.
	start := time.Now()
	deb1 := "/srv/" + filepath.Base(b1.Deb)
	c.CopyIn(t, b1.Deb, deb1)
	aptGet(t, c, "install", deb1)
	step("apt-get install "+filepath.Base(b1.Deb), start)
	wantStatus(t, c, "install ok installed", v1)
	for _, f := range []string{"/usr/sbin/vethd", "/usr/bin/vethctl", "/lib/systemd/system/vethd@.service",
		"/usr/share/dbus-1/system.d/io.github.vethd.Bridge1.conf", "/etc/dhcp/dhclient-exit-hooks.d/vethd",
		"/usr/share/man/man8/vethd.8.gz", "/usr/share/doc/vethd/guide.md"} {
		wantPath(t, c, f, true)
	}
	if out, err := c.RunErr("getent", "passwd", "vethd"); err != nil {
		t.Errorf("postinst made no user vethd: %v", err)
	} else {
		t.Logf("user: %s", strings.TrimSpace(out))
	}
	for _, u := range []string{"vethd.service", "vethd-metrics.timer"} {
		if en, _ := c.RunErr("systemctl", "is-enabled", u); strings.TrimSpace(en) != "disabled" {
			t.Errorf("after install %s is %q, want disabled", u, strings.TrimSpace(en))
		}
	}
	if out := c.Run(t, "systemctl", "list-units", "--no-legend", "--plain", "--state=active", "vethd*"); strings.TrimSpace(out) != "" {
		t.Errorf("the install started units:\n%s", out)
	}

	lan := c.LAN(t)
	addr1, ifindex1 := addVeth1(t, c, lan)

	// The metrics unit writes its file (removed with the package).
	c.Run(t, "mkdir", "-p", "/var/lib/prometheus/node-exporter")
	c.Run(t, "systemctl", "start", "vethd-metrics.service")
	if prom := c.Run(t, "cat", "/var/lib/prometheus/node-exporter/vethd.prom"); !strings.Contains(prom, `"veth1"`) {
		t.Errorf("vethd.prom does not name veth1:\n%s", prom)
	}

	// Remove: veth1 goes with its unit; the config stays.
	start = time.Now()
	aptGet(t, c, "remove", "vethd")
	step("apt-get remove vethd", start)
	wantStatus(t, c, "deinstall ok config-files", v1)
	if act, _ := c.RunErr("systemctl", "is-active", "vethd@veth1.service"); strings.TrimSpace(act) != "inactive" {
		t.Errorf("after remove vethd@veth1.service is %q, want inactive", strings.TrimSpace(act))
	}
	if out, err := c.RunErr("pgrep", "-a", "-x", "vethd"); err == nil {
		t.Errorf("vethd still runs after remove:\n%s", out)
	}
	if _, err := c.RunErr("ip", "link", "show", "veth1"); err == nil {
		t.Errorf("veth1 still exists after remove")
	}
	wantPath(t, c, "/etc/vethd/veth1.conf", true)
	wantPath(t, c, "/etc/dhcp/dhclient-exit-hooks.d/vethd", true) // a conffile
	wantPath(t, c, "/usr/sbin/vethd", false)
	wantPath(t, c, "/var/lib/prometheus/node-exporter/vethd.prom", false)
	c.RunErr("dhclient", "-x", "-lf", "/run/e2e-dhclient-veth1.leases", "-pf", "/run/e2e-dhclient-veth1.pid", "veth1")

	// Purge: the config goes, and the instance's enablement.
	start = time.Now()
	aptGet(t, c, "purge", "vethd")
	step("apt-get purge vethd", start)
	if out, _ := c.RunErr("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "vethd"); strings.HasPrefix(out, "i") || strings.HasPrefix(out, "rc") {
		t.Errorf("after purge dpkg says %q", out)
	}
	wantPath(t, c, "/etc/vethd", false)
	wantPath(t, c, "/etc/dhcp/dhclient-exit-hooks.d/vethd", false)
	wantPath(t, c, "/etc/systemd/system/multi-user.target.wants/vethd@veth1.service", false)
	if _, err := c.RunErr("getent", "passwd", "vethd"); err != nil {
		t.Errorf("purge removed the user vethd; Debian keeps system users")
	}

	// Reinstall, and veth1 again.
	start = time.Now()
	aptGet(t, c, "install", deb1)
	step("apt-get install (again)", start)
	wantStatus(t, c, "install ok installed", v1)
	addr, ifindex := addVeth1(t, c, lan)
	t.Logf("before the removal veth1 was ifindex %d with %v; reinstalled: ifindex %d with %v", ifindex1, addr1, ifindex, addr)
	pid := strings.TrimSpace(c.Run(t, "systemctl", "show", "-P", "MainPID", "vethd@veth1.service"))

	// Upgrade: vethd restarts on the new binary, veth1 stays.
	b := waitSecond()
	checkDebContents(t, b)
	deb2 := "/srv/" + filepath.Base(b.Deb)
	c.CopyIn(t, b.Deb, deb2)
	start = time.Now()
	aptGet(t, c, "install", deb2)
	step("apt-get install "+filepath.Base(b.Deb)+" (upgrade)", start)
	wantStatus(t, c, "install ok installed", v2)
	if act := strings.TrimSpace(c.Run(t, "systemctl", "show", "-P", "ActiveState", "vethd@veth1.service")); act != "active" {
		t.Fatalf("after the upgrade vethd@veth1.service is %s", act)
	}
	pid2 := strings.TrimSpace(c.Run(t, "systemctl", "show", "-P", "MainPID", "vethd@veth1.service"))
	if pid2 == pid {
		t.Errorf("the upgrade did not restart vethd@veth1.service (MainPID %s before and after)", pid)
	}
	if exe := c.Run(t, "/usr/sbin/vethd", "--version"); !strings.Contains(exe, v2) {
		t.Errorf("vethd --version after the upgrade: %q, want %s", exe, v2)
	}
	ifindexAfter := ifindexOf(t, c, "veth1")
	if ifindexAfter != ifindex {
		t.Errorf("the upgrade replaced veth1: ifindex %d before, %d after", ifindex, ifindexAfter)
	}
	var kept bool
	addrsAfter := c.Addrs4(t, "veth1")
	for _, a := range addrsAfter {
		kept = kept || a == addr
	}
	if !kept {
		t.Errorf("the upgrade lost veth1's address %v: now %v", addr, addrsAfter)
	}
	c.Run(t, "ping", "-c", "1", "-W", "5", "-I", "veth1", lan.Router.String())
	t.Logf("upgrade %s -> %s: vethd@veth1 MainPID %s -> %s; veth1 ifindex %d -> %d, addresses %v (had %v); ping %v through veth1 answered",
		v1, v2, pid, pid2, ifindex, ifindexAfter, addrsAfter, addr, lan.Router)
}

// addVeth1 runs `vethctl add veth1 --parent eth0 --now` in the container,
// leases an address for veth1 from the LAN and checks it passes traffic.
func addVeth1(t *testing.T, c *Container, lan *LAN) (netip.Prefix, int) {
	t.Helper()
	start := time.Now()
	c.Run(t, "vethctl", "add", "veth1", "--parent", lan.Parent, "--now")
	addr := c.DHCP(t, "veth1")
	if !lan.Prefix.Contains(addr.Addr()) {
		t.Fatalf("veth1 leased %v, outside %v", addr, lan.Prefix)
	}
	c.Run(t, "ping", "-c", "1", "-W", "5", "-I", "veth1", lan.Router.String())
	ifindex := ifindexOf(t, c, "veth1")
	mac := strings.TrimSpace(c.Run(t, "cat", "/sys/class/net/veth1/address"))
	t.Logf("vethctl add veth1 --parent %s --now, dhclient: veth1 ifindex %d, MAC %s, leased %v (%.1fs)", lan.Parent, ifindex, mac, addr, time.Since(start).Seconds())
	return addr, ifindex
}

// ifindexOf reads ifname's ifindex in the container.
func ifindexOf(t *testing.T, c *Container, ifname string) int {
	t.Helper()
	var n int
	s := strings.TrimSpace(c.Run(t, "cat", "/sys/class/net/"+ifname+"/ifindex"))
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("ifindex of %s: %q: %v", ifname, s, err)
	}
	return n
}

// aptGet runs apt-get ACTION -y ARGS in the container, non-interactively,
// and logs what dpkg's maintainer scripts said.
func aptGet(t *testing.T, c *Container, action string, args ...string) {
	t.Helper()
	cmd := append([]string{"sh", "-c", `exec "$@" 2>&1`, "sh", "env", "DEBIAN_FRONTEND=noninteractive",
		"apt-get", "-y", "-q", "--no-install-recommends", action}, args...)
	out := c.Run(t, cmd...)
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Reading ") || strings.HasPrefix(l, "Building ") || strings.HasPrefix(l, "(Reading database") || strings.TrimSpace(l) == "" {
			continue
		}
		keep = append(keep, "  "+l)
	}
	t.Logf("apt-get %s %s:\n%s", action, strings.Join(args, " "), strings.Join(keep, "\n"))
}

// wantStatus checks dpkg's status and version of vethd.
func wantStatus(t *testing.T, c *Container, status, version string) {
	t.Helper()
	out := strings.TrimSpace(c.Run(t, "dpkg-query", "-W", "-f=${Status} ${Version}", "vethd"))
	if out != status+" "+version {
		t.Errorf("dpkg-query vethd: %q, want %q", out, status+" "+version)
	}
}

// wantPath checks that path exists (or not) in the container.
func wantPath(t *testing.T, c *Container, path string, exists bool) {
	t.Helper()
	_, err := c.RunErr("test", "-e", path)
	if exists && err != nil {
		t.Errorf("%s is missing", path)
	} else if !exists && err == nil {
		t.Errorf("%s is still there", path)
	}
}

// lintianVersion is `lintian --version`.
func lintianVersion() string {
	out, _ := exec.Command("lintian", "--version").Output()
	return string(bytes.TrimSpace(out))
}
