package integration

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestIPv6SLAAC: veth1 configures a global address in 2001:db8:X::/64 from
// dnsmasq's router advertisements (RS and RA are multicast, so this needs
// vethd's ALLMULTI membership), and the LAN reaches it with ping -6
// (neighbour solicitation to veth1's solicited-node group).
func TestIPv6SLAAC(t *testing.T) {
	l := NewLAN(t, LANConfig{RA: true})
	l.StartVethd(t, "veth1", "eth0")
	checkSLAAC(t, l, "veth1")
}

// checkSLAAC is the body of TestIPv6SLAAC for any virtual interface.
func checkSLAAC(t *testing.T, l *LAN, virt string) {
	var addr netip.Addr
	waitFor(t, 20*time.Second, "a SLAAC address on "+virt, func() (bool, string) {
		as := addrsOf(t, l.Host, virt, netlink.FAMILY_V6, true)
		for _, a := range as {
			if l.Prefix6.Contains(a) {
				addr = a
				return true, ""
			}
		}
		return false, fmt.Sprint(addrsOf(t, l.Host, virt, netlink.FAMILY_V6, false))
	})
	t.Logf("%s (%s) got %s", virt, l.MAC(t, virt), addr)
	l.LANNS.WaitPing(t, 5*time.Second, "-6", addr.String())
	l.Host.WaitPing(t, 5*time.Second, "-6", "-I", virt, l.Router6.String())
}
