package bridge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bigSpec describes a GSO super-frame for the splitter's tests.
type bigSpec struct {
	v6, jumbo, udp bool // jumbo: IPv6 with the kernel's jumbo hop-by-hop header
	payload        int  // payload bytes
	mss            int
	flags          byte // TCP flags
	ecn            bool // VIRTIO_NET_HDR_GSO_ECN
	tcpOpts        int  // bytes of TCP options (a multiple of 4)
	ipv4Opts       int  // bytes of IPv4 options (a multiple of 4)
	zeroLen        bool // IPv4 total length / IPv6 payload length 0 (BIG TCP)
	seq            uint32
	id             uint16
}

// bigFrame builds the frame: vnet header (NEEDS_CSUM, GSO), Ethernet, IP,
// TCP or UDP, and a payload of a counting pattern, its checksum field
// holding the pseudo-header sum as the kernel leaves it.
func bigFrame(s bigSpec) []byte {
	f := make([]byte, VnetHdrLen, VnetHdrLen+100+s.payload)
	f = append(f, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee)
	proto := byte(unix.IPPROTO_TCP)
	l4hdr := tcpHeaderLen + s.tcpOpts
	if s.udp {
		proto, l4hdr = unix.IPPROTO_UDP, udpHeaderLen
	}
	l3 := len(f) + 2
	var l4 int
	if s.v6 {
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_IPV6)
		plen := l4hdr + s.payload
		nh := proto
		if s.jumbo {
			plen += ipv6JumboHBHLen
			nh = unix.IPPROTO_HOPOPTS
		}
		ip := make([]byte, ipv6HeaderLen)
		ip[0], ip[1], ip[2], ip[3] = 0x60, 0x01, 0x23, 0x45
		if !s.jumbo && !s.zeroLen && plen <= 0xffff { // else 0, as BIG TCP without the jumbo header
			binary.BigEndian.PutUint16(ip[4:], uint16(plen))
		}
		ip[6], ip[7] = nh, 64
		for i := 8; i < 40; i++ {
			ip[i] = byte(0x20 + i)
		}
		f = append(f, ip...)
		if s.jumbo {
			f = append(f, proto, 0, ipv6OptJumbo, 4)
			f = binary.BigEndian.AppendUint32(f, uint32(plen))
		}
	} else {
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_IP)
		ihl := ipv4HeaderLen + s.ipv4Opts
		ip := make([]byte, ihl)
		ip[0], ip[1] = 0x40|byte(ihl/4), 0x02
		if tl := ihl + l4hdr + s.payload; tl <= 0xffff && !s.zeroLen {
			binary.BigEndian.PutUint16(ip[2:], uint16(tl))
		}
		binary.BigEndian.PutUint16(ip[4:], s.id)
		binary.BigEndian.PutUint16(ip[6:], unix.IP_DF)
		ip[8], ip[9] = 64, proto
		copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
		for i := ipv4HeaderLen; i < ihl; i++ {
			ip[i] = 1 // NOPs
		}
		binary.BigEndian.PutUint16(ip[10:], ^checksum(ip, 0))
		f = append(f, ip...)
	}
	l4 = len(f)
	if s.udp {
		f = append(f, 0x30, 0x39, 0x14, 0x51, 0, 0, 0, 0)
	} else {
		th := make([]byte, l4hdr)
		binary.BigEndian.PutUint32(th[0:], 0xd8c01451)
		binary.BigEndian.PutUint32(th[4:], s.seq)
		binary.BigEndian.PutUint32(th[8:], 0xa1b2c3d4)
		th[12] = byte(l4hdr/4) << 4
		th[13] = s.flags
		binary.BigEndian.PutUint16(th[14:], 501)
		for i := tcpHeaderLen; i < l4hdr; i++ {
			th[i] = 1
		}
		f = append(f, th...)
	}
	for i := range s.payload {
		f = append(f, byte(i*7+i>>8))
	}
	gso := uint8(unix.VIRTIO_NET_HDR_GSO_TCPV4)
	csumOff := uint16(tcpCsumOff)
	switch {
	case s.udp:
		gso, csumOff = unix.VIRTIO_NET_HDR_GSO_UDP_L4, udpCsumOff
	case s.v6:
		gso = unix.VIRTIO_NET_HDR_GSO_TCPV6
	}
	if s.ecn {
		gso |= virtioGSOECN
	}
	h := virtioNetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: gso, hdrLen: uint16(l4 + l4hdr - VnetHdrLen),
		gsoSize: uint16(s.mss), csumStart: uint16(l4 - VnetHdrLen), csumOffset: csumOff}
	_ = h.encode(f)
	var addrs []byte
	if s.v6 {
		addrs = f[l3+8 : l3+40]
	} else {
		addrs = f[l3+12 : l3+20]
	}
	binary.BigEndian.PutUint16(f[l4+int(csumOff):], fold32(uint32(checksum(addrs, 0))+uint32(proto)+uint32(len(f)-l4)))
	return f
}

