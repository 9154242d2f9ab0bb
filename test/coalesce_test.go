package integration

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestTCPCoalescing moves SHA-256-verified TCP, IPv4 and IPv6, LAN → host
// and back, in the wire conditions where the LAN sends plain MTU frames
// and nothing coalesces them before vethd, so vethd's userspace GRO merges
// them before the TAP write:
//
//   - ChecksumOffload: lan0 keeps tx checksumming but no TSO/GSO, eth0 has
//     no GRO: the frames come with NEEDS_CSUM (checksum trusted, as the
//     kernel trusts it);
//   - SoftwareChecksum: the benchmarks' mtu-nogro (lan0 and eth0: tx, tso,
//     gso, gro off): no checksum flag at all, so vethd verifies every
//     checksum itself before merging.
//
// It also checks that merging happened, for IPv4 and IPv6 each: during
// each LAN→host transfer, veth1 must have received frames larger than the
// MTU on average.
func TestTCPCoalescing(t *testing.T) {
	for _, v := range []struct {
		name      string
		lan, host []string
	}{
		{"ChecksumOffload", []string{"tx", "on", "tso", "off", "gso", "off", "gro", "off"},
			[]string{"tx", "off", "tso", "off", "gso", "off", "gro", "off"}},
		{"SoftwareChecksum", []string{"tx", "off", "tso", "off", "gso", "off", "gro", "off"},
			[]string{"tx", "off", "tso", "off", "gso", "off", "gro", "off"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			l := newLANWithOffloads(t, v.lan, v.host)

			host4 := l.SetStatic(t, "veth1", 50)
			host6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::50", l.X))
			l.Host.IP(t, "addr", "add", host6.String()+"/64", "dev", "veth1", "nodad")
			l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
			l.Host.WaitPing(t, 10*time.Second, "-6", "-I", "veth1", l.Router6.String())

			const size = 32 << 20
			// LAN→host, one family at a time, so that each must coalesce.
			for _, x := range []struct {
				name, network string
				listen        netip.AddrPort
				from          netip.Addr
				seed          uint64
			}{
				{"v4", "tcp4", netip.AddrPortFrom(host4, 5203), l.Router4, 3},
				{"v6", "tcp6", netip.AddrPortFrom(host6, 5204), l.Router6, 4},
			} {
				pk0, by0 := l.Host.Stat(t, "veth1", "rx_packets"), l.Host.Stat(t, "veth1", "rx_bytes")
				t.Logf("LAN→host %s: %s", x.name, transfer(t, "LAN→host "+x.name, x.network, l.LANNS, l.Host, x.listen, x.from, size, x.seed))
				pk, by := l.Host.Stat(t, "veth1", "rx_packets")-pk0, l.Host.Stat(t, "veth1", "rx_bytes")-by0
				if pk == 0 || by/pk < 3000 {
					t.Errorf("LAN→host %s: veth1 received %d bytes in %d frames, want ≥ 3000 bytes per frame: too little coalescing", x.name, by, pk)
				} else {
					t.Logf("LAN→host %s: veth1 received %d bytes in %d frames (%d bytes per frame)", x.name, by, pk, by/pk)
				}
			}
			t.Log("host→LAN v4: " + transfer(t, "host→LAN v4", "tcp4", l.Host, l.LANNS, netip.AddrPortFrom(l.Router4, 5205), host4, size, 5))
			t.Log("host→LAN v6: " + transfer(t, "host→LAN v6", "tcp6", l.Host, l.LANNS, netip.AddrPortFrom(l.Router6, 5206), host6, size, 6))
		})
	}
}
