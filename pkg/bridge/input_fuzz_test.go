package bridge

// Fuzz targets for the bridge's readers of bytes from outside: the vnet
// header every frame starts with, the coalescer's parse and header
// comparison on raw frames (FuzzCoalescer drives generated batches; these
// take any bytes), the kernel filter against a plain Go reference
// classifier, and the two netlink parsers (link notifications with
// IFLA_NEW_NETNSID, IPv4 settings). Seeds are in testdata/fuzz/<name>/;
// scripts/test.sh runs each target for a bounded time.
//
// This is an internal test (package bridge): the parsers are unexported.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzVnetHdr: decode reads any 10 bytes, encode writes them back
// unchanged, and a shorter buffer is refused with io.ErrShortBuffer.
func FuzzVnetHdr(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, VnetHdrLen))
	f.Add([]byte{unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, unix.VIRTIO_NET_HDR_GSO_TCPV4, 66, 0, 0xb4, 0x05, 34, 0, 16, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h virtioNetHdr
		err := h.decode(b)
		if len(b) < VnetHdrLen {
			if !errors.Is(err, io.ErrShortBuffer) {
				t.Fatalf("decode of %d bytes: err = %v, want io.ErrShortBuffer", len(b), err)
			}
			if err := h.encode(make([]byte, len(b))); !errors.Is(err, io.ErrShortBuffer) {
				t.Fatalf("encode into %d bytes: err = %v, want io.ErrShortBuffer", len(b), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("decode of %d bytes: %v", len(b), err)
		}
		out := make([]byte, VnetHdrLen)
		if err := h.encode(out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b[:VnetHdrLen]) {
			t.Fatalf("encode(decode(%x)) = %x", b[:VnetHdrLen], out)
		}
	})
}

// FuzzSegmentParse: parse classifies any frame without reading past it,
// and what it calls a merge candidate holds what canAppend relies on.
func FuzzSegmentParse(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, VnetHdrLen+ethHeaderLen))
	f.Add(tcpCandidate(false, 100, 1))
	f.Add(tcpCandidate(true, 100, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s segment
		parse(b, &s)
		if s.kind == kindOther || s.kind == kindOpaque {
			return
		}
		if !(VnetHdrLen+ethHeaderLen == s.l3 && s.l3 < s.l4 && s.l4+tcpHeaderLen <= len(b)) {
			t.Fatalf("kind %d with l3 %d, l4 %d in a %d-byte frame", s.kind, s.l3, s.l4, len(b))
		}
		if s.kind != kindCandidate {
			return
		}
		if s.payload <= s.l4 || s.payload >= len(b) {
			t.Fatalf("candidate with payload at %d (l4 %d) in a %d-byte frame", s.payload, s.l4, len(b))
		}
		if s.flags&^tcpFlagPSH != tcpFlagACK {
			t.Fatalf("candidate with TCP flags %#x", s.flags)
		}
		if b[1] != unix.VIRTIO_NET_HDR_GSO_NONE {
			t.Fatalf("candidate with GSO type %d", b[1])
		}
		if got := binary.BigEndian.Uint32(b[s.l4:]); got != s.key.ports {
			t.Fatalf("ports %#x, frame has %#x", s.key.ports, got)
		}
	})
}

// tcpCandidate returns a mergeable TCP segment (vnet header, Ethernet, IP,
// TCP with plen bytes of payload, checksums right, DATA_VALID) whose
// sequence number is seq.
func tcpCandidate(v6 bool, plen int, seq uint32) []byte {
	l3 := VnetHdrLen + ethHeaderLen
	ipLen := ipv4HeaderLen
	if v6 {
		ipLen = ipv6HeaderLen
	}
	f := make([]byte, l3+ipLen+tcpHeaderLen+plen)
	f[0] = unix.VIRTIO_NET_HDR_F_DATA_VALID
	copy(f[VnetHdrLen:], []byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee})
	ip := f[l3:]
	if v6 {
		binary.BigEndian.PutUint16(f[l3-2:], unix.ETH_P_IPV6)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpHeaderLen+plen))
		ip[6], ip[7] = unix.IPPROTO_TCP, 64
		copy(ip[8:], net.ParseIP("2001:db8::1"))
		copy(ip[24:], net.ParseIP("2001:db8::2"))
	} else {
		binary.BigEndian.PutUint16(f[l3-2:], unix.ETH_P_IP)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-l3))
		binary.BigEndian.PutUint16(ip[6:], unix.IP_DF)
		ip[8], ip[9] = 64, unix.IPPROTO_TCP
		copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
		binary.BigEndian.PutUint16(ip[10:], ^checksum(ip[:ipv4HeaderLen], 0))
	}
	tcp := ip[ipLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 7)
	tcp[12] = tcpHeaderLen / 4 << 4
	tcp[tcpFlagsOff] = tcpFlagACK
	binary.BigEndian.PutUint16(tcp[14:], 512)
	for i := range plen {
		tcp[tcpHeaderLen+i] = byte(i)
	}
	return f
}

