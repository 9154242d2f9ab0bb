package bridge_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
)

// seg describes one crafted TCP segment in a frame with a vnet header.
type seg struct {
	v6           bool
	src, dst     []byte // 4 or 16 bytes
	sport, dport uint16
	seq, ack     uint32
	flags        byte
	win          uint16
	opts         []byte
	payload      []byte
	id           uint16 // IPv4
	ttl, tos     byte   // TTL/hop limit, TOS/traffic class
	flowLabel    uint32 // IPv6
	fragField    uint16 // IPv4 flags+offset; 0x4000 (DF) unless set otherwise
	vnetFlags    byte
	ethDst       []byte
	// badCsum corrupts the TCP checksum; badIPCsum the IPv4 header's.
	badCsum, badIPCsum bool
}

// refSum is a plain RFC 1071 sum of b (big-endian words), unfolded.
func refSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func refFold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// tcpCsum computes the full TCP checksum of the TCP segment tcp between src and dst.
func tcpCsum(src, dst, tcp []byte) uint16 {
	s := refSum(src) + refSum(dst) + 6 + uint32(len(tcp))
	c := make([]byte, len(tcp))
	copy(c, tcp)
	c[16], c[17] = 0, 0
	return ^refFold(s + refSum(c))
}

func (s seg) frame() []byte {
	thl := 20 + len(s.opts)
	var ipl int
	if s.v6 {
		ipl = 40
	} else {
		ipl = 20
	}
	f := make([]byte, bridge.VnetHdrLen+14+ipl+thl+len(s.payload))
	f[0] = s.vnetFlags
	if s.vnetFlags == 1 {
		binary.NativeEndian.PutUint16(f[6:], uint16(14+ipl))
		binary.NativeEndian.PutUint16(f[8:], 16)
	}
	e := f[bridge.VnetHdrLen:]
	if s.ethDst != nil {
		copy(e[0:6], s.ethDst)
	} else {
		copy(e[0:6], vmac)
	}
	copy(e[6:12], peer)
	ip := e[14:]
	if s.v6 {
		e[12], e[13] = 0x86, 0xdd
		binary.BigEndian.PutUint32(ip[0:], 6<<28|uint32(s.tos)<<20|s.flowLabel)
		binary.BigEndian.PutUint16(ip[4:], uint16(thl+len(s.payload)))
		ip[6], ip[7] = 6, s.ttl
		copy(ip[8:], s.src)
		copy(ip[24:], s.dst)
	} else {
		e[12], e[13] = 0x08, 0x00
		ip[0], ip[1] = 0x45, s.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(ipl+thl+len(s.payload)))
		binary.BigEndian.PutUint16(ip[4:], s.id)
		binary.BigEndian.PutUint16(ip[6:], s.fragField)
		ip[8], ip[9] = s.ttl, 6
		copy(ip[12:], s.src)
		copy(ip[16:], s.dst)
		binary.BigEndian.PutUint16(ip[10:], ^refFold(refSum(ip[:20])))
		if s.badIPCsum {
			ip[10] ^= 0x40
		}
	}
	tcp := ip[ipl:]
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], s.ack)
	tcp[12] = byte(thl/4) << 4
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], s.win)
	copy(tcp[20:], s.opts)
	copy(tcp[thl:], s.payload)
	var src, dst []byte
	if s.v6 {
		src, dst = ip[8:24], ip[24:40]
	} else {
		src, dst = ip[12:16], ip[16:20]
	}
	binary.BigEndian.PutUint16(tcp[16:], tcpCsum(src, dst, tcp))
	if s.badCsum {
		tcp[16] ^= 0x01
	}
	return f
}

var tsOpts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps

