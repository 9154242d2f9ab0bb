package bridge_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
	"golang.org/x/sys/unix"
)

// MTU edges (issue 9 item 6), over the fake link table, for both kinds.

// TestMTUAboveKindRefused: a configured MTU above what the kind takes is
// refused by Start and Reconfigure (ErrMTUTooLarge, naming the maximum),
// before anything is created or changed; the kind's maximum itself is
// taken.
func TestMTUAboveKindRefused(t *testing.T) { lcBothKinds(t, testMTUAboveKindRefused) }

func testMTUAboveKindRefused(t *testing.T, h *lcHarness) {
	max := bridge.MaxMTU(h.kind)
	cfg := h.config()
	cfg.MTU = max + 1
	if b, err := bridge.Start(cfg); !errors.Is(err, bridge.ErrMTUTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("at most %d", max)) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("Start with MTU %d: %v, want ErrMTUTooLarge naming %d", max+1, err, max)
	}
	if _, ok := h.n.Lookup("veth0"); ok {
		t.Fatal("a refused Start left veth0 behind")
	}
	cfg.MTU = max
	b := h.start(cfg)
	if st := b.Status(); st.MTU != max || h.tapLink().MTU != max {
		t.Fatalf("MTU %d (link %d), want %d", st.MTU, h.tapLink().MTU, max)
	}
	if h.kind == bridge.KindVeth {
		return // (65535 is the most ParseMTU takes too)
	}
	cfg.MTU = 65535
	if err := b.Reconfigure(cfg); !errors.Is(err, bridge.ErrMTUTooLarge) {
		t.Fatalf("Reconfigure with MTU 65535: %v, want ErrMTUTooLarge", err)
	}
	if st := b.Status(); st.MTU != max || st.LastError != "" {
		t.Errorf("after a refused Reconfigure: MTU %d, LastError %q", st.MTU, st.LastError)
	}
}

// TestParentMTUAboveKindMax: a parent whose MTU is more than the kind
// takes (65535, the most an Ethernet device has) is followed up to the
// kind's maximum, with one log line, no error and the state running —
// at start and when the parent's MTU changes.
func TestParentMTUAboveKindMax(t *testing.T) { lcBothKinds(t, testParentMTUAboveKindMax) }

func testParentMTUAboveKindMax(t *testing.T, h *lcHarness) {
	max := bridge.MaxMTU(h.kind)
	h.n.SetMTU(h.parent.Index, 65535)
	b := h.start(h.config())
	st := b.Status()
	if st.MTU != max || h.tapLink().MTU != max || st.LastError != "" || st.State != bridge.StateRunning {
		t.Fatalf("at start, parent MTU 65535: MTU %d (link %d), LastError %q, state %s; want %d, running", st.MTU, h.tapLink().MTU, st.LastError, st.State, max)
	}
	clampLine := fmt.Sprintf("WARN MTU of veth0 follows eth0 only up to the most a %s interface takes mtu=%d parent_mtu=65535\n", b.Status().Kind, max)
	want := ""
	if max < 65535 {
		want = clampLine
	}
	if got := h.log.String(); got != want {
		t.Errorf("log at start:\n%s\nwant\n%s", got, want)
	}
	h.n.SetMTU(h.parent.Index, 1400)
	h.wait("MTU 1400", func(st bridge.Status) bool { return st.MTU == 1400 })
	before := h.log.String()
	h.n.SetMTU(h.parent.Index, 65535)
	st = h.wait("the kind's maximum", func(st bridge.Status) bool { return st.MTU == max })
	h.sync(h.parent.Index)
	if st.LastError != "" || st.State != bridge.StateRunning || h.tapLink().MTU != max {
		t.Errorf("parent MTU 65535: LastError %q, state %s, link MTU %d", st.LastError, st.State, h.tapLink().MTU)
	}
	want = fmt.Sprintf("INFO MTU of veth0 follows eth0 mtu=%d\n", max)
	if max < 65535 {
		want = clampLine
	}
	if got := strings.TrimPrefix(h.log.String(), before); got != want {
		t.Errorf("log:\n%s\nwant\n%s", got, want)
	}
	if c := h.n.Calls(fmt.Sprintf("LinkSetMTU %d 65535", st.IfIndex)); max < 65535 && len(c) != 0 {
		t.Errorf("asked the kernel for MTU 65535 on a TAP: %q", c)
	}
}

