package bridge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestVirtioNetHdrLayout: the struct has the size of the kernel's struct
// virtio_net_hdr, which is what VnetHdrLen says every frame starts with.
func TestVirtioNetHdrLayout(t *testing.T) {
	if n := unsafe.Sizeof(virtioNetHdr{}); n != VnetHdrLen {
		t.Fatalf("sizeof(virtioNetHdr) = %d, VnetHdrLen = %d", n, VnetHdrLen)
	}
}

// TestVirtioNetHdrDecode reads a header laid out as the kernel writes it:
// two bytes, then four 16-bit fields in native byte order.
func TestVirtioNetHdrDecode(t *testing.T) {
	b := make([]byte, VnetHdrLen+4)
	b[0], b[1] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, unix.VIRTIO_NET_HDR_GSO_TCPV6
	binary.NativeEndian.PutUint16(b[2:], 86)
	binary.NativeEndian.PutUint16(b[4:], 1428)
	binary.NativeEndian.PutUint16(b[6:], 54)
	binary.NativeEndian.PutUint16(b[8:], 16)
	var h virtioNetHdr
	if err := h.decode(b); err != nil {
		t.Fatal(err)
	}
	want := virtioNetHdr{
		flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: unix.VIRTIO_NET_HDR_GSO_TCPV6,
		hdrLen: 86, gsoSize: 1428, csumStart: 54, csumOffset: 16,
	}
	if h != want {
		t.Fatalf("decoded %+v, want %+v", h, want)
	}
}

// TestVirtioNetHdrRoundTrip: encode writes back exactly the bytes decode
// read, and nothing past the header.
func TestVirtioNetHdrRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	in := make([]byte, VnetHdrLen)
	out := make([]byte, VnetHdrLen+1)
	for range 1000 {
		for i := range in {
			in[i] = byte(rng.Uint32())
		}
		out[VnetHdrLen] = 0xa5
		var h virtioNetHdr
		if err := h.decode(in); err != nil {
			t.Fatal(err)
		}
		if err := h.encode(out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out[:VnetHdrLen], in) {
			t.Fatalf("% x decoded to %+v and encoded to % x", in, h, out[:VnetHdrLen])
		}
		if out[VnetHdrLen] != 0xa5 {
			t.Fatal("encode wrote past the header")
		}
	}
}

// TestVirtioNetHdrShortBuffer: a buffer shorter than the header is an
// error both ways, and encode leaves it alone.
func TestVirtioNetHdrShortBuffer(t *testing.T) {
	b := bytes.Repeat([]byte{0xee}, VnetHdrLen-1)
	h := virtioNetHdr{flags: 1, gsoType: 1, hdrLen: 1, gsoSize: 1, csumStart: 1, csumOffset: 1}
	if err := h.encode(b); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("encode into %d bytes: %v, want io.ErrShortBuffer", len(b), err)
	}
	if !bytes.Equal(b, bytes.Repeat([]byte{0xee}, VnetHdrLen-1)) {
		t.Fatal("a failed encode changed the buffer")
	}
	if err := h.decode(b); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("decode of %d bytes: %v, want io.ErrShortBuffer", len(b), err)
	}
}
