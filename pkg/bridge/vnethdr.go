package bridge

import (
	"encoding/binary"
	"io"
)

// VnetHdrLen is the size of the virtio_net_hdr that starts every frame on
// both sides of the relay (the TAP's default vnet header size, and what
// PACKET_VNET_HDR uses): sizeof(struct virtio_net_hdr), see virtioNetHdr.
const VnetHdrLen = 10

// virtioNetHdr is struct virtio_net_hdr (include/uapi/linux/virtio_net.h),
// which the TAP (IFF_VNET_HDR) and the parent socket (PACKET_VNET_HDR) put
// in front of every frame. Both use it in the legacy layout: VnetHdrLen
// bytes, fields in native byte order. Offsets (hdrLen, csumStart) count
// from the start of the Ethernet frame, just after the header.
type virtioNetHdr struct {
	flags      uint8  // unix.VIRTIO_NET_HDR_F_*
	gsoType    uint8  // unix.VIRTIO_NET_HDR_GSO_*
	hdrLen     uint16 // GSO: length of the headers copied into each segment
	gsoSize    uint16 // GSO: payload bytes per segment (the last may be shorter)
	csumStart  uint16 // NEEDS_CSUM: where the checksummed data starts
	csumOffset uint16 // NEEDS_CSUM: where the checksum goes, from csumStart
}

// decode reads the header from the first VnetHdrLen bytes of b.
func (h *virtioNetHdr) decode(b []byte) error {
	if len(b) < VnetHdrLen {
		return io.ErrShortBuffer
	}
	h.flags = b[0]
	h.gsoType = b[1]
	h.hdrLen = binary.NativeEndian.Uint16(b[2:])
	h.gsoSize = binary.NativeEndian.Uint16(b[4:])
	h.csumStart = binary.NativeEndian.Uint16(b[6:])
	h.csumOffset = binary.NativeEndian.Uint16(b[8:])
	return nil
}

// encode writes the header into the first VnetHdrLen bytes of b.
func (h *virtioNetHdr) encode(b []byte) error {
	if len(b) < VnetHdrLen {
		return io.ErrShortBuffer
	}
	b[0] = h.flags
	b[1] = h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
	return nil
}