// refSegments is a plain reference of what the kernel's software GSO makes
// of a GSO frame (vnet header + Ethernet frame): the MTU segments, each an
// Ethernet frame without vnet header, with real IP lengths (no jumbo
// header), per-segment sequence numbers, IPv4 IDs and flags, and complete
// checksums. It is written independently of gsoSplit: it parses the frame
// by its own rules.
func refSegments(t testing.TB, f []byte) [][]byte {
	t.Helper()
	var h virtioNetHdr
	if err := h.decode(f); err != nil {
		t.Fatal(err)
	}
	e := f[VnetHdrLen:]
	mss := int(h.gsoSize)
	udp := h.gsoType&^virtioGSOECN == unix.VIRTIO_NET_HDR_GSO_UDP_L4
	v6 := binary.BigEndian.Uint16(e[12:]) == unix.ETH_P_IPV6
	var ipHdr []byte // the IP header each segment gets (no jumbo header)
	var rest []byte  // L4 header and payload
	if v6 {
		ipHdr = bytes.Clone(e[14:54])
		rest = e[54:]
		if ipHdr[6] == unix.IPPROTO_HOPOPTS {
			ipHdr[6] = rest[0]
			rest = rest[8:]
		}
	} else {
		ihl := int(e[14]&0x0f) * 4
		ipHdr = bytes.Clone(e[14 : 14+ihl])
		rest = e[14+ihl:]
	}
	l4hdr := udpHeaderLen
	if !udp {
		l4hdr = int(rest[12]>>4) * 4
	}
	l4 := rest[:l4hdr]
	data := rest[l4hdr:]
	var segs [][]byte
	for off, i := 0, 0; off < len(data); off, i = off+mss, i+1 {
		n := min(mss, len(data)-off)
		last := off+n == len(data)
		s := bytes.Clone(e[:14])
		ip := bytes.Clone(ipHdr)
		seg := append(bytes.Clone(l4), data[off:off+n]...)
		var addrs []byte
		if v6 {
			binary.BigEndian.PutUint16(ip[4:], uint16(len(seg)))
			addrs = ip[8:40]
		} else {
			binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(seg)))
			binary.BigEndian.PutUint16(ip[4:], binary.BigEndian.Uint16(ipHdr[4:])+uint16(i))
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:], ^checksum(ip, 0))
			addrs = ip[12:20]
		}
		csumAt := tcpCsumOff
		proto := uint32(unix.IPPROTO_TCP)
		if udp {
			csumAt, proto = udpCsumOff, unix.IPPROTO_UDP
			binary.BigEndian.PutUint16(seg[udpLenOff:], uint16(len(seg)))
		} else {
			binary.BigEndian.PutUint32(seg[4:], binary.BigEndian.Uint32(l4[4:])+uint32(off))
			if !last {
				seg[13] &^= tcpFlagFIN | tcpFlagPSH
			}
			if i > 0 {
				seg[13] &^= tcpFlagCWR
			}
		}
		seg[csumAt], seg[csumAt+1] = 0, 0
		ph := fold32(uint32(checksum(addrs, 0)) + proto + uint32(len(seg)))
		binary.BigEndian.PutUint16(seg[csumAt:], ^checksum(seg, ph))
		s = append(append(s, ip...), seg...)
		segs = append(segs, s)
	}
	return segs
}

