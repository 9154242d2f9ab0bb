package bridge

import (
	"bytes"
	"encoding/binary"
	"math/bits"

	"golang.org/x/sys/unix"
)

// Header sizes, offsets and TCP flags the coalescer uses. x/sys has none
// of these (the vnet header flags and GSO types, EtherTypes and protocol
// numbers come from it).
const (
	ipv4HeaderLen = 20 // without options
	ipv6HeaderLen = 40 // without extension headers
	tcpHeaderLen  = 20 // without options
	tcpFlagsOff   = 13 // the flags byte in the TCP header
	tcpCsumOff    = 16 // the checksum in the TCP header
	tcpFlagPSH    = 0x08
	tcpFlagACK    = 0x10
)

// maxCoalesced caps a coalesced frame's IPv4 total length / IPv6 payload
// length, the largest the 16-bit fields can express (for IPv6 that is
// IPV6_MAXPLEN, which x/sys lacks, of the same value).
const maxCoalesced = unix.IP_MAXPACKET

// frameKind is what the coalescer makes of one frame.
type frameKind uint8

const (
	// kindOther: not TCP over IP; never merged, never affects a flow.
	kindOther frameKind = iota
	// kindOpaque: IP that might carry TCP the coalescer cannot parse (IPv4
	// options or fragments, IPv6 extension headers): it flushes every
	// flow, so no segment is ever reordered around it.
	kindOpaque
	// kindTCP: a TCP segment that must not be merged (flags, no payload,
	// offload state, …); it flushes its own flow.
	kindTCP
	// kindCandidate: a TCP data segment that may be merged.
	kindCandidate
)

// flowKey identifies a TCP flow: IP version, addresses and ports.
type flowKey struct {
	v6    bool
	addrs [32]byte
	ports uint32
}

// segment is the parsed view of one frame (offsets within the frame, which
// starts with the vnet header).
type segment struct {
	kind    frameKind
	key     flowKey
	l3      int // start of the IP header
	l4      int // start of the TCP header
	payload int // start of the TCP payload
	seq     uint32
	flags   byte
	// vouched: the checksum is vouched for (DATA_VALID, or NEEDS_CSUM at
	// the TCP checksum); otherwise it must be verified in software.
	vouched bool
}

// group is one frame to write: a frame passed through untouched, or a
// head segment with the payloads of later segments of its flow appended.
type group struct {
	slot int // index of the head frame's buffer in the batch
	n    int // current length of the frame in that buffer
	segs int // segments merged into it (1: the frame as read)

	// open: later segments of the flow may still be appended.
	open bool
	// head verified: the head's checksum is known good (vouched or
	// verified in software).
	headOK  bool
	key     flowKey
	head    segment
	gsoSize int    // payload size of the head segment
	nextSeq uint32 // sequence number the next segment must have
	ipID    uint16 // IPv4 ID of the head segment
	psh     bool   // the last segment merged had PSH
}

// coalescer merges, within one batch of frames read from the parent,
// consecutive TCP data segments of one flow into one GSO frame (userspace
// GRO), so the TAP write and the host's receive path run once per up to
// 64 KiB instead of once per MTU frame. Frames are merged only when it is
// provably safe: the rules are in canAppend and parse. Everything else
// passes through untouched; no frame of a flow is ever reordered relative
// to another frame of the same flow.
//
// A coalescer is used by one goroutine; all its memory is allocated by
// newCoalescer.
type coalescer struct {
	groups []group
	// merged counts the segments that went into coalesced frames since the
	// coalescer was made (for statistics).
	merged uint64
}

// newCoalescer returns a coalescer for batches of up to n frames.
func newCoalescer(n int) *coalescer {
	return &coalescer{groups: make([]group, 0, n)}
}

// reset starts a new batch.
func (c *coalescer) reset() { c.groups = c.groups[:0] }

// add considers frame bufs[slot][:n] (vnet header, Ethernet frame): it is
// either appended to an open group of its flow (its payload copied into
// that group's buffer) or becomes a group of its own.
func (c *coalescer) add(bufs [][]byte, slot, n int) {
	f := bufs[slot][:n]
	var s segment
	parse(f, &s)
	switch s.kind {
	case kindOther:
	case kindOpaque:
		c.closeAll()
	case kindTCP:
		c.closeFlow(&s.key)
	case kindCandidate:
		if g := c.openGroup(&s.key); g != nil {
			if c.appendTo(bufs, g, f, &s) {
				return
			}
			g.open = false
		}
		c.groups = append(c.groups, group{
			slot: slot, n: n, segs: 1,
			open: s.flags&tcpFlagPSH == 0, headOK: s.vouched,
			key: s.key, head: s,
			gsoSize: n - s.payload,
			nextSeq: s.seq + uint32(n-s.payload),
			ipID:    ipv4ID(f, &s),
		})
		return
	}
	c.groups = append(c.groups, group{slot: slot, n: n, segs: 1})
}

