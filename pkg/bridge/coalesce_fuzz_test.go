package bridge

// The coalescer against generated batches: IPv4 and IPv6 TCP flows (data
// segments, short and PSH ones, control segments, retransmissions, gaps)
// mixed with opaque IP (fragments, options, extension headers) and other
// traffic, then mutated: truncated, bytes flipped with and without fixing
// the checksums, TCP data offset changed, sequence numbers rewound, vnet
// flags changed, padded, duplicated. checkBatch holds every result to the
// invariants, computed from the test's own reading of the frames
// (refParse, refSum), not from parse or checksum.
//
// This file is an internal test (package bridge) because it watches the
// coalescer add by add to learn which input frames make up each output
// frame. The reference checksum of coalesce_test.go is in package
// bridge_test, out of reach, hence refSum here.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCoalescerRandomized runs checkBatch over a fixed sequence of
// generated batches, then checks that the batches reached what they are
// meant to test, so that a generator change cannot quietly make the
// invariants vacuous. A failing batch is printed as a seed for
// FuzzCoalescer.
func TestCoalescerRandomized(t *testing.T) {
	const batches = 3000
	rng := rand.New(rand.NewPCG(0x7e7d, 2024))
	bc := NewBatchCoalescer(BatchSize)
	var st coalescerStats
	buf := make([]byte, 512)
	for i := range batches {
		data := buf[:64+rng.IntN(len(buf)-64)]
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if err := checkInputRecover(bc, data, &st); err != nil {
			t.Fatalf("batch %d: %v\nreplay with FuzzCoalescer: f.Add([]byte(%q))", i, err, data)
		}
	}
	t.Logf("%+v", st)
	for _, c := range []struct {
		what string
		n    int
	}{
		{"merged IPv4 frames", st.mergedV4},
		{"merged IPv6 frames", st.mergedV6},
		{"merged segments without checksum flag (verified in software)", st.mergedByVnet[0]},
		{"merged NEEDS_CSUM segments", st.mergedByVnet[unix.VIRTIO_NET_HDR_F_NEEDS_CSUM]},
		{"merged DATA_VALID segments", st.mergedByVnet[unix.VIRTIO_NET_HDR_F_DATA_VALID]},
		{"merged frames with PSH", st.mergedPSH},
		{"merged frames with no room for another full segment", st.full},
		{"merged frames within 24 bytes of the 64 KiB limit", st.nearLimit},
		{"unverified data segments with a bad TCP checksum", st.badUnverified},
		{"opaque frames", st.opaque},
		{"runts", st.runts},
	} {
		if c.n == 0 {
			t.Errorf("%d batches made no %s", batches, c.what)
		}
	}
}

// FuzzCoalescer: go test -fuzz=FuzzCoalescer ./pkg/bridge/. The input
// drives genBatch; see checkBatch for what must hold.
func FuzzCoalescer(f *testing.F) {
	// One IPv4 flow, 32 full-size segments verified in software: merged.
	f.Add([]byte{})
	// Four flows; the first (IPv4, 8948-byte segments) sends all 32
	// segments: merged up to the 64 KiB limit, 7 at a time.
	f.Add([]byte{3, 0, 0x06, 0, 0, 0, 0x0d, 0, 0, 0, 0x17, 0, 0, 0, 0x18, 0, 0, 0})
	// Random inputs, which reach every kind of frame and mutation (see
	// TestCoalescerRandomized).
	rng := rand.New(rand.NewPCG(1, 2))
	for range 16 {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	// One coalescer and its buffers for all inputs, as the relay keeps
	// them: it reads nothing of a buffer beyond the frame's length.
	bc := NewBatchCoalescer(BatchSize)
	var st coalescerStats
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkInput(bc, data, &st); err != nil {
			t.Fatal(err)
		}
	})
}

// coalescerStats counts what the checked batches exercised.
type coalescerStats struct {
	frames, runts, opaque int
	mergedV4, mergedV6    int    // merged frames by IP version
	mergedByVnet          [3]int // merged segments by their vnet flags: none, NEEDS_CSUM, DATA_VALID
	mergedPSH             int    // merged frames ending with PSH
	full                  int    // merged frames with no room for another segment of gso_size
	nearLimit             int    // merged frames less than 24 bytes short of the 64 KiB limit
	badUnverified         int    // TCP data segments without vnet flags and with a bad checksum
}

