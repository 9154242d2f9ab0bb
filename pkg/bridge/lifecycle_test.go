package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/bridge/bridgetest"
	"golang.org/x/sys/unix"
)

// The bridge's whole life over bridgetest's fake kernel, without root.
// Every wait is for an OnChange notification (or a frame), bounded by
// lcTimeout, except for the relay's counters and readers (lcWaitFor); to
// know that the bridge is done with what it was told, a test sends a
// marker notification (lcHarness.sync).

const lcTimeout = 10 * time.Second

var (
	lcMAC1 = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	lcMAC2 = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x02}
	// lcPeer is a station on the parent's wire.
	lcPeer = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x99}
)

// lcLog is a slog.Handler that keeps "LEVEL message" lines; a record with
// attributes gets " ATTRS" appended (the bridge logs printf-style only).
type lcLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lcLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *lcLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *lcLog) WithGroup(string) slog.Handler            { return l }

func (l *lcLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, "%s %s", r.Level, r.Message)
	if r.NumAttrs() > 0 {
		l.b.WriteString(" ATTRS")
	}
	l.b.WriteByte('\n')
	return nil
}

func (l *lcLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lcHarness is one bridge over a fake Net, with parent eth0 (MTU 1400, up,
// with a carrier) unless the test removes it.
type lcHarness struct {
	t       *testing.T
	kind    bridge.Kind // of the bridges config makes: "" is the TAP
	n       *bridgetest.Net
	parent  bridge.Link
	log     *lcLog
	changes chan struct{} // a token after every OnChange
	markers int           // sync's
	b       *bridge.Bridge
}

func newLCHarness(t *testing.T) *lcHarness {
	t.Helper()
	h := &lcHarness{t: t, n: bridgetest.NewNet(), log: &lcLog{}, changes: make(chan struct{}, 1)}
	h.parent = h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, HardwareAddr: lcPeer, Up: true, LowerUp: true})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s\ncalls:\n%s", h.log, strings.Join(h.n.Calls(), "\n"))
		}
	})
	return h
}

// config returns the configuration the tests start from: veth0 on eth0
// with lcMAC1, over the fake.
func (h *lcHarness) config() bridge.Config {
	return bridge.Config{
		Name: "veth0", Kind: h.kind, Parent: "eth0", MAC: lcMAC1,
		Links: h.n, Opener: h.n,
		Log: slog.New(h.log),
		OnChange: func() {
			select {
			case h.changes <- struct{}{}:
			default:
			}
		},
	}
}

// start starts a bridge with cfg and closes it at cleanup.
func (h *lcHarness) start(cfg bridge.Config) *bridge.Bridge {
	h.t.Helper()
	b, err := bridge.Start(cfg)
	if err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	h.t.Cleanup(func() { b.Close() })
	h.b = b
	return b
}

// wait waits until cond holds for the bridge's status, and returns it.
func (h *lcHarness) wait(what string, cond func(bridge.Status) bool) bridge.Status {
	h.t.Helper()
	timeout := time.NewTimer(lcTimeout)
	defer timeout.Stop()
	for {
		st := h.b.Status()
		if cond(st) {
			return st
		}
		select {
		case <-h.changes:
		case <-timeout.C:
			h.t.Fatalf("timed out waiting for %s; status %+v", what, st)
		}
	}
}

// waitState waits for state s.
func (h *lcHarness) waitState(s bridge.State) bridge.Status {
	h.t.Helper()
	return h.wait(string(s), func(st bridge.Status) bool { return st.State == s })
}

// sync gives the attached parent (index) a promiscuity of its own, a
// marker, and waits until the bridge has applied the notification. The
// bridge handles notifications in order, and can learn the marker from
// nothing else: every notification sent before has been handled in full.
// (The marker goes into the table, so that a notification sent after it,
// of a change the bridge makes meanwhile, carries it too.)
func (h *lcHarness) sync(index int) {
	h.t.Helper()
	if _, ok := h.n.LookupIndex(index); !ok {
		h.t.Fatalf("sync: no link %d", index)
	}
	h.markers++
	marker := 1000 + h.markers
	h.n.SetPromiscuity(index, marker)
	h.wait(fmt.Sprintf("marker %d", marker), func(st bridge.Status) bool { return st.Promiscuity == marker })
}

// tapLink returns the fake's link of the bridge's TAP.
func (h *lcHarness) tapLink() bridge.Link {
	h.t.Helper()
	l, ok := h.n.Lookup("veth0")
	if !ok {
		h.t.Fatal("veth0 does not exist")
	}
	return l
}

