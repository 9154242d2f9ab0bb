package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/internal/sdnotify/sdnotifytest"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// fakeUnits is a systemd that knows the instance units' claims and the
// bridges' bus owners the test sets. The daemon calls it from the Run
// goroutine, the test from its own.
type fakeUnits struct {
	mu       sync.Mutex
	claims   map[string]Claim                // by bridge name; zero if absent
	owners   map[string]fakeOwner            // by bridge name; none if absent
	claimErr error                           // what Claim returns, if set
	reloads  []string                        // units Reload was asked for, in order
	onReload func(f *fakeUnits, unit string) // called with mu held, if set
	jobUnit  string                          // what Job returns
	jobType  string
	jobErr   error
	jobDelay time.Duration // Job answers after this, or when ctx ends
}

type fakeOwner struct {
	pid  uint32
	unit string
}

var _ Units = (*fakeUnits)(nil)

func newFakeUnits() *fakeUnits {
	return &fakeUnits{claims: map[string]Claim{}, owners: map[string]fakeOwner{}}
}

func (f *fakeUnits) Claim(_ context.Context, name string) (Claim, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.claimErr != nil {
		return Claim{}, f.claimErr
	}
	return f.claims[name], nil
}

func (f *fakeUnits) Owner(_ context.Context, name string) (uint32, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.owners[name]
	return o.pid, o.unit, nil
}

func (f *fakeUnits) Reload(_ context.Context, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads = append(f.reloads, unit)
	if f.onReload != nil {
		f.onReload(f, unit)
	}
	return nil
}

func (f *fakeUnits) Job(ctx context.Context, _ uint32) (string, string, error) {
	f.mu.Lock()
	unit, typ, err, delay := f.jobUnit, f.jobType, f.jobErr, f.jobDelay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return unit, "", ctx.Err()
		}
	}
	return unit, typ, err
}

func (f *fakeUnits) set(fn func(f *fakeUnits)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeUnits) reloaded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reloads)
}

// withUnits gives cfg a private bus (so that the daemon has Units at all)
// and fake as its Units, and returns a client of that bus.
func withUnits(t *testing.T, cfg *Config, fake *fakeUnits) *dbusapi.Client {
	t.Helper()
	bus := dbustest.StartOpen(t)
	cfg.ConnectBus = func() (*dbus.Conn, error) { return dbus.Connect(bus.Addr) }
	cfg.Units = func(*dbus.Conn) Units { return fake }
	return dbusapi.NewClient(bus.Conn(t))
}