// FuzzHeadersMatch compares headersMatch with a plain reference: two
// merge candidates of one flow match exactly when their headers are equal
// after masking what may differ between segments (vnet header, IP length,
// IPv4 ID and header checksum, TCP sequence number, checksum and PSH).
func FuzzHeadersMatch(f *testing.F) {
	a4, b4 := tcpCandidate(false, 100, 1), tcpCandidate(false, 100, 101)
	f.Add(a4, b4)
	a6, b6 := tcpCandidate(true, 1000, 1), tcpCandidate(true, 500, 1001)
	f.Add(a6, b6)
	c4 := bytes.Clone(b4)
	c4[VnetHdrLen+ethHeaderLen+8]-- // TTL differs (checksum now wrong: no candidate unless fixed)
	f.Add(a4, c4)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var sa, sb segment
		parse(a, &sa)
		parse(b, &sb)
		if sa.kind != kindCandidate || sb.kind != kindCandidate || sa.key != sb.key {
			return
		}
		got := headersMatch(a, b, &sa, &sb)
		want := sa.payload == sb.payload && bytes.Equal(maskedHeaders(a, &sa), maskedHeaders(b, &sb))
		if got != want {
			t.Fatalf("headersMatch = %v, reference %v\na %x\nb %x", got, want, a[:sa.payload], b[:sb.payload])
		}
	})
}

// maskedHeaders returns a copy of the Ethernet, IP and TCP headers of the
// candidate f with the fields that may differ between segments zeroed.
func maskedHeaders(f []byte, s *segment) []byte {
	h := bytes.Clone(f[VnetHdrLen:s.payload])
	ip := h[s.l3-VnetHdrLen : s.l4-VnetHdrLen]
	tcp := h[s.l4-VnetHdrLen:]
	if s.key.v6 {
		clear(ip[4:6]) // payload length
	} else {
		clear(ip[2:6])   // total length, ID
		clear(ip[10:12]) // header checksum
	}
	clear(tcp[4:8])   // sequence number
	clear(tcp[16:18]) // checksum
	tcp[tcpFlagsOff] &^= tcpFlagPSH
	return h
}

// FuzzCoalescerRaw feeds raw frames (the input split at 2-byte big-endian
// lengths) to the coalescer, with every invariant of checkBatch: any bytes
// the parent hands vethd, not only those genBatch makes.
func FuzzCoalescerRaw(f *testing.F) {
	join := func(frames ...[]byte) []byte {
		var b []byte
		for _, fr := range frames {
			b = binary.BigEndian.AppendUint16(b, uint16(len(fr)))
			b = append(b, fr...)
		}
		return b
	}
	f.Add([]byte{})
	f.Add(join(tcpCandidate(false, 100, 1), tcpCandidate(false, 100, 101), tcpCandidate(false, 60, 201)))
	f.Add(join(tcpCandidate(true, 1000, 1), tcpCandidate(true, 1000, 1001), tcpCandidate(false, 10, 5)))
	bc := NewBatchCoalescer(BatchSize)
	var st coalescerStats
	f.Fuzz(func(t *testing.T, data []byte) {
		var in [][]byte
		for len(data) >= 2 && len(in) < BatchSize {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			in = append(in, data[2:2+n])
			data = data[2+n:]
		}
		if err := checkBatch(bc, in, &st); err != nil {
			t.Fatal(err)
		}
	})
}

