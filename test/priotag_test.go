package integration

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPriorityTaggedFrames (issue 9 item 9): frames with an 802.1p priority
// tag (802.1Q, VLAN id 0, priority 5) from the LAN to veth1's MAC reach
// veth1's stack, both kinds: an ARP request is answered, an ICMP echo
// request is answered, a TCP SYN gets its SYN-ACK. The same three with a
// VLAN 5 tag get no answer and never show up on veth1. Before the fix the
// filter dropped every tagged frame.
func TestPriorityTaggedFrames(t *testing.T) {
	for _, kind := range []string{"tap", "veth"} {
		t.Run(kind, func(t *testing.T) {
			l := NewLAN(t, LANConfig{})
			l.StartVethd(t, "veth1", "eth0", "--kind="+kind, "-m", testVMAC.String())
			host := l.SetStatic(t, "veth1", 50)
			var ln net.Listener
			if err := l.Host.Do(func() (err error) {
				ln, err = net.Listen("tcp4", netip.AddrPortFrom(host, 7001).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			rx := openPacket(t, l.LANNS, "lan0", unix.ETH_P_ALL)
			seen := openPacket(t, l.Host, "veth1", unix.ETH_P_ALL)
			tx := openPacket(t, l.LANNS, "lan0", 0)
			p := probe{dst: testVMAC, src: l.LAN0MAC, from: l.Router4, to: host}

			// VLAN 5 first: nothing may answer (and the host has not
			// learnt the LAN's MAC from it).
			for _, tci := range []uint16{5<<13 | 5, 5 << 13} {
				vid := tci & 0x0fff
				for _, f := range [][]byte{p.arp(tci), p.icmp(tci, 0x7000+vid), p.syn(tci, 40000+vid)} {
					if err := tx.send(f); err != nil {
						t.Fatalf("send: %v", err)
					}
				}
				got := collectReplies(t, rx, p, 1500*time.Millisecond, vid == 0)
				t.Logf("VLAN %d (TCI %#04x): replies %+v", vid, tci, got)
				want := vid == 0
				if got.arp != want || got.icmp[0x7000+vid] != want || got.synack[40000+vid] != want {
					t.Errorf("VLAN %d: ARP reply %v, echo reply %v, SYN-ACK %v; want all %v",
						vid, got.arp, got.icmp[0x7000+vid], got.synack[40000+vid], want)
				}
			}
			// Nothing of VLAN 5 reached veth1; the priority-tagged echo
			// request did, untagged.
			counts := sniffEchoRequests(t, seen)
			t.Logf("echo requests seen on veth1 by id: %v", counts)
			if counts[0x7005] != 0 {
				t.Errorf("%d VLAN 5 echo requests reached veth1", counts[0x7005])
			}
			if counts[0x7000] != 1 {
				t.Errorf("%d priority-tagged echo requests reached veth1, want 1", counts[0x7000])
			}
		})
	}
}

// probe builds tagged frames from the LAN (src, from) to veth1 (dst, to).
type probe struct {
	dst, src net.HardwareAddr
	from, to netip.Addr
}

// eth returns an Ethernet header with an 802.1Q tag (TCI tci) in front of
// etherType.
func (p probe) eth(tci, etherType uint16) []byte {
	f := append(append([]byte{}, p.dst...), p.src...)
	f = binary.BigEndian.AppendUint16(f, 0x8100)
	f = binary.BigEndian.AppendUint16(f, tci)
	return binary.BigEndian.AppendUint16(f, etherType)
}

// arp is a unicast ARP request for p.to.
func (p probe) arp(tci uint16) []byte {
	f := p.eth(tci, unix.ETH_P_ARP)
	f = append(f, 0, 1, 0x08, 0x00, 6, 4, 0, 1)
	f = append(f, p.src...)
	f = append(f, p.from.AsSlice()...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	return padFrame(append(f, p.to.AsSlice()...))
}

// ipv4 is an IPv4 header for a payload of n bytes of protocol proto.
func (p probe) ipv4(proto byte, n int) []byte {
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(20+n))
	copy(ip[12:], p.from.AsSlice())
	copy(ip[16:], p.to.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip, 0))
	return ip
}

// icmp is an ICMP echo request with identifier id.
func (p probe) icmp(tci, id uint16) []byte {
	m := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'v', 'e', 't', 'h', 'd', '0'}
	binary.BigEndian.PutUint16(m[2:], inetChecksum(m, 0))
	return padFrame(append(append(p.eth(tci, unix.ETH_P_IP), p.ipv4(unix.IPPROTO_ICMP, len(m))...), m...))
}

// syn is a TCP SYN from port sport to p.to:7001.
func (p probe) syn(tci, sport uint16) []byte {
	th := make([]byte, 20)
	binary.BigEndian.PutUint16(th[0:], sport)
	binary.BigEndian.PutUint16(th[2:], 7001)
	binary.BigEndian.PutUint32(th[4:], 0x12345678)
	th[12], th[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(th[14:], 64240)
	ph := append(append(p.from.AsSlice(), p.to.AsSlice()...), 0, unix.IPPROTO_TCP, 0, 20)
	binary.BigEndian.PutUint16(th[16:], inetChecksum(th, sum16(ph)))
	return padFrame(append(append(p.eth(tci, unix.ETH_P_IP), p.ipv4(unix.IPPROTO_TCP, len(th))...), th...))
}

func padFrame(f []byte) []byte {
	for len(f) < 64 {
		f = append(f, 0)
	}
	return f
}

// sum16 is the folded ones'-complement sum of b (RFC 1071), not complemented.
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

// inetChecksum is the Internet checksum of b with initial (a sum16).
func inetChecksum(b []byte, initial uint32) uint16 {
	s := sum16(b) + initial
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// replies is what veth1 answered.
type replies struct {
	arp    bool
	icmp   map[uint16]bool // echo replies by identifier
	synack map[uint16]bool // SYN-ACKs by destination port
}

// collectReplies reads lan0 for d (or, if early, until an ARP reply, an
// echo reply and a SYN-ACK have come) and returns veth1's answers to p.
func collectReplies(t *testing.T, c *packetConn, p probe, d time.Duration, early bool) replies {
	t.Helper()
	r := replies{icmp: map[uint16]bool{}, synack: map[uint16]bool{}}
	buf, oob := make([]byte, 65536), make([]byte, 256)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && !(early && r.arp && len(r.icmp) > 0 && len(r.synack) > 0) {
		f, err := c.recv(buf, oob)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("recv on lan0: %v", err)
		}
		b := f.data
		if f.pkttype == unix.PACKET_OUTGOING || len(b) < 14 || !equalMAC(b[6:12], p.dst) {
			continue
		}
		switch binary.BigEndian.Uint16(b[12:]) {
		case unix.ETH_P_ARP:
			a := b[14:]
			if len(a) >= 28 && a[7] == 2 && netip.AddrFrom4([4]byte(a[14:18])) == p.to && netip.AddrFrom4([4]byte(a[24:28])) == p.from {
				r.arp = true
			}
		case unix.ETH_P_IP:
			ip := b[14:]
			if len(ip) < 28 || netip.AddrFrom4([4]byte(ip[12:16])) != p.to {
				continue
			}
			l4 := ip[int(ip[0]&0x0f)*4:]
			switch ip[9] {
			case unix.IPPROTO_ICMP:
				if l4[0] == 0 {
					r.icmp[binary.BigEndian.Uint16(l4[4:])] = true
				}
			case unix.IPPROTO_TCP:
				if l4[13]&0x12 == 0x12 {
					r.synack[binary.BigEndian.Uint16(l4[2:])] = true
				}
			}
		}
	}
	return r
}

// sniffEchoRequests counts the ICMP echo requests that reached veth1
// (already queued on c), by identifier.
func sniffEchoRequests(t *testing.T, c *packetConn) map[uint16]int {
	t.Helper()
	n := map[uint16]int{}
	buf, oob := make([]byte, 65536), make([]byte, 256)
	for {
		f, err := c.recv(buf, oob)
		if errors.Is(err, unix.EAGAIN) {
			return n
		}
		if err != nil {
			t.Fatalf("recv on veth1: %v", err)
		}
		b := f.data
		if f.pkttype == unix.PACKET_OUTGOING || len(b) < 14+28 {
			continue
		}
		et, ip := binary.BigEndian.Uint16(b[12:]), b[14:]
		if et == 0x8100 && len(b) >= 18+28 { // should not happen: counted too
			et, ip = binary.BigEndian.Uint16(b[16:]), b[18:]
		}
		if et == unix.ETH_P_IP && ip[9] == unix.IPPROTO_ICMP {
			if l4 := ip[int(ip[0]&0x0f)*4:]; l4[0] == 8 {
				n[binary.BigEndian.Uint16(l4[4:])]++
			}
		}
	}
}

func equalMAC(a, b []byte) bool { return string(a) == string(b) }
