package integration

import "testing"

// TestControlMacvlan runs the same checks as the vethd tests against the
// kernel's macvlan (bridge mode) instead of vethd. It tests the harness: if
// a vethd test fails while its control passes, the fault is vethd's.
func TestControlMacvlan(t *testing.T) {
	t.Run("TwoLeases", func(t *testing.T) {
		l := NewLAN(t, LANConfig{DHCP: true})
		l.AddMacvlan(t, "veth1", "eth0")
		checkTwoLeases(t, l, "veth1")
	})
	t.Run("TCP", func(t *testing.T) {
		l := NewLAN(t, LANConfig{})
		l.AddMacvlan(t, "veth1", "eth0")
		checkTCP(t, l, "veth1", 32<<20)
	})
	t.Run("IPv6SLAAC", func(t *testing.T) {
		l := NewLAN(t, LANConfig{RA: true})
		l.AddMacvlan(t, "veth1", "eth0")
		checkSLAAC(t, l, "veth1")
	})
}
