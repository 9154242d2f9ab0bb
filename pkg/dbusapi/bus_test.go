package dbusapi

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// skip skips the test, or fails it when CI=true: CI must run every test.
func skip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, cannot skip: "+format, args...)
	}
	t.Skipf(format, args...)
}

// startObjectBus starts the bus for the tests of the object itself: as
// root, one configured like the system bus with our policy; otherwise,
// where that policy would refuse us the bus names, one without
// restrictions.
func startObjectBus(t *testing.T) *dbustest.Bus {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: using a bus without policy instead of dist/dbus/io.github.vethd.Bridge1.conf")
		return dbustest.StartOpen(t)
	}
	return dbustest.Start(t, dbustest.PolicyFile(t))
}

// export exports b on conn, closed when the test ends.
func export(t *testing.T, conn *dbus.Conn, b Bridge) *Server {
	t.Helper()
	s, err := Export(conn, b)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fakeBridge is a Bridge whose state the test sets and whose method calls
// it counts. godbus's handler goroutines call it; mu guards every field.
type fakeBridge struct {
	mu        sync.Mutex
	status    Status
	counters  Counters
	reloadErr error // returned by Reload, and shown as LastError
	reloads   int
	resets    int
	describes int
}

var _ Bridge = (*fakeBridge)(nil)

func newFakeBridge(name string) *fakeBridge {
	return &fakeBridge{
		status: Status{
			Name:          name,
			Kind:          "veth",
			DataPath:      "kernel",
			Parent:        "eth0",
			IfIndex:       7,
			ParentIfIndex: 2,
			MACAddress:    "02:5e:00:12:34:56",
			MACPolicy:     "persistent",
			MTU:           1500,
			State:         "running",
			Carrier:       false,
			ParentCarrier: true,
			Promiscuous:   true,
			Offloads:      []string{"tso", "gro"},
			StartedUsec:   1_700_000_000_123_456,
			LastError:     "",
		},
		counters: Counters{
			RxPackets:   10,
			RxBytes:     1000,
			RxCoalesced: 3,
			TxPackets:   20,
			TxBytes:     2000,
			Errors:      1,
			RxSplit:     6,
			TxSplit:     8,
			RxDrops:     map[string]uint64{"runt": 2, "spoof": 5},
			TxDrops:     map[string]uint64{"queue-full": 4},
		},
	}
}

func (f *fakeBridge) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	st.Offloads = append([]string(nil), f.status.Offloads...)
	return st
}

func (f *fakeBridge) Counters() Counters {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.counters
	c.RxDrops = maps.Clone(f.counters.RxDrops)
	c.TxDrops = maps.Clone(f.counters.TxDrops)
	return c
}

func (f *fakeBridge) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	if f.reloadErr != nil {
		f.status.LastError = f.reloadErr.Error()
		return fmt.Errorf("reload %s: %w", f.status.Name, f.reloadErr)
	}
	f.status.LastError = ""
	return nil
}

func (f *fakeBridge) ResetCounters() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
	f.counters = Counters{}
}

func (f *fakeBridge) Describe() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	return fmt.Sprintf(`{"name":%q}`, f.status.Name)
}

// setStatus changes the fake's status with fn.
func (f *fakeBridge) setStatus(fn func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

// setCounters changes the fake's counters with fn.
func (f *fakeBridge) setCounters(fn func(*Counters)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.counters)
}

// calls returns how often Reload, ResetCounters and Describe were called.
func (f *fakeBridge) calls() (reloads, resets, describes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads, f.resets, f.describes
}

// dbusErrorName returns the D-Bus error name in err's chain, or "".
func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	return ""
}
