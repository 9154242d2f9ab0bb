package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// A link's IPv4 settings over rtnetlink, without /proc/sys (which the
// hardened unit mounts read-only, ProtectKernelTunables=): vishvananda/netlink
// has no API for them, so the messages are built with its nl package.
//
//	RTM_SETLINK ifindex { IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { ID: u32, … } } } }
//	RTM_GETLINK ifindex → RTM_NEWLINK { … IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF: u32[] } } }
//
// In the answer IFLA_INET_CONF is a packed array of native-endian u32,
// element i holding the setting with id i+1. The kernel refuses (EINVAL) an
// id of 0 or above IPV4_DEVCONF_MAX, and a link without IPv4 (EAFNOSUPPORT).

// inetConfRequest is the RTM_SETLINK message that sets conf on the link
// with index ifindex, its attributes in id order.
func inetConfRequest(ifindex int, conf InetConf) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	cnf := spec.AddRtAttr(unix.AF_INET, nil).AddRtAttr(unix.IFLA_INET_CONF, nil)
	ids := make([]DevConf, 0, len(conf))
	for id := range conf {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		cnf.AddRtAttr(int(id), nl.Uint32Attr(conf[id]))
	}
	req.AddData(spec)
	return req
}

// errNoInetConf is parseInetConf's error for a link message without IPv4
// settings: the link has no IPv4 (its MTU is below 68, or IPv4 is off).
var errNoInetConf = errors.New("no IPv4 settings (IFLA_INET_CONF) in the link message")

// parseInetConf reads the IPv4 settings out of an RTM_NEWLINK message (its
// ifinfomsg and attributes, without the netlink header).
func parseInetConf(msg []byte) (InetConf, error) {
	if len(msg) < unix.SizeofIfInfomsg {
		return nil, fmt.Errorf("link message of %d bytes", len(msg))
	}
	attrs, err := nl.ParseRouteAttr(msg[unix.SizeofIfInfomsg:])
	if err != nil {
		return nil, fmt.Errorf("parse link message: %w", err)
	}
	spec, ok := findAttr(attrs, unix.IFLA_AF_SPEC)
	if !ok {
		return nil, errNoInetConf
	}
	fams, err := nl.ParseRouteAttr(spec)
	if err != nil {
		return nil, fmt.Errorf("parse IFLA_AF_SPEC: %w", err)
	}
	inet, ok := findAttr(fams, unix.AF_INET)
	if !ok {
		return nil, errNoInetConf
	}
	in, err := nl.ParseRouteAttr(inet)
	if err != nil {
		return nil, fmt.Errorf("parse IFLA_AF_SPEC AF_INET: %w", err)
	}
	arr, ok := findAttr(in, unix.IFLA_INET_CONF)
	if !ok {
		return nil, errNoInetConf
	}
	conf := make(InetConf, len(arr)/4)
	for i := 0; i+4 <= len(arr); i += 4 {
		conf[DevConf(i/4+1)] = binary.NativeEndian.Uint32(arr[i:])
	}
	return conf, nil
}

// findAttr returns the value of the first attribute of type typ (whether
// or not the kernel flagged it as nested).
func findAttr(attrs []syscall.NetlinkRouteAttr, typ int) ([]byte, bool) {
	for _, a := range attrs {
		if int(a.Attr.Type)&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == typ {
			return a.Value, true
		}
	}
	return nil, false
}

// LinkInetConf reads a link's IPv4 settings. See LinkControl.
//
// Equivalent to: `sysctl net.ipv4.conf.$link` (through netlink).
func (c *netlinkLinks) LinkInetConf(index int) (InetConf, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.conf}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, lookupError(err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("link %d: %d answers to RTM_GETLINK", index, len(msgs))
	}
	return parseInetConf(msgs[0])
}

// LinkSetInetConf sets some of a link's IPv4 settings. See LinkControl.
//
// Equivalent to: `sysctl net.ipv4.conf.$link.$name=$value …` (through
// netlink, so it works where /proc/sys is read-only).
func (c *netlinkLinks) LinkSetInetConf(index int, conf InetConf) error {
	req := inetConfRequest(index, conf)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.conf}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return lookupError(err)
	}
	return nil
}
