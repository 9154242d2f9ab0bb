package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestTwoLeases: one cable, two DHCP leases. dhclient on eth0 and on
// vethd's veth1 get two different addresses from dnsmasq, whose lease file
// holds both MACs; both addresses answer and are reachable from the LAN,
// and the LAN's neighbour table maps each address to its own MAC.
func TestTwoLeases(t *testing.T) {
	l := NewLAN(t, LANConfig{DHCP: true})
	l.StartVethd(t, "veth1", "eth0")
	checkTwoLeases(t, l, "veth1")
}

// checkTwoLeases is the body of TestTwoLeases for any virtual interface
// virt on eth0 (vethd's TAP, or the macvlan control).
func checkTwoLeases(t *testing.T, l *LAN, virt string) {
	ethMAC, virtMAC := l.MAC(t, "eth0"), l.MAC(t, virt)
	if ethMAC.String() == virtMAC.String() {
		t.Fatalf("%s has eth0's MAC %s", virt, ethMAC)
	}
	a1 := l.DHCP(t, "eth0")
	a2 := l.DHCP(t, virt)
	t.Logf("eth0 %s got %s, %s %s got %s", ethMAC, a1, virt, virtMAC, a2)
	if a1 == a2 {
		t.Fatalf("eth0 and %s got the same lease %s", virt, a1)
	}
	want := map[string]string{ethMAC.String(): a1.String(), virtMAC.String(): a2.String()}
	waitFor(t, 5*time.Second, "both leases in dnsmasq's lease file", func() (bool, string) {
		got := l.Leases(t)
		for mac, ip := range want {
			if got[mac] != ip {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})

	// Out of each interface, bound to it.
	for _, dev := range []string{"eth0", virt} {
		tx0 := l.Host.Stat(t, dev, "tx_packets")
		rx0 := l.Host.Stat(t, dev, "rx_packets")
		l.Host.WaitPing(t, 5*time.Second, "-I", dev, l.Router4.String())
		if dtx, drx := l.Host.Stat(t, dev, "tx_packets")-tx0, l.Host.Stat(t, dev, "rx_packets")-rx0; dtx < 4 || drx < 4 {
			t.Errorf("ping -I %s: %s counted %d tx / %d rx packets, want ≥ 4 each", dev, dev, dtx, drx)
		}
	}
	// Into each address, from the LAN.
	for _, a := range []netip.Addr{a1, a2} {
		l.LANNS.WaitPing(t, 5*time.Second, a.String())
	}
	// The LAN sees two NICs.
	neigh := lanNeighbours(t, l)
	for mac, ip := range want {
		if neigh[ip] != mac {
			t.Errorf("LAN neighbour table: %s → %q, want %s (all: %v)", ip, neigh[ip], mac, neigh)
		}
	}
}

// lanNeighbours returns lan0's IPv4 neighbour table as address → MAC.
func lanNeighbours(t *testing.T, l *LAN) map[string]string {
	t.Helper()
	out := l.LANNS.IP(t, "-4", "-j", "neigh", "show", "dev", "lan0")
	var ns []struct {
		Dst    string `json:"dst"`
		LLAddr string `json:"lladdr"`
	}
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		t.Fatalf("parse neighbours: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, n := range ns {
		m[n.Dst] = strings.ToLower(n.LLAddr)
	}
	return m
}
