package service

import (
	"context"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// fakeManager is org.freedesktop.systemd1 on a private bus: the Manager
// methods busUnits calls, answered as systemd 252 does, and a Properties
// object per loaded unit. godbus runs its methods on its own goroutines.
type fakeManager struct {
	files  map[string]string // UnitFileState by unit; others are FileNotFound
	active map[string]string // ActiveState of the loaded units
	mains  map[string]uint32 // MainPID of the loaded units (0 if not here)
	// reloadErr, if not "", is the D-Bus error ReloadUnit answers with
	// (as systemd refuses the user vethd).
	reloadErr string

	mu      sync.Mutex
	pids    map[uint32]string // GetUnitByPID
	reloads [][2]string       // ReloadUnit's (name, mode)
}

func unitPath(unit string) dbus.ObjectPath {
	return dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + dbusapi.EscapeLabel(unit))
}

func (m *fakeManager) GetUnitFileState(unit string) (string, *dbus.Error) {
	if s, ok := m.files[unit]; ok {
		return s, nil
	}
	return "", dbus.NewError("org.freedesktop.DBus.Error.FileNotFound", []any{"No such file or directory"})
}

func (m *fakeManager) GetUnit(unit string) (dbus.ObjectPath, *dbus.Error) {
	if _, ok := m.active[unit]; ok {
		return unitPath(unit), nil
	}
	return "", dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + unit + " not loaded."})
}

func (m *fakeManager) GetUnitByPID(pid uint32) (dbus.ObjectPath, *dbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.pids[pid]; ok {
		return unitPath(u), nil
	}
	return "", dbus.NewError("org.freedesktop.systemd1.NoUnitForPID", []any{"PID does not belong to any loaded unit."})
}

func (m *fakeManager) ReloadUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloads = append(m.reloads, [2]string{unit, mode})
	if m.reloadErr != "" {
		return "", dbus.NewError(m.reloadErr, []any{"Access denied"})
	}
	return "/org/freedesktop/systemd1/job/1", nil
}

// unitProps is a unit's org.freedesktop.DBus.Properties.
type unitProps struct {
	id, active string
	main       uint32
}

func (p unitProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	switch {
	case iface == "org.freedesktop.systemd1.Unit" && name == "Id":
		return dbus.MakeVariant(p.id), nil
	case iface == "org.freedesktop.systemd1.Unit" && name == "ActiveState":
		return dbus.MakeVariant(p.active), nil
	case iface == "org.freedesktop.systemd1.Service" && name == "MainPID":
		return dbus.MakeVariant(p.main), nil
	}
	return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", nil)
}

