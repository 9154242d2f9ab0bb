package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/vethd/vethd/internal/journal"
	"github.com/vethd/vethd/internal/nlrecv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The veth kind's link control, and what a bridge needs to follow its
// virtual NIC into other namespaces without entering them: RTM_GETLINK
// with IFLA_TARGET_NETNSID (Linux ≥ 4.20) and the namespace ids of
// RTM_GETNSID/RTM_NEWNSID. (RTM_SETLINK reads IFLA_TARGET_NETNSID as
// "move the link there", so a link in another namespace is never changed:
// only created there, or moved there with its MTU and up in one request.) Nothing here
// calls setns(): the hardened unit has RestrictNamespaces=yes and no
// CAP_SYS_ADMIN.

// peerMTU is the MTU of a veth pair's peer: the largest there is, so that
// only the virtual NIC's own MTU limits what it sends and receives, as a
// real NIC's does.
const peerMTU = 65535

// LinkSetDown brings a link down. See LinkControl.
//
// Equivalent to: `ip link set $link down`.
func (c *netlinkLinks) LinkSetDown(index int) error {
	return c.h.LinkSetDown(byIndex(index))
}

// LinkDel deletes a link; a veth pair's peer (by its alias) takes its
// nftables guard with it. See LinkControl.
//
// Equivalent to: `ip link del $link` (and `nft delete chain netdev vethd
// $link`).
func (c *netlinkLinks) LinkDel(index int) error {
	l, lerr := c.h.LinkByIndex(index)
	if err := lookupError(c.h.LinkDel(byIndex(index))); err != nil {
		return err
	}
	if lerr == nil && strings.HasPrefix(l.Attrs().Alias, PeerAlias("")) {
		if err := removeGuard(l.Attrs().Name); err != nil {
			c.log.Warn(fmt.Sprintf("Deleted %s but not its nftables guard err=%s", l.Attrs().Name, journal.Quote(err.Error())))
		}
	}
	return nil
}

// LinkAddVeth creates a veth pair and prepares its peer. See LinkControl.
//
// Equivalent to: `ip link add $name address $mac mtu $mtu [netns $ns] type
// veth peer name $peer mtu 65535 && ip link set $peer alias $alias arp off
// multicast off addrgenmode none`.
func (c *netlinkLinks) LinkAddVeth(v VethSpec) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.HardwareAddr, attrs.MTU = v.Name, v.MAC, v.MTU
	attrs.Flags = net.FlagUp // applied where the NIC is created, even in another namespace
	if v.Namespace != nil {
		attrs.Namespace = netlink.NsFd(int(v.Namespace.Fd()))
	}
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: v.Peer, PeerMTU: peerMTU, PeerTxQLen: -1}
	if err := c.h.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create veth pair %s/%s: %w", v.Name, v.Peer, ErrNameInUse)
		}
		return fmt.Errorf("create veth pair %s/%s: %w", v.Name, v.Peer, err)
	}
	peer, err := c.h.LinkByName(v.Peer)
	if err == nil {
		err = c.h.LinkSetAlias(peer, v.PeerAlias)
	}
	if err == nil {
		// No link-local address, so no DAD, RS or MLD goes into the NIC.
		err = c.h.LinkSetIP6AddrGenMode(peer, nl.IN6_ADDR_GEN_MODE_NONE)
	}
	if err == nil {
		err = c.h.LinkSetARPOff(peer)
	}
	if err == nil {
		err = c.h.LinkSetMulticastOff(peer)
	}
	if err != nil {
		if peer != nil {
			_ = c.h.LinkDel(peer)
		}
		return fmt.Errorf("set up %s, the peer of %s: %w", v.Peer, v.Name, err)
	}
	return nil
}

// LinkSetNamespace moves a link to another namespace, with its MTU and
// up. See LinkControl.
//
//	RTM_SETLINK ifindex flags IFF_UP { IFLA_NET_NS_FD fd, IFLA_MTU mtu }
//
// Equivalent to: `ip link set $link netns $ns mtu $mtu up` (in that order).
func (c *netlinkLinks) LinkSetNamespace(index int, ns *os.File, mtu int) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(ns.Fd()))))
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.conf}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return lookupError(err)
}