// pass adds frame bufs[slot][:n] as a group of its own that nothing is
// appended to and that finish leaves alone: a frame that must not change
// (a group frame, which a parent hub hands to several relays; TCP never
// uses group addresses, so nothing is lost).
func (c *coalescer) pass(slot, n int) {
	c.groups = append(c.groups, group{slot: slot, n: n, segs: 1})
}

// finish fixes up the headers of every merged frame; the batch is then
// ready to be written: c.groups in order.
func (c *coalescer) finish(bufs [][]byte) {
	for i := range c.groups {
		g := &c.groups[i]
		if g.segs > 1 {
			finishGroup(bufs[g.slot][:g.n], g)
			c.merged += uint64(g.segs)
		}
	}
}

func (c *coalescer) closeAll() {
	for i := range c.groups {
		c.groups[i].open = false
	}
}

func (c *coalescer) closeFlow(k *flowKey) {
	if g := c.openGroup(k); g != nil {
		g.open = false
	}
}

// openGroup returns the open group of flow k, if any (there is at most one).
func (c *coalescer) openGroup(k *flowKey) *group {
	for i := len(c.groups) - 1; i >= 0; i-- {
		g := &c.groups[i]
		if g.open && g.key == *k {
			return g
		}
	}
	return nil
}

// appendTo appends segment s (frame f) to group g if every rule allows it,
// and reports whether it did.
func (c *coalescer) appendTo(bufs [][]byte, g *group, f []byte, s *segment) bool {
	head := bufs[g.slot]
	h := &g.head
	plen := len(f) - s.payload
	switch {
	case s.seq != g.nextSeq, // not the next bytes of the stream
		plen > g.gsoSize,             // only the last segment may be shorter
		g.n-h.l3+plen > maxCoalesced, // the IP length would not fit 16 bits
		g.n+plen > len(head),         // nor the buffer
		s.payload-s.l4 != h.payload-h.l4:
		return false
	}
	if !headersMatch(head[:g.n], f, h, s) {
		return false
	}
	if h.v4() && ipv4ID(f, s) != g.ipID+uint16(g.segs) {
		return false // only incrementing IDs: resegmenting gives the same frames back
	}
	// Checksums last (the costly part): never merge a segment whose
	// checksum nobody has verified.
	if !g.headOK {
		if !tcpChecksumValid(head[:g.n], h) {
			g.open = false
			return false
		}
		g.headOK = true
	}
	if !s.vouched {
		if !tcpChecksumValid(f, s) {
			return false
		}
	}
	copy(head[g.n:], f[s.payload:])
	g.n += plen
	g.segs++
	g.nextSeq += uint32(plen)
	g.psh = s.flags&tcpFlagPSH != 0
	if g.psh || plen < g.gsoSize {
		g.open = false
	}
	return true
}

// v4 reports whether the segment is IPv4.
func (s *segment) v4() bool { return !s.key.v6 }