// An 802.1Q tag in line (TPID and TCI), and the VLAN id in its TCI, as
// refFilter reads them.
const (
	refTagLen  = 4
	refVIDMask = 0x0fff
)

// refFilterFor is filterProgramFor's rule (FilterProgram's for one MAC)
// written plainly. It drops runts; a frame with a tag in the skb's metadata
// (tagged: the NIC or the kernel stripped it; proto and tci are its TPID and
// TCI) unless that tag is an 802.1Q priority tag (VLAN id 0); an in-line
// 802.1Q tag unless it is a priority tag; and then any frame whose
// EtherType (behind a priority tag) is 802.1Q, 802.1ad or 0x9100. Of the
// rest it keeps frames to any of macs, and group frames: with one MAC those
// whose source is not that MAC, with several every one (a hub hands a
// member's group frames to its siblings).
func refFilterFor(macs []net.HardwareAddr, f []byte, tagged bool, proto, tci uint16) bool {
	if len(f) < ethHeaderLen {
		return false
	}
	et := binary.BigEndian.Uint16(f[etherTypeOff:])
	switch {
	case tagged:
		if proto != unix.ETH_P_8021Q || tci&refVIDMask != 0 {
			return false
		}
	case et == unix.ETH_P_8021Q:
		if len(f) < ethHeaderLen+refTagLen || binary.BigEndian.Uint16(f[ethHeaderLen:])&refVIDMask != 0 {
			return false
		}
		et = binary.BigEndian.Uint16(f[ethHeaderLen+2:])
	}
	switch et {
	case unix.ETH_P_8021Q, unix.ETH_P_8021AD, unix.ETH_P_QINQ1:
		return false
	}
	for _, mac := range macs {
		if bytes.Equal(f[0:6], mac) {
			return true
		}
	}
	return f[0]&0x01 != 0 && (len(macs) > 1 || !bytes.Equal(f[6:12], macs[0]))
}

// FuzzFilter runs the kernel filter for any MAC on any frame with any VLAN
// metadata in the x/net VM and compares its verdict with refFilter's; an
// accepted frame must be kept whole. macb longer than 6 bytes gives a hub's
// filter (filterProgramFor) for its 6-byte pieces, up to four, those
// repeated left out, and refFilterFor's verdict.
func FuzzFilter(f *testing.F) {
	prio := func(fr []byte, tci uint16, et uint16) []byte {
		out := append(bytes.Clone(fr[:12]), 0x81, 0x00, byte(tci>>8), byte(tci), byte(et>>8), byte(et))
		return append(out, fr[14:]...)
	}
	f.Add([]byte(ourMAC), frame(ourMAC, otherMAC, 0x0800, 60), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), frame(bcastMAC, ourMAC, 0x0806, 60), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), frame(bcastMAC, nearMAC, 0x0806, 60), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), frame(nearMAC, otherMAC, 0x0800, 60), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), frame(ourMAC, otherMAC, 0x8100, 64), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), prio(frame(ourMAC, otherMAC, 0x0800, 60), 0xe000, 0x0800), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), prio(frame(ourMAC, otherMAC, 0x0800, 60), 0x0005, 0x0800), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), prio(frame(ourMAC, otherMAC, 0x0800, 60), 0x0000, 0x8100), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), frame(mcastMAC, otherMAC, 0x86dd, 86), true, uint16(unix.ETH_P_8021Q), uint16(0xa000))
	f.Add([]byte(ourMAC), frame(mcastMAC, otherMAC, 0x86dd, 86), true, uint16(unix.ETH_P_8021Q), uint16(7))
	f.Add([]byte(ourMAC), frame(ourMAC, otherMAC, 0x0800, 60), true, uint16(unix.ETH_P_8021AD), uint16(0))
	f.Add([]byte(nearHiMAC), frame(nearHiMAC, nearHiMAC, 0x0800, 60), false, uint16(0), uint16(0))
	f.Add([]byte(ourMAC), []byte{0x02, 0x11}, false, uint16(0), uint16(0))
	hub := append(append(bytes.Clone(ourMAC), nearMAC...), otherMAC...)
	f.Add(hub, frame(nearMAC, otherMAC, 0x0800, 60), false, uint16(0), uint16(0))
	f.Add(hub, frame(bcastMAC, ourMAC, 0x0806, 60), false, uint16(0), uint16(0))
	f.Add(hub, frame(hostNICMAC, ourMAC, 0x0800, 60), false, uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, macb, fr []byte, tagged bool, proto, tci uint16) {
		if len(macb) < 6 {
			return
		}
		mac := net.HardwareAddr(macb[:6])
		macs := []net.HardwareAddr{mac}
		for i := 6; i+6 <= len(macb) && len(macs) < 4; i += 6 {
			m := net.HardwareAddr(macb[i : i+6])
			if !slices.ContainsFunc(macs, func(o net.HardwareAddr) bool { return bytes.Equal(o, m) }) {
				macs = append(macs, m)
			}
		}
		prog, err := filterProgramFor(macs)
		if err != nil {
			t.Fatal(err)
		}
		n, err := vmProgramTag(t, prog, vlanAux{tagged, proto, tci}).Run(fr)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		want := refFilterFor(macs, fr, tagged, proto, tci)
		if got := n > 0; got != want {
			t.Fatalf("macs %v, tag in metadata %v (proto %#x, tci %#x), frame %x: filter accepts = %v (%d), reference %v",
				macs, tagged, proto, tci, fr, got, n, want)
		}
		if want && n < len(fr) {
			t.Fatalf("accepted %d-byte frame cut to %d", len(fr), n)
		}
	})
}