// serve exports m as org.freedesktop.systemd1 on conn.
func (m *fakeManager) serve(t *testing.T, conn *dbus.Conn) {
	t.Helper()
	if err := conn.Export(m, systemdPath, systemdManager); err != nil {
		t.Fatal(err)
	}
	units := map[string]bool{}
	for u := range m.active {
		units[u] = true
	}
	for _, u := range m.pids {
		units[u] = true
	}
	for u := range units {
		if err := conn.Export(unitProps{id: u, active: m.active[u], main: m.mains[u]}, unitPath(u), "org.freedesktop.DBus.Properties"); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := conn.RequestName(systemdDest, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request %s: %v %v", systemdDest, r, err)
	}
}

// TestBusUnits: busUnits asks the bus and systemd's manager what it
// should, and reads their errors as systemd 252 gives them.
func TestBusUnits(t *testing.T) {
	bus := dbustest.StartOpen(t)
	m := &fakeManager{
		files: map[string]string{
			"vethd@veth1.service": "enabled", "vethd@veth2.service": "disabled",
			"vethd@veth3.service": "disabled", "vethd@veth4.service": "enabled-runtime",
		},
		active: map[string]string{"vethd@veth2.service": "failed", "vethd@veth3.service": "activating", "vethd.service": "active"},
		pids:   map[uint32]string{uint32(os.Getpid()): "vethd.service"},
	}
	m.serve(t, bus.Conn(t))
	// A connection of this process owns veth1's name: its PID is ours.
	holder := bus.Conn(t)
	if r, err := holder.RequestName(dbusapi.BusName("veth1"), dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request name: %v %v", r, err)
	}
	u := newBusUnits(bus.Conn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for name, want := range map[string]Claim{
		"veth1": {UnitFileState: "enabled"},
		"veth2": {UnitFileState: "disabled", ActiveState: "failed"},
		"veth3": {UnitFileState: "disabled", ActiveState: "activating"},
		"veth4": {UnitFileState: "enabled-runtime"},
		"veth9": {}, // no such unit file, not loaded
	} {
		got, err := u.Claim(ctx, name)
		if err != nil || got != want {
			t.Errorf("Claim(%s) = %+v, %v; want %+v", name, got, err, want)
		}
	}

	pid, unit, err := u.Owner(ctx, "veth1")
	if err != nil || pid != uint32(os.Getpid()) || unit != "vethd.service" {
		t.Errorf("Owner(veth1) = %d, %q, %v; want %d, vethd.service", pid, unit, err, os.Getpid())
	}
	if pid, unit, err := u.Owner(ctx, "veth2"); err != nil || pid != 0 || unit != "" {
		t.Errorf("Owner(veth2) = %d, %q, %v; want no owner", pid, unit, err)
	}
	// A process that is in no unit.
	m.mu.Lock()
	delete(m.pids, uint32(os.Getpid()))
	m.mu.Unlock()
	if pid, unit, err := u.Owner(ctx, "veth1"); err != nil || pid != uint32(os.Getpid()) || unit != "" {
		t.Errorf("Owner(veth1) of a process in no unit = %d, %q, %v", pid, unit, err)
	}

	if err := u.Reload(ctx, "vethd.service"); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	got := slices.Clone(m.reloads)
	m.mu.Unlock()
	if !slices.Equal(got, [][2]string{{"vethd.service", "fail"}}) {
		t.Errorf("ReloadUnit calls %q", got)
	}
}

// TestBusUnitsNoSystemd: without systemd on the bus, Claim fails (and
// --all then runs every file, TestAllWithoutAnswer); Owner still answers
// for a name no one owns.
func TestBusUnitsNoSystemd(t *testing.T) {
	bus := dbustest.StartOpen(t)
	u := newBusUnits(bus.Conn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := u.Claim(ctx, "veth1"); err == nil {
		t.Error("Claim without systemd succeeded")
	}
	if pid, _, err := u.Owner(ctx, "veth1"); err != nil || pid != 0 {
		t.Errorf("Owner = %d, %v; want no owner", pid, err)
	}
}

// TestBusUnitsReloadRefused: systemd refuses ReloadUnit to the user vethd
// (InteractiveAuthorizationRequired with polkit, AccessDenied without):
// Reload sends SIGHUP to the unit's main process instead (here this test
// process, which catches it); other errors, and a unit without a main
// process, are Reload's error and signal no one.
func TestBusUnitsReloadRefused(t *testing.T) {
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(hup) })
	for _, tc := range []struct {
		name, reloadErr string
		main            uint32
		wantErr         string // "" for SIGHUP to main
	}{
		{name: "polkit", reloadErr: errInteractiveAuth, main: uint32(os.Getpid())},
		{name: "no polkit", reloadErr: errAccessDenied, main: uint32(os.Getpid())},
		{name: "no main process", reloadErr: errAccessDenied, wantErr: "reload vethd.service: vethd.service has no main process"},
		{name: "other error", reloadErr: "org.freedesktop.systemd1.NoSuchUnit", main: uint32(os.Getpid()), wantErr: "reload vethd.service: Access denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := dbustest.StartOpen(t)
			m := &fakeManager{
				active:    map[string]string{"vethd.service": "active"},
				mains:     map[string]uint32{"vethd.service": tc.main},
				reloadErr: tc.reloadErr,
			}
			m.serve(t, bus.Conn(t))
			u := newBusUnits(bus.Conn(t))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := u.Reload(ctx, "vethd.service")
			m.mu.Lock()
			got := slices.Clone(m.reloads)
			m.mu.Unlock()
			if !slices.Equal(got, [][2]string{{"vethd.service", "fail"}}) {
				t.Errorf("ReloadUnit calls %q, want one", got)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Reload = %v, want an error %q", err, tc.wantErr)
				}
				select {
				case <-hup:
					t.Error("SIGHUP sent although Reload failed")
				case <-time.After(50 * time.Millisecond):
				}
				return
			}
			if err != nil {
				t.Fatalf("Reload = %v, want SIGHUP to the main process", err)
			}
			select {
			case <-hup:
			case <-time.After(5 * time.Second):
				t.Fatal("no SIGHUP to the main process")
			}
		})
	}
}