// headersMatch compares everything but lengths, IDs, checksums, sequence
// numbers and PSH between the head frame h and the segment f: Ethernet
// header, IP header fields, TCP ACK number, data offset, flags, window,
// urgent pointer and options. (The vnet headers have been checked by
// parse, the ports by the flow key.)
func headersMatch(head, f []byte, hs, s *segment) bool {
	if !bytes.Equal(head[VnetHdrLen:hs.l3], f[VnetHdrLen:s.l3]) {
		// cannot coalesce with unequal Ethernet addresses or EtherType
		return false
	}
	hi, fi := head[hs.l3:hs.l4], f[s.l3:s.l4]
	if hs.v4() {
		if hi[0] != fi[0] {
			// cannot coalesce with unequal version or header length
			return false
		}
		if hi[1] != fi[1] {
			// cannot coalesce with unequal TOS (DSCP or ECN) values
			return false
		}
		if hi[6] != fi[6] || hi[7] != fi[7] {
			// cannot coalesce with unequal flags (DF) or fragment offsets
			return false
		}
		if hi[8] != fi[8] {
			// cannot coalesce with unequal TTL values
			return false
		}
		if hi[9] != fi[9] {
			// cannot coalesce with unequal protocols
			return false
		}
		if !bytes.Equal(hi[12:20], fi[12:20]) {
			// cannot coalesce with unequal addresses
			return false
		}
	} else {
		if !bytes.Equal(hi[0:4], fi[0:4]) {
			// cannot coalesce with unequal version, traffic class or flow label
			return false
		}
		if hi[6] != fi[6] {
			// cannot coalesce with unequal next headers
			return false
		}
		if hi[7] != fi[7] {
			// cannot coalesce with unequal hop limits
			return false
		}
		if !bytes.Equal(hi[8:40], fi[8:40]) {
			// cannot coalesce with unequal addresses
			return false
		}
	}
	ht, ft := head[hs.l4:hs.payload], f[s.l4:s.payload]
	if !bytes.Equal(ht[0:4], ft[0:4]) {
		// cannot coalesce with unequal ports
		return false
	}
	if !bytes.Equal(ht[8:12], ft[8:12]) {
		// cannot coalesce with unequal ACK numbers
		return false
	}
	if ht[12] != ft[12] {
		// cannot coalesce with unequal data offsets (or reserved bits)
		return false
	}
	if ht[tcpFlagsOff]&^tcpFlagPSH != ft[tcpFlagsOff]&^tcpFlagPSH {
		// cannot coalesce with flags that differ in more than PSH (parse
		// allowed only ACK and ACK|PSH)
		return false
	}
	if !bytes.Equal(ht[14:16], ft[14:16]) {
		// cannot coalesce with unequal windows
		return false
	}
	if !bytes.Equal(ht[18:], ft[18:]) {
		// cannot coalesce with unequal urgent pointers or options
		return false
	}
	return true
}

func ipv4ID(f []byte, s *segment) uint16 {
	if !s.v4() {
		return 0
	}
	return binary.BigEndian.Uint16(f[s.l3+4:])
}

// parse classifies frame f (vnet header + Ethernet frame) into s. A
// candidate for merging is an untagged IPv4 (no options, DF set, not a
// fragment, valid header checksum) or IPv6 (no extension headers) TCP
// segment with a payload, flags ACK or ACK|PSH, an IP length that matches
// the frame exactly (no padding), not a GSO frame, and whose checksum is
// vouched for (DATA_VALID, or NEEDS_CSUM pointing at the TCP checksum) or
// still to be verified (no flags).
func parse(f []byte, s *segment) {
	s.kind = kindOther
	const l3 = VnetHdrLen + ethHeaderLen
	if len(f) < l3 {
		return
	}
	s.l3 = l3
	switch binary.BigEndian.Uint16(f[l3-2:]) {
	case unix.ETH_P_IP:
		if len(f) < l3+ipv4HeaderLen || f[l3]>>4 != 4 {
			return
		}
		ip := f[l3:]
		if ip[9] != unix.IPPROTO_TCP { // some other flow, unless it could be a TCP fragment
			return
		}
		if ip[0]&0x0f != ipv4HeaderLen/4 || binary.BigEndian.Uint16(ip[6:])&^unix.IP_DF != 0 {
			// IP options, or a fragment (MF, offset or the reserved bit)
			s.kind = kindOpaque
			return
		}
		// DF is checked below: without it a segment is TCP, not a candidate.
		s.key.v6 = false
		s.key.addrs = [32]byte{}
		copy(s.key.addrs[:8], ip[12:20])
		s.l4 = l3 + ipv4HeaderLen
	case unix.ETH_P_IPV6:
		if len(f) < l3+ipv6HeaderLen || f[l3]>>4 != 6 {
			return
		}
		ip := f[l3:]
		switch ip[6] {
		case unix.IPPROTO_TCP:
		case unix.IPPROTO_UDP, unix.IPPROTO_ICMPV6, unix.IPPROTO_NONE: // other flows
			return
		default: // extension headers (maybe TCP behind them)
			s.kind = kindOpaque
			return
		}
		s.key.v6 = true
		copy(s.key.addrs[:], ip[8:40])
		s.l4 = l3 + ipv6HeaderLen
	default:
		return
	}
	if len(f) < s.l4+tcpHeaderLen {
		s.kind = kindOpaque
		return
	}
	tcp := f[s.l4:]
	s.key.ports = binary.BigEndian.Uint32(tcp[0:4])
	s.kind = kindTCP
	thl := int(tcp[12]>>4) * 4
	s.payload = s.l4 + thl
	s.seq = binary.BigEndian.Uint32(tcp[4:])
	s.flags = tcp[tcpFlagsOff]
	if thl < tcpHeaderLen || s.payload >= len(f) || tcp[12]&0x0f != 0 ||
		(s.flags != tcpFlagACK && s.flags != tcpFlagACK|tcpFlagPSH) {
		return
	}
	// The IP length must account for the frame exactly.
	ip := f[l3:]
	if s.key.v6 {
		if int(binary.BigEndian.Uint16(ip[4:]))+ipv6HeaderLen != len(f)-l3 {
			return
		}
	} else {
		if binary.BigEndian.Uint16(ip[6:]) != unix.IP_DF || int(binary.BigEndian.Uint16(ip[2:])) != len(f)-l3 || ^checksum(ip[:ipv4HeaderLen], 0) != 0 {
			return
		}
	}
	// vnet header: no GSO; checksum vouched for, or none said (to verify).
	var h virtioNetHdr
	if h.decode(f) != nil || h.gsoType != unix.VIRTIO_NET_HDR_GSO_NONE {
		return
	}
	switch h.flags {
	case 0:
		s.vouched = false
	case unix.VIRTIO_NET_HDR_F_DATA_VALID:
		s.vouched = true
	case unix.VIRTIO_NET_HDR_F_NEEDS_CSUM:
		// A locally generated frame whose checksum is still to be filled
		// in: the kernel trusts it, so may we, if it points at TCP's.
		if int(h.csumStart) != s.l4-VnetHdrLen || h.csumOffset != tcpCsumOff {
			return
		}
		s.vouched = true
	default:
		return
	}
	s.kind = kindCandidate
}