// TestMTUErrorCleared: an MTU that could not be set is LastError until
// an MTU is set; then LastError is empty again (it was stale).
func TestMTUErrorCleared(t *testing.T) { lcBothKinds(t, testMTUErrorCleared) }

func testMTUErrorCleared(t *testing.T, h *lcHarness) {
	h.start(h.config())
	h.n.Fail("LinkSetMTU", unix.EINVAL)
	h.n.SetMTU(h.parent.Index, 9000)
	st := h.wait("LastError", func(st bridge.Status) bool { return st.LastError != "" })
	if st.LastError != "set veth0 mtu 9000: invalid argument" || st.MTU != 1400 {
		t.Fatalf("LastError %q, MTU %d", st.LastError, st.MTU)
	}
	h.n.Fail("LinkSetMTU", nil)
	h.n.SetMTU(h.parent.Index, 1500)
	st = h.wait("MTU 1500", func(st bridge.Status) bool { return st.MTU == 1500 })
	if st.LastError != "" {
		t.Errorf("LastError %q after the MTU was set", st.LastError)
	}
}

// TestOutsideMTUAbove: an MTU someone sets on the interface above what
// the parent carries is set back, with a warning naming the limit; with
// an explicit MTU above the parent's, that MTU is the limit.
func TestOutsideMTUAbove(t *testing.T) { lcBothKinds(t, testOutsideMTUAbove) }

func testOutsideMTUAbove(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	nic := h.tapLink()
	h.n.SetMTU(nic.Index, 9000)
	lcWaitFor(t, "the warning", func() bool { return strings.Contains(h.log.String(), "changed by someone else") })
	h.sync(h.parent.Index)
	if st := b.Status(); st.MTU != 1400 || h.tapLink().MTU != 1400 {
		t.Errorf("MTU %d (link %d), want it set back to 1400", st.MTU, h.tapLink().MTU)
	}
	if want := "WARN MTU of veth0 changed by someone else to 9000, above the 1400 that eth0 carries: frames that large would vanish; setting it back mtu=1400\n"; h.log.String() != want {
		t.Errorf("log:\n%s\nwant\n%s", h.log, want)
	}

	// An explicit MTU above the parent's is the admin's: the limit.
	cfg := h.config()
	cfg.MTU = 2000
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	h.n.SetMTU(nic.Index, 1800) // below: kept
	h.wait("MTU 1800", func(st bridge.Status) bool { return st.MTU == 1800 })
	h.n.SetMTU(nic.Index, 2001) // above: back to 2000
	lcWaitFor(t, "the second warning", func() bool { return strings.Contains(h.log.String(), "above the configured MTU=2000") })
	h.sync(h.parent.Index)
	if st := b.Status(); st.MTU != 2000 || h.tapLink().MTU != 2000 {
		t.Errorf("MTU %d (link %d), want 2000", st.MTU, h.tapLink().MTU)
	}
}

// TestOutsideMTUBelow: an MTU someone sets below the parent's is kept
// and reflected — also across a carrier flap of the parent and a reload
// that follows the parent as before — until the parent's MTU changes
// (followed) or a reload brings an explicit MTU (it wins).
func TestOutsideMTUBelow(t *testing.T) { lcBothKinds(t, testOutsideMTUBelow) }

