package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// fakeUnits is a systemd that records the calls made to it. The test sets
// its answers before vethctl runs; vethctl calls it from one goroutine.
type fakeUnits struct {
	loaded []unitStatus          // ListUnits answers these (filtered by pattern)
	files  []unitFile            // ListUnitFiles answers these
	unit   map[string]unitStatus // Unit answers; default below
	result map[string]string     // "Start vethd@x.service" → job result; default "done"; "hang": no end
	errs   map[string]error      // "Enable vethd@x.service" → error
	pids   map[uint32]string     // UnitByPID answers; "" if absent
	onCall func(call string)     // called with each call, with mu held, if set

	mu    sync.Mutex // guards calls
	calls []string   // "Enable vethd@veth1.service", "DaemonReload", …
}

var _ units = (*fakeUnits)(nil)

func (f *fakeUnits) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if f.onCall != nil {
		f.onCall(call)
	}
	return f.errs[call]
}

// mutating returns the calls that change something, in order.
func (f *fakeUnits) mutating() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "List") && !strings.HasPrefix(c, "Unit ") && !strings.HasPrefix(c, "UnitByPID ") {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeUnits) ListUnits(_ context.Context, patterns []string) ([]unitStatus, error) {
	if err := f.record("ListUnits"); err != nil {
		return nil, err
	}
	return matching(f.loaded, func(u unitStatus) string { return u.Name }, patterns), nil
}

func (f *fakeUnits) ListUnitFiles(_ context.Context, patterns []string) ([]unitFile, error) {
	if err := f.record("ListUnitFiles"); err != nil {
		return nil, err
	}
	return matching(f.files, func(u unitFile) string { return u.Name }, patterns), nil
}

// matching returns the items whose name matches one of the glob patterns.
func matching[T any](items []T, name func(T) string, patterns []string) []T {
	var out []T
	for _, u := range items {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, name(u)); ok {
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// Unit answers f.unit[name], else a loaded unit for the units in
// f.loaded, else what systemd says of an instance of an installed,
// disabled template (loaded, inactive, disabled), else not-found.
func (f *fakeUnits) Unit(_ context.Context, name string) (unitStatus, error) {
	if err := f.record("Unit " + name); err != nil {
		return unitStatus{}, err
	}
	if u, ok := f.unit[name]; ok {
		return u, nil
	}
	for _, u := range f.loaded {
		if u.Name == name {
			return u, nil
		}
	}
	if _, ok := instanceName(name); ok {
		return unitStatus{Name: name, LoadState: "loaded", ActiveState: "inactive", SubState: "dead", UnitFileState: "disabled"}, nil
	}
	return unitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}, nil
}

func (f *fakeUnits) Enable(_ context.Context, name string) ([]unitChange, error) {
	if err := f.record("Enable " + name); err != nil {
		return nil, err
	}
	return []unitChange{{Type: "symlink", Filename: "/etc/systemd/system/multi-user.target.wants/" + name,
		Destination: "/usr/lib/systemd/system/vethd@.service"}}, nil
}

func (f *fakeUnits) Disable(_ context.Context, name string) ([]unitChange, error) {
	if err := f.record("Disable " + name); err != nil {
		return nil, err
	}
	return []unitChange{{Type: "unlink", Filename: "/etc/systemd/system/multi-user.target.wants/" + name}}, nil
}

func (f *fakeUnits) DaemonReload(context.Context) error { return f.record("DaemonReload") }

// job records "Start vethd@x.service", with " --no-block" if it does
// not wait. A job whose result is "hang" never ends: waiting for it ends
// with ctx, as systemd.job does.
func (f *fakeUnits) job(ctx context.Context, op, name string, wait bool) (string, error) {
	call := op + " " + name
	if !wait {
		call += " --no-block"
	}
	if err := f.record(call); err != nil {
		return "", err
	}
	if !wait {
		return "", nil
	}
	switch r, ok := f.result[op+" "+name]; {
	case !ok:
		return "done", nil
	case r == "hang":
		<-ctx.Done()
		return "", fmt.Errorf("%s %s: %w", strings.ToLower(op), name, ctx.Err())
	default:
		return r, nil
	}
}

func (f *fakeUnits) Start(ctx context.Context, name string, wait bool) (string, error) {
	return f.job(ctx, "Start", name, wait)
}
func (f *fakeUnits) Stop(ctx context.Context, name string, wait bool) (string, error) {
	return f.job(ctx, "Stop", name, wait)
}
func (f *fakeUnits) ReloadUnit(ctx context.Context, name string, wait bool) (string, error) {
	return f.job(ctx, "ReloadUnit", name, wait)
}
func (f *fakeUnits) ResetFailed(_ context.Context, name string) error {
	return f.record("ResetFailed " + name)
}

func (f *fakeUnits) UnitByPID(_ context.Context, pid uint32) (string, error) {
	if err := f.record(fmt.Sprintf("UnitByPID %d", pid)); err != nil {
		return "", err
	}
	return f.pids[pid], nil
}

// fakeBridge is a bridge on a fakeBridges bus. Each Get returns the next
// of counters; the last one sticks.
type fakeBridge struct {
	status   dbusapi.Status
	counters []dbusapi.Counters
	gets     int
	describe string
	pid      uint32 // the process that owns its name; 0: the bus does not say
}

// fakeBridges is a bus with bridges on it. Tests may change it (set)
// while vethctl runs, from a hook.
type fakeBridges struct {
	mu      sync.Mutex // guards the fields below, and each fakeBridge's gets
	bridges map[string]*fakeBridge
	errs    map[string]error // "Reload veth1" → error
	calls   []string
}

var _ bridges = (*fakeBridges)(nil)

// record records call and returns its error from errs. f.mu must be held.
func (f *fakeBridges) record(call string) error {
	f.calls = append(f.calls, call)
	return f.errs[call]
}

// set puts b on the bus as name, or takes name off it if b is nil.
func (f *fakeBridges) set(name string, b *fakeBridge) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b == nil {
		delete(f.bridges, name)
	} else {
		f.bridges[name] = b
	}
}

