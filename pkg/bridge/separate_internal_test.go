package bridge

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x42}

func TestGratuitousARP(t *testing.T) {
	f := announcement(testMAC, netip.MustParseAddr("198.18.0.11"))
	want := append(make([]byte, VnetHdrLen),
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x00, 0x00, 0x42, 0x08, 0x06, // Ethernet
		0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet, IPv4, request
		0x02, 0x00, 0x5e, 0x00, 0x00, 0x42, 198, 18, 0, 11, // sender
		0, 0, 0, 0, 0, 0, 198, 18, 0, 11) // target
	if !slices.Equal(f, want) {
		t.Errorf("frame\n%x, want\n%x", f, want)
	}
}

func TestUnsolicitedNA(t *testing.T) {
	addr := netip.MustParseAddr("2001:db8::11")
	f := announcement(testMAC, addr)
	if len(f) != VnetHdrLen+14+40+32 {
		t.Fatalf("%d bytes", len(f))
	}
	e := f[VnetHdrLen:]
	if !slices.Equal(e[:14], []byte{0x33, 0x33, 0, 0, 0, 1, 0x02, 0x00, 0x5e, 0x00, 0x00, 0x42, 0x86, 0xdd}) {
		t.Errorf("Ethernet header %x", e[:14])
	}
	ip := e[14:54]
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	if ip[0] != 0x60 || binary.BigEndian.Uint16(ip[4:]) != 32 || ip[6] != 58 || ip[7] != 255 || src != addr || dst != netip.MustParseAddr("ff02::1") {
		t.Errorf("IPv6 header %x", ip)
	}
	na := e[54:]
	if na[0] != 136 || na[1] != 0 || na[4] != 0x20 || netip.AddrFrom16([16]byte(na[8:24])) != addr ||
		!slices.Equal(na[24:32], []byte{2, 1, 0x02, 0x00, 0x5e, 0x00, 0x00, 0x42}) {
		t.Errorf("advertisement %x", na)
	}
	// A correct checksum makes the sum over pseudo-header and message all ones.
	var ph [40]byte
	copy(ph[0:16], ip[8:24])
	copy(ph[16:32], ip[24:40])
	binary.BigEndian.PutUint32(ph[32:], 32)
	ph[39] = 58
	if s := checksum(na, checksum(ph[:], 0)); s != 0xffff {
		t.Errorf("checksum %04x does not verify (sum %04x)", binary.BigEndian.Uint16(na[2:]), s)
	}
	// The same as a hand-checked one: fe80::1 for 02:00:00:00:00:01.
	f2 := unsolicitedNA(net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("fe80::1"))
	if got := binary.BigEndian.Uint16(f2[VnetHdrLen+14+40+2:]); got != naChecksumFE80 {
		t.Errorf("checksum of fe80::1's advertisement %04x, want %04x", got, naChecksumFE80)
	}
}

// naChecksumFE80 is the ICMPv6 checksum of the unsolicited advertisement
// of fe80::1 at 02:00:00:00:00:01, computed apart from this package (an
// RFC 1071 sum in a few lines of Python over the pseudo-header fe80::1,
// ff02::1, length 32, next header 58, and the message: type 136, flags
// 0x20, target fe80::1, option 2/1 with the MAC).
const naChecksumFE80 = 0x579b

func TestAnnouncementOther(t *testing.T) {
	if f := announcement(testMAC, netip.Addr{}); f != nil {
		t.Errorf("frame for no address: %x", f)
	}
	if f := announcement(testMAC[:4], netip.MustParseAddr("198.18.0.1")); f != nil {
		t.Errorf("frame for a short MAC: %x", f)
	}
}

// linkMessage is an RTM_NEWLINK's body (ifinfomsg and attributes) with a
// name, IPv6 settings and, if v4 is not nil, the IPv4 settings v4 (element
// i is id i+1).
func linkMessage(v4 []uint32) []byte {
	b := nl.NewIfInfomsg(unix.AF_UNSPEC).Serialize()
	b = append(b, nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("veth1")).Serialize()...)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	spec.AddRtAttr(unix.AF_INET6, nil).AddRtAttr(unix.IFLA_INET6_FLAGS, nl.Uint32Attr(0))
	if v4 != nil {
		arr := make([]byte, 4*len(v4))
		for i, v := range v4 {
			binary.NativeEndian.PutUint32(arr[4*i:], v)
		}
		// Flagged as nested, as some kernels do.
		inet := nl.NewRtAttr(unix.AF_INET|unix.NLA_F_NESTED, nil)
		inet.AddRtAttr(unix.IFLA_INET_CONF, arr)
		spec.AddChild(inet)
	}
	return append(b, spec.Serialize()...)
}

func TestParseInetConf(t *testing.T) {
	v4 := make([]uint32, 33)
	v4[DevConfARPIgnore-1], v4[DevConfARPAnnounce-1] = 1, 2
	v4[7] = 2 // rp_filter (id 8)
	c, err := parseInetConf(linkMessage(v4))
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 33 || c[DevConfARPIgnore] != 1 || c[DevConfARPAnnounce] != 2 || c[8] != 2 || c[1] != 0 {
		t.Errorf("parsed %v", c)
	}
	if _, err := parseInetConf(linkMessage(nil)); !errors.Is(err, errNoInetConf) {
		t.Errorf("without IPv4: %v, want errNoInetConf", err)
	}
	if _, err := parseInetConf([]byte{1, 2}); err == nil {
		t.Error("a short message parsed")
	}
}

func TestInetConfRequest(t *testing.T) {
	req := inetConfRequest(7, InetConf{DevConfARPIgnore: 1, DevConfARPAnnounce: 2})
	b := req.Serialize()
	if typ := binary.NativeEndian.Uint16(b[4:]); typ != unix.RTM_SETLINK {
		t.Errorf("message type %d", typ)
	}
	if flags := binary.NativeEndian.Uint16(b[6:]); flags&unix.NLM_F_ACK == 0 || flags&unix.NLM_F_CREATE != 0 {
		t.Errorf("flags %#x", flags)
	}
	body := b[unix.SizeofNlMsghdr:]
	if idx := int32(binary.NativeEndian.Uint32(body[4:])); idx != 7 {
		t.Errorf("ifindex %d", idx)
	}
	attrs, err := nl.ParseRouteAttr(body[unix.SizeofIfInfomsg:])
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := findAttr(attrs, unix.IFLA_AF_SPEC)
	fams, _ := nl.ParseRouteAttr(spec)
	inet, _ := findAttr(fams, unix.AF_INET)
	in, _ := nl.ParseRouteAttr(inet)
	cnf, ok := findAttr(in, unix.IFLA_INET_CONF)
	if !ok {
		t.Fatalf("no IFLA_INET_CONF in %x", body)
	}
	entries, err := nl.ParseRouteAttr(cnf)
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]uint32
	for _, e := range entries {
		got = append(got, [2]uint32{uint32(e.Attr.Type), binary.NativeEndian.Uint32(e.Value)})
	}
	if want := [][2]uint32{{18, 2}, {19, 1}}; !slices.Equal(got, want) {
		t.Errorf("entries %v, want %v (id, value) in id order", got, want)
	}
}
