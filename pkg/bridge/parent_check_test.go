package bridge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
)

// A parent that is not an Ethernet device, or whose MAC is the virtual
// interface's, is refused: at Start with an error naming it (before the
// virtual NIC is created or anything is set), and when it appears later
// (waiting-parent) with the error logged, the bridge waiting on.

func TestStartRefusesNonEthernetParent(t *testing.T) {
	lcBothKinds(t, testStartRefusesNonEthernetParent)
}

func testStartRefusesNonEthernetParent(t *testing.T, h *lcHarness) {
	h.n.Add(bridge.Link{Name: "tun0", MTU: 1500, Up: true, LowerUp: true, Kind: "tun", EncapType: "none"})
	h.n.Add(bridge.Link{Name: "wg0", MTU: 1420, Up: true, LowerUp: true, Kind: "wireguard", EncapType: "none"})
	for parent, want := range map[string]string{
		"lo":   "parent lo is not an Ethernet device (type loopback)",
		"tun0": "parent tun0 is not an Ethernet device (type none, kind tun)",
		"wg0":  "parent wg0 is not an Ethernet device (type none, kind wireguard)",
	} {
		cfg := h.config()
		cfg.Parent = parent
		for _, wait := range []bool{false, true} {
			cfg.WaitParent = wait
			b, err := bridge.Start(cfg)
			if err == nil {
				b.Close()
				t.Fatalf("Start on %s (WaitParent=%v) succeeded", parent, wait)
			}
			if !errors.Is(err, bridge.ErrParentNotEthernet) || err.Error() != want {
				t.Errorf("Start on %s: %q (ErrParentNotEthernet: %v), want %q", parent, err, errors.Is(err, bridge.ErrParentNotEthernet), want)
			}
		}
	}
	if _, ok := h.n.Lookup("veth0"); ok {
		t.Error("veth0 was created")
	}
	lcNoChanges(t, h)
}

func TestStartRefusesParentMAC(t *testing.T) { lcBothKinds(t, testStartRefusesParentMAC) }

func testStartRefusesParentMAC(t *testing.T, h *lcHarness) {
	cfg := h.config()
	cfg.MAC = h.parent.HardwareAddr
	b, err := bridge.Start(cfg)
	if err == nil {
		b.Close()
		t.Fatal("Start with the parent's MAC succeeded")
	}
	want := "MAC address " + h.parent.HardwareAddr.String() + " is eth0's own"
	if !errors.Is(err, bridge.ErrParentMAC) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Start: %q, want %q… wrapping ErrParentMAC", err, want)
	}
	if _, ok := h.n.Lookup("veth0"); ok {
		t.Error("veth0 was created")
	}
	lcNoChanges(t, h)
}

func TestWaitParentRefusesBadParent(t *testing.T) { lcBothKinds(t, testWaitParentRefusesBadParent) }

func testWaitParentRefusesBadParent(t *testing.T, h *lcHarness) {
	h.n.Remove(h.parent.Index)
	cfg := h.config()
	cfg.WaitParent = true
	h.start(cfg)

	// An L3 tun of the parent's name appears: refused, still waiting.
	tun := h.n.Add(bridge.Link{Name: "eth0", MTU: 1500, Up: true, LowerUp: true, Kind: "tun", EncapType: "none"})
	const wantTun = "attach to eth0: parent eth0 is not an Ethernet device (type none, kind tun)"
	st := h.wait("the tun refused", func(st bridge.Status) bool { return st.LastError != "" })
	if st.LastError != wantTun || st.State != bridge.StateWaitingParent || st.ParentIfIndex != 0 {
		t.Errorf("status %+v, want waiting-parent with LastError %q", st, wantTun)
	}
	if !strings.Contains(h.log.String(), "ERROR "+wantTun+"\n") {
		t.Errorf("log %q lacks %q", h.log, wantTun)
	}
	h.n.Remove(tun.Index)

	// An Ethernet device with the virtual NIC's own MAC: refused too.
	same := h.n.Add(bridge.Link{Name: "eth0", MTU: 1500, HardwareAddr: lcMAC1, Up: true, LowerUp: true})
	wantMAC := "attach to eth0: MAC address " + lcMAC1.String() + " is eth0's own"
	st = h.wait("the MAC refused", func(st bridge.Status) bool { return strings.HasPrefix(st.LastError, wantMAC) })
	if st.State != bridge.StateWaitingParent || st.ParentIfIndex != 0 {
		t.Errorf("status %+v, want waiting-parent", st)
	}
	h.n.Remove(same.Index)

	// A real one: attached.
	p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, HardwareAddr: lcPeer, Up: true, LowerUp: true})
	h.wait("the parent", func(st bridge.Status) bool { return st.ParentIfIndex == p.Index })
	if c := h.n.Calls("OpenParentSocket"); len(c) != 1 {
		t.Errorf("OpenParentSocket calls %q, want one (the Ethernet parent's)", c)
	}
}

// lcNoChanges fails unless the bridges tried have only looked (subscribed
// to link changes, looked up links), and closed their subscriptions.
func lcNoChanges(t *testing.T, h *lcHarness) {
	t.Helper()
	for _, c := range h.n.Calls() {
		if c != "LinkSubscribe" && !strings.HasPrefix(c, "LinkByName ") {
			t.Errorf("call %q, want only looks", c)
		}
	}
	if n := h.n.Subscriptions(); n != 0 {
		t.Errorf("%d subscriptions left open", n)
	}
}
