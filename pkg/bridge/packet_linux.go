package bridge

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// socketBufBytes is the receive and send buffer asked for on the parent
// socket: room for bursts while the relay goroutine is descheduled.
const socketBufBytes = 4 << 20

// ParentSocket is the AF_PACKET socket on the parent NIC: it receives what
// the kernel filter lets through and sends frames out of the parent as they
// are, with their virtio_net_hdr (PACKET_VNET_HDR). One goroutine reads
// (ReadFrame or ReadBatch) while another writes; Dropped and Close may be
// called from any goroutine.
type ParentSocket struct {
	*pollFD
	batch batchState // the reader's recvmmsg state
}

var (
	_ FrameIO     = (*ParentSocket)(nil)
	_ BatchReader = (*ParentSocket)(nil)
	_ ParentIO    = (*ParentSocket)(nil)
)

// OpenParentSocket opens the socket for the virtual MAC mac on the parent
// with index ifindex. Order matters: the socket is created with protocol 0
// (receives nothing), the filter is attached, and only then is it bound to
// the parent with ETH_P_ALL, so no unfiltered frame is ever queued on it.
// mac is joined as a unicast address (PACKET_MR_UNICAST) and all-multicast
// is requested (PACKET_MR_ALLMULTI, for IPv6 neighbour discovery): the
// parent's own filters then accept our frames, and where the NIC has no
// unicast filter the kernel turns promiscuous mode on by itself. The kernel
// drops both memberships when the socket closes, even after kill -9; vethd
// never sets IFF_PROMISC.
func OpenParentSocket(ifindex int, parentName string, mac net.HardwareAddr) (*ParentSocket, error) {
	prog, err := FilterProgram(mac)
	if err != nil {
		return nil, err
	}
	return openPacketSocket(ifindex, parentName, prog, mac)
}

// openPacketSocket opens a packet socket with vnet headers on the parent
// with index ifindex: one that receives what prog keeps (bound with
// ETH_P_ALL after the filter is attached), or with prog nil one that only
// sends (bound with protocol 0: the kernel hands it no frame at all, not
// even to a filter). With mac set it joins mac as a unicast address and
// all-multicast (see OpenParentSocket).
func openPacketSocket(ifindex int, parentName string, prog []bpf.Instruction, mac net.HardwareAddr) (*ParentSocket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", parentName, err)
	}
	fail := func(op string, err error) (*ParentSocket, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s on %s: %w", op, parentName, err)
	}
	proto := uint16(0)
	if prog != nil {
		if err := attachFilter(fd, prog); err != nil {
			return fail("attach filter", err)
		}
		proto = unix.ETH_P_ALL
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("enable PACKET_VNET_HDR", err)
	}
	// Bigger buffers are best effort: SO_*BUFFORCE needs CAP_NET_ADMIN.
	if prog != nil && unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufBytes) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBufBytes)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufBytes) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBufBytes)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex}); err != nil {
		return fail("bind packet socket", err)
	}
	if mac != nil {
		uc := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_UNICAST, Alen: 6}
		copy(uc.Address[:], mac)
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &uc); err != nil {
			return fail("join "+mac.String(), err)
		}
		am := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_ALLMULTI}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &am); err != nil {
			return fail("join all-multicast", err)
		}
	}
	p, err := newPollFD(fd, "packet:"+parentName, true)
	if err != nil {
		return nil, err
	}
	return &ParentSocket{pollFD: p}, nil
}

// attachFilter assembles prog and attaches it to the socket fd
// (SO_ATTACH_FILTER, which replaces an attached program atomically).
func attachFilter(fd int, prog []bpf.Instruction) error {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("assemble filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog)
}

// setFilter replaces the socket's filter with prog. See attachFilter.
func (s *ParentSocket) setFilter(prog []bpf.Instruction) error {
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = attachFilter(int(fd), prog) }); err != nil {
		return err
	}
	return serr
}

// Dropped returns how many frames the kernel dropped because the socket's
// queue was full since the last call (PACKET_STATISTICS; reading resets it).
// See ParentIO.
func (s *ParentSocket) Dropped() uint64 {
	var st *unix.TpacketStats
	var err error
	if cerr := s.rc.Control(func(fd uintptr) {
		st, err = unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	}); cerr != nil || err != nil {
		return 0
	}
	return uint64(st.Drops)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// isLinkDown reports whether a socket error means the parent is down or
// gone: the link watcher deals with that, the reader just goes on.
func isLinkDown(err error) bool {
	return errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV)
}