// stream returns n consecutive segments of a flow with payloads of mss
// bytes (the last one last bytes if last > 0) and flags ACK.
func stream(v6 bool, n, mss, last int, vnetFlags byte) []seg {
	src, dst := []byte{198, 18, 0, 1}, []byte{198, 18, 0, 4}
	if v6 {
		src = []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
		dst = []byte{0x20, 0x01, 0x0d, 0xb8, 15: 4}
	}
	rng := rand.New(rand.NewPCG(uint64(n), uint64(mss)))
	segs := make([]seg, n)
	seq := uint32(0xfffff000) // wraps within the stream
	for i := range segs {
		l := mss
		if i == n-1 && last > 0 {
			l = last
		}
		p := make([]byte, l)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		segs[i] = seg{v6: v6, src: src, dst: dst, sport: 5201, dport: 40000, seq: seq, ack: 777, flags: 0x10,
			win: 500, opts: tsOpts, payload: p, id: 0xfffe + uint16(i), ttl: 64, tos: 0, flowLabel: 0x12345,
			fragField: 0x4000, vnetFlags: vnetFlags}
		seq += uint32(l)
	}
	return segs
}

func frames(segs []seg) [][]byte {
	fs := make([][]byte, len(segs))
	for i, s := range segs {
		fs[i] = s.frame()
	}
	return fs
}

// resegment splits a GSO frame back into MTU frames the way the kernel's
// TCP segmentation does (headers copied, IP length and IPv4 ID and header
// checksum per segment, sequence numbers advanced, PSH only on the last,
// TCP checksum computed in full), after checking the vnet header and the
// NEEDS_CSUM convention: the checksum field must hold the pseudo-header
// sum, so that completing it over the whole super-frame verifies.
func resegment(t *testing.T, f []byte) [][]byte {
	t.Helper()
	flags, gsoType := f[0], f[1]
	hdrLen := int(binary.NativeEndian.Uint16(f[2:]))
	gso := int(binary.NativeEndian.Uint16(f[4:]))
	cstart := int(binary.NativeEndian.Uint16(f[6:]))
	coff := int(binary.NativeEndian.Uint16(f[8:]))
	e := f[bridge.VnetHdrLen:]
	v6 := e[12] == 0x86
	ipl := 20
	wantGSO := byte(1)
	if v6 {
		ipl, wantGSO = 40, 4
	}
	thl := int(e[14+ipl+12]>>4) * 4
	if flags != 1 || gsoType != wantGSO || hdrLen != 14+ipl+thl || cstart != 14+ipl || coff != 16 || gso == 0 {
		t.Fatalf("vnet header % x: want NEEDS_CSUM, gso type %d, hdr_len %d, csum %d+16", f[:10], wantGSO, 14+ipl+thl, 14+ipl)
	}
	ip := e[14:]
	var src, dst []byte
	if v6 {
		src, dst = ip[8:24], ip[24:40]
		if int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-40 {
			t.Fatalf("IPv6 payload length %d, frame says %d", binary.BigEndian.Uint16(ip[4:]), len(ip)-40)
		}
	} else {
		src, dst = ip[12:16], ip[16:20]
		if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			t.Fatalf("IPv4 total length %d, frame says %d", binary.BigEndian.Uint16(ip[2:]), len(ip))
		}
		if refFold(refSum(ip[:20])) != 0xffff {
			t.Fatal("IPv4 header checksum of the coalesced frame is wrong")
		}
	}
	// Complete the partial checksum as a device would, then verify it.
	tcp := ip[ipl:]
	c := make([]byte, len(tcp))
	copy(c, tcp)
	binary.BigEndian.PutUint16(c[16:], ^refFold(refSum(c)))
	if refFold(refSum(src)+refSum(dst)+6+uint32(len(c))+refSum(c)) != 0xffff {
		t.Fatal("completed TCP checksum of the coalesced frame does not verify: wrong pseudo-header sum")
	}
	hdr := e[:hdrLen]
	payload := e[hdrLen:]
	var out [][]byte
	for i := 0; len(payload) > 0; i++ {
		l := min(gso, len(payload))
		s := make([]byte, bridge.VnetHdrLen+hdrLen+l)
		se := s[bridge.VnetHdrLen:]
		copy(se, hdr)
		copy(se[hdrLen:], payload[:l])
		payload = payload[l:]
		sip := se[14:]
		if v6 {
			binary.BigEndian.PutUint16(sip[4:], uint16(len(sip)-40))
		} else {
			binary.BigEndian.PutUint16(sip[2:], uint16(len(sip)))
			binary.BigEndian.PutUint16(sip[4:], binary.BigEndian.Uint16(sip[4:])+uint16(i))
			sip[10], sip[11] = 0, 0
			binary.BigEndian.PutUint16(sip[10:], ^refFold(refSum(sip[:20])))
		}
		st := sip[ipl:]
		binary.BigEndian.PutUint32(st[4:], binary.BigEndian.Uint32(st[4:])+uint32(i*gso))
		if len(payload) > 0 {
			st[13] &^= 0x08
		}
		binary.BigEndian.PutUint16(st[16:], tcpCsum(src, dst, st))
		out = append(out, s)
	}
	return out
}

