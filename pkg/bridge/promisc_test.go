package bridge_test

import (
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
)

// TestStalePromiscuityIgnored: the kernel announces no change of the
// promiscuity count that the unicast membership makes on a NIC without a
// unicast filter (a veth, many drivers), so a notification of the parent
// that was queued before (the ARP isolation's RTM_NEWLINK, say) carries a
// stale count; taken at its word it would leave Promiscuous false for
// good while the parent is promiscuous. The bridge reads the count back.
func TestStalePromiscuityIgnored(t *testing.T) {
	h := newLCHarness(t)
	h.start(h.config())
	h.waitState(bridge.StateRunning)
	// The silent change, then a notification from before it: it also
	// carries a new MTU, which tells when the bridge has handled it.
	h.n.Quiet(func() {
		h.n.SetPromiscuity(h.parent.Index, 1)
		h.n.SetMTU(h.parent.Index, 1300)
	})
	stale := h.parent
	stale.Promiscuity, stale.MTU = 0, 1300
	h.n.Emit(bridge.LinkEvent{Link: stale, NewNetnsID: -1})
	st := h.wait("the MTU of the stale notification", func(st bridge.Status) bool { return st.MTU == 1300 })
	if st.Promiscuity != 1 {
		t.Errorf("Promiscuity %d after a stale notification, want the parent's 1", st.Promiscuity)
	}
}
