package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// namePrefix starts every container's machine name:
	// vethd-e2e-<test binary's PID>-<n>.
	namePrefix = "vethd-e2e-"
	// bootTimeout bounds the wait for `systemctl is-system-running`.
	bootTimeout = 60 * time.Second
	// poweroffTimeout bounds the wait for nspawn to exit after poweroff.
	poweroffTimeout = 20 * time.Second
	// cmdTimeout bounds every command run in a container.
	cmdTimeout = 2 * time.Minute
	// propagateDir is where systemd-nspawn keeps a directory per machine.
	propagateDir = "/run/systemd/nspawn/propagate"
)

// containerEnv is the environment of commands run in a container: nothing
// of the test's own (NOTIFY_SOCKET, DBUS_*, a pager) leaks in.
var containerEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C.UTF-8",
	"TERM=dumb",
	"SYSTEMD_PAGER=cat",
	"SYSTEMD_COLORS=0",
	"PAGER=cat",
}

var (
	// suiteDir holds this run's files (the stage, the build, the /etc of
	// containers that reboot); set by TestMain when root.
	suiteDir string

	stageOnce sync.Once
	stageDir  string
	stageErr  error

	// containerSeq numbers the containers of this run.
	containerSeq atomic.Int32
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		// Every test skips (or, with CI=true, fails) itself with the reason.
		return m.Run()
	}
	sweepStale()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", namePrefix, os.Getpid()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	suiteDir = dir
	return m.Run()
}

// skipOrFail skips the test, or fails it when CI=true, where nothing may skip.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: failing instead of skipping)", msg)
	}
	t.Skip(msg)
}

// requireRoot skips (or fails under CI=true) unless the test runs as root on
// a machine with systemd-nspawn and the tools the harness uses.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: boots a systemd-nspawn container (sudo go test ./test/e2e)")
	}
	requireTools(t, "systemd-nspawn", "nsenter", "make")
}

// toolPackage names the Debian package of each tool the harness runs.
var toolPackage = map[string]string{
	"systemd-nspawn": "systemd-container",
	"nsenter":        "util-linux",
	"make":           "make",
	"ip":             "iproute2",
	"dnsmasq":        "dnsmasq-base",
	"dhclient":       "isc-dhcp-client",
	"busctl":         "systemd",
	"unshare":        "util-linux",
}

// requireTools skips (or fails under CI=true) when a tool is missing. The
// container runs this machine's /usr, so a tool here is a tool there.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s (Debian package %s; scripts/deps.sh installs it)", tool, toolPackage[tool])
		}
	}
}

// repoRoot finds the module root above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/vethd/vethd\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod of github.com/vethd/vethd not found above the working directory")
		}
		dir = parent
	}
}

// goCommand is the go command for make: on PATH, or where scripts/deps.sh
// expects it (sudo's PATH often lacks it).
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go"
	}
	return "go"
}

// stageInstall runs `make install DESTDIR=STAGE PREFIX=/usr` once per test
// binary and returns STAGE; the binaries are built outside the source tree.
// With VETHD_E2E_STAGE set it returns that directory instead.
func stageInstall(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	stageOnce.Do(func() {
		if p := os.Getenv("VETHD_E2E_STAGE"); p != "" {
			stageDir, stageErr = filepath.Abs(p)
			return
		}
		root, err := repoRoot()
		if err != nil {
			stageErr = err
			return
		}
		dir := filepath.Join(suiteDir, "stage")
		start := time.Now()
		cmd := exec.Command("make", "-C", root, "install",
			"DESTDIR="+dir, "PREFIX=/usr",
			"BUILDDIR="+filepath.Join(suiteDir, "bin"), "GO="+goCommand())
		// No VCS stamping: as root in a tree owned by someone else, git
		// refuses ("dubious ownership") and go build would fail.
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false "+os.Getenv("GOFLAGS"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			stageErr = fmt.Errorf("make install DESTDIR=%s PREFIX=/usr: %w\n%s", dir, err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: staged `make install` in %s (%.1fs)\n", dir, time.Since(start).Seconds())
		stageDir = dir
	})
	if stageErr != nil {
		t.Fatal(stageErr)
	}
	return stageDir
}