func testOutsideMTUBelow(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	nic := h.tapLink()
	h.n.SetMTU(nic.Index, 1300)
	st := h.wait("MTU 1300", func(st bridge.Status) bool { return st.MTU == 1300 })
	if st.LastError != "" || !strings.Contains(h.log.String(), "INFO MTU of veth0 changed by someone else; keeping it mtu=1300\n") {
		t.Errorf("LastError %q; log:\n%s", st.LastError, h.log)
	}
	h.n.SetCarrier(h.parent.Index, false)
	h.waitState(bridge.StateDegraded)
	h.n.SetCarrier(h.parent.Index, true)
	h.waitState(bridge.StateRunning)
	if err := b.Reconfigure(h.config()); err != nil {
		t.Fatal(err)
	}
	h.sync(h.parent.Index)
	if st := b.Status(); st.MTU != 1300 || h.tapLink().MTU != 1300 {
		t.Fatalf("MTU %d (link %d) after a flap and a reload, want 1300 kept", st.MTU, h.tapLink().MTU)
	}
	h.n.SetMTU(h.parent.Index, 1450)
	h.wait("MTU 1450 (the parent's, changed)", func(st bridge.Status) bool { return st.MTU == 1450 })

	h.n.SetMTU(nic.Index, 1280)
	h.wait("MTU 1280", func(st bridge.Status) bool { return st.MTU == 1280 })
	cfg := h.config()
	cfg.MTU = 1450
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.MTU != 1450 || h.tapLink().MTU != 1450 {
		t.Errorf("MTU %d (link %d) after a reload with MTU=1450, want 1450", st.MTU, h.tapLink().MTU)
	}
	// Back to inherit: the parent's at once.
	h.n.SetMTU(nic.Index, 1280)
	h.wait("MTU 1280 again", func(st bridge.Status) bool { return st.MTU == 1280 })
	if err := b.Reconfigure(h.config()); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.MTU != 1450 {
		t.Errorf("MTU %d after a reload from MTU=1450 to inherit, want the parent's 1450", st.MTU)
	}
}

// TestReconfigureRefusedParent: a reload to a parent that is not an
// Ethernet device, or to the parent's own MAC address, is refused; the
// bridge keeps relaying on its old parent with its old address.
func TestReconfigureRefusedParent(t *testing.T) { lcBothKinds(t, testReconfigureRefusedParent) }

func testReconfigureRefusedParent(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	macSets, sockets := len(h.n.Calls("LinkSetHardwareAddr")), len(h.n.Calls("OpenParentSocket"))
	h.n.Add(bridge.Link{Name: "tun0", MTU: 1500, Up: true, LowerUp: true, EncapType: "none", Kind: "tun"})
	cfg := h.config()
	cfg.Parent = "tun0"
	if err := b.Reconfigure(cfg); !errors.Is(err, bridge.ErrParentNotEthernet) {
		t.Fatalf("Reconfigure to tun0: %v, want ErrParentNotEthernet", err)
	}
	cfg = h.config()
	cfg.MAC = lcPeer
	if err := b.Reconfigure(cfg); !errors.Is(err, bridge.ErrParentMAC) {
		t.Fatalf("Reconfigure to eth0's MAC: %v, want ErrParentMAC", err)
	}
	h.n.Add(bridge.Link{Name: "eth1", MTU: 1500, HardwareAddr: lcMAC2, Up: true, LowerUp: true})
	cfg = h.config()
	cfg.Parent, cfg.MAC = "eth1", lcMAC2
	if err := b.Reconfigure(cfg); !errors.Is(err, bridge.ErrParentMAC) {
		t.Fatalf("Reconfigure to eth1 with eth1's MAC: %v, want ErrParentMAC", err)
	}
	st := b.Status()
	if st.Parent != "eth0" || st.ParentIfIndex != h.parent.Index || st.State != bridge.StateRunning || !bytes.Equal(st.MAC, lcMAC1) || !bytes.Equal(h.tapLink().HardwareAddr, lcMAC1) {
		t.Fatalf("after refused reloads: %+v", st)
	}
	if m, s := len(h.n.Calls("LinkSetHardwareAddr")), len(h.n.Calls("OpenParentSocket")); m != macSets || s != sockets {
		t.Errorf("refused reloads set the MAC %d times, opened %d parent sockets; want none", m-macSets, s-sockets)
	}
	lcCheckFlow(t, h.nic().Pipe, h.n.Socket(), lcMAC1)
}