// checkInputRecover is checkInput with a panic turned into an error, so
// that the randomized test can print the input that caused it.
func checkInputRecover(bc *BatchCoalescer, data []byte, st *coalescerStats) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return checkInput(bc, data, st)
}

// checkInput generates the batch that data describes and checks it.
func checkInput(bc *BatchCoalescer, data []byte, st *coalescerStats) error {
	in := fuzzInput(data)
	return checkBatch(bc, genBatch(&in), st)
}

// checkBatch feeds the frames to the coalescer as the relay does (runts
// dropped before it), one add at a time to learn which input frames each
// output frame is made of, and checks that:
//
//   - every frame that is not a runt goes into exactly one output frame,
//     and c.merged counts the segments of the merged ones;
//   - a frame that passes through comes out byte for byte as it went in,
//     and passed-through frames keep their order;
//   - a merged frame is what the kernel's GRO would make: vnet header
//     NEEDS_CSUM, GSO_TCPV4/6, hdr_len, gso_size (its first segment's
//     payload size) and the checksum position; IP length right and at
//     most 65535; IPv4 header checksum valid; completing the checksum
//     from csum_start as the kernel does for NEEDS_CSUM gives a TCP
//     checksum that verifies;
//   - its payload is its segments' payloads in order, and resegmenting it
//     at gso_size, as the kernel does, gives back each segment's headers
//     (Ethernet, IP but for length, ID and header checksum, TCP but for
//     sequence number, PSH and checksum): every segment is ACK with
//     payload, only the last is shorter or has PSH;
//   - every segment merged had a checksum known to be good: DATA_VALID,
//     or NEEDS_CSUM at the TCP checksum, or no flag and a TCP checksum
//     that verifies; none was GSO;
//   - no two frames of a TCP flow are reordered, nor a TCP frame and an
//     opaque one (which might belong to any flow).
func checkBatch(bc *BatchCoalescer, in [][]byte, st *coalescerStats) error {
	c, bufs := bc.c, bc.bufs
	c.reset()
	merged0 := c.merged
	views := make([]refView, len(in))
	out := make([]int, len(in)) // index in c.groups of the frame that in[i] went into; -1 for a runt
	var members [][]int         // for each of c.groups, the input frames in it, in order
	for i, f := range in {
		out[i] = -1
		views[i] = refParse(f)
		st.frames++
		if views[i].class == refOpaque {
			st.opaque++
		}
		if v := views[i]; v.class == refTCP && v.payload >= 0 && v.payload < len(f) && f[0] == 0 &&
			refTCPSum(f, v.l3, v.l4, v.v6) != 0xffff {
			st.badUnverified++
		}
		if len(f) < VnetHdrLen+ethHeaderLen {
			st.runts++
			continue
		}
		copy(bufs[i], f)
		ng := len(c.groups)
		c.add(bufs, i, len(f))
		switch len(c.groups) {
		case ng + 1:
			if g := &c.groups[ng]; g.slot != i || g.n != len(f) || g.segs != 1 {
				return fmt.Errorf("frame %d: new output frame has slot %d, length %d, %d segments; want %d, %d, 1",
					i, g.slot, g.n, g.segs, i, len(f))
			}
			members = append(members, []int{i})
			out[i] = ng
		case ng:
			k := -1
			for j := range c.groups {
				if d := c.groups[j].segs - len(members[j]); d != 0 {
					if d != 1 || k >= 0 {
						return fmt.Errorf("frame %d: output frame %d went from %d to %d segments", i, j, len(members[j]), c.groups[j].segs)
					}
					k = j
				}
			}
			if k < 0 {
				return fmt.Errorf("frame %d (%s) vanished", i, views[i].class)
			}
			members[k] = append(members[k], i)
			out[i] = k
		default:
			return fmt.Errorf("frame %d: %d output frames after it, were %d", i, len(c.groups), ng)
		}
	}
	c.finish(bufs)

	var mergedSegs uint64
	for k := range c.groups {
		g := &c.groups[k]
		if k > 0 && g.slot <= c.groups[k-1].slot {
			return fmt.Errorf("output frame %d (input frame %d) after output frame %d (input frame %d)", k, g.slot, k-1, c.groups[k-1].slot)
		}
		if g.segs == 1 {
			if !bytes.Equal(bufs[g.slot][:g.n], in[g.slot]) {
				return fmt.Errorf("frame %d (%s) passed through altered:\n got % x\nwant % x",
					g.slot, views[g.slot].class, frameStart(bufs[g.slot][:g.n]), frameStart(in[g.slot]))
			}
			continue
		}
		mergedSegs += uint64(g.segs)
		if err := checkMerged(bufs[g.slot][:g.n], in, views, members[k], st); err != nil {
			return fmt.Errorf("output frame %d (input frames %v): %w", k, members[k], err)
		}
	}
	if d := c.merged - merged0; d != mergedSegs {
		return fmt.Errorf("merged counter grew by %d, %d segments were merged", d, mergedSegs)
	}

	for i := range in {
		for j := i + 1; j < len(in); j++ {
			vi, vj := &views[i], &views[j]
			oi, oj := out[i], out[j]
			if oi < 0 || oj < 0 {
				continue
			}
			switch {
			case vi.class == refTCP && vj.class == refTCP && vi.flow == vj.flow:
				if oi > oj {
					return fmt.Errorf("TCP frame %d (output %d) after frame %d (output %d) of its flow", i, oi, j, oj)
				}
			case vi.class == refOpaque && vj.class != refOther, vj.class == refOpaque && vi.class != refOther:
				if oi >= oj {
					return fmt.Errorf("frame %d (%s, output %d) not before frame %d (%s, output %d)", i, vi.class, oi, j, vj.class, oj)
				}
			}
		}
	}
	return nil
}

