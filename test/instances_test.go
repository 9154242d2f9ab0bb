package integration

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTwoInstances runs two vethd on one eth0 (the second with the long
// flags). Each reaches the LAN, and they reach each other across the wire
// — vethd's PACKET_OUTGOING path, like macvlan's bridge mode.
//
// Both TAPs live in the same namespace, so a plain ping from one address
// to the other would be delivered over loopback and prove nothing. Two
// checks make the traffic cross the wire:
//   - arping -I veth1 <veth2's address>: the ARP request leaves through
//     veth1 and only veth2 (arp_ignore=1) can answer, with its own MAC,
//     which must be the MAC arping reports. This is the direct proof at
//     layer 2.
//   - a policy-routed ping at layer 3: the `local` rule is moved below
//     per-source rules (`from ADDR iif lo` — locally generated traffic
//     only) that send each address's traffic out of its own TAP, and
//     accept_local=1 lets each TAP accept packets whose source is an
//     address of this host. The TAP counters must show the packets.
func TestTwoInstances(t *testing.T) {
	needTools(t, "arping")
	l := NewLAN(t, LANConfig{})
	// Before the TAPs exist, so they inherit it: without it the kernel
	// drops an ARP request or ping whose sender is one of its own
	// addresses (veth1's, arriving on veth2) as a martian.
	l.Host.Sysctl(t, "net.ipv4.conf.all.accept_local", "1")
	l.Host.Sysctl(t, "net.ipv4.conf.default.accept_local", "1")
	mac1 := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x01}
	mac2 := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x02}
	l.StartVethd(t, "veth1", "eth0", "-m", mac1.String())
	p2 := l.SpawnVethd(t, "--name", "veth2", "--parent", "eth0", "--mac", mac2.String())
	if err := p2.WaitLine("Attached veth2 into eth0", 10*time.Second); err != nil {
		t.Fatalf("vethd --name veth2: %v", err)
	}
	for dev, mac := range map[string]net.HardwareAddr{"veth1": mac1, "veth2": mac2} {
		if got := l.MAC(t, dev); got.String() != mac.String() {
			t.Fatalf("%s MAC %s, want %s", dev, got, mac)
		}
	}
	a1 := l.SetStatic(t, "veth1", 11)
	a2 := l.SetStatic(t, "veth2", 12)

	// Both reach the LAN, and the LAN sees two NICs.
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth2", l.Router4.String())
	neigh := lanNeighbours(t, l)
	if neigh[a1.String()] != mac1.String() || neigh[a2.String()] != mac2.String() {
		t.Errorf("LAN neighbour table %v, want %s→%s and %s→%s", neigh, a1, mac1, a2, mac2)
	}

	// Layer 2: who answers an ARP request sent out of veth1?
	for _, c := range []struct {
		dev, target string
		want        net.HardwareAddr
	}{{"veth1", a2.String(), mac2}, {"veth2", a1.String(), mac1}} {
		out, err := l.Host.Run("arping", "-c", "2", "-w", "5", "-I", c.dev, c.target)
		if err != nil {
			t.Fatalf("arping -I %s %s: %v\n%s", c.dev, c.target, err, out)
		}
		replies := regexp.MustCompile(`reply from \S+ \[([0-9a-fA-F:]+)\]`).FindAllStringSubmatch(out, -1)
		if len(replies) == 0 {
			t.Fatalf("arping -I %s %s: no reply\n%s", c.dev, c.target, out)
		}
		for _, r := range replies {
			if !strings.EqualFold(r[1], c.want.String()) {
				t.Errorf("arping -I %s %s: reply from %s, want %s\n%s", c.dev, c.target, r[1], c.want, out)
			}
		}
	}

	// Layer 3, policy-routed.
	l.Host.IP(t, "route", "add", "198.18.0.0/15", "dev", "veth1", "src", a1.String(), "table", "101")
	l.Host.IP(t, "route", "add", "198.18.0.0/15", "dev", "veth2", "src", a2.String(), "table", "102")
	l.Host.IP(t, "rule", "add", "pref", "100", "from", a1.String(), "iif", "lo", "lookup", "101")
	l.Host.IP(t, "rule", "add", "pref", "101", "from", a2.String(), "iif", "lo", "lookup", "102")
	l.Host.IP(t, "rule", "add", "pref", "1000", "lookup", "local")
	l.Host.IP(t, "rule", "del", "pref", "0", "lookup", "local")
	tx1, rx2 := l.Host.Stat(t, "veth1", "tx_packets"), l.Host.Stat(t, "veth2", "rx_packets")
	tx2, rx1 := l.Host.Stat(t, "veth2", "tx_packets"), l.Host.Stat(t, "veth1", "rx_packets")
	l.Host.WaitPing(t, 10*time.Second, "-I", a1.String(), a2.String())
	// WaitPing sent at least 4 echo requests and got 4 replies.
	d := map[string]uint64{
		"veth1 tx": l.Host.Stat(t, "veth1", "tx_packets") - tx1,
		"veth2 rx": l.Host.Stat(t, "veth2", "rx_packets") - rx2,
		"veth2 tx": l.Host.Stat(t, "veth2", "tx_packets") - tx2,
		"veth1 rx": l.Host.Stat(t, "veth1", "rx_packets") - rx1,
	}
	for k, v := range d {
		if v < 4 {
			t.Errorf("ping %s → %s: %s counted %d packets, want ≥ 4: the ping did not cross the wire (all: %v)", a1, a2, k, v, d)
		}
	}
}
