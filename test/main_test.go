package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/netlinksafe"
	"github.com/vishvananda/netlink"
)

var (
	// vethdBin is the vethd binary under test; empty when it could not be built.
	vethdBin string
	// vethdBuildErr says why vethdBin is empty.
	vethdBuildErr error
	// suiteRoot holds every file of this run; every process the suite
	// starts carries it in its argv, which is how the leak check finds
	// survivors.
	suiteRoot string
	// nsPrefix starts the name of every namespace this run creates.
	nsPrefix = fmt.Sprintf("vt-%d-", os.Getpid())
)

// staleNS matches the namespaces of any run of this suite: vt-<pid>-<n>-<role>.
var staleNS = regexp.MustCompile(`^vt-([0-9]+)-[0-9]+-[a-z]+$`)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		// Every test skips itself with the reason.
		return m.Run()
	}
	sweepStale()
	before, err := rootLinks()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: list root links: %v\n", err)
		return 1
	}
	suiteRoot, err = os.MkdirTemp("", "vethd-it-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		return 1
	}
	defer os.RemoveAll(suiteRoot)
	vethdBin, vethdBuildErr = buildVethd(suiteRoot)
	if vethdBuildErr != nil {
		fmt.Fprintf(os.Stderr, "integration: vethd not built, tests that need it will fail: %v\n", vethdBuildErr)
	}

	code := m.Run()

	if leaks := leakCheck(before); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "integration: LEAK CHECK FAILED:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	return code
}

// buildVethd builds ./cmd/vethd into dir, or takes $VETHD_BIN when set.
func buildVethd(dir string) (string, error) {
	if p := os.Getenv("VETHD_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		// Copy it under suiteRoot so the leak check recognises the process.
		dst := filepath.Join(dir, "vethd")
		data, err := os.ReadFile(abs)
		if err != nil {
			return "", err
		}
		return dst, os.WriteFile(dst, data, 0o755)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go" // where scripts/test.sh finds it too
	}
	out := filepath.Join(dir, "vethd")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/vethd")
	// The module root (go test runs in the package directory), and no
	// cgo, as make build builds it.
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/vethd: %w\n%s", err, b)
	}
	return out, nil
}

// needVethd fails the test when the binary under test could not be built.
func needVethd(t *testing.T) {
	t.Helper()
	if vethdBin == "" {
		t.Fatalf("vethd binary not available: %v", vethdBuildErr)
	}
}

// needRoot skips the test unless it runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: creates network namespaces")
	}
}

// needTools skips the test when one of the named programs is missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, fmt.Sprintf("needs %s (install: dnsmasq-base isc-dhcp-client iproute2 iputils-ping iputils-arping ethtool; scripts/deps.sh does)", tool))
		}
	}
}

// skipOrFail skips the test with why, except under CI (CI=true), which
// runs as root with every tool installed and must not skip anything.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI must run every integration test, but: %s", why)
	}
	t.Skip(why)
}

// rootLinks lists the links of the root namespace as "index:name".
// TestMain runs on a thread that never left the root namespace.
func rootLinks() (map[string]bool, error) {
	links, err := netlinksafe.RetryDump(func() ([]netlink.Link, error) { return netlink.LinkList() })
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, l := range links {
		set[fmt.Sprintf("%d:%s", l.Attrs().Index, l.Attrs().Name)] = true
	}
	return set, nil
}

// leakCheck reports (and then removes) what the run left behind:
// namespaces with this run's prefix, processes carrying suiteRoot in their
// argv, and links that appeared in the root namespace.
func leakCheck(before map[string]bool) []string {
	var leaks []string
	for _, p := range suitePids() {
		leaks = append(leaks, fmt.Sprintf("process %d still alive: %s", p, cmdline(p)))
		syscall.Kill(p, syscall.SIGKILL)
	}
	for _, ns := range listNetns() {
		if strings.HasPrefix(ns, nsPrefix) {
			leaks = append(leaks, "namespace left behind: "+ns)
			removeNetnsByName(ns)
		}
	}
	after, err := rootLinks()
	if err != nil {
		leaks = append(leaks, fmt.Sprintf("list root links: %v", err))
	}
	var added []string
	for l := range after {
		if !before[l] {
			added = append(added, l)
		}
	}
	sort.Strings(added)
	for _, l := range added {
		leaks = append(leaks, "new link in the root namespace: "+l)
	}
	return leaks
}

// suitePids returns the live processes whose argv mentions suiteRoot.
func suitePids() []int {
	if suiteRoot == "" {
		return nil
	}
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 { // gone, or a zombie
			continue
		}
		if bytes.Contains(b, []byte(suiteRoot)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// listNetns lists the named network namespaces (/run/netns).
func listNetns() []string {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// sweepStale removes namespaces left by an earlier run of this suite whose
// process is gone (a run killed before its cleanups ran). Namespaces of a
// live run, and anyone else's, are left alone.
func sweepStale() {
	for _, ns := range listNetns() {
		m := staleNS.FindStringSubmatch(ns)
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "integration: removing stale namespace %s of dead run %s\n", ns, m[1])
		removeNetnsByName(ns)
	}
}

// removeNetnsByName kills every process inside the named namespace (all of
// them started by this suite: nothing else runs in it) and deletes it.
func removeNetnsByName(name string) error {
	for i := 0; i < 100; i++ {
		out, err := exec.Command("ip", "netns", "pids", name).Output()
		if err != nil {
			break
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, out)
	}
	return nil
}
