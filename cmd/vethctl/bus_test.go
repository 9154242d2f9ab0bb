package main

// These tests run vethctl's real bus code (openSystemd with go-systemd,
// openBridges with dbusapi.Client) against a private dbus-daemon on which a
// fake systemd manager and a real dbusapi.Export object for a fake bridge
// are exported.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// startBus starts a private dbus-daemon on which anyone may own and call
// anything, points $DBUS_SYSTEM_BUS_ADDRESS at it and returns it.
func startBus(t *testing.T) *dbustest.Bus {
	t.Helper()
	bus := dbustest.StartOpen(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	return bus
}

const (
	sdName    = "org.freedesktop.systemd1"
	sdPath    = dbus.ObjectPath("/org/freedesktop/systemd1")
	sdManager = "org.freedesktop.systemd1.Manager"
)

// sdUnit is a unit as ListUnits returns it (a(ssssssouso)).
type sdUnit struct {
	Name, Description, LoadState, ActiveState, SubState, Followed string
	Path                                                          dbus.ObjectPath
	JobID                                                         uint32
	JobType                                                       string
	JobPath                                                       dbus.ObjectPath
}

// sdChange is a(sss) of EnableUnitFiles and DisableUnitFiles.
type sdChange struct{ Type, Filename, Destination string }

// fakeManager is enough of org.freedesktop.systemd1.Manager for vethctl.
// Its methods run on godbus's handler goroutines; the test reads and
// changes the units under mu.
type fakeManager struct {
	conn *dbus.Conn

	mu     sync.Mutex         // guards the fields below
	units  map[string]*sdUnit // by name
	result map[string]string  // job result by unit; default done; "never": the job never ends
	calls  []string
	jobs   uint32
}

// takeCalls returns the calls recorded so far and forgets them.
func (m *fakeManager) takeCalls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls
	m.calls = nil
	return c
}

func (m *fakeManager) record(call string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, call)
}

func (m *fakeManager) ListUnitsByPatterns(states, patterns []string) ([]sdUnit, *dbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []sdUnit
	for _, u := range m.units {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, u.Name); ok && u.LoadState == "loaded" {
				v := *u
				v.Path = dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + dbusapi.EscapeLabel(u.Name))
				v.JobPath = "/"
				out = append(out, v)
				break
			}
		}
	}
	return out, nil
}

func (m *fakeManager) ListUnitFilesByPatterns(states, patterns []string) ([]struct{ Path, State string }, *dbus.Error) {
	return []struct{ Path, State string }{{"/usr/lib/systemd/system/vethd@.service", "indirect"}}, nil
}

func (m *fakeManager) EnableUnitFiles(files []string, runtime, force bool) (bool, []sdChange, *dbus.Error) {
	m.record("EnableUnitFiles " + strings.Join(files, ","))
	var out []sdChange
	for _, f := range files {
		out = append(out, sdChange{"symlink", "/etc/systemd/system/multi-user.target.wants/" + f, "/usr/lib/systemd/system/vethd@.service"})
	}
	return true, out, nil
}

func (m *fakeManager) DisableUnitFiles(files []string, runtime bool) ([]sdChange, *dbus.Error) {
	m.record("DisableUnitFiles " + strings.Join(files, ","))
	var out []sdChange
	for _, f := range files {
		out = append(out, sdChange{"unlink", "/etc/systemd/system/multi-user.target.wants/" + f, ""})
	}
	return out, nil
}

func (m *fakeManager) Reload() *dbus.Error {
	m.record("Reload")
	return nil
}

func (m *fakeManager) ResetFailedUnit(name string) *dbus.Error {
	m.record("ResetFailedUnit " + name)
	return nil
}

// job queues a job that ends a little later with the unit's result,
// signalled by JobRemoved as systemd does.
func (m *fakeManager) job(op, name, mode string) (dbus.ObjectPath, *dbus.Error) {
	m.mu.Lock()
	m.calls = append(m.calls, op+" "+name+" "+mode)
	m.jobs++
	id := m.jobs
	result, ok := m.result[name]
	if !ok {
		result = "done"
	}
	if u := m.units[name]; u != nil && result == "done" {
		switch op {
		case "StartUnit":
			u.ActiveState, u.SubState = "active", "running"
		case "StopUnit":
			u.ActiveState, u.SubState = "inactive", "dead"
		}
	}
	m.mu.Unlock()
	path := dbus.ObjectPath("/org/freedesktop/systemd1/job/" + strings.Repeat("1", int(id)))
	if result == "never" {
		return path, nil
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		_ = m.conn.Emit(sdPath, sdManager+".JobRemoved", id, path, name, result)
	}()
	return path, nil
}