// NamespaceID returns (and if need be assigns) the id of a namespace. See
// LinkControl.
//
// Equivalent to: `ip netns set $ns auto` and `ip netns list-id`.
func (c *netlinkLinks) NamespaceID(ns *os.File) (int, error) {
	id, err := c.h.GetNetNsIdByFd(int(ns.Fd()))
	if err != nil {
		return 0, fmt.Errorf("get the id of namespace %s: %w", ns.Name(), err)
	}
	if id >= 0 {
		return id, nil
	}
	// -1: let the kernel pick one (NETNSA_NSID -1 in RTM_NEWNSID).
	if err := c.h.SetNetNsIdByFd(int(ns.Fd()), -1); err != nil && !errors.Is(err, unix.EEXIST) {
		return 0, fmt.Errorf("assign an id to namespace %s: %w", ns.Name(), err)
	}
	if id, err = c.h.GetNetNsIdByFd(int(ns.Fd())); err != nil {
		return 0, fmt.Errorf("get the id of namespace %s: %w", ns.Name(), err)
	}
	if id < 0 {
		return 0, fmt.Errorf("namespace %s has no id", ns.Name())
	}
	return id, nil
}

// atRequest is an rtnetlink link request of type typ on link index in the
// namespace with id nsid (IFLA_TARGET_NETNSID unless OwnNetns), with the
// extra attributes attrs.
func (c *netlinkLinks) atRequest(typ, flags, nsid, index int, attrs ...*nl.RtAttr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(typ, flags)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	if nsid != OwnNetns {
		req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(nsid))))
	}
	for _, a := range attrs {
		req.AddData(a)
	}
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.conf}
	return req
}

// LinkByIndexAt looks a link up in another namespace. See LinkControl.
//
// Equivalent to: `ip -link-netnsid $nsid link show` and picking $index.
func (c *netlinkLinks) LinkByIndexAt(nsid, index int) (Link, error) {
	if nsid == OwnNetns {
		return c.LinkByIndex(index)
	}
	msgs, err := c.atRequest(unix.RTM_GETLINK, unix.NLM_F_ACK, nsid, index).Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return Link{}, lookupError(err)
	}
	if len(msgs) != 1 {
		return Link{}, fmt.Errorf("link %d in netnsid %d: %d answers to RTM_GETLINK", index, nsid, len(msgs))
	}
	hdr := unix.NlMsghdr{Type: unix.RTM_NEWLINK}
	l, err := netlink.LinkDeserialize(&hdr, msgs[0])
	if err != nil {
		return Link{}, fmt.Errorf("link %d in netnsid %d: %w", index, nsid, err)
	}
	return linkFromNetlink(l), nil
}

// LinkByNameAt looks a link up by name in another namespace. See
// LinkControl.
//
// Equivalent to: `ip -n $ns link show dev $name`.
func (c *netlinkLinks) LinkByNameAt(nsid int, name string) (Link, error) {
	if nsid == OwnNetns {
		return c.LinkByName(name)
	}
	msgs, err := c.atRequest(unix.RTM_GETLINK, unix.NLM_F_ACK, nsid, 0,
		nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name))).Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return Link{}, lookupError(err)
	}
	if len(msgs) != 1 {
		return Link{}, fmt.Errorf("link %s in netnsid %d: %d answers to RTM_GETLINK", name, nsid, len(msgs))
	}
	hdr := unix.NlMsghdr{Type: unix.RTM_NEWLINK}
	l, err := netlink.LinkDeserialize(&hdr, msgs[0])
	if err != nil {
		return Link{}, fmt.Errorf("link %s in netnsid %d: %w", name, nsid, err)
	}
	return linkFromNetlink(l), nil
}