// checkMerged checks merged frame f, made of input frames in[m] for m in
// members (see checkBatch).
func checkMerged(f []byte, in [][]byte, views []refView, members []int, st *coalescerStats) error {
	for _, m := range members {
		if v := views[m]; v.class != refTCP || v.payload < 0 {
			return fmt.Errorf("frame %d (%s, payload offset %d) merged", m, v.class, v.payload)
		}
	}
	h := views[members[0]] // the output frame's headers are its first segment's
	gso := len(in[members[0]]) - h.payload
	if len(f) < len(in[members[0]]) {
		return fmt.Errorf("%d bytes, shorter than its first segment (%d)", len(f), len(in[members[0]]))
	}
	hdrLen, gsoSize := int(binary.NativeEndian.Uint16(f[2:])), int(binary.NativeEndian.Uint16(f[4:]))
	csumStart, csumOff := int(binary.NativeEndian.Uint16(f[6:])), int(binary.NativeEndian.Uint16(f[8:]))
	gsoType := byte(unix.VIRTIO_NET_HDR_GSO_TCPV4)
	if h.v6 {
		gsoType = unix.VIRTIO_NET_HDR_GSO_TCPV6
	}
	if f[0] != unix.VIRTIO_NET_HDR_F_NEEDS_CSUM || f[1] != gsoType || hdrLen != h.payload-VnetHdrLen || gsoSize != gso ||
		csumStart != h.l4-VnetHdrLen || csumOff != 16 {
		return fmt.Errorf("vnet header % x: want flags NEEDS_CSUM, gso type %d, hdr_len %d, gso_size %d, csum %d+16",
			f[:VnetHdrLen], gsoType, h.payload-VnetHdrLen, gso, h.l4-VnetHdrLen)
	}
	ip := f[h.l3:]
	ipLen := len(ip)
	if ipLen > maxCoalesced {
		return fmt.Errorf("IP length %d > 65535", ipLen)
	}
	if h.v6 {
		if n := int(binary.BigEndian.Uint16(ip[4:])); n != ipLen-ipv6HeaderLen {
			return fmt.Errorf("IPv6 payload length %d, want %d", n, ipLen-ipv6HeaderLen)
		}
	} else {
		if n := int(binary.BigEndian.Uint16(ip[2:])); n != ipLen {
			return fmt.Errorf("IPv4 total length %d, want %d", n, ipLen)
		}
		if refFold(refSum(ip[:ipv4HeaderLen])) != 0xffff {
			return fmt.Errorf("IPv4 header checksum wrong")
		}
	}
	// Complete the checksum as the kernel does for NEEDS_CSUM: the sum
	// from csum_start to the end (the field holding the pseudo-header
	// sum), folded and complemented, into the field.
	done := bytes.Clone(f)
	binary.BigEndian.PutUint16(done[h.l4+16:], ^refFold(refSum(done[h.l4:])))
	if refTCPSum(done, h.l3, h.l4, h.v6) != 0xffff {
		return fmt.Errorf("TCP checksum completed from csum_start does not verify: wrong pseudo-header sum %#04x",
			binary.BigEndian.Uint16(f[h.l4+16:]))
	}

	var payload []byte
	for _, m := range members {
		payload = append(payload, in[m][views[m].payload:]...)
	}
	if got := f[h.payload:]; !bytes.Equal(got, payload) {
		i := 0
		for i < min(len(got), len(payload)) && got[i] == payload[i] {
			i++
		}
		return fmt.Errorf("payload (%d bytes) is not its segments' payloads in order (%d bytes): first difference at byte %d",
			len(got), len(payload), i)
	}

	// Resegment: the headers of the k-th segment of f must be member k's.
	hdr := f[VnetHdrLen:h.payload] // the output frame's headers, without vnet header
	l3, l4 := h.l3-VnetHdrLen, h.l4-VnetHdrLen
	id := binary.BigEndian.Uint16(hdr[l3+4:])
	seq := binary.BigEndian.Uint32(hdr[l4+4:])
	last := len(members) - 1
	for k, m := range members {
		mf, v := in[m], views[m]
		plen := len(mf) - v.payload
		switch flags := mf[v.l4+13]; {
		case flags != tcpFlagACK && flags != tcpFlagACK|tcpFlagPSH:
			return fmt.Errorf("segment %d (frame %d) has TCP flags %#02x", k, m, flags)
		case flags&tcpFlagPSH != 0 && k != last:
			return fmt.Errorf("segment %d (frame %d) has PSH but is not the last", k, m)
		case plen == 0 || plen > gso || plen < gso && k != last:
			return fmt.Errorf("segment %d (frame %d) has %d bytes of payload, gso_size %d, %d segments", k, m, plen, gso, len(members))
		}
		switch flags := mf[0]; {
		case mf[1] != unix.VIRTIO_NET_HDR_GSO_NONE:
			return fmt.Errorf("segment %d (frame %d) is a GSO frame (vnet % x)", k, m, mf[:VnetHdrLen])
		case flags == 0:
			if refTCPSum(mf, v.l3, v.l4, v.v6) != 0xffff {
				return fmt.Errorf("segment %d (frame %d) without checksum flag merged with a bad TCP checksum", k, m)
			}
			st.mergedByVnet[0]++
		case flags == unix.VIRTIO_NET_HDR_F_DATA_VALID:
			st.mergedByVnet[flags]++
		case flags == unix.VIRTIO_NET_HDR_F_NEEDS_CSUM && int(binary.NativeEndian.Uint16(mf[6:])) == v.l4-VnetHdrLen &&
			binary.NativeEndian.Uint16(mf[8:]) == 16:
			st.mergedByVnet[flags]++
		default:
			return fmt.Errorf("segment %d (frame %d) merged with vnet header % x: checksum not known good", k, m, mf[:VnetHdrLen])
		}
		want := bytes.Clone(hdr)
		wantLen := len(hdr) + plen - l3
		if h.v6 {
			binary.BigEndian.PutUint16(want[l3+4:], uint16(wantLen-ipv6HeaderLen))
		} else {
			binary.BigEndian.PutUint16(want[l3+2:], uint16(wantLen))
			binary.BigEndian.PutUint16(want[l3+4:], id+uint16(k))
			want[l3+10], want[l3+11] = 0, 0
			binary.BigEndian.PutUint16(want[l3+10:], ^refFold(refSum(want[l3:l3+ipv4HeaderLen])))
		}
		binary.BigEndian.PutUint32(want[l4+4:], seq)
		if k != last {
			want[l4+13] &^= tcpFlagPSH
		}
		copy(want[l4+16:l4+18], mf[v.l4+16:]) // the sender's checksum: checked above
		if got := mf[VnetHdrLen:v.payload]; !bytes.Equal(got, want) {
			return fmt.Errorf("segment %d (frame %d) is not the merged frame's segment %d:\n got % x\nwant % x", k, m, k, got, want)
		}
		seq += uint32(plen)
	}

	if h.v6 {
		st.mergedV6++
	} else {
		st.mergedV4++
	}
	if f[h.l4+13]&tcpFlagPSH != 0 {
		st.mergedPSH++
	}
	if ipLen+gso > maxCoalesced {
		st.full++
	}
	if ipLen > maxCoalesced-24 {
		st.nearLimit++
	}
	return nil
}