// EtcDir returns a new, empty directory of this run to be a container's
// /etc (BootOptions.Etc): the first Boot over it is a first boot, the next
// ones are reboots of the same machine.
func EtcDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(suiteDir, "etc-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Container is a booted systemd-nspawn container of this machine's OS with
// a staged install layered over its /usr. Its methods are for the test's own
// goroutine.
type Container struct {
	// Name is the machine name and the container's hostname.
	Name string

	nspawn  *exec.Cmd
	console *lockedBuffer // nspawn's output: the container's console
	done    chan struct{} // closed when nspawn has exited
	waitErr error         // nspawn's exit, valid after done

	pid   int    // the container's init, as seen from the host
	pidNS string // its PID namespace ("pid:[4026532181]")
	// layers are the host directories stacked over /usr or bound into it;
	// no host mount may name them once the container is gone.
	layers []string
	shut   bool     // shutdown ran
	leaks  []string // what shutdown found left behind (and reported)
}

// lockedBuffer is a bytes.Buffer for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BootOptions are BootWith's.
type BootOptions struct {
	// Etc, if set, is a host directory (EtcDir) bound as the container's
	// /etc instead of the tmpfs of --volatile=yes, so that the machine's
	// state (machine ID, enabled units, /etc/vethd) outlives a poweroff:
	// booting over it again is a reboot, not a first boot.
	Etc string
	// NetworkManager boots the container with NetworkManager's units as
	// this machine installed them (scripts/deps.sh installs Debian's
	// network-manager): the first boot's preset-all enables it and it
	// starts. Without it they are masked (nmUnits), so NetworkManager does
	// not take over the interfaces of tests that run dhclient or networkd.
	NetworkManager bool
	// Netns, if set, names a network namespace of the host (under
	// /run/netns) that systemd-nspawn runs in, as `ip netns exec NETNS
	// systemd-nspawn …` would run it (nspawnInNetns). The container still
	// gets a network namespace of its own; NetworkInterfaces are taken
	// from this one.
	Netns string
	// NetworkInterfaces are moved into the container at boot
	// (`--network-interface=IF` each, instead of `--private-network`,
	// which that implies), from nspawn's network namespace (Netns).
	NetworkInterfaces []string
}

// nmUnits are NetworkManager's units, masked on the container's kernel
// command line unless BootOptions.NetworkManager: a first boot's preset-all
// enables them (Debian's presets enable everything), and NetworkManager
// would then manage every Ethernet-like link the tests make.
var nmUnits = []string{
	"NetworkManager.service",
	"NetworkManager-wait-online.service",
	"NetworkManager-dispatcher.service",
	"nm-priv-helper.service",
}

// Boot starts a container with stage's usr/ over /usr, waits until its
// systemd reports running or degraded, and registers a cleanup that powers
// it off and checks that nothing is left behind. Its /etc is empty, so it
// boots as a first boot: systemd runs `systemctl preset-all`, with the
// presets the stage installed (vethd's own) and this machine's.
// NetworkManager, if this machine has it, is masked (BootOptions).
func Boot(t *testing.T, stage string) *Container {
	t.Helper()
	return BootWith(t, stage, BootOptions{})
}

// BootWith is Boot with options.
func BootWith(t *testing.T, stage string, o BootOptions) *Container {
	t.Helper()
	requireRoot(t)
	if fi, err := os.Stat(filepath.Join(stage, "usr")); err != nil || !fi.IsDir() {
		t.Fatalf("stage %s has no usr/ directory", stage)
	}
	c := &Container{
		Name:    fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), containerSeq.Add(1)),
		console: &lockedBuffer{},
		done:    make(chan struct{}),
		layers:  []string{stage},
	}
	args := []string{"-D", "/", "--volatile=yes"}
	if len(o.NetworkInterfaces) == 0 {
		args = append(args, "--private-network")
	}
	for _, ifname := range o.NetworkInterfaces {
		args = append(args, "--network-interface="+ifname)
	}
	// Neither CAP_BPF nor bpf() is in nspawn's defaults (its system call
	// filter leaves bpf out on purpose): the units grant both to vethd
	// for the kernel data path, and the container must pass them on, as a
	// host does.
	args = append(args, "--capability=CAP_BPF", "--system-call-filter=bpf")
	args = append(args, "--register=no", "--keep-unit", "-M", c.Name,
		"--overlay-ro=/usr:"+filepath.Join(stage, "usr")+":/usr")
	if o.Etc != "" {
		args = append(args, "--bind="+o.Etc+":/etc")
		c.layers = append(c.layers, o.Etc)
	}
	args = append(args, "-b", "systemd.mask=systemd-firstboot.service")
	if !o.NetworkManager {
		for _, u := range nmUnits {
			args = append(args, "systemd.mask="+u)
		}
	}
	var nspawn *exec.Cmd
	if o.Netns != "" {
		nspawn = nspawnInNetns(t, o.Netns, args)
	} else {
		nspawn = exec.Command("systemd-nspawn", args...)
	}
	state, took := c.start(t, nspawn)
	t.Logf("container %s (init PID %d) booted in %.1fs: %s", c.Name, c.pid, took.Seconds(), state)
	return c
}