// busNames lists the bridges on the bus.
func busNames(t *testing.T, c *dbusapi.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

var (
	enabledInactive = Claim{UnitFileState: "enabled", ActiveState: "inactive"}
	disabledStarted = Claim{UnitFileState: "disabled", ActiveState: "activating"}
)

// TestClaims: what makes an instance unit claim its bridge.
func TestClaims(t *testing.T) {
	for _, tc := range []struct {
		c    Claim
		want bool
	}{
		{Claim{}, false},
		{Claim{UnitFileState: "disabled", ActiveState: "inactive"}, false},
		{Claim{UnitFileState: "disabled", ActiveState: "failed"}, false},
		{Claim{UnitFileState: "masked", ActiveState: "inactive"}, false},
		{Claim{UnitFileState: "enabled", ActiveState: "failed"}, true},
		{Claim{UnitFileState: "enabled-runtime"}, true},
		{Claim{UnitFileState: "disabled", ActiveState: "active"}, true},
		{Claim{UnitFileState: "disabled", ActiveState: "activating"}, true},
		{Claim{UnitFileState: "disabled", ActiveState: "reloading"}, true},
		{Claim{UnitFileState: "disabled", ActiveState: "deactivating"}, true},
	} {
		if got := tc.c.Claims(); got != tc.want {
			t.Errorf("%v.Claims() = %v, want %v", tc.c, got, tc.want)
		}
	}
	if s := (Claim{}).String(); s != "no unit file, inactive" {
		t.Errorf("zero Claim says %q", s)
	}
}

// TestAllLeavesOutClaimed (--all): a bridge whose vethd@NAME.service is
// enabled is not run, and its stored TAP is dropped; at a reload, one
// whose unit started meanwhile is handed over (stopped, dropped from the
// store, off the bus) and one no longer claimed is started.
func TestAllLeavesOutClaimed(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.writeConf("veth2", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	fake.claims["veth1"] = enabledInactive
	cfg := h.config(ModeAll)
	cfg.StoredFDs = map[string]*os.File{"tap-veth1": memfd(t, "tap-veth1")}
	c := withUnits(t, &cfg, fake)
	h.run(cfg)

	b2 := h.start.nextStarted(t)
	if b2.cfg.Name != "veth2" {
		t.Fatalf("started %s, want veth2 only", b2.cfg.Name)
	}
	ready := h.ready(0)
	if len(h.start.bridges("veth1")) != 0 {
		t.Error("veth1 was started although vethd@veth1.service is enabled")
	}
	h.mustLine("vethd: Leaving veth1 to vethd@veth1.service (enabled, inactive): not running it in this process")
	h.mustLine("vethd: Dropping stored descriptor tap-veth1: vethd@veth1.service runs veth1")
	if h.sd.Find(0, "FDSTOREREMOVE=1", "FDNAME=tap-veth1") < 0 {
		t.Error("the stored TAP of veth1 was not dropped from the store")
	}
	if got := sdnotifyStatus(h, ready); got != "veth2 running on eth0, mac "+b2.Status().MAC.String()+"; rx 0 packets (0 B), tx 0 packets (0 B); left to their own units: veth1" {
		t.Errorf("STATUS = %q", got)
	}
	waitFor(t, "veth2 alone on the bus", func() bool { return fmt.Sprint(busNames(t, c)) == "[veth2]" })

	// vethd@veth2.service starts (by hand: disabled), vethd@veth1.service
	// is disabled: the reload swaps them.
	fake.set(func(f *fakeUnits) {
		f.claims["veth2"] = disabledStarted
		f.claims["veth1"] = Claim{"disabled", "inactive"}
	})
	n := len(h.sd.Messages())
	h.sigs <- syscall.SIGHUP
	h.sd.WaitFor(t, n, 5*time.Second, "READY=1")
	if !b2.isClosed() {
		t.Error("veth2 still runs here after vethd@veth2.service claimed it")
	}
	if h.sd.Find(n, "FDSTOREREMOVE=1", "FDNAME=tap-veth2") < 0 {
		t.Error("veth2's TAP was not dropped from the store")
	}
	b1 := h.start.waitStarts(t, "veth1", 1)
	h.log.WaitLine(t, "vethd: Attached veth1 into eth0") // logged by its supervisor goroutine
	h.mustLine("vethd: Reload: handing veth2 over to vethd@veth2.service (disabled, activating): stopping it in this process")
	h.mustLine("vethd: Reload: vethd@veth1.service no longer claims veth1 (disabled, inactive); starting it here")
	waitFor(t, "veth1 alone on the bus", func() bool { return fmt.Sprint(busNames(t, c)) == "[veth1]" })

	// The same claims again: nothing new is said or done.
	lines := len(h.log.Lines())
	n = len(h.sd.Messages())
	h.sigs <- syscall.SIGHUP
	h.sd.WaitFor(t, n, 5*time.Second, "READY=1")
	for _, l := range h.log.Lines()[lines:] {
		if !strings.HasPrefix(l, "vethd: Reloaded veth1 from") {
			t.Errorf("second reload logged %q", l)
		}
	}
	if b1.isClosed() || len(h.start.bridges("veth2")) != 1 {
		t.Error("second reload changed what runs")
	}
}

// sdnotifyStatus returns the STATUS= of message i.
func sdnotifyStatus(h *harness, i int) string {
	return sdnotifytest.Parse(h.sd.Messages()[i])["STATUS"]
}

// TestAllWithoutAnswer (--all): when systemd cannot be asked, every file
// runs.
func TestAllWithoutAnswer(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	fake.claims["veth1"] = enabledInactive
	fake.claimErr = errors.New("org.freedesktop.DBus.Error.ServiceUnknown")
	cfg := h.config(ModeAll)
	withUnits(t, &cfg, fake)
	h.run(cfg)
	h.start.waitStarts(t, "veth1", 1)
	h.mustLine("vethd: warn: Cannot tell whether vethd@veth1.service runs veth1 (org.freedesktop.DBus.Error.ServiceUnknown); running it here")
}

// TestAllContest (--all): a bridge whose name is in use is retried until
// its own unit claims it, then left to it: no more attempts.
func TestAllContest(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	h.start.setHook(func(bridge.Config) error {
		return fmt.Errorf("create TAP veth1: %w", bridge.ErrNameInUse)
	})
	cfg := h.config(ModeAll)
	c := withUnits(t, &cfg, fake)
	h.run(cfg)
	h.ready(0)
	for range 3 {
		h.start.nextCall(t)
	}
	fake.set(func(f *fakeUnits) { f.claims["veth1"] = Claim{UnitFileState: "enabled", ActiveState: "active"} })
	h.log.WaitLine(t, "vethd: veth1 is in use and vethd@veth1.service claims it (enabled, active): stopping it here")
	waitFor(t, "veth1 off the bus", func() bool { return len(busNames(t, c)) == 0 })
	// Drain, then no more attempts.
	time.Sleep(20 * time.Millisecond)
	for len(h.start.calls) > 0 {
		<-h.start.calls
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(h.start.calls); n != 0 {
		t.Errorf("%d more starts of veth1 after it was left to its unit", n)
	}
	if h.log.count("Leaving veth1 to vethd@veth1.service (enabled, active)") != 1 {
		t.Error("not said once that veth1 is left to its unit")
	}
}

// TestInstanceTakesOver: vethd@veth1 finds veth1 run by vethd.service,
// has it reload, waits until it lets go of the name, retries while the
// old interface goes, and runs veth1.
func TestInstanceTakesOver(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	fake.owners["veth1"] = fakeOwner{pid: 4242, unit: "vethd.service"}
	fake.onReload = func(f *fakeUnits, unit string) {
		if unit == "vethd.service" {
			// It lets go a little later, as a reload does.
			time.AfterFunc(30*time.Millisecond, func() { f.set(func(f *fakeUnits) { delete(f.owners, "veth1") }) })
		}
	}
	inUse := 2 // the old TAP goes once systemd closed vethd.service's copy
	h.start.setHook(func(bridge.Config) error {
		if inUse > 0 { // the Run goroutine's only
			inUse--
			return fmt.Errorf("create TAP veth1: %w", bridge.ErrNameInUse)
		}
		return nil
	})
	cfg := h.config(ModeInstance)
	c := withUnits(t, &cfg, fake)
	h.run(cfg)
	h.ready(0)
	if got := fake.reloaded(); !slices.Equal(got, []string{"vethd.service"}) {
		t.Errorf("reloads %q, want vethd.service once", got)
	}
	if n := len(h.start.bridges("veth1")); n != 1 {
		t.Errorf("%d bridges started", n)
	}
	if len(h.start.calls) != 3 {
		t.Errorf("%d start attempts, want 3 (two while the old interface goes)", len(h.start.calls))
	}
	h.mustLine("vethd: veth1 is run by vethd.service (PID 4242); asking it to hand veth1 over to vethd@veth1.service")
	h.mustLine("vethd: vethd.service handed veth1 over")
	waitFor(t, "veth1 on the bus", func() bool { return fmt.Sprint(busNames(t, c)) == "[veth1]" })
}

// TestInstanceNotHandedOver: a vethd.service that keeps the bridge ends
// vethd@veth1 with KindConfig (exit 78: no restart loop), without
// starting a bridge.
func TestInstanceNotHandedOver(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	fake.owners["veth1"] = fakeOwner{pid: 4242, unit: "vethd.service"}
	cfg := h.config(ModeInstance)
	cfg.HandoverTimeout = 200 * time.Millisecond
	withUnits(t, &cfg, fake)
	h.run(cfg)
	err := h.wait()
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindConfig {
		t.Fatalf("Run = %v, want a KindConfig *Error", err)
	}
	h.mustLine("vethd: error: vethd.service did not hand veth1 over within 200ms; not running it twice (stop vethd.service, or disable vethd@veth1.service)")
	if len(h.start.calls) != 0 || h.sd.Find(0, "READY=1") >= 0 {
		t.Error("a bridge was started, or READY=1 sent")
	}
}

// TestInstanceOwnedByOther: a bridge another vethd runs (by hand: a
// session scope) is not started twice, and not retried (KindConfig).
func TestInstanceOwnedByOther(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner fakeOwner
		line  string
	}{
		{"scope", fakeOwner{77, "session-3.scope"}, "vethd: error: veth1 is run by session-3.scope (PID 77) already; not running it twice"},
		{"no-unit", fakeOwner{77, ""}, "vethd: error: veth1 is run by PID 77 already; not running it twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
			fake := newFakeUnits()
			fake.owners["veth1"] = tc.owner
			cfg := h.config(ModeInstance)
			withUnits(t, &cfg, fake)
			h.run(cfg)
			var e *Error
			if err := h.wait(); !errors.As(err, &e) || e.Kind != KindConfig {
				t.Fatalf("Run = %v, want a KindConfig *Error", err)
			}
			h.mustLine(tc.line)
			if len(h.start.calls) != 0 || len(fake.reloaded()) != 0 {
				t.Error("started a bridge or reloaded a unit")
			}
		})
	}
}

// TestInstanceNameInUse: a name in use that no vethd on the bus owns is
// a failure as before (exit 1: it may go away); one whose owner shows up
// by then is KindConfig.
func TestInstanceNameInUse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner fakeOwner
		kind  Kind
		line  string
	}{
		{"no-owner", fakeOwner{}, KindFailure, "vethd: error: create TAP veth1: interface name already in use: an interface named veth1 exists already"},
		{"owner", fakeOwner{99, "vethd.service"}, KindConfig, "vethd: error: create TAP veth1: interface name already in use: veth1 is run by vethd.service (PID 99); not running it twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
			fake := newFakeUnits()
			h.start.setHook(func(bridge.Config) error {
				fake.set(func(f *fakeUnits) {
					if tc.owner.pid != 0 {
						f.owners["veth1"] = tc.owner
					}
				})
				return fmt.Errorf("create TAP veth1: %w", bridge.ErrNameInUse)
			})
			cfg := h.config(ModeInstance)
			withUnits(t, &cfg, fake)
			h.run(cfg)
			var e *Error
			if err := h.wait(); !errors.As(err, &e) || e.Kind != tc.kind {
				t.Fatalf("Run = %v, want an *Error of kind %v", err, tc.kind)
			}
			h.log.WaitLine(t, tc.line)
		})
	}
}

// TestInstanceStopWhileWaiting: SIGTERM during the wait for a handover
// ends vethd at once, cleanly.
func TestInstanceStopWhileWaiting(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	fake.owners["veth1"] = fakeOwner{pid: 4242, unit: "vethd.service"}
	cfg := h.config(ModeInstance)
	cfg.HandoverTimeout = time.Hour
	withUnits(t, &cfg, fake)
	h.run(cfg)
	h.log.WaitLine(t, "asking it to hand veth1 over")
	began := time.Now()
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("took %v to stop", d)
	}
	h.mustLine("vethd: Stopping on terminated")
}