// frameStart returns the start of frame f, for messages.
func frameStart(f []byte) []byte {
	return f[:min(len(f), VnetHdrLen+ethHeaderLen+ipv6HeaderLen+tcpHeaderLen+12)]
}

// refClass is the test's own classification of a frame, from the rules in
// docs/design.md, "Coalescing".
type refClass uint8

const (
	refOther  refClass = iota // not TCP over IP (also: too short to name its flow)
	refOpaque                 // IP that might hide TCP: IPv4 options or fragment, IPv6 extension header
	refTCP                    // a TCP segment with a flow
)

func (c refClass) String() string { return [...]string{"other", "opaque", "TCP"}[c] }

// refView is what refParse makes of a frame.
type refView struct {
	class           refClass
	v6              bool
	flow            string // refTCP: addresses and ports (their length tells the IP version)
	l3, l4, payload int    // refTCP: offsets in the frame; payload -1 if the data offset is impossible
}

// refParse reads frame f (vnet header, Ethernet frame) independently of
// parse.
func refParse(f []byte) refView {
	const l3 = VnetHdrLen + ethHeaderLen
	var v refView
	if len(f) < l3 {
		return v
	}
	var addrs []byte
	switch binary.BigEndian.Uint16(f[l3-2:]) {
	case 0x0800:
		if len(f) < l3+ipv4HeaderLen || f[l3]>>4 != 4 || f[l3+9] != 6 {
			return v
		}
		if f[l3]&0x0f != 5 || binary.BigEndian.Uint16(f[l3+6:])&0x3fff != 0 { // options; MF or offset
			v.class = refOpaque
			return v
		}
		v.l4, addrs = l3+ipv4HeaderLen, f[l3+12:l3+20]
	case 0x86dd:
		if len(f) < l3+ipv6HeaderLen || f[l3]>>4 != 6 {
			return v
		}
		switch f[l3+6] {
		case 6:
		case 0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254: // extension headers
			v.class = refOpaque
			return v
		default:
			return v
		}
		v.v6, v.l4, addrs = true, l3+ipv6HeaderLen, f[l3+8:l3+40]
	default:
		return v
	}
	if len(f) < v.l4+tcpHeaderLen {
		return refView{}
	}
	v.class, v.l3 = refTCP, l3
	v.flow = string(addrs) + string(f[v.l4:v.l4+4])
	v.payload = -1
	if thl := int(f[v.l4+12]>>4) * 4; thl >= tcpHeaderLen && v.l4+thl <= len(f) {
		v.payload = v.l4 + thl
	}
	return v
}