// refPayload returns the payload of a plain segment (Ethernet frame, no
// vnet header) as refSegments makes them.
func refPayload(seg []byte) []byte {
	var l4 int
	var udp bool
	if binary.BigEndian.Uint16(seg[12:]) == unix.ETH_P_IPV6 {
		l4, udp = 14+ipv6HeaderLen, seg[14+6] == unix.IPPROTO_UDP
	} else {
		l4, udp = 14+int(seg[14]&0x0f)*4, seg[14+9] == unix.IPPROTO_UDP
	}
	if udp {
		return seg[l4+udpHeaderLen:]
	}
	return seg[l4+int(seg[l4+12]>>4)*4:]
}

// completeChecksum fills in a NEEDS_CSUM frame's checksum the way a NIC or
// the kernel does: the sum from csum_start to the end (the field holds the
// pseudo-header sum), complemented, at csum_start+csum_offset.
func completeChecksum(f []byte) {
	var h virtioNetHdr
	_ = h.decode(f)
	start := VnetHdrLen + int(h.csumStart)
	at := start + int(h.csumOffset)
	sum := checksum(f[start:], 0)
	binary.BigEndian.PutUint16(f[at:], ^sum)
}

// splitAll runs gsoSplit over f with the relay's limits and returns
// copies of the pieces.
func splitAll(t testing.TB, f []byte) ([][]byte, bool) {
	return splitLimits(t, f, maxPieceIPLen, plainFrameMax)
}

// splitLimits is splitAll for pieces of at most maxIP IP bytes and
// maxFrame frame bytes.
func splitLimits(t testing.TB, f []byte, maxIP, maxFrame int) ([][]byte, bool) {
	t.Helper()
	var s gsoSplit
	if !s.init(f, maxIP, maxFrame) {
		return nil, false
	}
	out := make([]byte, maxFrame)
	var pieces [][]byte
	for {
		n := s.next(out)
		if n == 0 {
			return pieces, true
		}
		if n > maxFrame || n-VnetHdrLen-ethHeaderLen > maxIP {
			t.Fatalf("piece of %d bytes, more than %d (IP %d)", n, maxFrame, maxIP)
		}
		pieces = append(pieces, bytes.Clone(out[:n]))
		if len(pieces) > len(f) {
			t.Fatal("next never ends")
		}
	}
}

// checkSplit splits f and checks the pieces against the reference: each
// is a valid GSO frame of whole segments with 16-bit IP lengths that
// account for it, and segmenting them gives, byte for byte, the segments
// the original gives.
func checkSplit(t testing.TB, f []byte) error {
	return checkSplitLimits(t, f, maxPieceIPLen, plainFrameMax)
}

// errNotSplittable: checkSplit's gsoSplit refused the frame.
var errNotSplittable = errors.New("not splittable")

