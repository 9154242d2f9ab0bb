package bridge

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// Offsets and constants of userspace segmentation that x/sys lacks.
const (
	udpHeaderLen = 8
	udpLenOff    = 4 // the length in the UDP header
	udpCsumOff   = 6 // the checksum in the UDP header
	tcpFlagFIN   = 0x01
	tcpFlagCWR   = 0x80
	// ipv6JumboHBHLen is the hop-by-hop header the kernel puts in front of
	// a BIG TCP IPv6 packet larger than 64 KiB (payload length 0): next
	// header, length 0, and one Jumbo Payload option (type 0xC2, 4 bytes)
	// holding the real length (RFC 2675).
	ipv6JumboHBHLen = 8
	ipv6OptJumbo    = 0xc2
	// virtioGSOECN is VIRTIO_NET_HDR_GSO_ECN: the first segment carries CWR.
	virtioGSOECN = 0x80
)

// plainFrameMax is the largest frame that is never a BIG TCP super-frame:
// a vnet header, 64 KiB and room for a VLAN tag. The relay writes anything
// larger through a bigWriter.
const plainFrameMax = VnetHdrLen + 1<<16 + 64

// maxPieceIPLen is the largest IP packet a piece of a split frame may be:
// what the 16-bit IPv4 total length and IPv6 payload length can express
// (IP_MAXPACKET; for IPv6 that is IPV6_MAXPLEN plus the fixed header, so
// the IPv6 payload stays below IPV6_MAXPLEN too).
const maxPieceIPLen = unix.IP_MAXPACKET

// gsoSplit cuts one GSO super-frame (a vnet header, an Ethernet frame
// carrying TCP or UDP over IPv4 or IPv6 with GSO_TCPV4, GSO_TCPV6 or
// GSO_UDP_L4) into smaller GSO frames whose IP packets fit 16-bit lengths,
// each holding a whole number of gso_size segments of the original, so
// that segmenting the pieces gives exactly the segments the original
// would have given: the same bytes, sequence numbers, IPv4 IDs and flags
// (FIN and PSH only on the last, CWR only on the first). A BIG TCP IPv6
// frame's jumbo hop-by-hop header is dropped from the pieces (each has a
// real payload length again); a BIG TCP IPv4 frame's total length of 0 is
// replaced by the piece's. Every piece says NEEDS_CSUM, with the
// pseudo-header sum in the TCP or UDP checksum field as the kernel leaves
// it for CHECKSUM_PARTIAL, and a fresh IPv4 header checksum.
//
// A gsoSplit is owned by one goroutine (a relay loop) and allocates
// nothing: init parses the frame, next writes one piece at a time into a
// buffer the caller owns.
type gsoSplit struct {
	f        []byte
	hdr      virtioNetHdr
	l3       int // start of the IP header in f
	ipLen    int // IP header bytes copied into each piece (IPv6: the fixed header)
	l4       int // start of the TCP or UDP header in f
	payload  int // start of the payload in f
	v6, udp  bool
	nextHdr  uint8 // IPv6: the next header behind a dropped jumbo header
	seq      uint32
	id       uint16
	flags    byte
	mss      int // gso_size
	step     int // payload bytes per piece (a multiple of mss)
	off      int // payload offset of the next piece
	segIndex int // index of the next piece's first segment
}