// start boots c with nspawn, a systemd-nspawn command for c whose
// environment (nspawnEnv) and output (c's console) start sets. It starts
// nspawn, registers the cleanup that powers c off (shutdown), finds the
// container's init and waits until its systemd reports running or degraded;
// it returns that state and how long the boot took. If the container does
// not come up, it fails the test, with the console.
func (c *Container) start(t *testing.T, nspawn *exec.Cmd) (state string, took time.Duration) {
	t.Helper()
	c.nspawn = nspawn
	c.nspawn.Env = nspawnEnv()
	c.nspawn.Stdout = c.console
	c.nspawn.Stderr = c.console
	begin := time.Now()
	if err := c.nspawn.Start(); err != nil {
		t.Fatalf("start systemd-nspawn: %v", err)
	}
	go func() {
		c.waitErr = c.nspawn.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.shutdown(t) })

	if err := c.findInit(10 * time.Second); err != nil {
		t.Fatalf("container %s: %v\nconsole:\n%s", c.Name, err, c.console.String())
	}
	state, err := c.waitRunning(bootTimeout)
	if err != nil {
		t.Fatalf("container %s: %v\nconsole:\n%s", c.Name, err, c.console.String())
	}
	return state, time.Since(begin)
}

// nspawnInNetns is `systemd-nspawn ARGS` run in host network namespace
// netns, as `ip netns exec NETNS systemd-nspawn` would run it: in a mount
// namespace of its own with a sysfs of that network namespace on /sys (the
// one nspawn looks the interfaces up in), the host's /sys/fs/cgroup bound
// below it. That /sys is read-only: the namespace has no udevd (this
// machine runs none, and uevents of a namespace's links would not reach
// one in the host's namespace anyway), and a read-only /sys is how systemd
// (udev_available()) knows, so nspawn does not refuse an interface udev
// never initialized ("Network interface veth1 is not initialized yet").
// Every command execs the next one (no fork), so the process is nspawn.
func nspawnInNetns(t *testing.T, netns string, args []string) *exec.Cmd {
	t.Helper()
	requireTools(t, "unshare")
	cg, err := os.MkdirTemp(suiteDir, "cgroup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	const script = `set -e
mount --rbind /sys/fs/cgroup "$1"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount --rbind "$1" /sys/fs/cgroup
umount -l "$1"
shift
exec systemd-nspawn "$@"`
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + netns, "--",
		"unshare", "--mount", "--propagation", "slave", "--",
		"sh", "-c", script, "sh", cg}, args...)...)
}

// nspawnEnv is the test's environment without what would make nspawn talk
// to a service manager of the test's own.
func nspawnEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// exited reports whether nspawn has exited.
func (c *Container) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// findInit waits for nspawn's child that is PID 1 of a new PID namespace:
// the container's init. (nspawn's first child, in the host's PID namespace,
// only sets the container up.)
func (c *Container) findInit(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if c.exited() {
			return fmt.Errorf("systemd-nspawn exited: %v", c.waitErr)
		}
		for _, pid := range childrenOf(c.nspawn.Process.Pid) {
			if pidNSInit(pid) {
				ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
				if err != nil {
					continue
				}
				c.pid, c.pidNS = pid, ns
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no container init under systemd-nspawn (PID %d) after %v", c.nspawn.Process.Pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// childrenOf lists the children of every thread of pid.
func childrenOf(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var kids []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// pidNSInit reports whether pid is PID 1 of a PID namespace below ours
// ("NSpid:	7816	1").
func pidNSInit(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			return len(f) >= 2 && f[len(f)-1] == "1"
		}
	}
	return false
}

// waitRunning polls `systemctl is-system-running` until it says running or
// degraded.
func (c *Container) waitRunning(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var state string
	for {
		if c.exited() {
			return "", fmt.Errorf("systemd-nspawn exited during boot: %v", c.waitErr)
		}
		// Non-zero for anything but "running"; before the manager is up
		// it fails to connect and prints nothing useful.
		out, _ := c.RunErr("systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			return state, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not running after %v: systemctl is-system-running says %q", timeout, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// PID is the container's init as seen from the host.
func (c *Container) PID() int { return c.pid }

// Console is what the container printed on its console so far.
func (c *Container) Console() string { return c.console.String() }

// RunErr runs args in the container (nsenter -t PID -a) with a clean
// environment and returns its standard output. The error, if any, includes
// the command, both outputs and the *exec.ExitError.
func (c *Container) RunErr(args ...string) (string, error) {
	return c.run(nil, args...)
}

// Run is RunErr that fails the test, with both outputs, if the command fails.
func (c *Container) Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.RunErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// WriteFile writes content to path in the container (mode 0644), creating
// the directories above it.
func (c *Container) WriteFile(t *testing.T, path, content string) {
	t.Helper()
	_, err := c.run(strings.NewReader(content), "sh", "-c",
		`umask 022 && mkdir -p -- "$(dirname -- "$1")" && cat >"$1"`, "sh", path)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// ReloadBus makes the container's system bus re-read its policies, as after
// adding one under /usr/share/dbus-1/system.d.
func (c *Container) ReloadBus(t *testing.T) {
	t.Helper()
	requireTools(t, "busctl")
	c.Run(t, "busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ReloadConfig")
}

// DaemonReload makes the container's systemd re-read its units.
func (c *Container) DaemonReload(t *testing.T) {
	t.Helper()
	c.Run(t, "systemctl", "daemon-reload")
}

func (c *Container) run(stdin io.Reader, args ...string) (string, error) {
	cmdline := strings.Join(args, " ")
	if c.exited() {
		return "", fmt.Errorf("%s: container %s has shut down", cmdline, c.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.pid), "-a", "--"}, args...)...)
	cmd.Env = containerEnv
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A daemon started by the command (dhclient) may keep the output
	// pipes open: don't wait for it.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timed out after %v)", err, cmdTimeout)
		}
		return stdout.String(), fmt.Errorf("in container %s: %s: %w\nstdout:\n%s\nstderr:\n%s",
			c.Name, cmdline, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// shutdown powers the container off (killing it after poweroffTimeout) and
// checks that nothing of it is left in the host.
func (c *Container) shutdown(t *testing.T) {
	t.Helper()
	if c.shut {
		return
	}
	c.shut = true
	if t.Failed() && c.pid != 0 && !c.exited() {
		if out, err := c.RunErr("systemctl", "--failed", "--no-legend"); err == nil && out != "" {
			t.Logf("container %s: failed units:\n%s", c.Name, out)
		}
		if out, err := c.RunErr("journalctl", "-b", "--no-pager", "-n", "200"); err == nil {
			t.Logf("container %s: journal (last 200 lines):\n%s", c.Name, out)
		}
	}
	start := time.Now()
	clean := false
	if c.pid != 0 && !c.exited() {
		if _, err := c.RunErr("systemctl", "poweroff"); err != nil {
			t.Logf("container %s: %v", c.Name, err)
		}
		select {
		case <-c.done:
			clean = true
		case <-time.After(poweroffTimeout):
			t.Errorf("container %s: not powered off after %v; killing it", c.Name, poweroffTimeout)
		}
	}
	if clean {
		t.Logf("container %s powered off in %.1fs", c.Name, time.Since(start).Seconds())
		if c.waitErr != nil {
			t.Logf("container %s: systemd-nspawn: %v", c.Name, c.waitErr)
		}
	} else {
		c.kill()
	}
	for _, leak := range c.leftovers(clean) {
		c.leaks = append(c.leaks, leak)
		t.Error(leak)
	}
}

// Poweroff powers the container off now, as its cleanup would, and checks
// that nothing is left (to boot it again: BootOptions.Etc).
func (c *Container) Poweroff(t *testing.T) {
	t.Helper()
	c.shutdown(t)
	if !c.exited() {
		t.Fatalf("container %s did not power off", c.Name)
	}
}

// kill ends the container by force: SIGKILL to its init takes its whole PID
// namespace down (SIGKILL to nspawn alone would leave the container
// running), then to nspawn.
func (c *Container) kill() {
	if c.pid != 0 && c.pidNS != "" {
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.pid)); ns == c.pidNS {
			syscall.Kill(c.pid, syscall.SIGKILL)
		}
	}
	select {
	case <-c.done:
		return
	case <-time.After(5 * time.Second):
	}
	c.nspawn.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

// leftovers lists (and removes) what the container left in the host: nspawn
// itself, processes in its PID namespace, its propagation directory, mounts
// of the staged tree, network namespaces named like those made inside it.
func (c *Container) leftovers(clean bool) []string {
	var leaks []string
	if !c.exited() {
		leaks = append(leaks, fmt.Sprintf("container %s: systemd-nspawn (PID %d) still running", c.Name, c.nspawn.Process.Pid))
	}
	if c.pidNS != "" {
		deadline := time.Now().Add(2 * time.Second)
		for {
			pids := pidsInNS(c.pidNS)
			if len(pids) == 0 {
				break
			}
			if time.Now().After(deadline) {
				leaks = append(leaks, fmt.Sprintf("container %s: processes left in its PID namespace: %v", c.Name, pids))
				for _, p := range pids {
					syscall.Kill(p, syscall.SIGKILL)
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// nspawn removes it on a clean exit, not when killed.
	dir := filepath.Join(propagateDir, c.Name)
	if _, err := os.Stat(dir); err == nil {
		if clean {
			leaks = append(leaks, fmt.Sprintf("container %s: %s left behind", c.Name, dir))
		}
		os.Remove(dir)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			for _, l := range c.layers {
				if strings.Contains(line, l) {
					leaks = append(leaks, fmt.Sprintf("container %s: host mount of %s: %s", c.Name, l, line))
				}
			}
		}
	}
	for _, ns := range containerNetns {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			leaks = append(leaks, fmt.Sprintf("container %s: network namespace %q in the host", c.Name, ns))
		}
	}
	return leaks
}

// pidsInNS lists the host PIDs of the processes in PID namespace ns.
func pidsInNS(ns string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sweepStale removes what earlier runs left when their test binary died
// (killed by -timeout, say): containers, whose nspawn still runs with a
// machine name vethd-e2e-<dead PID>-<n>, then suite directories.
func sweepStale() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(argv[0]) != "systemd-nspawn" {
			continue
		}
		name := ""
		for i := 0; i+1 < len(argv); i++ {
			if argv[i] == "-M" && strings.HasPrefix(argv[i+1], namePrefix) {
				name = argv[i+1]
			}
		}
		if name == "" {
			continue
		}
		if _, dead := deadOwner(name); !dead {
			continue
		}
		fmt.Fprintf(os.Stderr, "e2e: removing stale container %s (systemd-nspawn PID %d)\n", name, pid)
		for _, kid := range childrenOf(pid) {
			if pidNSInit(kid) {
				syscall.Kill(kid, syscall.SIGKILL)
			}
		}
		time.Sleep(500 * time.Millisecond)
		syscall.Kill(pid, syscall.SIGKILL)
		os.Remove(filepath.Join(propagateDir, name))
	}
	sweepStaleNetns()
	// The suite directories of dead runs: vethd-e2e-<PID>-<random>.
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), namePrefix+"*"))
	for _, d := range dirs {
		if o, ok := deadOwner(filepath.Base(d)); ok {
			fmt.Fprintf(os.Stderr, "e2e: removing %s of dead run %d\n", d, o)
			os.RemoveAll(d)
		}
	}
}

// deadOwner parses vethd-e2e-<PID>-… and reports whether that test binary
// is gone.
func deadOwner(name string) (int, bool) {
	owner, _, _ := strings.Cut(strings.TrimPrefix(name, namePrefix), "-")
	o, err := strconv.Atoi(owner)
	if err != nil || o == os.Getpid() || syscall.Kill(o, 0) == nil {
		return 0, false
	}
	return o, true
}

// LAN addresses: the container's eth0 is on this subnet, with dnsmasq
// serving DHCP from the far end.
var (
	lanPrefix = netip.MustParsePrefix("198.18.50.0/24")
	lanRouter = netip.MustParseAddr("198.18.50.1")
)

// lanNetns is the network namespace (inside the container) holding the LAN
// side; containerNetns lists every name the harness creates, so a host
// namespace of that name means one escaped.
const lanNetns = "lan"

var containerNetns = []string{lanNetns}

// LAN is a DHCP-served Ethernet segment inside a container: network
// namespace "lan" with lan0 (198.18.50.1/24) and dnsmasq, wired by a veth
// pair to "eth0" in the container's own network namespace.
type LAN struct {
	c *Container
	// Netns is the LAN side's network namespace in the container
	// (/run/netns/lan): `ip netns exec lan …`, `ip -n lan …`.
	Netns string
	// Parent is the container's end of the wire, the parent NIC for vethd.
	Parent string
	// Prefix is the LAN's subnet; Router is lan0's address and the DHCP
	// server; leases are .100–.150.
	Prefix netip.Prefix
	Router netip.Addr
	// LeaseFile is dnsmasq's lease file in the container.
	LeaseFile string
	// Unit is dnsmasq's transient systemd unit in the container.
	Unit string
}

// LAN builds the container's LAN: netns "lan" with lan0 198.18.50.1/24 and
// dnsmasq serving DHCP (198.18.50.100–150), and eth0, up, in the container's
// own network namespace. The container has a private network, so this eth0
// is its own, not the host's. It goes away with the container.
func (c *Container) LAN(t *testing.T) *LAN {
	t.Helper()
	requireTools(t, "ip", "dnsmasq")
	dnsmasq, _ := exec.LookPath("dnsmasq")
	l := &LAN{
		c:         c,
		Netns:     lanNetns,
		Parent:    "eth0",
		Prefix:    lanPrefix,
		Router:    lanRouter,
		LeaseFile: "/run/e2e-lan-dnsmasq.leases",
		Unit:      "e2e-lan-dnsmasq.service",
	}
	router := netip.PrefixFrom(l.Router, l.Prefix.Bits()).String()
	c.Run(t, "ip", "netns", "add", l.Netns)
	c.Run(t, "ip", "link", "add", l.Parent, "type", "veth", "peer", "name", "lan0", "netns", l.Netns)
	c.Run(t, "ip", "-n", l.Netns, "addr", "add", router, "dev", "lan0")
	c.Run(t, "ip", "-n", l.Netns, "link", "set", "lo", "up")
	c.Run(t, "ip", "-n", l.Netns, "link", "set", "lan0", "up")
	c.Run(t, "ip", "link", "set", l.Parent, "up")
	// A transient unit in the container's systemd: in its journal, and
	// stopped at poweroff. Type=forking: dnsmasq forks once its sockets
	// are bound, so systemd-run returns when it serves.
	pidFile := "/run/e2e-lan-dnsmasq.pid"
	c.Run(t, "systemd-run", "--quiet", "--unit="+l.Unit, "--service-type=forking",
		"-p", "PIDFile="+pidFile,
		"-p", "NetworkNamespacePath=/run/netns/"+l.Netns,
		dnsmasq,
		"--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
		"--user=root", "--group=root",
		"--bind-dynamic", "--interface=lan0", "--except-interface=lo",
		"--dhcp-range="+lanAddr(100).String()+","+lanAddr(150).String()+",255.255.255.0,1h",
		"--dhcp-authoritative", "--no-ping", "--log-dhcp",
		"--dhcp-leasefile="+l.LeaseFile, "--pid-file="+pidFile)
	return l
}

// lanAddr is 198.18.50.host.
func lanAddr(host byte) netip.Addr {
	a := lanPrefix.Addr().As4()
	a[3] = host
	return netip.AddrFrom4(a)
}

// Leases returns dnsmasq's lease file ("expiry MAC IP hostname client-id"
// per line).
func (l *LAN) Leases(t *testing.T) string {
	t.Helper()
	return l.c.Run(t, "cat", l.LeaseFile)
}

// DHCP runs `dhclient -1` on ifname in the container (its own lease and pid
// files under /run) and returns the IPv4 address it got. The dhclient stays
// to renew; it is stopped at the end of the test.
func (c *Container) DHCP(t *testing.T, ifname string) netip.Prefix {
	t.Helper()
	requireTools(t, "dhclient")
	leases := "/run/e2e-dhclient-" + ifname + ".leases"
	pidFile := "/run/e2e-dhclient-" + ifname + ".pid"
	c.Run(t, "dhclient", "-v", "-1", "-lf", leases, "-pf", pidFile, ifname)
	t.Cleanup(func() {
		if !c.exited() {
			c.RunErr("dhclient", "-x", "-lf", leases, "-pf", pidFile, ifname)
		}
	})
	addrs := c.Addrs4(t, ifname)
	if len(addrs) == 0 {
		t.Fatalf("dhclient on %s: bound, but %s has no IPv4 address", ifname, ifname)
	}
	return addrs[0]
}

// Addrs4 lists ifname's IPv4 addresses in the container.
func (c *Container) Addrs4(t *testing.T, ifname string) []netip.Prefix {
	t.Helper()
	out := c.Run(t, "ip", "-j", "-4", "addr", "show", "dev", ifname)
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("ip -j addr show dev %s: %v\n%s", ifname, err, out)
	}
	var addrs []netip.Prefix
	for _, l := range links {
		for _, a := range l.AddrInfo {
			addr, err := netip.ParseAddr(a.Local)
			if err != nil {
				t.Fatalf("ip -j addr show dev %s: address %q: %v", ifname, a.Local, err)
			}
			addrs = append(addrs, netip.PrefixFrom(addr, a.PrefixLen))
		}
	}
	return addrs
}

// stagedFiles are what `make install PREFIX=/usr` puts where the container
// must see it.
var stagedFiles = []string{
	"/usr/sbin/vethd",
	"/usr/bin/vethctl",
	"/usr/lib/systemd/system/vethd@.service",
	"/usr/lib/systemd/system/vethd.service",
	"/usr/lib/systemd/system-preset/80-vethd.preset",
	"/usr/share/dbus-1/system.d/io.github.vethd.Bridge1.conf",
	"/usr/lib/sysusers.d/vethd.conf",
}

// presetAllLine is what systemd says at a first boot once it ran
// `systemctl preset-all` (enable-only, into the empty /etc).
const presetAllLine = "Populated /etc with preset unit settings."

// TestE2EBoot boots a container over the staged install and checks the
// harness itself: the system runs, the installed files are the staged ones,
// the units load, and the LAN hands out a DHCP lease to the container's
// eth0. And the shipped preset: the first boot ran `systemctl preset-all`,
// which left vethd.service (and every vethd@NAME.service) disabled and
// inactive, as docs/design.md (Coexistence) says, and `systemctl preset`
// keeps them so.
func TestE2EBoot(t *testing.T) {
	stage := stageInstall(t)
	c := Boot(t, stage)

	state, _ := c.RunErr("systemctl", "is-system-running")
	switch state = strings.TrimSpace(state); state {
	case "running":
	case "degraded":
		// Units of this machine that cannot work in a container with an
		// empty /etc (a service whose user a package postinst created);
		// not ours, checked below.
		out, _ := c.RunErr("systemctl", "--failed", "--no-legend", "--plain")
		t.Logf("system degraded; failed units:\n%s", out)
	default:
		t.Fatalf("systemctl is-system-running: %q", state)
	}

	for _, f := range stagedFiles {
		host, err := os.ReadFile(filepath.Join(stage, f))
		if err != nil {
			t.Logf("not staged (yet), not checked: %s", f)
			continue
		}
		sum := strings.Fields(c.Run(t, "sha256sum", f))
		if len(sum) == 0 || sum[0] != fmt.Sprintf("%x", sha256.Sum256(host)) {
			t.Errorf("%s in the container is not the staged file", f)
		}
	}
	if _, err := os.Stat(filepath.Join(stage, "usr/lib/systemd/system/vethd@.service")); err == nil {
		for _, u := range []string{"vethd@veth1.service", "vethd.service"} {
			load := strings.TrimSpace(c.Run(t, "systemctl", "show", "-P", "LoadState", u))
			if load != "loaded" {
				t.Errorf("%s: LoadState=%s", u, load)
			}
			start := strings.TrimSpace(c.Run(t, "systemctl", "show", "-P", "ExecStart", u))
			if !strings.Contains(start, "path=/usr/sbin/vethd ") {
				t.Errorf("%s: ExecStart=%s, want /usr/sbin/vethd", u, start)
			}
			// 80-vethd.preset wins over the first boot's preset-all.
			if en, _ := c.RunErr("systemctl", "is-enabled", u); strings.TrimSpace(en) != "disabled" {
				t.Errorf("%s is %s after the first boot, want disabled", u, strings.TrimSpace(en))
			}
			if act, _ := c.RunErr("systemctl", "is-active", u); strings.TrimSpace(act) != "inactive" {
				t.Errorf("%s is %s at boot, want inactive", u, strings.TrimSpace(act))
			}
		}
		// Said before journald runs: on the console.
		if !strings.Contains(c.Console(), presetAllLine) {
			t.Errorf("the first boot did not run preset-all (the console lacks %q):\n%s", presetAllLine, c.Console())
		}
		if out := c.Run(t, "systemctl", "list-unit-files", "--no-legend", "--no-pager", "vethd.service"); !strings.Contains(out, "disabled") || strings.Count(out, "disabled") != 2 {
			t.Errorf("list-unit-files vethd.service: %q, want state and preset disabled", out)
		}
		c.Run(t, "systemctl", "preset", "vethd.service")
		if en, _ := c.RunErr("systemctl", "is-enabled", "vethd.service"); strings.TrimSpace(en) != "disabled" {
			t.Errorf("systemctl preset vethd.service made it %s", strings.TrimSpace(en))
		}
		// preset-all (full: enable and disable) keeps vethd.service
		// disabled and leaves an instance the admin enabled alone.
		c.Run(t, "systemctl", "enable", "vethd@veth9.service")
		c.Run(t, "systemctl", "preset-all")
		for u, want := range map[string]string{"vethd.service": "disabled", "vethd@veth9.service": "enabled"} {
			if en, _ := c.RunErr("systemctl", "is-enabled", u); strings.TrimSpace(en) != want {
				t.Errorf("after systemctl preset-all %s is %s, want %s", u, strings.TrimSpace(en), want)
			}
		}
		c.Run(t, "systemctl", "disable", "vethd@veth9.service")
		if out, err := c.RunErr("systemd-analyze", "verify", "--man=no", "vethd@veth1.service", "vethd.service"); err != nil {
			t.Errorf("systemd-analyze verify: %v", err)
		} else if out != "" {
			t.Logf("systemd-analyze verify:\n%s", out)
		}
	}
	c.ReloadBus(t)

	lan := c.LAN(t)
	got := c.DHCP(t, lan.Parent)
	if !lan.Prefix.Contains(got.Addr()) || got.Bits() != lan.Prefix.Bits() {
		t.Fatalf("%s got %v, want an address in %v", lan.Parent, got, lan.Prefix)
	}
	mac := strings.TrimSpace(c.Run(t, "cat", "/sys/class/net/"+lan.Parent+"/address"))
	if leases := lan.Leases(t); !strings.Contains(leases, mac+" "+got.Addr().String()+" ") {
		t.Errorf("dnsmasq has no lease of %s for %s:\n%s", got.Addr(), mac, leases)
	}
	t.Logf("%s (%s) leased %v from dnsmasq on %s", lan.Parent, mac, got, lan.Router)
}