// checkSplitLimits is checkSplit with splitLimits' limits.
func checkSplitLimits(t testing.TB, f []byte, maxIP, maxFrame int) error {
	pieces, ok := splitLimits(t, f, maxIP, maxFrame)
	if !ok {
		return errNotSplittable
	}
	var orig virtioNetHdr
	_ = orig.decode(f)
	var segs [][]byte
	var payload []byte
	for i, p := range pieces {
		var h virtioNetHdr
		_ = h.decode(p)
		e := p[VnetHdrLen:]
		wantGSO := orig.gsoType
		if i > 0 {
			wantGSO &^= virtioGSOECN
		}
		if h.flags != unix.VIRTIO_NET_HDR_F_NEEDS_CSUM || h.gsoType != wantGSO || h.gsoSize != orig.gsoSize {
			return fmt.Errorf("piece %d: vnet header %+v (original %+v)", i, h, orig)
		}
		v6 := binary.BigEndian.Uint16(e[12:]) == unix.ETH_P_IPV6
		ip := e[14:]
		var l4 int
		if v6 {
			if got := int(binary.BigEndian.Uint16(ip[4:])); got != len(ip)-ipv6HeaderLen {
				return fmt.Errorf("piece %d: IPv6 payload length %d, frame has %d", i, got, len(ip)-ipv6HeaderLen)
			}
			if ip[6] != unix.IPPROTO_TCP && ip[6] != unix.IPPROTO_UDP {
				return fmt.Errorf("piece %d: next header %d", i, ip[6])
			}
			l4 = 14 + ipv6HeaderLen
		} else {
			ihl := int(ip[0]&0x0f) * 4
			if got := int(binary.BigEndian.Uint16(ip[2:])); got != len(ip) {
				return fmt.Errorf("piece %d: IPv4 total length %d, frame has %d", i, got, len(ip))
			}
			if checksum(ip[:ihl], 0) != 0xffff {
				return fmt.Errorf("piece %d: bad IPv4 header checksum", i)
			}
			l4 = 14 + ihl
		}
		if int(h.csumStart) != l4 {
			return fmt.Errorf("piece %d: csum_start %d, L4 header at %d", i, h.csumStart, l4)
		}
		l4hdr := udpHeaderLen
		if ip[6] == unix.IPPROTO_TCP || (!v6 && ip[9] == unix.IPPROTO_TCP) {
			l4hdr = int(e[l4+12]>>4) * 4
		}
		if int(h.hdrLen) != l4+l4hdr {
			return fmt.Errorf("piece %d: hdr_len %d, headers end at %d", i, h.hdrLen, l4+l4hdr)
		}
		pl := len(e) - l4 - l4hdr
		if i < len(pieces)-1 && pl%int(orig.gsoSize) != 0 {
			return fmt.Errorf("piece %d: payload %d is no multiple of gso_size %d", i, pl, orig.gsoSize)
		}
		payload = append(payload, e[l4+l4hdr:]...)
		c := bytes.Clone(p)
		completeChecksum(c)
		var addrs []byte
		proto := uint32(unix.IPPROTO_TCP)
		if v6 {
			addrs = ip[8:40]
			proto = uint32(ip[6])
		} else {
			addrs = ip[12:20]
			proto = uint32(ip[9])
		}
		if checksum(c[VnetHdrLen+l4:], fold32(uint32(checksum(addrs, 0))+proto+uint32(len(e)-l4))) != 0xffff {
			return fmt.Errorf("piece %d: L4 checksum invalid after completing it", i)
		}
		segs = append(segs, refSegments(t, p)...)
	}
	want := refSegments(t, f)
	if len(segs) != len(want) {
		return fmt.Errorf("%d pieces segment into %d segments, the original into %d", len(pieces), len(segs), len(want))
	}
	for i := range want {
		if !bytes.Equal(segs[i], want[i]) {
			return fmt.Errorf("segment %d differs:\n got % x\nwant % x", i, segs[i][:min(80, len(segs[i]))], want[i][:min(80, len(want[i]))])
		}
	}
	var whole []byte
	for _, seg := range want {
		whole = append(whole, refPayload(seg)...)
	}
	if !bytes.Equal(payload, whole) {
		return errors.New("the pieces' payloads do not add up to the original's")
	}
	return nil
}