// init prepares splitting f into pieces whose IP packets are at most maxIP
// bytes and whose frames (vnet header included) are at most maxFrame bytes.
// It reports false if f is not a GSO frame it can split: a GSO type other
// than TCP or UDP_L4, headers it does not understand (in-line VLAN tags,
// IPv6 extension headers other than the jumbo one, IPv4 fragments),
// lengths that do not account for the frame, or no room for even one
// segment per piece.
func (s *gsoSplit) init(f []byte, maxIP, maxFrame int) bool {
	*s = gsoSplit{}
	if s.hdr.decode(f) != nil || s.hdr.gsoSize == 0 {
		return false
	}
	gso := s.hdr.gsoType &^ virtioGSOECN
	switch gso {
	case unix.VIRTIO_NET_HDR_GSO_TCPV4, unix.VIRTIO_NET_HDR_GSO_TCPV6:
	case unix.VIRTIO_NET_HDR_GSO_UDP_L4:
		s.udp = true
	default:
		return false
	}
	const l3 = VnetHdrLen + ethHeaderLen
	if len(f) < l3 {
		return false
	}
	s.l3 = l3
	proto := uint8(unix.IPPROTO_TCP)
	if s.udp {
		proto = unix.IPPROTO_UDP
	}
	ip := f[l3:]
	switch binary.BigEndian.Uint16(f[l3-2:]) {
	case unix.ETH_P_IP:
		if gso == unix.VIRTIO_NET_HDR_GSO_TCPV6 || len(ip) < ipv4HeaderLen || ip[0]>>4 != 4 {
			return false
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < ipv4HeaderLen || len(ip) < ihl || ip[9] != proto ||
			binary.BigEndian.Uint16(ip[6:])&^unix.IP_DF != 0 { // a fragment, or the reserved bit
			return false
		}
		if tl := int(binary.BigEndian.Uint16(ip[2:])); tl != 0 && tl != len(ip) {
			return false
		}
		s.ipLen = ihl
		s.l4 = l3 + ihl
		s.id = binary.BigEndian.Uint16(ip[4:])
	case unix.ETH_P_IPV6:
		if gso == unix.VIRTIO_NET_HDR_GSO_TCPV4 || len(ip) < ipv6HeaderLen || ip[0]>>4 != 6 {
			return false
		}
		s.v6 = true
		s.ipLen = ipv6HeaderLen
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		switch ip[6] {
		case proto:
			if pl != 0 && pl != len(ip)-ipv6HeaderLen {
				return false
			}
			s.nextHdr = proto
			s.l4 = l3 + ipv6HeaderLen
		case unix.IPPROTO_HOPOPTS:
			// Only the kernel's jumbo header, for the whole packet.
			h := ip[ipv6HeaderLen:]
			if pl != 0 || len(h) < ipv6JumboHBHLen || h[0] != proto || h[1] != 0 || h[2] != ipv6OptJumbo || h[3] != 4 ||
				int(binary.BigEndian.Uint32(h[4:])) != len(ip)-ipv6HeaderLen {
				return false
			}
			s.nextHdr = proto
			s.l4 = l3 + ipv6HeaderLen + ipv6JumboHBHLen
		default:
			return false
		}
	default:
		return false
	}
	if s.udp {
		if len(f) < s.l4+udpHeaderLen {
			return false
		}
		s.payload = s.l4 + udpHeaderLen
	} else {
		if len(f) < s.l4+tcpHeaderLen {
			return false
		}
		thl := int(f[s.l4+12]>>4) * 4
		if thl < tcpHeaderLen || len(f) < s.l4+thl {
			return false
		}
		s.payload = s.l4 + thl
		s.seq = binary.BigEndian.Uint32(f[s.l4+4:])
		s.flags = f[s.l4+tcpFlagsOff]
	}
	if s.payload == len(f) {
		return false // nothing to split
	}
	s.mss = int(s.hdr.gsoSize)
	l4hdr := s.payload - s.l4
	hdrs := (l3 - VnetHdrLen) + s.ipLen + l4hdr // bytes before the payload in a piece's Ethernet frame
	room := min(maxIP-s.ipLen-l4hdr, maxFrame-VnetHdrLen-hdrs)
	if s.udp {
		room = min(room, 0xffff-udpHeaderLen) // the UDP length field
	}
	s.step = room / s.mss * s.mss
	if s.step <= 0 {
		return false
	}
	s.f = f
	return true
}

// next writes the next piece into out (which must hold maxFrame bytes, as
// given to init) and returns its length, or 0 when every piece has been
// written.
func (s *gsoSplit) next(out []byte) int {
	rest := len(s.f) - s.payload - s.off
	if rest <= 0 {
		return 0
	}
	n := min(s.step, rest)
	first, last := s.off == 0, n == rest
	f := s.f

	// Headers: Ethernet, IP (without a jumbo header), TCP or UDP.
	o := VnetHdrLen
	o += copy(out[o:], f[VnetHdrLen:s.l3])
	l3 := o
	o += copy(out[o:], f[s.l3:s.l3+s.ipLen])
	l4 := o
	o += copy(out[o:], f[s.l4:s.payload])
	payload := o
	o += copy(out[o:], f[s.payload+s.off:s.payload+s.off+n])
	l4Len := o - l4

	ip := out[l3:]
	if s.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(o-l3-ipv6HeaderLen))
		ip[6] = s.nextHdr
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(o-l3))
		binary.BigEndian.PutUint16(ip[4:], s.id+uint16(s.segIndex))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^checksum(ip[:s.ipLen], 0))
	}
	var addrs []byte
	if s.v6 {
		addrs = ip[8:40]
	} else {
		addrs = ip[12:20]
	}
	l4h := out[l4:]
	csumOff := uint16(tcpCsumOff)
	proto := uint32(unix.IPPROTO_TCP)
	gsoType := s.hdr.gsoType
	if s.udp {
		csumOff, proto = udpCsumOff, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(l4h[udpLenOff:], uint16(l4Len))
	} else {
		binary.BigEndian.PutUint32(l4h[4:], s.seq+uint32(s.off))
		fl := s.flags
		if !last {
			fl &^= tcpFlagFIN | tcpFlagPSH
		}
		if !first {
			fl &^= tcpFlagCWR
			gsoType &^= virtioGSOECN
		}
		l4h[tcpFlagsOff] = fl
	}
	binary.BigEndian.PutUint16(l4h[csumOff:], fold32(uint32(checksum(addrs, 0))+proto+uint32(l4Len)))
	vh := virtioNetHdr{
		flags:      unix.VIRTIO_NET_HDR_F_NEEDS_CSUM,
		gsoType:    gsoType,
		hdrLen:     uint16(payload - VnetHdrLen),
		gsoSize:    s.hdr.gsoSize,
		csumStart:  uint16(l4 - VnetHdrLen),
		csumOffset: csumOff,
	}
	_ = vh.encode(out) // cannot fail: out holds the headers

	s.off += n
	s.segIndex += n / s.mss
	return o
}