// refSum is the plain RFC 1071 sum of b as big-endian 16-bit words,
// unfolded.
func refSum(b []byte) uint64 {
	var s uint64
	for ; len(b) >= 2; b = b[2:] {
		s += uint64(b[0])<<8 | uint64(b[1])
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

func refFold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// refTCPSum returns the folded sum of the TCP segment f[l4:] with its
// pseudo-header (addresses from the IP header at l3): 0xffff if the
// checksum in it is right.
func refTCPSum(f []byte, l3, l4 int, v6 bool) uint16 {
	return refFold(uint64(refPseudoSum(f, l3, l4, v6)) + refSum(f[l4:]))
}

// refPseudoSum returns the folded sum of the pseudo-header of the TCP
// segment f[l4:].
func refPseudoSum(f []byte, l3, l4 int, v6 bool) uint16 {
	addrs := f[l3+12 : l3+20]
	if v6 {
		addrs = f[l3+8 : l3+40]
	}
	return refFold(refSum(addrs) + 6 + uint64(len(f)-l4))
}

// fixIPv4 recomputes the IPv4 header checksum of f, if it has one.
func fixIPv4(f []byte) {
	const l3 = VnetHdrLen + ethHeaderLen
	if len(f) < l3+ipv4HeaderLen || binary.BigEndian.Uint16(f[l3-2:]) != 0x0800 {
		return
	}
	ip := f[l3:]
	ihl := int(ip[0]&0x0f) * 4
	if ihl < ipv4HeaderLen || len(ip) < ihl {
		return
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^refFold(refSum(ip[:ihl])))
}

// fixTCP recomputes the TCP checksum of f, if refParse sees a segment.
func fixTCP(f []byte) {
	if v := refParse(f); v.class == refTCP {
		f[v.l4+16], f[v.l4+17] = 0, 0
		binary.BigEndian.PutUint16(f[v.l4+16:], ^refTCPSum(f, v.l3, v.l4, v.v6))
	}
}

// fuzzInput hands out the bytes of a fuzz input, then zeros. Every choice
// is made so that zero is the plain one (a full batch, one flow, full-size
// data segments, no mutation): a short input still makes a mergeable
// stream.
type fuzzInput []byte

func (in *fuzzInput) next() byte {
	if len(*in) == 0 {
		return 0
	}
	b := (*in)[0]
	*in = (*in)[1:]
	return b
}

// intn returns a number in [0, n) made of two bytes.
func (in *fuzzInput) intn(n int) int { return (int(in.next())<<8 | int(in.next())) % n }

var (
	genEth    = []byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x02, 0x7e, 0, 0, 0, 1} // destination, source
	genSrc4   = []byte{198, 18, 0, 1}
	genDst4   = []byte{198, 18, 0, 50}
	genSrc6   = []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	genDst6   = []byte{0x20, 0x01, 0x0d, 0xb8, 15: 0x50}
	genTSOpts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps
)

// genFlow is one TCP flow of a generated batch (two may share their
// addresses and ports, and so be one flow with two sequence spaces).
type genFlow struct {
	v6    bool
	sport uint16
	seq   uint32 // of the next data segment
	id    uint16 // IPv4 ID of the next data segment
	mss   int
	opts  []byte // TCP options
	vnet  byte   // vnet header flags of its frames
	// run is the payload of the merged frame that the flow's latest
	// segments would make: an estimate, blind to mutations.
	run int
}

// hdrLen is the IP and TCP header length of fl's segments.
func (fl *genFlow) hdrLen() int {
	if fl.v6 {
		return ipv6HeaderLen + tcpHeaderLen + len(fl.opts)
	}
	return ipv4HeaderLen + tcpHeaderLen + len(fl.opts)
}

func newGenFlow(in *fuzzInput) genFlow {
	b := in.next()
	fl := genFlow{
		v6:    b&1 != 0,
		mss:   [...]int{1448, 1208, 536, 8948}[b>>1&3],
		vnet:  [...]byte{0, unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, unix.VIRTIO_NET_HDR_F_DATA_VALID, 0}[b>>3&3],
		sport: 40000 + uint16(b>>6),
		seq:   0xffff0000 + uint32(in.intn(1<<16)), // wraps in many batches
		id:    0xff00 + uint16(in.next()),          // so does the IPv4 ID
	}
	if b&0x20 == 0 {
		fl.opts = genTSOpts
	}
	return fl
}

// frame returns a frame of flow fl: vnet header, Ethernet, IP (IPv4 with
// flags and fragment offset frag; ext: IPv4 options, or IPv6 extension
// headers starting with type extType), TCP with sequence number seq, flags
// and plen bytes of the stream, valid checksums (the TCP one left as the
// pseudo-header sum under NEEDS_CSUM, as the sending kernel leaves it).
func (fl *genFlow) frame(seq uint32, plen int, flags byte, ext []byte, extType byte, frag uint16) []byte {
	const l3 = VnetHdrLen + ethHeaderLen
	ipl := ipv4HeaderLen
	if fl.v6 {
		ipl = ipv6HeaderLen
	}
	l4 := l3 + ipl + len(ext)
	thl := tcpHeaderLen + len(fl.opts)
	f := make([]byte, l4+thl+plen)
	f[0] = fl.vnet
	if fl.vnet == unix.VIRTIO_NET_HDR_F_NEEDS_CSUM {
		binary.NativeEndian.PutUint16(f[6:], uint16(l4-VnetHdrLen))
		binary.NativeEndian.PutUint16(f[8:], 16)
	}
	copy(f[VnetHdrLen:], genEth)
	ip := f[l3:]
	if fl.v6 {
		binary.BigEndian.PutUint16(f[l3-2:], 0x86dd)
		binary.BigEndian.PutUint32(ip[0:], 6<<28|0x12345) // flow label
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-ipv6HeaderLen))
		ip[6], ip[7] = 6, 64
		if ext != nil {
			ip[6] = extType
		}
		copy(ip[8:], genSrc6)
		copy(ip[24:], genDst6)
	} else {
		binary.BigEndian.PutUint16(f[l3-2:], 0x0800)
		ip[0] = 0x40 | byte((ipl+len(ext))/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint16(ip[4:], fl.id)
		binary.BigEndian.PutUint16(ip[6:], frag)
		ip[8], ip[9] = 64, 6
		copy(ip[12:], genSrc4)
		copy(ip[16:], genDst4)
	}
	copy(ip[ipl:], ext)
	fixIPv4(f)
	tcp := f[l4:]
	binary.BigEndian.PutUint16(tcp[0:], fl.sport)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 1000)
	tcp[12] = byte(thl/4) << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 502)
	copy(tcp[tcpHeaderLen:], fl.opts)
	p := tcp[thl:]
	for j := range p {
		x := seq + uint32(j) // a retransmission carries the same bytes
		p[j] = byte(x ^ x>>7 ^ x>>15)
	}
	if fl.vnet == unix.VIRTIO_NET_HDR_F_NEEDS_CSUM {
		binary.BigEndian.PutUint16(tcp[16:], refPseudoSum(f, l3, l4, fl.v6))
	} else {
		binary.BigEndian.PutUint16(tcp[16:], ^refTCPSum(f, l3, l4, fl.v6))
	}
	return f
}