// fuzzLinkMessage returns an ifinfomsg for index followed by the attributes
// (type, value), each padded to 4 bytes as the kernel lays them out.
func fuzzLinkMessage(index int32, attrs ...any) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	for i := 0; i+1 < len(attrs); i += 2 {
		typ, v := attrs[i].(int), attrs[i+1].([]byte)
		b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(v)))
		b = binary.NativeEndian.AppendUint16(b, uint16(typ))
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func u32(v int32) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(v)) }

// refAttr walks a well-formed attribute list (every length at least the
// header, its padded length within b) and returns the first value of type
// typ; ok is false if the list is malformed.
func refAttr(b []byte, typ int) (v []byte, found, ok bool) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b))
		t := int(binary.NativeEndian.Uint16(b[2:])) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofRtAttr || (l+3)&^3 > len(b) {
			return nil, false, false
		}
		if t == typ && !found {
			v, found = b[unix.SizeofRtAttr:l], true
		}
		b = b[(l+3)&^3:]
	}
	return v, found, len(b) == 0
}

// kernelAligned pads b to a multiple of 4 bytes: the kernel pads every
// attribute (nla_total_size), so no message it sends ends inside padding.
// The targets feed only such messages, and at least an ifinfomsg, as the
// kernel does: vishvananda/netlink's LinkDeserialize indexes past the end
// of a shorter message, and its ParseRouteAttr slices past the end of a
// buffer whose last attribute lacks its padding.
func kernelAligned(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// skipNetlinkPanic runs fn and skips the input if it panics inside
// vishvananda/netlink: a nested attribute list whose last attribute lacks
// its padding makes ParseRouteAttr slice past its end. The kernel pads
// every attribute, nested ones too, and vethd reads only the kernel's
// messages, so such input does not reach it (reported to the lead with
// the reproducer testdata/fuzz/FuzzParseInetConf/cc44316dc8d473b0). A
// panic anywhere else fails the test.
func skipNetlinkPanic(t *testing.T, fn func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			// The first frame outside the runtime below the panic is the
			// one that panicked.
			st := debug.Stack()
			if i := bytes.Index(st, []byte("\npanic(")); i >= 0 {
				for _, line := range bytes.Split(st[i+1:], []byte("\n")) {
					if bytes.HasPrefix(line, []byte("github.com/")) {
						if bytes.HasPrefix(line, []byte("github.com/vishvananda/netlink")) {
							t.Skipf("netlink panics on a message the kernel does not send: %v", r)
						}
						break
					}
				}
			}
			panic(r)
		}
	}()
	fn()
}

