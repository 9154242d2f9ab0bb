package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vethd/vethd/internal/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlinkLinks is the LinkControl of the calling process's network
// namespace: one NETLINK_ROUTE handle for requests, one more NETLINK_ROUTE
// socket for the IPv4 settings (which netlink's handle cannot send: see
// inetconf_linux.go), and a socket of its own for each subscription. It may
// be used from any goroutine (nl locks a shared socket per request).
type netlinkLinks struct {
	h    *netlink.Handle
	conf *nl.SocketHandle
	// log receives the errors a subscription survives (at debug level).
	log *slog.Logger
}

var _ LinkControl = (*netlinkLinks)(nil)

// newNetlinkLinks opens a NETLINK_ROUTE handle in the calling process's
// network namespace.
func newNetlinkLinks(log *slog.Logger) (*netlinkLinks, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &netlinkLinks{h: h, conf: &nl.SocketHandle{Socket: s}, log: log}, nil
}

// linkFromNetlink converts netlink's view of a link into the bridge's.
func linkFromNetlink(nl netlink.Link) Link {
	a := nl.Attrs()
	kind := nl.Type()
	switch kind {
	case "device":
		kind = "" // netlink's name for a link without IFLA_INFO_KIND
	case "tuntap":
		kind = "tun"
	}
	peerNetns := a.NetNsID
	if peerNetns < 0 {
		peerNetns = OwnNetns
	}
	return Link{
		Kind:         kind,
		EncapType:    a.EncapType,
		Alias:        a.Alias,
		PeerIndex:    a.ParentIndex,
		PeerNetnsID:  peerNetns,
		Index:        a.Index,
		Name:         a.Name,
		MTU:          a.MTU,
		HardwareAddr: a.HardwareAddr,
		Up:           a.RawFlags&unix.IFF_UP != 0,
		LowerUp:      a.RawFlags&unix.IFF_LOWER_UP != 0,
		Promiscuity:  a.Promisc,
	}
}

// notFoundError is netlink's "no such link" error, which also matches
// ErrLinkNotFound (and keeps netlink's text).
type notFoundError struct{ err error }

func (e notFoundError) Error() string        { return e.err.Error() }
func (e notFoundError) Unwrap() error        { return e.err }
func (e notFoundError) Is(target error) bool { return target == ErrLinkNotFound }

// lookupError marks err as ErrLinkNotFound if it says that the link does
// not exist.
func lookupError(err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return notFoundError{err}
	}
	return err
}

// LinkByName looks a link up by name. See LinkControl.
//
// Equivalent to: `ip link show dev $name`.
func (c *netlinkLinks) LinkByName(name string) (Link, error) {
	l, err := netlinksafe.RetryDump(func() (netlink.Link, error) { return c.h.LinkByName(name) })
	if err != nil {
		return Link{}, lookupError(err)
	}
	return linkFromNetlink(l), nil
}

// LinkByIndex looks a link up by ifindex. See LinkControl.
//
// Equivalent to: `ip link show` and picking index $index.
func (c *netlinkLinks) LinkByIndex(index int) (Link, error) {
	l, err := netlinksafe.RetryDump(func() (netlink.Link, error) { return c.h.LinkByIndex(index) })
	if err != nil {
		return Link{}, lookupError(err)
	}
	return linkFromNetlink(l), nil
}

// byIndex is what netlink's setters need of a link: its ifindex.
func byIndex(index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
}

// LinkSetHardwareAddr sets a link's MAC address. See LinkControl.
//
// Equivalent to: `ip link set $link address $hwaddr`.
func (c *netlinkLinks) LinkSetHardwareAddr(index int, mac net.HardwareAddr) error {
	return c.h.LinkSetHardwareAddr(byIndex(index), mac)
}

// LinkSetMTU sets a link's MTU. See LinkControl.
//
// Equivalent to: `ip link set $link mtu $mtu`.
func (c *netlinkLinks) LinkSetMTU(index, mtu int) error {
	return c.h.LinkSetMTU(byIndex(index), mtu)
}

// LinkSetUp brings a link up. See LinkControl.
//
// Equivalent to: `ip link set $link up`.
func (c *netlinkLinks) LinkSetUp(index int) error {
	return c.h.LinkSetUp(byIndex(index))
}

// LinkAddrs lists a link's usable addresses. See LinkControl.
//
// Equivalent to: `ip address show dev $link -tentative -dadfailed`.
func (c *netlinkLinks) LinkAddrs(index int) ([]netip.Addr, error) {
	as, err := netlinksafe.RetryDump(func() ([]netlink.Addr, error) { return c.h.AddrList(byIndex(index), netlink.FAMILY_ALL) })
	if err != nil {
		return nil, lookupError(err)
	}
	var out []netip.Addr
	for _, a := range as {
		if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// Close closes the handle. See LinkControl.
func (c *netlinkLinks) Close() error {
	c.h.Close()
	c.conf.Close()
	return nil
}