// checkMerged checks that got is one GSO frame whose segments are exactly
// the frames in want (vnet headers aside).
func checkMerged(t *testing.T, got []byte, want [][]byte) {
	t.Helper()
	segs := resegment(t, got)
	if len(segs) != len(want) {
		t.Fatalf("coalesced frame resegments into %d frames, want %d", len(segs), len(want))
	}
	for i := range segs {
		if !bytes.Equal(segs[i][bridge.VnetHdrLen:], want[i][bridge.VnetHdrLen:]) {
			t.Fatalf("segment %d differs after coalescing and resegmenting:\n got % x\nwant % x", i,
				segs[i][bridge.VnetHdrLen:bridge.VnetHdrLen+80], want[i][bridge.VnetHdrLen:bridge.VnetHdrLen+80])
		}
	}
}

func TestCoalesceMerges(t *testing.T) {
	for _, c := range []struct {
		name      string
		v6        bool
		n, last   int
		vnetFlags byte
		psh       bool
	}{
		{"v4 data-valid", false, 5, 0, 2, false},
		{"v4 data-valid short last with PSH", false, 5, 100, 2, true},
		{"v4 needs-csum", false, 3, 0, 1, false},
		{"v4 verified in software", false, 8, 1, 0, true},
		{"v6 data-valid", true, 4, 0, 2, true},
		{"v6 verified in software", true, 6, 999, 0, false},
		{"v6 needs-csum", true, 2, 0, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			segs := stream(c.v6, c.n, 1448, c.last, c.vnetFlags)
			if c.psh {
				segs[len(segs)-1].flags |= 0x08
			}
			in := frames(segs)
			out := bridge.Coalesce(in)
			if len(out) != 1 {
				t.Fatalf("%d frames out, want 1", len(out))
			}
			if gso := binary.NativeEndian.Uint16(out[0][4:]); gso != 1448 {
				t.Fatalf("gso_size %d, want 1448", gso)
			}
			checkMerged(t, out[0], in)
		})
	}
}

// TestCoalesceSizeLimit: 50 full segments do not fit one 64 KiB frame;
// they come out as two, in order, each resegmenting exactly.
func TestCoalesceSizeLimit(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		in := frames(stream(v6, 50, 1448, 0, 2))
		out := bridge.Coalesce(in)
		if len(out) != 2 {
			t.Fatalf("v6=%v: %d frames out, want 2", v6, len(out))
		}
		n := len(resegment(t, out[0]))
		if ipLen := len(out[0]) - bridge.VnetHdrLen - 14; ipLen > 65535 || n < 40 {
			t.Fatalf("v6=%v: first frame has %d segments, IP length %d", v6, n, ipLen)
		}
		checkMerged(t, out[0], in[:n])
		checkMerged(t, out[1], in[n:])
	}
}

