package e2e

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The package test (TestDebPackage) cannot use this machine's OS as the
// other tests do: the container of Boot has a read-only /usr and an empty
// /var, where dpkg cannot run. It boots instead a minimal Debian tree made
// with mmdebstrap from this machine's Debian mirror, with the packages
// below (and what they depend on), booted with --volatile=overlay so that
// every boot starts from the tree as it was built and nothing is written
// to it.

const (
	// debTreeCache holds the trees, one per key (debTreeKey), kept
	// between runs: the first run builds one (about a minute), the next
	// ones reuse it.
	debTreeCache = "/var/cache/vethd-test"
	// debTreeFormat changes the key when the way a tree is made changes.
	debTreeFormat = "1"
)

// debTreePackages are installed into the tree: systemd as init (with
// systemd-sysv's poweroff), the bus, and what the test and vethd's package
// Depends on, so that `apt-get install ./vethd_….deb` finds every
// dependency installed (the container has no network to download one).
// dnsmasq-base serves the LAN's DHCP ([Container.LAN] runs
// /usr/sbin/dnsmasq inside the container), isc-dhcp-client leases for
// veth1 (and runs vethd's dhclient hook), iputils-ping sends traffic,
// procps (pgrep) looks for processes.
var debTreePackages = []string{
	"systemd", "systemd-sysv", "dbus", "iproute2", "isc-dhcp-client",
	"dnsmasq-base", "iputils-ping", "procps",
}

// debMirror is the Debian mirror and suite the tree is made from: this
// machine's, as its apt sources name it (deb822 .sources or one-line
// sources.list), for its own release (VERSION_CODENAME in /etc/os-release).
func debMirror() (mirror, suite string, err error) {
	suite = osReleaseField("VERSION_CODENAME")
	if suite == "" {
		return "", "", fmt.Errorf("no VERSION_CODENAME in /etc/os-release: not Debian?")
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// Stanzas are separated by empty lines.
		for _, stanza := range strings.Split(string(b), "\n\n") {
			var uri string
			suites := map[string]bool{}
			for _, line := range strings.Split(stanza, "\n") {
				k, v, ok := strings.Cut(line, ":")
				if !ok || strings.HasPrefix(line, "#") {
					continue
				}
				switch strings.TrimSpace(k) {
				case "URIs":
					uri = strings.Fields(v)[0]
				case "Suites":
					for _, s := range strings.Fields(v) {
						suites[s] = true
					}
				}
			}
			if uri != "" && suites[suite] && strings.HasSuffix(strings.TrimRight(uri, "/"), "/debian") {
				return strings.TrimRight(uri, "/"), suite, nil
			}
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			// deb [options] URI SUITE COMPONENTS…
			for len(f) > 1 && strings.HasPrefix(f[1], "[") {
				f = append(f[:1], f[2:]...)
			}
			if len(f) >= 3 && f[0] == "deb" && f[2] == suite && strings.HasSuffix(strings.TrimRight(f[1], "/"), "/debian") {
				return strings.TrimRight(f[1], "/"), suite, nil
			}
		}
	}
	return "", "", fmt.Errorf("no Debian mirror for %s in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources", suite)
}

// osReleaseField returns KEY's value in /etc/os-release.
func osReleaseField(key string) string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

// debTreeKey names a tree by what it is made of: the format, the mirror,
// the suite and the package list.
func debTreeKey(mirror, suite string) string {
	h := sha256.Sum256([]byte(strings.Join(append([]string{debTreeFormat, mirror, suite}, debTreePackages...), "\n")))
	return fmt.Sprintf("%s-%x", suite, h[:6])
}

// debTree returns the cached tree for debTreePackages, building it first
// if there is none: mmdebstrap into a temporary directory next to it,
// renamed into place once complete (a run killed halfway leaves no tree
// that looks finished). A lock file serializes two runs that build at once.
func debTree(t *testing.T) string {
	t.Helper()
	mirror, suite, err := debMirror()
	if err != nil {
		skipOrFail(t, "no tree for the package test: %v", err)
	}
	dir := filepath.Join(debTreeCache, debTreeKey(mirror, suite))
	if fi, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil && fi.Mode().IsRegular() {
		t.Logf("Debian tree %s (cached)", dir)
		return dir
	}
	if err := os.MkdirAll(debTreeCache, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(debTreeCache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		t.Logf("Debian tree %s (built by another run meanwhile)", dir)
		return dir
	}
	// Leftovers of a build that died.
	stale, _ := filepath.Glob(filepath.Join(debTreeCache, ".build-*"))
	for _, s := range stale {
		os.RemoveAll(s)
	}
	tmp, err := os.MkdirTemp(debTreeCache, ".build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	start := time.Now()
	// --variant=apt: Essential packages and apt, then the list. The
	// tree's own apt sources name the same mirror (not used: the
	// container has no network).
	cmd := exec.Command("mmdebstrap", "--variant=apt", "--mode=root",
		"--include="+strings.Join(debTreePackages, ","),
		suite, root, fmt.Sprintf("deb %s %s main", mirror, suite))
	cmd.Env = append(nspawnEnv(), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mmdebstrap %s from %s: %v\n%s", suite, mirror, err, out)
	}
	if err := os.Rename(root, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("built Debian tree %s (%s from %s: %s) in %.1fs", dir, suite, mirror, strings.Join(debTreePackages, " "), time.Since(start).Seconds())
	return dir
}

// BootTree boots a container of tree (a whole OS, not this machine's) with
// --volatile=overlay: a tmpfs over the tree takes every write, so dpkg and
// apt work, and the tree itself is left as it was. Otherwise as [Boot]: a
// private network ([Container.LAN] wires it), the same cleanup and checks.
func BootTree(t *testing.T, tree string) *Container {
	t.Helper()
	requireRoot(t)
	c := &Container{
		Name:    fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), containerSeq.Add(1)),
		console: &lockedBuffer{},
		done:    make(chan struct{}),
		layers:  []string{tree},
	}
	state, took := c.start(t, exec.Command("systemd-nspawn", "-D", tree, "--volatile=overlay",
		"--private-network", "--register=no", "--keep-unit", "-M", c.Name,
		"-b", "systemd.mask=systemd-firstboot.service"))
	t.Logf("container %s of %s (init PID %d) booted in %.1fs: %s", c.Name, tree, c.pid, took.Seconds(), state)
	return c
}

// CopyIn copies the host file src to dst in the container (mode 0644).
func (c *Container) CopyIn(t *testing.T, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := c.run(f, "sh", "-c", `umask 022 && cat >"$1"`, "sh", dst); err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}