// called reports whether call was made.
func (f *fakeBridges) called(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.calls, call)
}

func (f *fakeBridges) List(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("List"); err != nil {
		return nil, err
	}
	var names []string
	for n := range f.bridges {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// lookup records the call op on name and returns the bridge, or an error
// wrapping dbusapi.ErrNoSuchBridge. f.mu must be held.
func (f *fakeBridges) lookup(op, name string) (*fakeBridge, error) {
	if err := f.record(op + " " + name); err != nil {
		return nil, err
	}
	b, ok := f.bridges[name]
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", strings.ToLower(op), name, dbusapi.ErrNoSuchBridge)
	}
	return b, nil
}

func (f *fakeBridges) Get(_ context.Context, name string) (dbusapi.Status, dbusapi.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.lookup("Get", name)
	if err != nil {
		return dbusapi.Status{}, dbusapi.Counters{}, err
	}
	var c dbusapi.Counters
	if len(b.counters) > 0 {
		c = b.counters[min(b.gets, len(b.counters)-1)]
	}
	b.gets++
	return b.status, c, nil
}

func (f *fakeBridges) Reload(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.lookup("Reload", name)
	return err
}

func (f *fakeBridges) ResetCounters(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.lookup("ResetCounters", name)
	return err
}

func (f *fakeBridges) Describe(_ context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.lookup("Describe", name)
	if err != nil {
		return "", err
	}
	return b.describe, nil
}

func (f *fakeBridges) Owner(_ context.Context, name string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("Owner " + name); err != nil {
		return 0, err
	}
	if b, ok := f.bridges[name]; ok {
		return b.pid, nil
	}
	return 0, nil
}

// testMachineID gives the persistent MAC 22:43:60:c3:5b:4c to veth1.
const testMachineID = "3d1219c7c4c5404aaa1d2a6d2adfdaa4"

// t0 is the fake clock's start.
var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// harness runs vethctl against fakes, in a temporary configuration
// directory with a fixed machine ID.
type harness struct {
	t        *testing.T
	units    *fakeUnits
	bridges  *fakeBridges
	busErr   error // returned by openBridges instead of bridges
	dir      string
	midFile  string
	clock    time.Time
	terminal bool
	// sysClassNet is the /sys/class/net that "__complete parents" reads;
	// env the environment vethctl sees ($PAGER, …).
	sysClassNet string
	env         map[string]string
	sleepHook   func(ctx context.Context) error // called by sleep after the clock moved; may end watch
	stdout      bytes.Buffer
	stderr      bytes.Buffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		units:   &fakeUnits{},
		bridges: &fakeBridges{bridges: map[string]*fakeBridge{}},
		dir:     filepath.Join(t.TempDir(), "vethd"),
		midFile: filepath.Join(t.TempDir(), "machine-id"),
		clock:   t0,
	}
	if err := os.WriteFile(h.midFile, []byte(testMachineID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// writeConfig writes the file of bridge name.
func (h *harness) writeConfig(name, text string) string {
	h.t.Helper()
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	p := filepath.Join(h.dir, name+".conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// run runs vethctl with args after --config-dir and --machine-id-file and
// returns its exit code; stdout and stderr are in h.
func (h *harness) run(args ...string) int {
	h.t.Helper()
	h.stdout.Reset()
	h.stderr.Reset()
	a := &app{
		stdout: &h.stdout,
		stderr: &h.stderr,
		openUnits: func(context.Context) (units, error) {
			if h.busErr != nil {
				return nil, h.busErr
			}
			return h.units, nil
		},
		openBridges: func(context.Context) (bridges, error) {
			if h.busErr != nil {
				return nil, h.busErr
			}
			return h.bridges, nil
		},
		now: func() time.Time { return h.clock },
		sleep: func(ctx context.Context, d time.Duration) error {
			h.clock = h.clock.Add(d)
			if h.sleepHook != nil {
				return h.sleepHook(ctx)
			}
			return ctx.Err()
		},
		isTerminal:  h.terminal,
		sysClassNet: h.sysClassNet,
		lookupEnv: func(k string) (string, bool) {
			v, ok := h.env[k]
			return v, ok
		},
	}
	all := append([]string{"--config-dir", h.dir, "--machine-id-file", h.midFile}, args...)
	code := a.run(context.Background(), all)
	h.t.Logf("vethctl %s → %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), code, h.stdout.String(), h.stderr.String())
	return code
}

// mustRun runs vethctl and fails the test unless it exits with want.
func (h *harness) mustRun(want int, args ...string) {
	h.t.Helper()
	if got := h.run(args...); got != want {
		h.t.Fatalf("vethctl %s: exit %d, want %d; stderr: %s", strings.Join(args, " "), got, want, h.stderr.String())
	}
}

// running returns a bridge in state running.
func running(name, parent, mac string) *fakeBridge {
	return &fakeBridge{status: dbusapi.Status{
		Name: name, Parent: parent, IfIndex: 7, ParentIfIndex: 2, MACAddress: mac, MACPolicy: "persistent",
		MTU: 1500, State: "running", Carrier: true, ParentCarrier: true, Offloads: []string{"csum", "tso4"},
	}}
}