// data returns the next data segment of fl (plen bytes, flags).
func (fl *genFlow) data(plen int, flags byte) []byte {
	f := fl.frame(fl.seq, plen, flags, nil, 0, 0x4000)
	fl.seq += uint32(plen)
	fl.id++
	switch {
	case flags&^tcpFlagPSH != tcpFlagACK || plen == 0:
		fl.run = 0
	case fl.hdrLen()+fl.run+plen > maxCoalesced: // starts the next frame
		fl.run = plen
	default:
		fl.run += plen
	}
	if flags&tcpFlagPSH != 0 || plen < fl.mss { // ends it
		fl.run = 0
	}
	return f
}

// opaque returns an IP frame that hides the next segment of fl where the
// coalescer cannot see it: an IPv4 fragment or header with options, an
// IPv6 extension header.
func (fl *genFlow) opaque(in *fuzzInput) []byte {
	k := in.next() % 3
	if fl.v6 {
		switch k {
		case 0: // hop-by-hop options: TCP, 8 bytes, PadN
			return fl.frame(fl.seq, fl.mss, tcpFlagACK, []byte{6, 0, 1, 4, 0, 0, 0, 0}, 0, 0)
		case 1: // destination options
			return fl.frame(fl.seq, fl.mss, tcpFlagACK, []byte{6, 0, 1, 4, 0, 0, 0, 0}, 60, 0)
		default: // first fragment (offset 0, M)
			return fl.frame(fl.seq, fl.mss, tcpFlagACK, []byte{6, 0, 0, 1, 0, 0, 0, 42}, 44, 0)
		}
	}
	switch k {
	case 0: // first fragment (MF)
		return fl.frame(fl.seq, fl.mss, tcpFlagACK, nil, 0, 0x2000)
	case 1: // a later fragment (offset 1480): its "TCP header" is payload
		return fl.frame(fl.seq, fl.mss, tcpFlagACK, nil, 0, 185)
	default: // options: NOP NOP NOP EOL
		return fl.frame(fl.seq, fl.mss, tcpFlagACK, []byte{1, 1, 1, 0}, 0, 0x4000)
	}
}