// TestCoalesceRefuses: for every rule, two otherwise mergeable segments
// that break it come out as they went in, untouched and in order.
func TestCoalesceRefuses(t *testing.T) {
	type mut func(a, b *seg)
	cases := []struct {
		name string
		v6   bool
		mut  mut
	}{
		{"control: merges", false, nil},
		{"other source port", false, func(a, b *seg) { b.sport++ }},
		{"other destination port", false, func(a, b *seg) { b.dport++ }},
		{"other source address", false, func(a, b *seg) { b.src = []byte{198, 18, 0, 9} }},
		{"other destination address", true, func(a, b *seg) { b.dst = append([]byte{}, a.dst...); b.dst[15] = 9 }},
		{"sequence gap", false, func(a, b *seg) { b.seq++ }},
		{"retransmission", false, func(a, b *seg) { b.seq = a.seq }},
		{"other ACK number", false, func(a, b *seg) { b.ack++ }},
		{"other window", false, func(a, b *seg) { b.win++ }},
		{"other options", false, func(a, b *seg) { b.opts = []byte{1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 2} }},
		{"other header length", false, func(a, b *seg) { b.opts = nil }},
		{"SYN", false, func(a, b *seg) { b.flags |= 0x02 }},
		{"FIN", false, func(a, b *seg) { b.flags |= 0x01 }},
		{"RST", false, func(a, b *seg) { b.flags |= 0x04 }},
		{"URG", false, func(a, b *seg) { b.flags |= 0x20 }},
		{"ECE", false, func(a, b *seg) { b.flags |= 0x40 }},
		{"CWR", false, func(a, b *seg) { b.flags |= 0x80 }},
		{"no ACK flag", false, func(a, b *seg) { a.flags, b.flags = 0, 0 }},
		{"PSH on the first", false, func(a, b *seg) { a.flags |= 0x08 }},
		{"no payload", false, func(a, b *seg) { b.payload = nil }},
		{"second larger", false, func(a, b *seg) { a.payload = a.payload[:1000]; b.seq = a.seq + 1000 }},
		{"DF clear", false, func(a, b *seg) { a.fragField, b.fragField = 0, 0 }},
		{"more fragments", false, func(a, b *seg) { b.fragField = 0x6000 }},
		{"fragment offset", false, func(a, b *seg) { b.fragField = 0x4001 }},
		{"reserved bit", false, func(a, b *seg) { b.fragField = 0xc000 }},
		{"IPv4 ID not incrementing", false, func(a, b *seg) { b.id = a.id }},
		{"IPv4 ID jumps", false, func(a, b *seg) { b.id = a.id + 2 }},
		{"other TTL", false, func(a, b *seg) { b.ttl-- }},
		{"other TOS", false, func(a, b *seg) { b.tos = 0x10 }},
		{"ECN CE on one", false, func(a, b *seg) { a.tos, b.tos = 0x02, 0x03 }},
		{"other traffic class", true, func(a, b *seg) { b.tos = 0x10 }},
		{"other flow label", true, func(a, b *seg) { b.flowLabel++ }},
		{"other hop limit", true, func(a, b *seg) { b.ttl-- }},
		{"other Ethernet destination", false, func(a, b *seg) { b.ethDst = bcast }},
		{"first unverified with bad checksum", false, func(a, b *seg) { a.vnetFlags, b.vnetFlags = 0, 0; a.badCsum = true }},
		{"second unverified with bad checksum", false, func(a, b *seg) { a.vnetFlags, b.vnetFlags = 0, 0; b.badCsum = true }},
		{"v6 second unverified with bad checksum", true, func(a, b *seg) { b.vnetFlags = 0; b.badCsum = true }},
		{"bad IPv4 header checksum", false, func(a, b *seg) { b.badIPCsum = true }},
		{"unknown vnet flags", false, func(a, b *seg) { b.vnetFlags = 3 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := stream(c.v6, 2, 1448, 0, 2)
			if c.mut != nil {
				c.mut(&s[0], &s[1])
			}
			in := frames(s)
			out := bridge.Coalesce(in)
			if c.mut == nil {
				if len(out) != 1 {
					t.Fatalf("control case did not merge: %d frames", len(out))
				}
				checkMerged(t, out[0], in)
				return
			}
			checkUntouched(t, out, in)
		})
	}
	// Frame-level mutations that seg cannot express.
	raw := []struct {
		name string
		mut  func(f []byte)
	}{
		{"GSO frame in", func(f []byte) { f[1] = 1 }},
		{"needs-csum elsewhere", func(f []byte) {
			f[0] = 1
			binary.NativeEndian.PutUint16(f[6:], 34)
			binary.NativeEndian.PutUint16(f[8:], 6)
		}},
		{"IP padding", func(f []byte) {
			binary.BigEndian.PutUint16(f[bridge.VnetHdrLen+16:], binary.BigEndian.Uint16(f[bridge.VnetHdrLen+16:])-1)
		}},
		{"VLAN ethertype", func(f []byte) { f[bridge.VnetHdrLen+12], f[bridge.VnetHdrLen+13] = 0x81, 0x00 }},
		{"IPv4 options", func(f []byte) { f[bridge.VnetHdrLen+14] = 0x46 }},
	}
	for _, c := range raw {
		t.Run(c.name, func(t *testing.T) {
			in := frames(stream(false, 2, 1448, 0, 2))
			c.mut(in[1])
			checkUntouched(t, bridge.Coalesce(in), in)
		})
	}
}

