package service

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// TestBusGoneAndBack: each bridge is on the bus; a change is published
// (PropertiesChanged, read back by Get); when the bus goes away vethd runs
// on, and when one comes back it connects and exports the bridge again.
func TestBusGoneAndBack(t *testing.T) {
	bus := dbustest.StartOpen(t)
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	var addr atomic.Value
	addr.Store(bus.Addr)
	cfg := h.config(ModeInstance)
	cfg.ConnectBus = func() (*dbus.Conn, error) { return dbus.Connect(addr.Load().(string)) }
	cfg.BusRetry = 10 * time.Millisecond
	h.run(cfg)
	b := h.start.nextStarted(t)
	h.ready(0)

	get := func(c *dbusapi.Client) (dbusapi.Status, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, _, err := c.Get(ctx, "veth1")
		return st, err
	}
	c := dbusapi.NewClient(bus.Conn(t))
	// The object is exported once the bridge has started (instance mode);
	// later changes are published by the main loop.
	waitFor(t, "running on the bus", func() bool { st, err := get(c); return err == nil && st.State == "running" && st.Parent == "eth0" })
	// A change reaches the bus through the main loop.
	b.set(func(b *fakeBridge) { b.status.State = bridge.StateDegraded; b.status.ParentCarrier = false })
	b.cfg.OnChange()
	waitFor(t, "degraded on the bus", func() bool { st, err := get(c); return err == nil && st.State == "degraded" })

	bus.Stop()
	h.log.WaitLine(t, "vethd: warn: Lost the system bus; reconnecting")
	bus2 := dbustest.StartOpen(t)
	addr.Store(bus2.Addr)
	h.log.WaitLine(t, "vethd: Connected to the system bus")
	c2 := dbusapi.NewClient(bus2.Conn(t))
	waitFor(t, "veth1 on the new bus", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		names, err := c2.List(ctx)
		return err == nil && fmt.Sprint(names) == "[veth1]"
	})
	if st, err := get(c2); err != nil || st.State != "degraded" {
		t.Errorf("on the new bus: %+v %v", st, err)
	}
	if h.log.count("No system bus") > 1 {
		t.Error("No system bus said more than once")
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if names, err := c2.List(ctx); err != nil || len(names) != 0 {
		t.Errorf("after stop, on the bus: %v %v", names, err)
	}
}

// TestNoBus: without a bus vethd says so once and runs on.
func TestNoBus(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	var tries atomic.Int32
	cfg := h.config(ModeInstance)
	cfg.ConnectBus = func() (*dbus.Conn, error) {
		tries.Add(1)
		return nil, fmt.Errorf("dial unix /run/dbus/system_bus_socket: connect: no such file or directory")
	}
	cfg.BusRetry = time.Millisecond
	h.run(cfg)
	h.ready(0)
	waitFor(t, "three tries", func() bool { return tries.Load() >= 3 })
	if n := h.log.count("No system bus"); n != 1 {
		t.Errorf("No system bus said %d times, want once", n)
	}
	h.mustLine("vethd: No system bus (dial unix /run/dbus/system_bus_socket: connect: no such file or directory); running without D-Bus")
}

// TestNetworkManagerHint: with NetworkManager on the bus, a bridge of the
// TAP kind gets a warning at start that points to Kind=veth; one of the
// veth kind does not, and neither does a TAP without NetworkManager.
func TestNetworkManagerHint(t *testing.T) {
	const hint = "NetworkManager runs: it sees veth1 (Kind=tap) as an unmanaged tun device"
	for _, tc := range []struct {
		name string
		conf string
		nm   bool
		want bool
	}{
		{"tap with NM", "[Bridge]\nParent=eth0\n", true, true},
		{"veth with NM", "[Bridge]\nParent=eth0\nKind=veth\n", true, false},
		{"tap without NM", "[Bridge]\nParent=eth0\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := dbustest.StartOpen(t)
			if tc.nm {
				conn := bus.Conn(t)
				if r, err := conn.RequestName(networkManagerName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
					t.Fatalf("own %s: %v %v", networkManagerName, r, err)
				}
			}
			h := newHarness(t)
			h.writeConf("veth1", tc.conf)
			cfg := h.config(ModeInstance)
			cfg.ConnectBus = func() (*dbus.Conn, error) { return dbus.Connect(bus.Addr) }
			h.run(cfg)
			h.start.nextStarted(t)
			h.ready(0)
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			if got := h.log.count(hint) == 1; got != tc.want {
				t.Errorf("hint logged: %v, want %v", got, tc.want)
			}
		})
	}
}

// nameOwner returns the unique name owning name on conn's bus, or "".
func nameOwner(conn *dbus.Conn, name string) string {
	var owner string
	_ = conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, name).Store(&owner)
	return owner
}

// TestStartLoserNeverOwnsName (issue 9 item 3): in instance mode the bus
// name is asked for only once the bridge holds its interface, so a vethd
// that loses the race for it never owns the name (it used to take it
// first and, exiting, leave the winner without it).
func TestStartLoserNeverOwnsName(t *testing.T) {
	bus := dbustest.StartOpen(t)
	watch := bus.Conn(t)
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	var ownedAtStart atomic.Value
	h.start.setHook(func(bridge.Config) error {
		ownedAtStart.Store(nameOwner(watch, dbusapi.BusName("veth1")))
		return fmt.Errorf("create TAP veth1: %w", bridge.ErrNameInUse)
	})
	cfg := h.config(ModeInstance)
	cfg.ConnectBus = func() (*dbus.Conn, error) { return dbus.Connect(bus.Addr) }
	h.run(cfg)
	if err := h.wait(); err == nil {
		t.Fatal("Run succeeded with the interface in use")
	}
	if o := ownedAtStart.Load(); o != "" {
		t.Errorf("the bus name was owned by %v while the bridge started", o)
	}
}

// TestQueuedForName (issue 9 item 3): a bridge whose bus name another
// connection still owns (the loser of a start race, on its way out)
// queues for it and owns it as soon as that one lets go.
func TestQueuedForName(t *testing.T) {
	bus := dbustest.StartOpen(t)
	other := bus.Conn(t)
	if r, err := other.RequestName(dbusapi.BusName("veth1"), dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own the name: %v %v", r, err)
	}
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	cfg := h.config(ModeInstance)
	cfg.ConnectBus = func() (*dbus.Conn, error) { return dbus.Connect(bus.Addr) }
	h.run(cfg)
	h.start.nextStarted(t)
	h.ready(0)
	h.log.WaitLine(t, "vethd: veth1: another connection owns io.github.vethd.Bridge1.veth1; queued for it")
	if _, err := other.ReleaseName(dbusapi.BusName("veth1")); err != nil {
		t.Fatal(err)
	}
	var mine string
	if err := h.d.call(func() error { mine = h.d.bus.Names()[0]; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the name handed over", func() bool { return nameOwner(other, dbusapi.BusName("veth1")) == mine })
	st, _, err := dbusapi.NewClient(other).Get(context.Background(), "veth1")
	if err != nil || st.State != "running" {
		t.Errorf("after the handover: %+v %v", st, err)
	}
}