func (m *fakeManager) StartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("StartUnit", name, mode)
}

func (m *fakeManager) StopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("StopUnit", name, mode)
}

func (m *fakeManager) ReloadUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("ReloadUnit", name, mode)
}

// unitProps is org.freedesktop.DBus.Properties of one unit object (GetAll
// only: what go-systemd asks).
type unitProps struct {
	m    *fakeManager
	name string
}

func (p unitProps) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	u := p.m.units[p.name]
	if u == nil {
		u = &sdUnit{Name: p.name, LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
	}
	switch iface {
	case "org.freedesktop.systemd1.Unit":
		return map[string]dbus.Variant{
			"Id": dbus.MakeVariant(u.Name), "LoadState": dbus.MakeVariant(u.LoadState),
			"ActiveState": dbus.MakeVariant(u.ActiveState), "SubState": dbus.MakeVariant(u.SubState),
			"UnitFileState":        dbus.MakeVariant("enabled"),
			"ActiveEnterTimestamp": dbus.MakeVariant(uint64(1_700_000_000_000_000)),
		}, nil
	case "org.freedesktop.systemd1.Service":
		return map[string]dbus.Variant{
			"MainPID": dbus.MakeVariant(uint32(4242)), "Result": dbus.MakeVariant("success"),
			"StatusText": dbus.MakeVariant(u.Name + " is fine"),
		}, nil
	}
	return nil, dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{iface})
}

// exportUnit makes the unit's object answer property reads.
func (m *fakeManager) exportUnit(t *testing.T, name string) {
	t.Helper()
	path := dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + dbusapi.EscapeLabel(name))
	if err := m.conn.Export(unitProps{m: m, name: name}, path, "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
}

// testBridge is a dbusapi.Bridge whose calls are counted. Its methods
// run on godbus's handler goroutines.
type testBridge struct {
	describe string // what Describe returns; read-only

	mu        sync.Mutex // guards the fields below
	st        dbusapi.Status
	rx        uint64
	resets    int
	reloads   int
	reloadErr error // what Reload returns
}

var _ dbusapi.Bridge = (*testBridge)(nil)

func (b *testBridge) Status() dbusapi.Status { b.mu.Lock(); defer b.mu.Unlock(); return b.st }
func (b *testBridge) Counters() dbusapi.Counters {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rx += 1000 // each reading 1000 more packets, 2 more RX and 1 more TX super-frames split
	return dbusapi.Counters{RxPackets: b.rx, RxBytes: b.rx * 100, RxSplit: b.rx / 500, TxSplit: b.rx / 1000,
		RxDrops: map[string]uint64{"runt": 1}, TxDrops: map[string]uint64{}}
}
func (b *testBridge) Reload() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reloads++
	return b.reloadErr
}
func (b *testBridge) ResetCounters()   { b.mu.Lock(); defer b.mu.Unlock(); b.resets++; b.rx = 0 }
func (b *testBridge) Describe() string { return b.describe }