func checkUntouched(t *testing.T, out, in [][]byte) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("%d frames out, want %d untouched", len(out), len(in))
	}
	for i := range in {
		if !bytes.Equal(out[i], in[i]) {
			t.Fatalf("frame %d altered", i)
		}
	}
}

// TestCoalesceOrder: flows are merged independently; a frame of a flow
// that cannot merge (a pure ACK here) ends that flow's frame, so nothing
// of the flow is reordered; other traffic and opaque IP pass in between.
func TestCoalesceOrder(t *testing.T) {
	a := stream(false, 4, 1448, 0, 2)
	b := stream(true, 3, 1200, 0, 0)
	ack := a[2]
	ack.payload = nil
	arp := vframe(nil, bcast, peer, 60, 1)
	arp[bridge.VnetHdrLen+12], arp[bridge.VnetHdrLen+13] = 0x08, 0x06
	in := [][]byte{a[0].frame(), b[0].frame(), a[1].frame(), arp, b[1].frame(), ack.frame(), a[2].frame(), a[3].frame(), b[2].frame()}
	out := bridge.Coalesce(in)
	// a0+a1 | b0+b1+b2 | arp | ack | a2+a3
	if len(out) != 5 {
		t.Fatalf("%d frames out, want 5", len(out))
	}
	checkMerged(t, out[0], [][]byte{in[0], in[2]})
	checkMerged(t, out[1], [][]byte{in[1], in[4], in[8]})
	if !bytes.Equal(out[2], arp) || !bytes.Equal(out[3], in[5]) {
		t.Fatal("ARP and the pure ACK not passed through in order")
	}
	checkMerged(t, out[4], [][]byte{in[6], in[7]})

	// An IPv4 fragment could belong to any flow: it ends every open one.
	frag := a[0]
	frag.fragField = 0x2000
	in = [][]byte{a[0].frame(), frag.frame(), a[1].frame()}
	checkUntouched(t, bridge.Coalesce(in), in)
}

func TestChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 3000)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	for n := range 300 {
		for _, off := range []int{0, 1, 3} {
			init := uint16(rng.Uint32())
			got := bridge.Checksum(b[off:off+n*7%2990], init)
			want := refFold(refSum(b[off:off+n*7%2990]) + uint32(init))
			if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
				t.Fatalf("checksum(len %d, init %#x) = %#x, want %#x", n*7%2990, init, got, want)
			}
		}
	}
	ff := bytes.Repeat([]byte{0xff}, 1000)
	if got := bridge.Checksum(ff, 0xffff); got != 0xffff {
		t.Fatalf("all-ones sum = %#x", got)
	}
}

func BenchmarkCoalesce(b *testing.B) {
	for _, flags := range []byte{2, 0} {
		b.Run(fmt.Sprintf("vnetflags=%d", flags), func(b *testing.B) {
			in := frames(stream(false, 32, 1448, 0, flags))
			c := bridge.NewBatchCoalescer(32)
			b.SetBytes(32 * 1448)
			b.ReportAllocs()
			for b.Loop() {
				if out := c.Run(in); len(out) != 1 {
					b.Fatalf("%d frames out", len(out))
				}
			}
		})
	}
}

func BenchmarkChecksum(b *testing.B) {
	buf := make([]byte, 1480)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		bridge.Checksum(buf, 0)
	}
}