// LinkSubscribe subscribes to link notifications (RTNLGRP_LINK) on a
// socket of its own, in the calling process's network namespace. The
// messages are parsed here rather than by netlink's LinkSubscribe, which
// drops what tells a move from a deletion (IFLA_NEW_NETNSID). See
// LinkControl.
//
// Equivalent to: `ip monitor link`.
func (c *netlinkLinks) LinkSubscribe() (LinkSubscription, error) {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		return nil, fmt.Errorf("subscribe to link notifications: %w", err)
	}
	if err := s.SetReceiveBufferSize(1<<20, false); err != nil {
		s.Close()
		return nil, fmt.Errorf("subscribe to link notifications: %w", err)
	}
	sock, err := nlrecv.Take(s)
	if err != nil {
		return nil, fmt.Errorf("subscribe to link notifications: %w", err)
	}
	return nlrecv.Subscribe(sock, func(m syscall.NetlinkMessage) (LinkEvent, bool) {
		if m.Header.Type != unix.RTM_NEWLINK && m.Header.Type != unix.RTM_DELLINK {
			return LinkEvent{}, false
		}
		ev, err := parseLinkEvent(unix.NlMsghdr(m.Header), m.Data)
		if err != nil {
			c.log.Debug(fmt.Sprintf("link notification not understood err=%s", journal.Quote(err.Error())))
			return LinkEvent{}, false
		}
		return ev, true
	}, func(err error) {
		c.log.Debug(fmt.Sprintf("link notifications lost err=%s", journal.Quote(err.Error())))
	}), nil
}

var _ LinkSubscription = (*nlrecv.Subscription[LinkEvent])(nil)

// parseLinkEvent converts an RTM_NEWLINK or RTM_DELLINK message (data:
// its ifinfomsg and attributes).
func parseLinkEvent(hdr unix.NlMsghdr, data []byte) (LinkEvent, error) {
	l, err := netlink.LinkDeserialize(&hdr, data)
	if err != nil {
		return LinkEvent{}, err
	}
	ev := LinkEvent{Link: linkFromNetlink(l), Deleted: hdr.Type == unix.RTM_DELLINK, NewNetnsID: -1}
	// netlink's HardwareAddr points into data, the receive buffer, which
	// the next notification overwrites.
	ev.Link.HardwareAddr = slices.Clone(ev.Link.HardwareAddr)
	if len(data) < unix.SizeofIfInfomsg {
		return ev, nil
	}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return ev, nil // (netlink parsed them: cannot happen)
	}
	if v, ok := findAttr(attrs, unix.IFLA_NEW_NETNSID); ok && len(v) >= 4 && ev.Deleted {
		ev.NewNetnsID = int(int32(binary.NativeEndian.Uint32(v)))
	}
	if v, ok := findAttr(attrs, unix.IFLA_NEW_IFINDEX); ok && len(v) >= 4 {
		ev.NewIndex = int(int32(binary.NativeEndian.Uint32(v)))
	}
	return ev, nil
}

// ClaimVeth binds the abstract unix socket @vethd/veth/NAME in vethd's
// network namespace (where the peer lives): only one socket can have the
// name, and the kernel frees it when the process ends, kill -9 too. See
// Opener.
func (kernelOpener) ClaimVeth(name string) (io.Closer, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("claim veth pair %s: %w", name, err)
	}
	addr := VethClaimAddr(name)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("veth pair %s: another vethd relays it (it holds %s): %w", name, addr, ErrNameInUse)
		}
		return nil, fmt.Errorf("claim veth pair %s: bind %s: %w", name, addr, err)
	}
	return os.NewFile(uintptr(fd), addr), nil
}

// OpenPeerSocket opens the socket on a veth pair's peer with
// OpenPeerSocket. See Opener.
func (kernelOpener) OpenPeerSocket(ifindex int, name string) (ParentIO, error) {
	s, err := OpenPeerSocket(ifindex, name)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// OpenPeerSocket opens the AF_PACKET socket through which a bridge of the
// veth kind relays its pair: bound to the peer (ifindex, named name) with
// PACKET_VNET_HDR, so frames come and go with the same virtio_net_hdr as on
// the parent's socket (GSO and partial-checksum frames pass whole);
// PACKET_IGNORE_OUTGOING, so the relay does not read back what it writes;
// and PACKET_QDISC_BYPASS for its writes (the peer has no queue worth
// passing). Everything the virtual NIC sends arrives on the peer, so no
// filter is needed; the relay checks the source MAC.
func OpenPeerSocket(ifindex int, name string) (*ParentSocket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", name, err)
	}
	fail := func(op string, err error) (*ParentSocket, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s on %s: %w", op, name, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("enable PACKET_VNET_HDR", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("enable PACKET_IGNORE_OUTGOING", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1) // best effort
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufBytes) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBufBytes)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufBytes) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBufBytes)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fail("bind packet socket", err)
	}
	p, err := newPollFD(fd, "packet:"+name, true)
	if err != nil {
		return nil, err
	}
	return &ParentSocket{pollFD: p}, nil
}