// FuzzParseLinkEvent: parseLinkEvent takes any RTM_NEWLINK/RTM_DELLINK
// payload without panicking, and reads IFLA_NEW_NETNSID (a move to
// another namespace) only from a deletion, as the first such attribute's
// signed 32-bit value; without one the event is not a move.
func FuzzParseLinkEvent(f *testing.F) {
	name := append([]byte("veth1"), 0)
	f.Add(true, fuzzLinkMessage(7, unix.IFLA_IFNAME, name, unix.IFLA_NEW_NETNSID, u32(3), unix.IFLA_NEW_IFINDEX, u32(12)))
	f.Add(false, fuzzLinkMessage(7, unix.IFLA_IFNAME, name, unix.IFLA_NEW_NETNSID, u32(3)))
	f.Add(true, fuzzLinkMessage(7, unix.IFLA_IFNAME, name))
	f.Add(true, fuzzLinkMessage(7, unix.IFLA_IFNAME, name, unix.IFLA_NEW_NETNSID, u32(-1)))
	f.Add(true, fuzzLinkMessage(7, unix.IFLA_IFNAME, name, unix.IFLA_NEW_NETNSID, []byte{1, 2}))
	f.Add(true, fuzzLinkMessage(7, unix.IFLA_MTU, u32(1500), unix.IFLA_ADDRESS, []byte{2, 0, 0, 0, 0, 1}))
	f.Add(false, []byte{})
	f.Fuzz(func(t *testing.T, del bool, data []byte) {
		if len(data) < unix.SizeofIfInfomsg {
			// The kernel always sends the ifinfomsg; LinkDeserialize
			// panics without it (see kernelAligned).
			data = append(make([]byte, unix.SizeofIfInfomsg-len(data)), data...)
		}
		data = kernelAligned(data)
		hdr := unix.NlMsghdr{Type: unix.RTM_NEWLINK, Len: uint32(unix.SizeofNlMsghdr + len(data))}
		if del {
			hdr.Type = unix.RTM_DELLINK
		}
		var ev LinkEvent
		var err error
		skipNetlinkPanic(t, func() { ev, err = parseLinkEvent(hdr, data) })
		if err != nil {
			return
		}
		if ev.Deleted != del {
			t.Fatalf("Deleted = %v for message type %d", ev.Deleted, hdr.Type)
		}
		if !del && ev.NewNetnsID != -1 {
			t.Fatalf("RTM_NEWLINK gave NewNetnsID %d, want -1", ev.NewNetnsID)
		}
		if !del || len(data) < unix.SizeofIfInfomsg {
			return
		}
		v, found, ok := refAttr(data[unix.SizeofIfInfomsg:], unix.IFLA_NEW_NETNSID)
		if !ok {
			return
		}
		want := -1
		if found && len(v) >= 4 {
			want = int(int32(binary.NativeEndian.Uint32(v)))
		}
		if ev.NewNetnsID != want {
			t.Fatalf("NewNetnsID = %d, want %d (attribute %x)", ev.NewNetnsID, want, v)
		}
		if ev.Moved() != (want >= 0) {
			t.Fatalf("Moved() = %v with NewNetnsID %d", ev.Moved(), want)
		}
	})
}

// FuzzParseInetConf: parseInetConf takes any link message without
// panicking; what it returns has one value per 4 bytes of IFLA_INET_CONF.
func FuzzParseInetConf(f *testing.F) {
	conf := make([]byte, 0, 4*4)
	for i := range 4 {
		conf = binary.NativeEndian.AppendUint32(conf, uint32(i))
	}
	inet := fuzzLinkMessage(0, unix.IFLA_INET_CONF, conf)[unix.SizeofIfInfomsg:]
	spec := fuzzLinkMessage(0, unix.AF_INET, inet)[unix.SizeofIfInfomsg:]
	f.Add(fuzzLinkMessage(3, unix.IFLA_AF_SPEC, spec))
	f.Add(fuzzLinkMessage(3, unix.IFLA_MTU, u32(1500)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		msg = kernelAligned(msg)
		var c InetConf
		var err error
		skipNetlinkPanic(t, func() { c, err = parseInetConf(msg) })
		if err != nil {
			return
		}
		for id := range c {
			if id < 1 || int(id) > len(msg)/4 {
				t.Fatalf("setting %d from a %d-byte message", id, len(msg))
			}
		}
	})
}