func TestGSOSplit(t *testing.T) {
	cases := []struct {
		name string
		s    bigSpec
	}{
		{"BIG TCP IPv6 with jumbo header, 184 KiB", bigSpec{v6: true, jumbo: true, payload: 184188, mss: 1428, flags: tcpFlagACK | tcpFlagPSH, tcpOpts: 12, seq: 0xfffff000}},
		{"BIG TCP IPv6 without jumbo header (payload length 0)", bigSpec{v6: true, zeroLen: true, payload: 150000, mss: 1440, flags: tcpFlagACK, tcpOpts: 12}},
		{"BIG TCP IPv4 (total length 0), 183 KiB", bigSpec{payload: 183906, mss: 1448, flags: tcpFlagACK | tcpFlagPSH, tcpOpts: 12, id: 0xfff0}},
		{"IPv4 at the GSO maximum", bigSpec{payload: 524280 - 100, mss: 1448, flags: tcpFlagACK, tcpOpts: 12, zeroLen: true}},
		{"IPv6 jumbo at the GSO maximum", bigSpec{v6: true, jumbo: true, payload: 524280 - 120, mss: 8948, flags: tcpFlagACK, tcpOpts: 12}},
		{"FIN, PSH and CWR with ECN", bigSpec{v6: true, jumbo: true, payload: 100000, mss: 1000, flags: tcpFlagACK | tcpFlagPSH | tcpFlagFIN | tcpFlagCWR, ecn: true}},
		{"IPv4 options", bigSpec{payload: 90000, mss: 1400, flags: tcpFlagACK, ipv4Opts: 8, zeroLen: true}},
		{"last segment short", bigSpec{v6: true, jumbo: true, payload: 70001, mss: 1000, flags: tcpFlagACK}},
		{"mss larger than a piece's room / 2", bigSpec{v6: true, jumbo: true, payload: 200000, mss: 40000, flags: tcpFlagACK}},
		{"UDP over IPv6 jumbo", bigSpec{v6: true, jumbo: true, udp: true, payload: 100000, mss: 1452}},
		{"UDP over IPv4", bigSpec{udp: true, payload: 100000, mss: 1472, zeroLen: true}},
		{"small frame: one piece", bigSpec{payload: 3000, mss: 1448, flags: tcpFlagACK}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := bigFrame(tc.s)
			if err := checkSplit(t, f); err != nil {
				t.Fatal(err)
			}
			pieces, _ := splitAll(t, f)
			t.Logf("%d bytes → %d pieces", len(f), len(pieces))
		})
	}
}

func TestGSOSplitRefuses(t *testing.T) {
	good := bigFrame(bigSpec{v6: true, jumbo: true, payload: 100000, mss: 1428, flags: tcpFlagACK})
	cases := []struct {
		name string
		edit func(f []byte)
	}{
		{"no GSO", func(f []byte) { f[1] = unix.VIRTIO_NET_HDR_GSO_NONE }},
		{"gso_size 0", func(f []byte) { f[4], f[5] = 0, 0 }},
		{"GSO type TCPv4 on IPv6", func(f []byte) { f[1] = unix.VIRTIO_NET_HDR_GSO_TCPV4 }},
		{"jumbo length wrong", func(f []byte) { f[VnetHdrLen+14+40+7]++ }},
		{"another hop-by-hop option", func(f []byte) { f[VnetHdrLen+14+40+2] = 0x05 }},
		{"routing header", func(f []byte) { f[VnetHdrLen+14+6] = unix.IPPROTO_ROUTING }},
		{"ARP", func(f []byte) { f[VnetHdrLen+12], f[VnetHdrLen+13] = 0x08, 0x06 }},
		{"in-line VLAN tag", func(f []byte) { f[VnetHdrLen+12], f[VnetHdrLen+13] = 0x81, 0x00 }},
		{"TCP data offset below 20", func(f []byte) { f[VnetHdrLen+14+48+12] = 0x40 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := bytes.Clone(good)
			tc.edit(f)
			if _, ok := splitAll(t, f); ok {
				t.Fatal("split a frame it should refuse")
			}
		})
	}
	v4 := bigFrame(bigSpec{payload: 100000, mss: 1448, flags: tcpFlagACK})
	binary.BigEndian.PutUint16(v4[VnetHdrLen+14+6:], 0x2000) // MF
	if _, ok := splitAll(t, v4); ok {
		t.Fatal("split an IPv4 fragment")
	}
	for _, n := range []int{0, 5, VnetHdrLen, VnetHdrLen + 13, VnetHdrLen + 14 + 39} {
		if _, ok := splitAll(t, good[:n]); ok {
			t.Fatalf("split a %d-byte runt", n)
		}
	}
}