// lcFrame returns a vnet header (zero) and an Ethernet frame of an
// experimental EtherType, which the relay passes as it is.
func lcFrame(dst, src net.HardwareAddr, payload string) []byte {
	f := make([]byte, bridge.VnetHdrLen, bridge.VnetHdrLen+14+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	f = append(f, 0x88, 0xb5)
	return append(f, payload...)
}

// lcRecv returns the next frame on out, failing after lcTimeout.
func lcRecv(t *testing.T, out <-chan []byte, what string) []byte {
	t.Helper()
	select {
	case f := <-out:
		return f
	case <-time.After(lcTimeout):
		t.Fatalf("no frame %s", what)
		return nil
	}
}

// lcCheckFlow sends a frame each way through the bridge, from src on the
// TAP's side, over TAP tap and parent socket sock.
func lcCheckFlow(t *testing.T, tap *bridgetest.Pipe, sock *bridgetest.Socket, src net.HardwareAddr) {
	t.Helper()
	out := lcFrame(lcPeer, src, "from the host")
	tap.In <- out
	if got := lcRecv(t, sock.Out, "from the TAP on the wire"); !bytes.Equal(got, out) {
		t.Fatalf("on the wire: %x, want %x", got, out)
	}
	in := lcFrame(src, lcPeer, "from the wire")
	sock.In <- in
	if got := lcRecv(t, tap.Out, "from the wire on the TAP"); !bytes.Equal(got, in) {
		t.Fatalf("on the TAP: %x, want %x", got, in)
	}
}

// lcWaitFor waits until cond holds, for what has no notification (the
// relay's counters and readers), looking every millisecond.
func lcWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(lcTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// lcBefore reports whether call a was recorded before call b (both must be).
func lcBefore(t *testing.T, calls []string, a, b string) {
	t.Helper()
	i, j := slices.Index(calls, a), slices.Index(calls, b)
	if i < 0 || j < 0 || i > j {
		t.Errorf("want %q before %q in calls %q", a, b, calls)
	}
}

func TestStartCreates(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	tl := h.tapLink()
	st := b.Status()
	if st.State != bridge.StateRunning || st.Name != "veth0" || st.Parent != "eth0" ||
		st.IfIndex != tl.Index || st.ParentIfIndex != h.parent.Index || !bytes.Equal(st.MAC, lcMAC1) ||
		st.MTU != 1400 || !st.Carrier || !st.ParentCarrier || st.StartedAt.IsZero() || st.LastError != "" ||
		len(st.Offloads) == 0 {
		t.Errorf("status %+v", st)
	}
	if !bytes.Equal(tl.HardwareAddr, lcMAC1) || tl.MTU != 1400 || !tl.Up || !tl.LowerUp {
		t.Errorf("TAP link %+v", tl)
	}
	calls := h.n.Calls()
	up := fmt.Sprintf("LinkSetUp %d", tl.Index)
	lcBefore(t, calls, "LinkSubscribe", "LinkByName eth0")
	lcBefore(t, calls, "CreateTAP veth0", up)
	lcBefore(t, calls, "SetCarrier veth0 false", up)
	lcBefore(t, calls, fmt.Sprintf("LinkSetHardwareAddr %d %s", tl.Index, lcMAC1), up)
	lcBefore(t, calls, fmt.Sprintf("LinkSetMTU %d 1400", tl.Index), up)
	lcBefore(t, calls, up, fmt.Sprintf("OpenParentSocket %d eth0 %s", h.parent.Index, lcMAC1))
	lcBefore(t, calls, up, "SetCarrier veth0 true")
	tap := h.n.TAP("veth0")
	if !tap.Carrier() {
		t.Error("TAP has no carrier")
	}
	socks := h.n.Sockets()
	if len(socks) != 1 || socks[0].Ifindex != h.parent.Index || !bytes.Equal(socks[0].MAC, lcMAC1) {
		t.Fatalf("sockets %+v", socks)
	}
	lcCheckFlow(t, tap.Pipe, socks[0], lcMAC1)
	if err := b.Health(); err != nil {
		t.Errorf("Health: %v", err)
	}
	if got := h.log.String(); got != "" {
		t.Errorf("log %q, want nothing", got)
	}
}

func TestStartNameInUse(t *testing.T) {
	h := newLCHarness(t)
	h.n.Add(bridge.Link{Name: "veth0"})
	_, err := bridge.Start(h.config())
	if !errors.Is(err, bridge.ErrNameInUse) {
		t.Fatalf("Start: %v, want ErrNameInUse", err)
	}
	if c := h.n.Calls("CreateTAP"); len(c) != 0 {
		t.Errorf("calls %q", c)
	}
	if n := h.n.Subscriptions(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}

func TestStartNoParent(t *testing.T) { lcBothKinds(t, testStartNoParent) }

func testStartNoParent(t *testing.T, h *lcHarness) {
	h.n.Remove(h.parent.Index)
	_, err := bridge.Start(h.config())
	if !errors.Is(err, bridge.ErrNoParent) {
		t.Fatalf("Start: %v, want ErrNoParent", err)
	}
	if _, ok := h.n.Lookup("veth0"); ok {
		t.Error("veth0 left behind")
	}
	if n := h.n.Subscriptions(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	for _, op := range []string{"LinkSetHardwareAddr", "LinkSetUp", "OpenParentSocket", "SetCarrier"} {
		t.Run(op, func(t *testing.T) {
			h := newLCHarness(t)
			h.n.Fail(op, unix.EPERM)
			_, err := bridge.Start(h.config())
			if !errors.Is(err, unix.EPERM) {
				t.Fatalf("Start: %v, want EPERM", err)
			}
			if _, ok := h.n.Lookup("veth0"); ok {
				t.Error("veth0 left behind")
			}
			if n := h.n.Subscriptions(); n != 0 {
				t.Errorf("%d subscriptions left", n)
			}
			for _, s := range h.n.Sockets() {
				if !s.Closed() {
					t.Error("a parent socket was left open")
				}
			}
		})
	}
}

func TestStartBadConfig(t *testing.T) {
	h := newLCHarness(t)
	for _, c := range []func(*bridge.Config){
		func(c *bridge.Config) { c.Name = "" },
		func(c *bridge.Config) { c.Parent = "a/b" },
		func(c *bridge.Config) { c.MAC = nil },
		func(c *bridge.Config) { c.MAC = lcMAC1[:4] },
	} {
		cfg := h.config()
		c(&cfg)
		if _, err := bridge.Start(cfg); err == nil {
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
	if c := h.n.Calls(); len(c) != 0 {
		t.Errorf("calls %q", c)
	}
}

func TestWaitParent(t *testing.T) { lcBothKinds(t, testWaitParent) }

func testWaitParent(t *testing.T, h *lcHarness) {
	h.n.Remove(h.parent.Index)
	cfg := h.config()
	cfg.WaitParent = true
	b := h.start(cfg)
	st := b.Status()
	if st.State != bridge.StateWaitingParent || st.Carrier || st.ParentCarrier || st.ParentIfIndex != 0 || st.MTU != 1500 {
		t.Errorf("status %+v", st)
	}
	tap := h.nic()
	if tap.Carrier() {
		t.Error("TAP has a carrier without a parent")
	}
	if want := "WARN Parent eth0 does not exist; veth0 has no carrier until it appears\n"; h.log.String() != want {
		t.Errorf("log %q, want %q", h.log, want)
	}
	// Frames from the host are dropped while there is no parent.
	tap.In <- lcFrame(lcPeer, lcMAC1, "nowhere")
	lcWaitFor(t, "a no-parent drop", func() bool { return b.Counters().TxDrops[bridge.DropNoParent].Load() == 1 })

	p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1450, Up: true, LowerUp: true})
	h.sync(p.Index) // attached, and done with it
	st = h.b.Status()
	if st.ParentIfIndex != p.Index || !st.Carrier || st.MTU != 1450 || !tap.Carrier() {
		t.Errorf("status %+v", st)
	}
	if tl := h.tapLink(); tl.MTU != 1450 {
		t.Errorf("TAP MTU %d, want 1450", tl.MTU)
	}
	sock := h.n.Socket()
	if sock == nil || sock.Ifindex != p.Index {
		t.Fatalf("socket %+v", sock)
	}
	lcCheckFlow(t, tap.Pipe, sock, lcMAC1)
	if !strings.Contains(h.log.String(), fmt.Sprintf("INFO Attached veth0 into eth0 again parent_ifindex=%d\n", p.Index)) {
		t.Errorf("log %q", h.log)
	}
}

func TestWaitParentIgnoresTAPRenamedToParent(t *testing.T) {
	h := newLCHarness(t)
	h.n.Remove(h.parent.Index)
	cfg := h.config()
	cfg.WaitParent = true
	b := h.start(cfg)
	tapIndex := b.Status().IfIndex
	h.n.Rename(tapIndex, "eth0")
	h.n.Rename(tapIndex, "veth0")
	p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	h.wait("the parent", func(st bridge.Status) bool { return st.ParentIfIndex == p.Index })
	want := []string{fmt.Sprintf("OpenParentSocket %d eth0 %s", p.Index, lcMAC1)}
	if c := h.n.Calls("OpenParentSocket"); !slices.Equal(c, want) {
		t.Errorf("calls %q, want %q", c, want)
	}
}

func TestParentCarrier(t *testing.T) {
	for _, carrierOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("CarrierOn=%v", carrierOn), func(t *testing.T) {
			h := newLCHarness(t)
			cfg := h.config()
			cfg.CarrierOn = carrierOn
			h.start(cfg)
			tap := h.n.TAP("veth0")

			// The status may change a moment before the TAP's carrier:
			// wait for both.
			h.n.SetCarrier(h.parent.Index, false)
			st := h.wait("degraded", func(st bridge.Status) bool {
				return st.State == bridge.StateDegraded && tap.Carrier() == carrierOn
			})
			if st.ParentCarrier || st.Carrier != carrierOn || tap.Carrier() != carrierOn {
				t.Errorf("status %+v, TAP carrier %v", st, tap.Carrier())
			}
			h.n.SetUp(h.parent.Index, false)
			h.n.SetCarrier(h.parent.Index, true) // but down: still no carrier
			h.sync(h.parent.Index)
			if st := h.b.Status(); st.State != bridge.StateDegraded {
				t.Errorf("state %s for a parent that is down", st.State)
			}
			h.n.SetUp(h.parent.Index, true)
			st = h.wait("running", func(st bridge.Status) bool { return st.State == bridge.StateRunning && tap.Carrier() })
			if !st.ParentCarrier || !st.Carrier || !tap.Carrier() {
				t.Errorf("status %+v, TAP carrier %v", st, tap.Carrier())
			}
			if len(h.n.Sockets()) != 1 {
				t.Errorf("the socket was re-opened: %d sockets", len(h.n.Sockets()))
			}
			h.sync(h.parent.Index) // done logging
			if !carrierOn {
				want := "WARN Parent eth0 lost carrier; veth0 has no carrier\n" +
					"INFO Parent eth0 has carrier; veth0 is up\n"
				if got := h.log.String(); got != want {
					t.Errorf("log %q, want %q", got, want)
				}
			}
		})
	}
}

func TestParentMTU(t *testing.T) { lcBothKinds(t, testParentMTU) }

func testParentMTU(t *testing.T, h *lcHarness) {
	h.start(h.config())
	h.n.SetMTU(h.parent.Index, 9000)
	if st := h.wait("MTU 9000", func(st bridge.Status) bool { return st.MTU == 9000 }); st.State != bridge.StateRunning {
		t.Errorf("status %+v", st)
	}
	if tl := h.tapLink(); tl.MTU != 9000 {
		t.Errorf("TAP MTU %d", tl.MTU)
	}
	if want := "INFO MTU of veth0 follows eth0 mtu=9000\n"; h.log.String() != want {
		t.Errorf("log %q, want %q", h.log, want)
	}
}

func TestParentMTUNotFollowedWhenSet(t *testing.T) { lcBothKinds(t, testParentMTUNotFollowedWhenSet) }

func testParentMTUNotFollowedWhenSet(t *testing.T, h *lcHarness) {
	cfg := h.config()
	cfg.MTU = 1280
	b := h.start(cfg)
	if st := b.Status(); st.MTU != 1280 {
		t.Fatalf("MTU %d, want 1280", st.MTU)
	}
	h.n.SetMTU(h.parent.Index, 9000)
	h.sync(h.parent.Index)
	if st := b.Status(); st.MTU != 1280 {
		t.Errorf("MTU %d, want 1280", st.MTU)
	}
	if tl := h.tapLink(); tl.MTU != 1280 {
		t.Errorf("TAP MTU %d", tl.MTU)
	}
	if c := h.n.Calls(fmt.Sprintf("LinkSetMTU %d 9000", b.Status().IfIndex)); len(c) != 0 {
		t.Errorf("calls %q", c)
	}
}

func TestParentRenamed(t *testing.T) { lcBothKinds(t, testParentRenamed) }

func testParentRenamed(t *testing.T, h *lcHarness) {
	h.start(h.config())
	h.n.Rename(h.parent.Index, "wan0")
	st := h.wait("parent wan0", func(st bridge.Status) bool { return st.Parent == "wan0" })
	if st.State != bridge.StateRunning || st.ParentIfIndex != h.parent.Index {
		t.Errorf("status %+v", st)
	}
	// A new link named eth0 is not a parent to move to: the bridge is attached.
	h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	h.sync(h.parent.Index)
	if socks := h.n.Sockets(); len(socks) != 1 || socks[0].Closed() {
		t.Errorf("sockets %+v", socks)
	}
	lcCheckFlow(t, h.nic().Pipe, h.n.Socket(), lcMAC1)
	if want := "INFO Parent eth0 renamed to wan0; still attached\n"; h.log.String() != want {
		t.Errorf("log %q, want %q", h.log, want)
	}
}

func TestParentDeletedAndRecreated(t *testing.T) { lcBothKinds(t, testParentDeletedAndRecreated) }

func testParentDeletedAndRecreated(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	tapIndex := b.Status().IfIndex
	old := h.n.Socket()
	h.n.Remove(h.parent.Index)
	st := h.waitState(bridge.StateWaitingParent)
	if st.Carrier || st.ParentCarrier || st.ParentIfIndex != 0 || st.IfIndex != tapIndex {
		t.Errorf("status %+v", st)
	}
	if !old.Closed() {
		t.Error("the old parent socket is open")
	}
	tap := h.nic()
	if tap.Pipe == nil || tap.Carrier() {
		t.Fatal("the TAP is gone or has a carrier")
	}

	p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	st = h.waitState(bridge.StateRunning)
	if st.ParentIfIndex != p.Index || st.IfIndex != tapIndex || !st.Carrier {
		t.Errorf("status %+v", st)
	}
	sock := h.n.Socket()
	if sock == old || sock.Ifindex != p.Index {
		t.Fatalf("socket %+v", sock)
	}
	lcCheckFlow(t, tap.Pipe, sock, lcMAC1)
	h.sync(p.Index) // done logging
	want := "WARN Parent eth0 removed; veth0 has no carrier until a link named eth0 appears\n" +
		fmt.Sprintf("INFO Attached veth0 into eth0 again parent_ifindex=%d\n", p.Index)
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

// TestParentRecreatedAtOnce: the new parent exists already when the
// deletion of the old one is handled, and its own notification is lost.
func TestParentRecreatedAtOnce(t *testing.T) { lcBothKinds(t, testParentRecreatedAtOnce) }

func testParentRecreatedAtOnce(t *testing.T, h *lcHarness) {
	h.start(h.config())
	var p bridge.Link
	h.n.Quiet(func() {
		h.n.Remove(h.parent.Index)
		p = h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	})
	h.n.Emit(bridge.LinkEvent{Link: h.parent, Deleted: true})
	st := h.wait("the new parent", func(st bridge.Status) bool { return st.ParentIfIndex == p.Index })
	if st.State != bridge.StateRunning {
		t.Errorf("status %+v", st)
	}
	lcCheckFlow(t, h.nic().Pipe, h.n.Socket(), lcMAC1)
}

func TestSubscriptionLost(t *testing.T) {
	t.Run("parent changed", func(t *testing.T) {
		h := newLCHarness(t)
		h.start(h.config())
		h.n.Quiet(func() { h.n.SetCarrier(h.parent.Index, false) })
		h.n.DropSubscriptions()
		h.waitState(bridge.StateDegraded)
		if c := h.n.Calls("LinkSubscribe"); len(c) != 2 {
			t.Errorf("calls %q", c)
		}
		if n := h.n.Subscriptions(); n != 1 {
			t.Errorf("%d subscriptions", n)
		}
		if !strings.HasPrefix(h.log.String(), "WARN link notifications lost; resubscribing\n") {
			t.Errorf("log %q", h.log)
		}
		// The new subscription works.
		h.n.SetCarrier(h.parent.Index, true)
		h.waitState(bridge.StateRunning)
	})
	t.Run("parent deleted", func(t *testing.T) {
		h := newLCHarness(t)
		h.start(h.config())
		h.n.Quiet(func() { h.n.Remove(h.parent.Index) })
		h.n.DropSubscriptions()
		h.waitState(bridge.StateWaitingParent)
		p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
		h.wait("the new parent", func(st bridge.Status) bool { return st.ParentIfIndex == p.Index })
	})
	t.Run("parent appeared", func(t *testing.T) {
		h := newLCHarness(t)
		h.n.Remove(h.parent.Index)
		cfg := h.config()
		cfg.WaitParent = true
		h.start(cfg)
		var p bridge.Link
		h.n.Quiet(func() { p = h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true}) })
		h.n.DropSubscriptions()
		h.wait("the parent", func(st bridge.Status) bool { return st.ParentIfIndex == p.Index })
	})
}

func TestReconfigureMAC(t *testing.T) { lcBothKinds(t, testReconfigureMAC) }

func testReconfigureMAC(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	old := h.n.Socket()
	cfg := h.config()
	cfg.MAC = lcMAC2
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	st := b.Status()
	if !bytes.Equal(st.MAC, lcMAC2) || st.State != bridge.StateRunning {
		t.Errorf("status %+v", st)
	}
	if tl := h.tapLink(); !bytes.Equal(tl.HardwareAddr, lcMAC2) {
		t.Errorf("TAP MAC %s", tl.HardwareAddr)
	}
	sock := h.n.Socket()
	if !old.Closed() || sock == old || !bytes.Equal(sock.MAC, lcMAC2) || sock.Ifindex != h.parent.Index {
		t.Errorf("old socket closed %v, new socket %+v", old.Closed(), sock)
	}
	tap := h.nic()
	lcCheckFlow(t, tap.Pipe, sock, lcMAC2)
	// The old address is a spoof now.
	tap.In <- lcFrame(lcPeer, lcMAC1, "old")
	tap.In <- lcFrame(lcPeer, lcMAC2, "new")
	if got := lcRecv(t, sock.Out, "after the spoofed one"); !bytes.Equal(got, lcFrame(lcPeer, lcMAC2, "new")) {
		t.Errorf("on the wire: %x", got)
	}
	want := fmt.Sprintf("INFO MAC address of veth0 changed mac=%s\nINFO Attached veth0 into eth0 mac=%s\n", lcMAC2, lcMAC2)
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

func TestReconfigureParent(t *testing.T) { lcBothKinds(t, testReconfigureParent) }

func testReconfigureParent(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	old := h.n.Socket()
	eth1 := h.n.Add(bridge.Link{Name: "eth1", MTU: 1500, Up: true, LowerUp: true})
	cfg := h.config()
	cfg.Parent = "eth1"
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	st := b.Status()
	if st.Parent != "eth1" || st.ParentIfIndex != eth1.Index || st.State != bridge.StateRunning || st.MTU != 1500 {
		t.Errorf("status %+v", st)
	}
	sock := h.n.Socket()
	if !old.Closed() || sock.Ifindex != eth1.Index {
		t.Errorf("socket %+v", sock)
	}
	lcCheckFlow(t, h.nic().Pipe, sock, lcMAC1)
	// Changes of the old parent are nobody's business now.
	h.n.SetCarrier(h.parent.Index, false)
	h.sync(eth1.Index)
	if st := b.Status(); st.State != bridge.StateRunning {
		t.Errorf("status %+v", st)
	}

	// A parent that does not exist is waited for.
	cfg.Parent = "eth2"
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if st := b.Status(); st.State != bridge.StateWaitingParent || st.Parent != "eth2" || st.Carrier {
		t.Errorf("status %+v", st)
	}
	eth2 := h.n.Add(bridge.Link{Name: "eth2", MTU: 1500, Up: true, LowerUp: true})
	h.wait("eth2", func(st bridge.Status) bool { return st.ParentIfIndex == eth2.Index })
}

func TestReconfigureMTUAndCarrier(t *testing.T) { lcBothKinds(t, testReconfigureMTUAndCarrier) }

func testReconfigureMTUAndCarrier(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	cfg := h.config()
	cfg.MTU = 1280
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if st := b.Status(); st.MTU != 1280 || h.tapLink().MTU != 1280 {
		t.Errorf("MTU %d, link %d", st.MTU, h.tapLink().MTU)
	}
	cfg.MTU = 0
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if st := b.Status(); st.MTU != 1400 || h.tapLink().MTU != 1400 {
		t.Errorf("MTU %d, link %d; want the parent's", st.MTU, h.tapLink().MTU)
	}

	h.n.SetCarrier(h.parent.Index, false)
	h.wait("no carrier", func(st bridge.Status) bool { return !st.Carrier })
	cfg.CarrierOn = true
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	tap := h.nic()
	if st := b.Status(); !st.Carrier || st.State != bridge.StateDegraded || !tap.Carrier() {
		t.Errorf("status %+v, TAP carrier %v", st, tap.Carrier())
	}
	cfg.CarrierOn = false
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if st := b.Status(); st.Carrier || tap.Carrier() {
		t.Errorf("status %+v, TAP carrier %v", st, tap.Carrier())
	}
	if len(h.n.Sockets()) != 1 {
		t.Errorf("the socket was re-opened")
	}
	want := "INFO MTU of veth0 set mtu=1280\nINFO MTU of veth0 follows eth0 mtu=1400\nWARN Parent eth0 lost carrier; veth0 has no carrier\n"
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

func TestReconfigureFailsChangingNothing(t *testing.T) {
	lcBothKinds(t, testReconfigureFailsChangingNothing)
}

func testReconfigureFailsChangingNothing(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	was := b.Status()
	h.n.Add(bridge.Link{Name: "eth1", MTU: 1500, Up: true, LowerUp: true})
	h.n.Fail("LinkSetHardwareAddr", unix.EPERM)
	cfg := h.config()
	cfg.MAC, cfg.Parent, cfg.MTU, cfg.CarrierOn = lcMAC2, "eth1", 1280, true
	if err := b.Reconfigure(cfg); !errors.Is(err, unix.EPERM) {
		t.Fatalf("Reconfigure: %v, want EPERM", err)
	}
	h.n.Fail("LinkSetHardwareAddr", nil)
	after := b.Status()
	if fmt.Sprint(after) != fmt.Sprint(was) {
		t.Errorf("status changed:\n%+v\n%+v", was, after)
	}
	if len(h.n.Sockets()) != 1 || h.n.Socket().Closed() {
		t.Error("the socket was touched")
	}
	// The configuration did not change either: the MTU still follows eth0,
	// and the carrier too.
	h.n.SetMTU(h.parent.Index, 1450)
	h.wait("MTU 1450", func(st bridge.Status) bool { return st.MTU == 1450 })
	h.n.SetCarrier(h.parent.Index, false)
	h.wait("no carrier", func(st bridge.Status) bool { return !st.Carrier })

	for _, c := range []bridge.Config{
		{Name: "veth1", Parent: "eth0"},
		{Name: "veth0", Parent: ""},
		{Name: "veth0", Parent: "eth0", MAC: lcMAC1[:3]},
	} {
		if err := b.Reconfigure(c); err == nil {
			t.Errorf("Reconfigure(%+v) succeeded", c)
		}
	}
}

func TestAdopt(t *testing.T) {
	h := newLCHarness(t)
	kept := net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x77}
	l, f := h.n.AddTAP(bridge.Link{Name: "veth0", MTU: 1500, HardwareAddr: kept})
	cfg := h.config()
	cfg.MAC, cfg.TAP = nil, f
	b := h.start(cfg)
	st := b.Status()
	if st.IfIndex != l.Index || !bytes.Equal(st.MAC, kept) || st.MTU != 1400 || st.State != bridge.StateRunning {
		t.Errorf("status %+v", st)
	}
	if c := h.n.Calls("CreateTAP", "LinkSetHardwareAddr"); len(c) != 0 {
		t.Errorf("calls %q", c)
	}
	if c := h.n.Calls("LinkSetUp"); !slices.Equal(c, []string{fmt.Sprintf("LinkSetUp %d", l.Index)}) {
		t.Errorf("calls %q", c)
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the adopted file is open (Close: %v)", err)
	}
	if s := h.n.Socket(); !bytes.Equal(s.MAC, kept) {
		t.Errorf("socket MAC %s", s.MAC)
	}
	lcCheckFlow(t, h.n.TAP("veth0").Pipe, h.n.Socket(), kept)
	// Closing leaves the interface: someone else holds it.
	b.Close()
	if _, ok := h.n.Lookup("veth0"); !ok {
		t.Error("veth0 removed")
	}
}

// TestAdoptKeepsMAC: an adopted interface keeps the address it has (one
// someone set while the last bridge ran, say), whatever MAC says; the
// difference is logged, and Reconfigure sets MAC.
func TestAdoptKeepsMAC(t *testing.T) {
	h := newLCHarness(t)
	l, f := h.n.AddTAP(bridge.Link{Name: "veth0", MTU: 1400, HardwareAddr: lcMAC2, Up: true})
	cfg := h.config()
	cfg.TAP = f
	b := h.start(cfg)
	if st := b.Status(); !bytes.Equal(st.MAC, lcMAC2) || !bytes.Equal(h.tapLink().HardwareAddr, lcMAC2) {
		t.Errorf("status %+v", st)
	}
	// Only what differs is changed, and the MAC not at all: the MTU and
	// the up flag are right.
	if c := h.n.Calls("LinkSetMTU", "LinkSetUp", "LinkSetHardwareAddr"); len(c) != 0 {
		t.Errorf("calls %q", c)
	}
	if s := h.n.Socket(); !bytes.Equal(s.MAC, lcMAC2) {
		t.Errorf("socket MAC %s", s.MAC)
	}
	want := fmt.Sprintf("WARN Adopted veth0 keeps its MAC address mac=%s, not the configured %s; a reload sets the configured one\n", lcMAC2, lcMAC1)
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	if err := b.Reconfigure(h.config()); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if c := h.n.Calls("LinkSetHardwareAddr"); !slices.Equal(c, []string{fmt.Sprintf("LinkSetHardwareAddr %d %s", l.Index, lcMAC1)}) {
		t.Errorf("calls %q", c)
	}
	if st := b.Status(); !bytes.Equal(st.MAC, lcMAC1) || !bytes.Equal(h.n.Socket().MAC, lcMAC1) {
		t.Errorf("after Reconfigure: status %+v, socket %+v", st, h.n.Socket())
	}
}

func TestAdoptNotTAP(t *testing.T) {
	h := newLCHarness(t)
	l, gone := h.n.AddTAP(bridge.Link{Name: "veth0", MTU: 1500, HardwareAddr: lcMAC1})
	h.n.Remove(l.Index) // deleted while systemd held it
	other, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{gone, other} {
		cfg := h.config()
		cfg.TAP = f
		if _, err := bridge.Start(cfg); !errors.Is(err, bridge.ErrNotTAP) {
			t.Errorf("Start: %v, want ErrNotTAP", err)
		}
		if err := f.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("the file to adopt is open (Close: %v)", err)
		}
	}
	if n := h.n.Subscriptions(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}

func TestAdoptFailureClosesFile(t *testing.T) {
	h := newLCHarness(t)
	_, f := h.n.AddTAP(bridge.Link{Name: "veth0", MTU: 1500, HardwareAddr: lcMAC2})
	h.n.Fail("LinkSetUp", unix.EPERM)
	cfg := h.config()
	cfg.TAP = f
	if _, err := bridge.Start(cfg); !errors.Is(err, unix.EPERM) {
		t.Fatalf("Start: %v, want EPERM", err)
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the file to adopt is open (Close: %v)", err)
	}
	if h.n.TAP("veth0") != nil {
		t.Error("the adopted device is open")
	}
	// Failing before the adoption closes it too.
	_, f = h.n.AddTAP(bridge.Link{Name: "veth1", MTU: 1500})
	cfg = h.config()
	cfg.Name, cfg.Parent, cfg.TAP = "veth1", "nothere", f
	if _, err := bridge.Start(cfg); !errors.Is(err, bridge.ErrNoParent) {
		t.Fatalf("Start: %v, want ErrNoParent", err)
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the file to adopt is open (Close: %v)", err)
	}
}

// TestRestartAdopts is what a service restart does: hand the TAP's fd over
// (TAPFd), close, and start again adopting it: same interface.
func TestRestartAdopts(t *testing.T) {
	h := newLCHarness(t)
	b1 := h.start(h.config())
	index := b1.Status().IfIndex
	fd, err := b1.TAPFd()
	if err != nil {
		t.Fatalf("TAPFd: %v", err)
	}
	b1.Close()
	if _, ok := h.n.Lookup("veth0"); !ok {
		t.Fatal("veth0 went with its fd stored")
	}
	cfg := h.config()
	cfg.MAC, cfg.TAP = nil, os.NewFile(uintptr(fd), "tap")
	b2 := h.start(cfg)
	if st := b2.Status(); st.IfIndex != index || !bytes.Equal(st.MAC, lcMAC1) || st.State != bridge.StateRunning {
		t.Errorf("status %+v", st)
	}
	lcCheckFlow(t, h.n.TAP("veth0").Pipe, h.n.Socket(), lcMAC1)
}

func TestTAPDeleted(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	h.n.Remove(b.Status().IfIndex)
	errc := make(chan error, 1)
	go func() { errc <- b.Wait() }()
	select {
	case err := <-errc:
		if err == nil || err.Error() != "veth0 was deleted by someone else" {
			t.Errorf("Wait: %v", err)
		}
	case <-time.After(lcTimeout):
		t.Fatal("Wait did not return")
	}
	if st := b.Status(); st.LastError != "veth0 was deleted by someone else" {
		t.Errorf("status %+v", st)
	}
	// The TAP reader ends on EBADFD, which Health reports.
	lcWaitFor(t, "Health to fail", func() bool { return b.Health() != nil })
}

func TestClose(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	tap, sock := h.n.TAP("veth0"), h.n.Socket()
	sock.AddDropped(5)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !tap.Closed() || !sock.Closed() {
		t.Errorf("TAP closed %v, socket closed %v", tap.Closed(), sock.Closed())
	}
	if _, ok := h.n.Lookup("veth0"); ok {
		t.Error("veth0 outlived its only descriptor")
	}
	if n := h.n.Subscriptions(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
	if c := h.n.Calls("Close"); len(c) != 0 {
		t.Errorf("the caller's LinkControl was closed: %q", c)
	}
	if n := b.Counters().RxDrops[bridge.DropQueueFull].Load(); n != 5 {
		t.Errorf("%d queue-full drops, want 5", n)
	}
	if st := b.Status(); st.State != bridge.StateStopping {
		t.Errorf("state %s", st.State)
	}
	if err := b.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if err := b.Health(); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("Health: %v, want ErrClosed", err)
	}
	if err := b.Reconfigure(h.config()); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("Reconfigure: %v, want ErrClosed", err)
	}
}

func TestHealth(t *testing.T) { lcBothKinds(t, testHealth) }

func testHealth(t *testing.T, h *lcHarness) {
	h.n.Remove(h.parent.Index)
	cfg := h.config()
	cfg.WaitParent = true
	b := h.start(cfg)
	if err := b.Health(); err != nil {
		t.Errorf("Health waiting for the parent: %v", err)
	}
	h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	h.waitState(bridge.StateRunning)
	if err := b.Health(); err != nil {
		t.Errorf("Health: %v", err)
	}
}

func TestTAPFd(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	h.n.Fail("Dup", unix.EMFILE)
	if _, err := b.TAPFd(); !errors.Is(err, unix.EMFILE) {
		t.Errorf("TAPFd: %v, want EMFILE", err)
	}
	h.n.Fail("Dup", nil)
	fd, err := b.TAPFd()
	if err != nil {
		t.Fatalf("TAPFd: %v", err)
	}
	if err := unix.Close(fd); err != nil {
		t.Errorf("close the fd: %v", err)
	}
}

func TestFramesCounted(t *testing.T) { lcBothKinds(t, testFramesCounted) }

func testFramesCounted(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	tap, sock := h.nic(), h.n.Socket()
	tap.In <- lcFrame(lcPeer, lcPeer, "spoofed")
	lcCheckFlow(t, tap.Pipe, sock, lcMAC1)
	c := b.Counters()
	// Counted after the write: wait for the counts.
	// Bytes are added after packets: wait for the bytes.
	lcWaitFor(t, "a packet each way", func() bool { return c.TxBytes.Load() > 0 && c.RxBytes.Load() > 0 })
	if n := c.TxDrops[bridge.DropSpoof].Load(); n != 1 {
		t.Errorf("%d spoof drops, want 1", n)
	}
	if n, want := c.TxBytes.Load(), uint64(len(lcFrame(lcPeer, lcMAC1, "from the host"))-bridge.VnetHdrLen); n != want {
		t.Errorf("%d bytes sent, want %d", n, want)
	}
}