func TestBus(t *testing.T) {
	conn := startBus(t).Conn(t)

	m := &fakeManager{conn: conn, units: map[string]*sdUnit{
		"vethd@veth1.service": {Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active", SubState: "running"},
		"vethd@veth3.service": {Name: "vethd@veth3.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
	}, result: map[string]string{"vethd@veth3.service": "failed"}}
	if err := conn.Export(m, sdPath, sdManager); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"vethd@veth1.service", "vethd@veth2.service", "vethd@veth3.service", "vethd.service"} {
		m.exportUnit(t, u)
	}
	m.units["vethd.service"] = &sdUnit{Name: "vethd.service", LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
	if r, err := conn.RequestName(sdName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName %s: %v %v", sdName, r, err)
	}

	br := &testBridge{st: dbusapi.Status{Name: "veth1", Parent: "eth0", IfIndex: 5, MACAddress: "22:43:60:c3:5b:4c",
		MACPolicy: "persistent", MTU: 1500, State: "running", Carrier: true},
		describe: `{"version":"test","pid":1,"config":{"parent":"eth0"}}`}
	srv, err := dbusapi.Export(conn, br)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	h := newHarness(t)
	h.writeConfig("veth1", eth0Config)
	run := func(want int, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		a := &app{stdout: &stdout, stderr: &stderr, openUnits: openSystemd, openBridges: openBridges,
			now: time.Now, sleep: sleepCtx}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		all := append([]string{"--config-dir", h.dir, "--machine-id-file", h.midFile}, args...)
		got := a.run(ctx, all)
		h.stdout, h.stderr = stdout, stderr
		t.Logf("vethctl %s → %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), got, stdout.String(), stderr.String())
		if got != want {
			t.Fatalf("vethctl %s: exit %d, want %d", strings.Join(args, " "), got, want)
		}
	}

	run(0, "list", "--no-legend")
	if got, want := h.stdout.String(), "veth1 vethd@veth1.service running  eth0 22:43:60:c3:5b:4c on\n"+
		"veth3 vethd@veth3.service inactive -    -                 -\n"; got != want {
		t.Errorf("list: %q, want %q", got, want)
	}

	run(0, "add", "veth2", "--parent", "eth0", "--now")
	want := []string{"EnableUnitFiles vethd@veth2.service", "Reload", "StartUnit vethd@veth2.service replace"}
	if got := m.takeCalls(); !slices.Equal(got, want) {
		t.Errorf("systemd calls %q, want %q", got, want)
	}

	run(1, "add", "veth3", "--parent", "eth0", "--now")
	if !strings.Contains(h.stderr.String(), "job result: failed") || !strings.Contains(h.stderr.String(), "journalctl -u vethd@veth3") {
		t.Errorf("stderr: %q", h.stderr.String())
	}

	m.mu.Lock()
	m.units["vethd@veth2.service"] = &sdUnit{Name: "vethd@veth2.service", LoadState: "loaded", ActiveState: "active", SubState: "running"}
	m.mu.Unlock()
	m.takeCalls()
	run(0, "remove", "veth2")
	want = []string{"StopUnit vethd@veth2.service replace", "DisableUnitFiles vethd@veth2.service", "Reload"}
	if got := m.takeCalls(); !slices.Equal(got, want) {
		t.Errorf("systemd calls %q, want %q", got, want)
	}

	run(0, "show", "veth1")
	for _, s := range []string{"Main PID: 4242", "Status: vethd@veth1.service is fine", "Unit State: active (running) since "} {
		if !strings.Contains(h.stdout.String(), s) {
			t.Errorf("show lacks %q", s)
		}
	}
	// The split counters come over the bus (one reading: RX 2 and TX 1 per
	// 1000 packets).
	if m := regexp.MustCompile(`RX: (\d+)000 packets, .* \(0 coalesced, (\d+) split\)\n.*\n *TX: 0 packets, 0 B \((\d+) split\)\n`).
		FindStringSubmatch(h.stdout.String()); m == nil || m[2] != fmt.Sprint(2*atoi(t, m[1])) || m[3] != m[1] {
		t.Errorf("show: RX and TX split not as read (%q):\n%s", m, h.stdout.String())
	}
	run(0, "show", "veth1", "--json")
	var doc map[string]any
	if err := json.Unmarshal(h.stdout.Bytes(), &doc); err != nil || doc["version"] != "test" || doc["unit"] == nil {
		t.Errorf("show --json: %v %v", doc, err)
	}

	run(0, "stats", "veth1", "--interval", "50ms", "--json")
	var rs []statsRow
	if err := json.Unmarshal(h.stdout.Bytes(), &rs); err != nil || len(rs) != 1 || rs[0].Rates == nil || rs[0].Rates.RxPackets <= 0 {
		t.Fatalf("stats: %+v %v", rs, err)
	}
	if r := rs[0]; r.RxSplit != r.RxPackets/500 || r.TxSplit != r.RxPackets/1000 || r.TxSplit == 0 ||
		r.Rates.RxSplit <= 0 || r.Rates.TxSplit <= 0 {
		t.Errorf("stats: split %d/%d of %d packets, rates %+v", r.RxSplit, r.TxSplit, r.RxPackets, *r.Rates)
	}

	run(0, "metrics")
	m1 := regexp.MustCompile(`(?m)^vethd_rx_split_total\{bridge="veth1"\} (\d+)$`).FindStringSubmatch(h.stdout.String())
	m2 := regexp.MustCompile(`(?m)^vethd_tx_split_total\{bridge="veth1"\} (\d+)$`).FindStringSubmatch(h.stdout.String())
	if m1 == nil || m2 == nil || atoi(t, m2[1]) == 0 || atoi(t, m1[1]) != 2*atoi(t, m2[1]) {
		t.Errorf("metrics: split samples %q %q:\n%s", m1, m2, h.stdout.String())
	}

	m.takeCalls()
	if os.Geteuid() != 0 {
		// vethd checks the caller's uid: only root may reload or reset.
		run(77, "reload", "veth1")
		run(77, "reset", "veth1")
	} else {
		// On the bus, vethd itself reloads, and says whether it could.
		run(0, "reload", "veth1")
		if got := m.takeCalls(); len(got) != 0 {
			t.Errorf("reload: systemd calls %q", got)
		}
		br.mu.Lock()
		br.reloadErr = errors.New("set veth1 mtu: invalid argument")
		br.mu.Unlock()
		run(1, "reload", "veth1")
		if got, want := h.stderr.String(), "vethctl: reload veth1: reload failed: set veth1 mtu: invalid argument\n"; got != want {
			t.Errorf("reload: stderr %q, want %q", got, want)
		}
		br.mu.Lock()
		if br.reloads != 2 {
			t.Errorf("%d reloads, want 2", br.reloads)
		}
		br.mu.Unlock()

		run(0, "reset", "veth1")
		br.mu.Lock()
		if br.resets != 1 {
			t.Errorf("%d resets", br.resets)
		}
		br.mu.Unlock()
	}
	run(4, "reset", "veth9")

	// A job that never ends: --no-block does not wait, --timeout gives up.
	m.mu.Lock()
	m.units["vethd@veth4.service"] = &sdUnit{Name: "vethd@veth4.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
	m.result["vethd@veth4.service"] = "never"
	m.mu.Unlock()
	m.exportUnit(t, "vethd@veth4.service")
	m.takeCalls()
	run(0, "add", "veth4", "--parent", "eth0", "--now", "--no-block")
	if got := m.takeCalls(); !slices.Equal(got, []string{"EnableUnitFiles vethd@veth4.service", "Reload", "StartUnit vethd@veth4.service replace"}) {
		t.Errorf("add --no-block: calls %q", got)
	}
	m.mu.Lock()
	m.units["vethd@veth4.service"].ActiveState = "inactive"
	m.mu.Unlock()
	start := time.Now()
	run(1, "add", "veth4", "--parent", "eth0", "--now", "--force", "--timeout", "200ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("add --timeout 200ms took %v", d)
	}
	if !strings.Contains(h.stderr.String(), "the start job of vethd@veth4.service did not end within 200ms (--timeout)") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// slowBridge is a bridge object whose Reload answers after a while.
type slowBridge struct{ delay time.Duration }

func (b slowBridge) Reload() *dbus.Error { time.Sleep(b.delay); return nil }

// TestBusCallDeadline: a bridge that does not answer in time is an error,
// not a hang.
func TestBusCallDeadline(t *testing.T) {
	bus := startBus(t)
	conn := bus.Conn(t)
	const name = "veth1"
	if err := conn.Export(slowBridge{delay: 2 * time.Second}, dbusapi.ObjectPath(name), dbusapi.Interface); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName(dbusapi.BusName(name), dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", r, err)
	}
	b, err := openBridges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer b.(*busBridges).Close()
	b.(*busBridges).timeout = 100 * time.Millisecond
	start := time.Now()
	err = b.Reload(context.Background(), name)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Reload took %v", d)
	}
	if err == nil || !strings.Contains(err.Error(), "no answer on the bus within 100ms") || !strings.Contains(err.Error(), "reload veth1") || exitCode(err) != exitFailure {
		t.Errorf("Reload: %v", err)
	}
	// Not on the bus: ErrNoSuchBridge, whatever the deadline.
	if err := b.Reload(context.Background(), "veth9"); !errors.Is(err, dbusapi.ErrNoSuchBridge) {
		t.Errorf("Reload veth9: %v", err)
	}
}

// TestBusNoSystemd: a bus without systemd on it.
func TestBusNoSystemd(t *testing.T) {
	startBus(t)
	h := newHarness(t)
	h.writeConfig("veth1", eth0Config)
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, openUnits: openSystemd, openBridges: openBridges, now: time.Now, sleep: sleepCtx}
	if code := a.run(context.Background(), []string{"--config-dir", h.dir, "--machine-id-file", h.midFile, "list", "--no-legend"}); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr.String())
	}
	if got, want := stdout.String(), "veth1 - configured eth0 22:43:60:c3:5b:4c -\n"; got != want {
		t.Errorf("list: %q, want %q", got, want)
	}
	if !strings.Contains(stderr.String(), "not listing systemd units") {
		t.Errorf("stderr: %q", stderr.String())
	}
}
