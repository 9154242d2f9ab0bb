package bridge

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkCarrier reports whether a link is up with a carrier (IFF_UP and
// IFF_LOWER_UP).
func linkCarrier(a *netlink.LinkAttrs) bool {
	return a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0
}

// isNotFound reports whether err says that a link does not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// retryDump runs f again while the kernel says a netlink dump was
// interrupted by a concurrent change (at most a few times).
func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// linkByName looks a link up by name.
//
// Equivalent to: `ip link show dev $name`.
func linkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	return retryDump(func() (netlink.Link, error) { return h.LinkByName(name) })
}

// linkByIndex looks a link up by ifindex.
//
// Equivalent to: `ip link show` and picking index $i.
func linkByIndex(h *netlink.Handle, i int) (netlink.Link, error) {
	return retryDump(func() (netlink.Link, error) { return h.LinkByIndex(i) })
}

// setupTAPLink gives the fresh TAP its address and MTU (0: left as it is),
// then brings it up.
// The address is set while the link is down, so nothing ever leaves with
// the kernel's random one.
//
// Equivalent to: `ip link set $name address $mac mtu $mtu up`.
func setupTAPLink(h *netlink.Handle, name string, mac net.HardwareAddr, mtu int) (netlink.Link, error) {
	l, err := linkByName(h, name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetHardwareAddr(l, mac); err != nil {
		return nil, fmt.Errorf("set %s mac %s: %w", name, mac, err)
	}
	if mtu != 0 {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set %s mtu %d: %w", name, mtu, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set %s up: %w", name, err)
	}
	return linkByName(h, name)
}