// TestGSOSplitAllocs: splitting allocates nothing.
func TestGSOSplitAllocs(t *testing.T) {
	f := bigFrame(bigSpec{v6: true, jumbo: true, payload: 184188, mss: 1428, flags: tcpFlagACK, tcpOpts: 12})
	out := make([]byte, plainFrameMax)
	var s gsoSplit
	n := testing.AllocsPerRun(100, func() {
		if !s.init(f, maxPieceIPLen, plainFrameMax) {
			t.Fatal("not splittable")
		}
		for s.next(out) > 0 {
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per split, want 0", n)
	}
}

// sizeLimited is a FrameIO that refuses frames longer than max with err,
// as a packet socket does (EMSGSIZE), and records what it takes.
type sizeLimited struct {
	max    int
	err    error
	taker  bool // claims to take big GSO frames (as a TAP does)
	frames [][]byte
	tries  int
}

func (s *sizeLimited) TakesBigGSO() bool { return s.taker }

func (s *sizeLimited) ReadFrame([]byte) (int, error) { return 0, errors.New("not for reading") }
func (s *sizeLimited) Close() error                  { return nil }
func (s *sizeLimited) WriteFrame(f []byte) error {
	s.tries++
	if len(f) > s.max {
		return s.err
	}
	s.frames = append(s.frames, bytes.Clone(f))
	return nil
}

var _ FrameIO = (*sizeLimited)(nil)

// TestBigWriter: a side that takes big frames gets them whole; one that
// is no bigGSOTaker gets pieces without being asked; a taker that refuses
// one as too long gets pieces, and is not asked again with a frame that
// large; a transient refusal splits only that frame; a frame that cannot
// be split is errFrameTooBig.
func TestBigWriter(t *testing.T) {
	f := bigFrame(bigSpec{v6: true, jumbo: true, payload: 184188, mss: 1428, flags: tcpFlagACK, tcpOpts: 12})

	tap := &sizeLimited{max: BufSize, taker: true}
	w := newBigWriter(tap)
	if frames, _, split, err := w.write(tap, f); err != nil || frames != 1 || split || !bytes.Equal(tap.frames[0], f) {
		t.Fatalf("a side that takes it: %d frames, split %v, %v", frames, split, err)
	}

	plain := &sizeLimited{max: BufSize}
	if frames, _, split, err := newBigWriter(plain).write(plain, f); err != nil || !split || frames != plain.tries || frames < 3 {
		t.Fatalf("no taker: %d frames in %d writes, split %v, %v", frames, plain.tries, split, err)
	}

	sock := &sizeLimited{max: plainFrameMax, err: unix.EMSGSIZE, taker: true}
	w = newBigWriter(sock)
	for round := range 3 {
		frames, bytes, split, err := w.write(sock, f)
		if err != nil || !split || frames != len(sock.frames)/(round+1) || frames < 3 {
			t.Fatalf("round %d: %d frames (%d bytes), split %v, %v", round, frames, bytes, split, err)
		}
	}
	if want := 1 + 3*len(sock.frames)/3; sock.tries != want {
		t.Fatalf("%d writes, want %d (one refused whole, then only pieces)", sock.tries, want)
	}

	busy := &sizeLimited{max: plainFrameMax, err: unix.ENOBUFS, taker: true}
	w = newBigWriter(busy)
	w.write(busy, f)
	w.write(busy, f)
	if busy.tries != 2*(1+len(busy.frames)/2) {
		t.Fatalf("ENOBUFS: %d writes for %d pieces: the whole frame should be tried each time", busy.tries, len(busy.frames))
	}

	odd := bytes.Clone(f)
	odd[1] = unix.VIRTIO_NET_HDR_GSO_NONE
	if _, _, _, err := newBigWriter(sock).write(sock, odd); err != errFrameTooBig {
		t.Fatalf("unsplittable frame: %v, want errFrameTooBig", err)
	}
	other := &sizeLimited{max: plainFrameMax, err: unix.EIO, taker: true}
	if _, _, _, err := newBigWriter(other).write(other, f); !errors.Is(err, unix.EIO) {
		t.Fatalf("other write error: %v, want EIO", err)
	}
}

// discard is a FrameIO that takes every frame and keeps none.
type discard struct{ taker bool }

func (discard) ReadFrame([]byte) (int, error) { return 0, errors.New("not for reading") }
func (discard) WriteFrame([]byte) error       { return nil }
func (discard) Close() error                  { return nil }
func (d discard) TakesBigGSO() bool           { return d.taker }

// TestBigWriterAllocs: writing a BIG TCP frame, whole or split, allocates
// nothing.
func TestBigWriterAllocs(t *testing.T) {
	f := bigFrame(bigSpec{v6: true, jumbo: true, payload: 184188, mss: 1428, flags: tcpFlagACK, tcpOpts: 12})
	for _, taker := range []bool{false, true} {
		d := discard{taker}
		w := newBigWriter(d)
		n := testing.AllocsPerRun(100, func() {
			if _, _, _, err := w.write(d, f); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Fatalf("taker %v: %v allocations per write, want 0", taker, n)
		}
	}
}

// chanIO is a FrameIO over channels, for relay tests inside the package
// (bridgetest imports the package): frames to read come from in, frames
// written go to out.
type chanIO struct {
	in, out chan []byte
	done    chan struct{}
	taker   bool
}

func newChanIO(taker bool) *chanIO {
	return &chanIO{in: make(chan []byte, 4), out: make(chan []byte, 64), done: make(chan struct{}), taker: taker}
}

func (c *chanIO) ReadFrame(buf []byte) (int, error) {
	select {
	case f := <-c.in:
		if len(f) > len(buf) {
			return 0, ErrTruncated
		}
		return copy(buf, f), nil
	case <-c.done:
		return 0, net.ErrClosed
	}
}

func (c *chanIO) WriteFrame(f []byte) error {
	select {
	case c.out <- bytes.Clone(f):
		return nil
	case <-c.done:
		return net.ErrClosed
	}
}

func (c *chanIO) Close() error {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	return nil
}

func (c *chanIO) TakesBigGSO() bool { return c.taker }

// TestRelayBigGSO: a BIG TCP frame from the parent reaches a device side
// that takes it whole as it is, and one that does not as the pieces
// gsoSplit makes (counted once in RxSplit, each piece a packet); the same
// towards the parent, which never takes them whole. Nothing is dropped.
func TestRelayBigGSO(t *testing.T) {
	vmac := net.HardwareAddr{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee} // bigFrame's source
	f := bigFrame(bigSpec{v6: true, jumbo: true, payload: 184188, mss: 1428, flags: tcpFlagACK | tcpFlagPSH, tcpOpts: 12})
	want, _ := splitAll(t, f)
	recvN := func(ch chan []byte, n int) [][]byte {
		var got [][]byte
		for range n {
			select {
			case g := <-ch:
				got = append(got, g)
			case <-time.After(5 * time.Second):
				t.Fatalf("got %d of %d frames", len(got), n)
			}
		}
		return got
	}
	for _, taker := range []bool{true, false} {
		t.Run(fmt.Sprintf("device takes big frames %v", taker), func(t *testing.T) {
			dev, parent := newChanIO(taker), newChanIO(false)
			var c Counters
			r := NewRelay(dev, vmac, &c, nil)
			defer r.Close()
			r.SetParent(parent)

			parent.in <- f
			if taker {
				if got := recvN(dev.out, 1); !bytes.Equal(got[0], f) {
					t.Fatal("the frame did not reach the device whole")
				}
			} else {
				got := recvN(dev.out, len(want))
				for i := range want {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("piece %d differs from gsoSplit's", i)
					}
				}
			}
			dev.in <- f
			got := recvN(parent.out, len(want))
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("piece %d to the parent differs from gsoSplit's", i)
				}
			}
			r.Close()
			s := c.Snapshot()
			wantRx, wantRxSplit := uint64(len(want)), uint64(1)
			if taker {
				wantRx, wantRxSplit = 1, 0
			}
			var drops uint64
			for _, d := range s.RxDrops {
				drops += d
			}
			for _, d := range s.TxDrops {
				drops += d
			}
			if s.RxPackets != wantRx || s.RxSplit != wantRxSplit || s.TxPackets != uint64(len(want)) || s.TxSplit != 1 || drops != 0 {
				t.Fatalf("counters %+v: want %d rx packets (%d split), %d tx (1 split), no drops", s, wantRx, wantRxSplit, len(want))
			}
		})
	}
}
