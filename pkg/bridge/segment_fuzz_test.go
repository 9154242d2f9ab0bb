package bridge

import (
	"testing"
)

// FuzzGSOSplit builds GSO super-frames from fuzzed parameters (IPv4 or
// IPv6, with or without the jumbo header or a zero length, TCP or UDP,
// any payload up to the GSO maximum, any gso_size, flags, options, ECN,
// sequence number and IPv4 ID), splits them as the relay does, and checks
// the pieces against the reference segmentation (checkSplit): valid
// headers and lengths, checksums valid once completed, and segments equal
// byte for byte to the original's.
func FuzzGSOSplit(f *testing.F) {
	f.Add(true, true, false, uint32(184188), uint16(1428), byte(0x18), false, uint8(3), uint8(0), false, uint32(1), uint16(0))
	f.Add(false, false, false, uint32(183906), uint16(1448), byte(0x10), false, uint8(3), uint8(0), true, uint32(0xfffff000), uint16(0xfff0))
	f.Add(true, true, true, uint32(100000), uint16(1452), byte(0), false, uint8(0), uint8(0), false, uint32(0), uint16(0))
	f.Add(true, false, false, uint32(524160), uint16(8948), byte(0x99), true, uint8(10), uint8(0), true, uint32(7), uint16(1))
	f.Fuzz(func(t *testing.T, v6, jumbo, udp bool, payload uint32, mss uint16, flags byte, ecn bool, tcpOpts, ipv4Opts uint8, zeroLen bool, seq uint32, id uint16) {
		s := bigSpec{
			v6: v6, jumbo: v6 && jumbo, udp: udp,
			payload: int(payload % (524280 - 200)), mss: max(int(mss), 1),
			flags: flags, ecn: ecn && !udp,
			tcpOpts: int(tcpOpts%11) * 4, ipv4Opts: int(ipv4Opts%11) * 4,
			zeroLen: zeroLen, seq: seq, id: id,
		}
		if s.payload == 0 {
			s.payload = 1
		}
		if udp {
			s.tcpOpts = 0
		}
		if v6 {
			s.ipv4Opts = 0
		}
		fr := bigFrame(s)
		err := checkSplit(t, fr)
		if err == errNotSplittable && s.mss < 0xffff-200 {
			t.Fatalf("%+v: refused", s)
		}
		if err != nil && err != errNotSplittable {
			t.Fatalf("%+v: %v", s, err)
		}
	})
}

// FuzzGSOSplitRaw feeds any bytes to the splitter as a frame, with piece
// limits taken from the input too (so that small frames split into many
// pieces): it must never panic or write beyond a piece's buffer, and
// whatever it accepts must split correctly (checkSplitLimits).
func FuzzGSOSplitRaw(f *testing.F) {
	add := func(limit byte, s bigSpec) { f.Add(limit, bigFrame(s)) }
	add(10, bigSpec{v6: true, jumbo: true, payload: 3000, mss: 100, flags: 0x18})
	add(0, bigSpec{payload: 2000, mss: 50, flags: 0x11, zeroLen: true, id: 0xffff})
	add(255, bigSpec{udp: true, payload: 5000, mss: 1000})
	add(3, bigSpec{v6: true, payload: 1000, mss: 7, flags: 0x81, ecn: true, tcpOpts: 40})
	f.Add(byte(0), []byte{})
	f.Fuzz(func(t *testing.T, limit byte, fr []byte) {
		maxIP := 100 + int(limit)*8
		maxFrame := maxIP + VnetHdrLen + ethHeaderLen
		if err := checkSplitLimits(t, fr, maxIP, maxFrame); err != nil && err != errNotSplittable {
			t.Fatalf("limit %d, frame % x: %v", maxIP, fr[:min(len(fr), 120)], err)
		}
	})
}