// other returns a frame that is not TCP over IP: ARP, UDP, ICMP(v6), or
// a VLAN-tagged segment of fl.
func (fl *genFlow) other(in *fuzzInput) []byte {
	const l3 = VnetHdrLen + ethHeaderLen
	switch k := in.next() % 4; k {
	case 0:
		f := make([]byte, VnetHdrLen+60)
		copy(f[VnetHdrLen:], genEth)
		binary.BigEndian.PutUint16(f[l3-2:], 0x0806)
		copy(f[l3:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
		return f
	case 1, 2:
		f := fl.frame(fl.seq, 100, 0, nil, 0, 0x4000)
		proto := byte(17) // UDP
		if k == 2 {
			proto = 1 // ICMP
			if fl.v6 {
				proto = 58
			}
		}
		if fl.v6 {
			f[l3+6] = proto
		} else {
			f[l3+9] = proto
			fixIPv4(f)
		}
		return f
	default:
		s := fl.frame(fl.seq, fl.mss, tcpFlagACK, nil, 0, 0x4000)
		f := make([]byte, len(s)+4)
		copy(f, s[:VnetHdrLen+12])
		copy(f[VnetHdrLen+12:], []byte{0x81, 0x00, 0x00, 100})
		copy(f[VnetHdrLen+16:], s[VnetHdrLen+12:])
		return f
	}
}

// genBatch returns the batch of frames that in describes.
func genBatch(in *fuzzInput) [][]byte {
	flows := make([]genFlow, 1+int(in.next())%4)
	n := BatchSize - int(in.next())%BatchSize
	for i := range flows {
		flows[i] = newGenFlow(in)
	}
	var out [][]byte
	for len(out) < n {
		op := in.next()
		fl := &flows[int(in.next())%len(flows)]
		var f []byte
		switch {
		case op < 112: // a full-size data segment
			f = fl.data(fl.mss, tcpFlagACK)
		case op < 144: // if the batch has room for them: full-size segments up to
			// the 64 KiB limit, then one that just fits or just does not
			room := func() int { return maxCoalesced - fl.hdrLen() - fl.run }
			if room()/fl.mss < n-len(out) {
				for room() >= fl.mss {
					out = append(out, fl.data(fl.mss, tcpFlagACK))
				}
			}
			f = fl.data(min(max(room()+int(in.next()%24)-12, 1), fl.mss), tcpFlagACK)
		case op < 168: // a shorter one, which ends a merge
			f = fl.data(1+in.intn(fl.mss), tcpFlagACK)
		case op < 184: // PSH, which ends a merge too
			f = fl.data(fl.mss-in.intn(fl.mss)*int(op&1), tcpFlagACK|tcpFlagPSH)
		case op < 200: // a segment that must not be merged
			flags := [...]byte{tcpFlagACK, tcpFlagACK | 0x01, tcpFlagACK | 0x02, 0x04, tcpFlagACK | 0x20,
				tcpFlagACK | 0x40, tcpFlagACK | 0x80, 0}[op&7] // ACK FIN SYN RST URG ECE CWR, none
			f = fl.data(fl.mss*int(op>>3&1), flags)
		case op < 208: // a retransmission
			fl.seq -= uint32(1 + in.intn(3*fl.mss))
			fl.run = 0
			f = fl.data(fl.mss, tcpFlagACK)
		case op < 216: // a segment lost before it: a gap
			fl.seq += uint32(1 + in.intn(3*fl.mss))
			fl.run = 0
			f = fl.data(fl.mss, tcpFlagACK)
		case op < 232:
			f = fl.opaque(in)
			for i := range flows {
				flows[i].run = 0
			}
		default:
			f = fl.other(in)
		}
		out = append(out, f)
		if m := in.next(); m >= 200 {
			for range 1 + m%3 {
				out = mutate(in, out)
			}
		}
	}
	return out[:min(len(out), BatchSize)]
}

// mutate changes the last frame of out, or duplicates it.
func mutate(in *fuzzInput, out [][]byte) [][]byte {
	f := out[len(out)-1]
	if len(f) == 0 {
		return out
	}
	switch k := in.next() % 9; k {
	case 0: // truncated, perhaps to a runt
		f = f[:in.intn(len(f))]
	case 1, 2, 3: // a byte flipped, mostly in the headers; IPv4 checksum fixed (2, 3), TCP's too (3)
		i := in.intn(len(f))
		if in.next()&1 == 0 {
			i %= min(len(f), VnetHdrLen+ethHeaderLen+ipv6HeaderLen+tcpHeaderLen+len(genTSOpts)+8)
		}
		f[i] ^= in.next() | 1
		if k >= 2 {
			fixIPv4(f)
		}
		if k == 3 {
			fixTCP(f)
		}
	case 4: // TCP data offset (and reserved bits) changed, checksum fixed or not
		if v := refParse(f); v.class == refTCP {
			f[v.l4+12] = in.next()
			if in.next()&1 == 0 {
				fixTCP(f)
			}
		}
	case 5: // sequence number rewound, checksum fixed
		if v := refParse(f); v.class == refTCP {
			seq := binary.BigEndian.Uint32(f[v.l4+4:])
			binary.BigEndian.PutUint32(f[v.l4+4:], seq-uint32(1+in.intn(1<<16)))
			fixTCP(f)
		}
	case 6: // vnet header changed
		if len(f) < VnetHdrLen {
			break
		}
		f[0] = in.next() % 5 // none, NEEDS_CSUM, DATA_VALID, both, unknown
		if g := in.next(); g >= 192 {
			f[1] = g % 6
		}
		if f[0]&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
			v := refParse(f)
			start := v.l4 - VnetHdrLen
			switch in.next() % 4 {
			case 1:
				start -= 20
			case 2:
				start++
			}
			binary.NativeEndian.PutUint16(f[6:], uint16(start))
			binary.NativeEndian.PutUint16(f[8:], [...]uint16{16, 16, 6, 0}[in.next()%4])
		}
	case 7: // Ethernet padding (IP length unchanged)
		pad := make([]byte, 1+in.intn(16))
		for i := range pad {
			pad[i] = in.next()
		}
		f = append(f, pad...)
	case 8: // sent twice
		return append(out, bytes.Clone(f))
	}
	out[len(out)-1] = f
	return out
}