// bigGSOTaker is implemented by a side that takes GSO frames larger than
// 64 KiB whole (the TAP: the host's stack receives them as BIG TCP, jumbo
// header and all). A side without it gets such frames split.
type bigGSOTaker interface {
	TakesBigGSO() bool
}

// TakesBigGSO reports that a TAP takes BIG TCP frames whole: measured on
// Linux 6.18, 184 KiB IPv6 (jumbo header) and IPv4 (total length 0)
// frames written to it reach the host's TCP. See bigGSOTaker.
func (t *TAP) TakesBigGSO() bool { return true }

var _ bigGSOTaker = (*TAP)(nil)

// bigWriter writes the frames larger than plainFrameMax that one relay
// loop sends to one side: whole if that side is a bigGSOTaker and while it
// takes them, split with gsoSplit otherwise. A packet socket (the veth
// kind's peer, the parent) is no taker: measured on Linux 6.18, sending a
// BIG TCP frame on a veth fails with ENOBUFS, or is dropped on the way
// after the send returned. Once a taker has refused a frame of some size
// as too long or invalid, larger ones are split without trying. Owned by
// its relay loop; all its memory is allocated by newBigWriter.
type bigWriter struct {
	whole int // frames longer than this are split without trying them whole
	split gsoSplit
	piece []byte // one piece, plainFrameMax bytes
}

// newBigWriter returns the bigWriter for frames to dst.
func newBigWriter(dst FrameIO) *bigWriter {
	w := &bigWriter{whole: plainFrameMax, piece: make([]byte, plainFrameMax)}
	if t, ok := dst.(bigGSOTaker); ok && t.TakesBigGSO() {
		w.whole = BufSize
	}
	return w
}

// write sends f to dst, whole or in pieces (split), and returns how many
// frames and bytes (without vnet headers) it wrote. err is the first write
// error; errFrameTooBig if f is refused whole and cannot be split.
func (w *bigWriter) write(dst FrameIO, f []byte) (frames, bytes int, split bool, err error) {
	if len(f) <= plainFrameMax {
		if err := dst.WriteFrame(f); err != nil {
			return 0, 0, false, err
		}
		return 1, len(f) - VnetHdrLen, false, nil
	}
	if len(f) <= w.whole {
		err := dst.WriteFrame(f)
		switch {
		case err == nil:
			return 1, len(f) - VnetHdrLen, false, nil
		case errors.Is(err, unix.EMSGSIZE), errors.Is(err, unix.EINVAL):
			// Too long for this side, for good: split from now on.
			w.whole = len(f) - 1
		case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
			// No memory for so large a frame just now (a TAP builds it
			// from high-order pages): split this one.
		default:
			return 0, 0, false, err
		}
	}
	if !w.split.init(f, maxPieceIPLen, len(w.piece)) {
		return 0, 0, false, errFrameTooBig
	}
	for {
		n := w.split.next(w.piece)
		if n == 0 {
			return frames, bytes, true, nil
		}
		if err := dst.WriteFrame(w.piece[:n]); err != nil {
			return frames, bytes, true, err
		}
		frames++
		bytes += n - VnetHdrLen
	}
}

// errFrameTooBig: a frame too long for the side it goes to, which is no
// GSO frame gsoSplit can split.
var errFrameTooBig = errors.New("frame too long for the other side and not splittable")
