package bridge

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Announcements: after the virtual interface's MAC address changed, the
// bridge tells the wire that the interface's addresses are now at the new
// one, so that neighbours update their caches at once instead of sending
// to the old address until their entries expire (tens of seconds). It is
// what the kernel does for its own NICs with arp_notify and ndisc_notify
// (both off by default, and the kernel's own announcement would leave the
// TAP before the bridge knows the new address, and be dropped as a spoof).
//
// Each frame starts with a zero virtio_net_hdr, as every frame written to
// the parent socket does.

const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	arpLen        = 28     // ARP for IPv4 over Ethernet
	naLen         = 24 + 8 // neighbour advertisement with a target link-layer address option
	icmpv6NA      = 136    // ICMPv6 type: neighbour advertisement
	naOverride    = 0x20   // the O flag, in the first byte after the checksum
	ndOptTargetLL = 2      // option: target link-layer address
	ipProtoICMPv6 = 58     // next header
	hopLimitND    = 255    // neighbour discovery requires it (RFC 4861 7.1.2)
	ethAddrLen    = 6      // an Ethernet address
	garpFrameLen  = VnetHdrLen + ethHeaderLen + arpLen
	naFrameLen    = VnetHdrLen + ethHeaderLen + ipv6HeaderLen + naLen
)

// announcement returns the frame that announces addr at mac: a gratuitous
// ARP request for an IPv4 address, an unsolicited neighbour advertisement
// for an IPv6 one; nil for anything else.
func announcement(mac net.HardwareAddr, addr netip.Addr) []byte {
	switch {
	case len(mac) != ethAddrLen:
		return nil
	case addr.Is4():
		return gratuitousARP(mac, addr)
	case addr.Is6() && !addr.Is4In6():
		return unsolicitedNA(mac, addr)
	}
	return nil
}

// gratuitousARP returns a broadcast ARP request from mac for addr, asking
// for addr itself (sender and target protocol address addr, target
// hardware address zero), as Linux's own announcements are.
func gratuitousARP(mac net.HardwareAddr, addr netip.Addr) []byte {
	f := make([]byte, garpFrameLen)
	e := f[VnetHdrLen:]
	copy(e[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // broadcast
	copy(e[6:12], mac)
	binary.BigEndian.PutUint16(e[12:], etherTypeARP)
	a := e[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:], 1)      // hardware type: Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // protocol type: IPv4
	a[4], a[5] = ethAddrLen, 4                // address lengths
	binary.BigEndian.PutUint16(a[6:], 1)      // operation: request
	copy(a[8:14], mac)                        // sender hardware address
	ip := addr.As4()
	copy(a[14:18], ip[:]) // sender protocol address
	// a[18:24]: target hardware address, zero
	copy(a[24:28], ip[:]) // target protocol address
	return f
}

// unsolicitedNA returns a neighbour advertisement from addr to all nodes
// (ff02::1) for target addr, with the override flag and mac as the target
// link-layer address (RFC 4861 7.2.6), as Linux's ndisc_notify sends.
func unsolicitedNA(mac net.HardwareAddr, addr netip.Addr) []byte {
	f := make([]byte, naFrameLen)
	e := f[VnetHdrLen:]
	dst := [16]byte{0: 0xff, 1: 0x02, 15: 0x01} // ff02::1, all nodes
	// The IPv6 multicast MAC of ff02::1: 33:33 and its last 32 bits.
	e[0], e[1] = 0x33, 0x33
	copy(e[2:6], dst[12:16])
	copy(e[6:12], mac)
	binary.BigEndian.PutUint16(e[12:], etherTypeIPv6)
	ip := e[ethHeaderLen:]
	ip[0] = 6 << 4 // version 6, traffic class and flow label 0
	binary.BigEndian.PutUint16(ip[4:], naLen)
	ip[6] = ipProtoICMPv6
	ip[7] = hopLimitND
	src := addr.As16()
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
	na := ip[ipv6HeaderLen:]
	na[0] = icmpv6NA // type; code 0; checksum below
	na[4] = naOverride
	copy(na[8:24], src[:]) // target address
	na[24] = ndOptTargetLL
	na[25] = 1 // option length in units of 8 bytes
	copy(na[26:32], mac)
	// Checksum over the pseudo-header (source, destination, upper-layer
	// length, next header) and the message.
	var ph [40]byte
	copy(ph[0:16], src[:])
	copy(ph[16:32], dst[:])
	binary.BigEndian.PutUint32(ph[32:], naLen)
	ph[39] = ipProtoICMPv6
	binary.BigEndian.PutUint16(na[2:], ^checksum(na, checksum(ph[:], 0)))
	return f
}