// finishGroup turns the head frame f of a merged group into a GSO frame:
// vnet header (NEEDS_CSUM, GSO_TCPV4/6, sizes), IP length, IPv4 header
// checksum, PSH if the last segment had it, and the pseudo-header checksum
// in the TCP checksum field, as the kernel leaves it for CHECKSUM_PARTIAL.
func finishGroup(f []byte, g *group) {
	h := &g.head
	ip := f[h.l3:]
	tcp := f[h.l4:]
	gsoType := uint8(unix.VIRTIO_NET_HDR_GSO_TCPV4)
	tcpLen := len(f) - h.l4
	if h.key.v6 {
		gsoType = unix.VIRTIO_NET_HDR_GSO_TCPV6
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen))
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-h.l3))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^checksum(ip[:ipv4HeaderLen], 0))
	}
	if g.psh {
		tcp[tcpFlagsOff] |= tcpFlagPSH
	}
	binary.BigEndian.PutUint16(tcp[tcpCsumOff:], pseudoHeaderSum(f, h, tcpLen))
	vh := virtioNetHdr{
		flags:      unix.VIRTIO_NET_HDR_F_NEEDS_CSUM,
		gsoType:    gsoType,
		hdrLen:     uint16(h.payload - VnetHdrLen),
		gsoSize:    uint16(g.gsoSize),
		csumStart:  uint16(h.l4 - VnetHdrLen),
		csumOffset: tcpCsumOff,
	}
	_ = vh.encode(f) // cannot fail: f holds a whole frame, longer than the header
}

// pseudoHeaderSum returns the folded (not complemented) ones'-complement
// sum of the TCP pseudo-header for a TCP segment of tcpLen bytes.
func pseudoHeaderSum(f []byte, s *segment, tcpLen int) uint16 {
	var addrs []byte
	if s.key.v6 {
		addrs = f[s.l3+8 : s.l3+40]
	} else {
		addrs = f[s.l3+12 : s.l3+20]
	}
	sum := uint32(checksum(addrs, 0)) + unix.IPPROTO_TCP + uint32(tcpLen)
	return fold32(sum)
}

// tcpChecksumValid verifies the TCP checksum of segment s in frame f in
// software (pseudo-header, TCP header and payload).
func tcpChecksumValid(f []byte, s *segment) bool {
	ph := pseudoHeaderSum(f, s, len(f)-s.l4)
	return checksum(f[s.l4:], ph) == 0xffff
}

func fold32(s uint32) uint16 {
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// checksum returns the ones'-complement sum (RFC 1071) of b, read as
// big-endian 16-bit words, plus initial, folded to 16 bits and not
// complemented. It sums 64-bit little-endian words with carry and swaps
// the bytes of the result at the end, which is the same sum (the
// ones'-complement sum is byte-order independent).
func checksum(b []byte, initial uint16) uint16 {
	var s, c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:]), 0)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:]), c)
		s, c = bits.Add64(s, 0, c)
		s += c
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), 0)
		s += c
		b = b[8:]
	}
	if len(b) > 0 {
		var t [8]byte
		copy(t[:], b)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(t[:]), 0)
		s += c
	}
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	le := fold32(uint32(s))
	return fold32(uint32(bits.ReverseBytes16(le)) + uint32(initial))
}
