package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestShutdownDecision: at SIGTERM, what systemd's job for the unit
// says decides between Close (the interface goes) and Release (it stays
// for the next vethd).
func TestShutdownDecision(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unit    string
		job     string
		err     error
		delay   time.Duration
		release bool
		line    string
	}{
		{name: "stop", unit: "vethd@veth1.service", job: "stop"},
		{name: "no job", unit: "vethd@veth1.service"},
		{name: "restart", unit: "vethd@veth1.service", job: "restart", release: true,
			line: "vethd: systemd restarts vethd@veth1.service (job restart): keeping the interfaces for the next vethd"},
		{name: "try-restart", unit: "vethd@veth1.service", job: "try-restart", release: true},
		{name: "reload-or-restart", unit: "vethd@veth1.service", job: "reload-or-restart", release: true},
		{name: "not systemd", err: fmt.Errorf("ask systemd: %w", errNotSystemd)},
		{name: "query fails", unit: "vethd@veth1.service", err: errors.New("org.freedesktop.DBus.Error.NoReply"), release: true,
			line: "vethd: warn: Cannot tell whether systemd stops or restarts vethd@veth1.service (org.freedesktop.DBus.Error.NoReply): keeping the interfaces for a restart"},
		{name: "query hangs", delay: time.Minute, release: true,
			line: "vethd: warn: Cannot tell whether systemd stops or restarts this service (context deadline exceeded): keeping the interfaces for a restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
			fake := newFakeUnits()
			fake.jobUnit, fake.jobType, fake.jobErr, fake.jobDelay = tc.unit, tc.job, tc.err, tc.delay
			cfg := h.config(ModeInstance)
			withUnits(t, &cfg, fake)
			h.run(cfg)
			b := h.start.nextStarted(t)
			h.ready(0)
			start := time.Now()
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("stop took %s", took)
			}
			if !b.isClosed() || b.isReleased() != tc.release {
				t.Errorf("closed %v released %v, want released %v", b.isClosed(), b.isReleased(), tc.release)
			}
			if tc.line != "" {
				h.mustLine(tc.line)
			}
		})
	}
}

// TestShutdownWithoutSystemd: no bus (or no NOTIFY_SOCKET) → Close.
func TestShutdownWithoutSystemd(t *testing.T) {
	h := newHarness(t) // no bus
	cfg := h.config(ModeSeed)
	cfg.MAC = "02:00:5e:10:00:01"
	h.run(cfg)
	b := h.start.nextStarted(t)
	h.ready(0)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if b.isReleased() {
		t.Error("released without systemd")
	}

	h = newHarness(t)
	t.Setenv("NOTIFY_SOCKET", "")
	fake := newFakeUnits()
	fake.jobUnit, fake.jobType = "vethd@veth1.service", "restart"
	cfg = h.config(ModeSeed)
	cfg.MAC = "02:00:5e:10:00:01"
	withUnits(t, &cfg, fake)
	h.run(cfg)
	b = h.start.nextStarted(t)
	time.Sleep(20 * time.Millisecond)
	h.sigs <- syscall.SIGTERM
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if b.isReleased() {
		t.Error("released without NOTIFY_SOCKET")
	}
}

// TestAllRestartReleasesEvery (--all): a restart releases every bridge.
func TestAllRestartReleasesEvery(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.writeConf("veth2", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	fake.jobUnit, fake.jobType = "vethd.service", "restart"
	cfg := h.config(ModeAll)
	withUnits(t, &cfg, fake)
	h.run(cfg)
	h.ready(0)
	bs := append(h.start.bridges("veth1"), h.start.bridges("veth2")...)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if !b.isReleased() {
			t.Errorf("%s closed at a restart", b.cfg.Name)
		}
	}
}

// TestHandoverReleases (--all): handing a bridge over to its own unit
// releases it (a veth pair stays for vethd@NAME.service to adopt); a
// file that goes closes its bridge.
func TestHandoverReleases(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.writeConf("veth2", "[Bridge]\nParent=eth0\n")
	fake := newFakeUnits()
	cfg := h.config(ModeAll)
	withUnits(t, &cfg, fake)
	h.run(cfg)
	h.ready(0)
	b1 := h.start.waitStarts(t, "veth1", 1)
	b2 := h.start.waitStarts(t, "veth2", 1)
	fake.set(func(f *fakeUnits) { f.claims["veth1"] = disabledStarted })
	if err := removeConf(h, "veth2"); err != nil {
		t.Fatal(err)
	}
	n := len(h.sd.Messages())
	h.sigs <- syscall.SIGHUP
	h.sd.WaitFor(t, n, 5*time.Second, "READY=1")
	if !b1.isReleased() {
		t.Error("veth1 closed, not released, at the handover")
	}
	if !b2.isClosed() || b2.isReleased() {
		t.Error("veth2 released, not closed, when its file went")
	}
}

// removeConf removes DIR/NAME.conf.
func removeConf(h *harness, name string) error {
	return os.Remove(filepath.Join(h.dir, name+".conf"))
}

// TestRoutingAtShutdown: at a restart the Router is left for the next
// vethd (its rules stay: no gap); at a stop it is closed; a handover
// (--all) releases the bridge but closes its Router, so that none is left
// running beside the next vethd's.
func TestRoutingAtShutdown(t *testing.T) {
	for _, job := range []string{"restart", "stop"} {
		t.Run(job, func(t *testing.T) {
			h := newHarness(t)
			h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
			fake := newFakeUnits()
			fake.jobUnit, fake.jobType = "vethd@veth1.service", job
			routes := newFakeRoutes()
			cfg := h.config(ModeInstance)
			cfg.Routes = routes
			withUnits(t, &cfg, fake)
			h.run(cfg)
			b := h.start.nextStarted(t)
			routes.waitEvents(t, 1)
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			ev := routes.list()
			closed := len(ev) == 2 && ev[1] == fmt.Sprintf("close link=%d", b.Status().IfIndex)
			if closed != (job == "stop") || b.isReleased() != (job == "restart") {
				t.Errorf("routing %q, bridge released %v", ev, b.isReleased())
			}
		})
	}
	t.Run("handover", func(t *testing.T) {
		h := newHarness(t)
		h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
		fake := newFakeUnits()
		routes := newFakeRoutes()
		cfg := h.config(ModeAll)
		cfg.Routes = routes
		withUnits(t, &cfg, fake)
		h.run(cfg)
		h.ready(0)
		b := h.start.waitStarts(t, "veth1", 1)
		routes.waitEvents(t, 1)
		fake.set(func(f *fakeUnits) { f.claims["veth1"] = disabledStarted })
		n := len(h.sd.Messages())
		h.sigs <- syscall.SIGHUP
		h.sd.WaitFor(t, n, 5*time.Second, "READY=1")
		ev := routes.waitEvents(t, 2)
		if ev[1] != fmt.Sprintf("close link=%d", b.Status().IfIndex) || !b.isReleased() {
			t.Errorf("routing %q, bridge released %v", ev, b.isReleased())
		}
	})
}
