package srcroute

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vethd/vethd/internal/netlinksafe"
	"github.com/vethd/vethd/internal/nlrecv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlinkControl is the RouteControl of one network namespace: one
// NETLINK_ROUTE handle whose socket lives in the namespace (so no thread
// ever enters it) for requests, and a socket of its own, opened in the
// namespace, for each subscription. It may be used from any goroutine.
type netlinkControl struct {
	h  *netlink.Handle
	ns *netns.NsHandle // nil: the namespace the handle was opened in
}

var _ RouteControl = (*netlinkControl)(nil)

// OpenNetlink returns the RouteControl of the network namespace ns (nil:
// the calling thread's), over netlink.
func OpenNetlink(ns *netns.NsHandle) (RouteControl, error) {
	var h *netlink.Handle
	var err error
	if ns == nil {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandleAt(*ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &netlinkControl{h: h, ns: ns}, nil
}

// byIndex is what netlink's link calls need of a link: its ifindex.
func byIndex(index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
}

// notFoundError is netlink's "no such link" error, which also matches
// ErrLinkNotFound (and keeps netlink's text).
type notFoundError struct{ err error }

func (e notFoundError) Error() string        { return e.err.Error() }
func (e notFoundError) Unwrap() error        { return e.err }
func (e notFoundError) Is(target error) bool { return target == ErrLinkNotFound }

// Link looks a link up by ifindex. See RouteControl.
//
// Equivalent to: `ip link show` and picking index $index.
func (c *netlinkControl) Link(index int) (Link, error) {
	l, err := netlinksafe.RetryDump(func() (netlink.Link, error) { return c.h.LinkByIndex(index) })
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return Link{}, notFoundError{err}
		}
		return Link{}, err
	}
	a := l.Attrs()
	return Link{Index: a.Index, Name: a.Name, Up: a.RawFlags&unix.IFF_UP != 0, Alias: a.Alias}, nil
}

// SetAlias sets a link's alias. See RouteControl.
//
// Equivalent to: `ip link set $link alias $alias`.
func (c *netlinkControl) SetAlias(index int, alias string) error {
	return c.h.LinkSetAlias(byIndex(index), alias)
}

// Addrs lists a link's addresses. See RouteControl.
//
// Equivalent to: `ip addr show dev $link`.
func (c *netlinkControl) Addrs(index int) ([]Addr, error) {
	as, err := netlinksafe.RetryDump(func() ([]netlink.Addr, error) { return c.h.AddrList(byIndex(index), netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	out := make([]Addr, 0, len(as))
	for _, a := range as {
		if a.IPNet == nil {
			continue
		}
		p, ok := prefixOf(a.IPNet)
		if !ok {
			continue
		}
		out = append(out, Addr{Prefix: p, Scope: uint8(a.Scope), Flags: uint32(a.Flags)})
	}
	return out, nil
}

// Routes lists a table's routes. See RouteControl.
//
// Equivalent to: `ip route show table $table [dev $link] [proto $proto]`
// and the same with -6.
func (c *netlinkControl) Routes(table, index int, proto uint8) ([]Route, error) {
	filter := &netlink.Route{Table: table, LinkIndex: index, Protocol: netlink.RouteProtocol(proto)}
	mask := uint64(netlink.RT_FILTER_TABLE)
	if index > 0 {
		mask |= netlink.RT_FILTER_OIF
	}
	if proto > 0 {
		mask |= netlink.RT_FILTER_PROTOCOL
	}
	var out []Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlinksafe.RetryDump(func() ([]netlink.Route, error) { return c.h.RouteListFiltered(fam, filter, mask) })
		if err != nil {
			if fam == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue // IPv6 disabled in this kernel
			}
			return nil, err
		}
		for _, r := range rs {
			if rt, ok := routeFromNetlink(r); ok {
				out = append(out, rt)
			}
		}
	}
	return out, nil
}

// Rules lists the policy rules. See RouteControl.
//
// Equivalent to: `ip rule show; ip -6 rule show`.
func (c *netlinkControl) Rules() ([]Rule, error) {
	var out []Rule
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlinksafe.RetryDump(func() ([]netlink.Rule, error) { return c.h.RuleList(fam) })
		if err != nil {
			if fam == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue
			}
			return nil, err
		}
		for _, r := range rs {
			ru := Rule{Family: r.Family, Table: r.Table, Priority: r.Priority, Protocol: r.Protocol}
			if r.Src != nil {
				if p, ok := prefixOf(r.Src); ok {
					ru.Src = p
				}
			}
			out = append(out, ru)
		}
	}
	return out, nil
}

// ruleToNetlink builds netlink's rule for r. It starts from
// netlink.NewRule(): netlink sends every field of a Rule that is ≥ 0, and
// a zero Rule{} would be a "goto 0" rule with suppress_prefixlength 0.
func ruleToNetlink(r Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = r.Family
	if r.Src.IsValid() {
		nr.Src = ipNetOf(r.Src)
	}
	nr.Table = r.Table
	nr.Priority = r.Priority
	nr.Protocol = r.Protocol
	return nr
}

// AddRule adds a rule. See RouteControl.
//
// Equivalent to: `ip rule add from $src lookup $table priority $prio protocol $proto`.
func (c *netlinkControl) AddRule(r Rule) error { return c.h.RuleAdd(ruleToNetlink(r)) }

// DelRule deletes a rule. See RouteControl.
//
// Equivalent to: `ip rule del from $src lookup $table priority $prio protocol $proto`.
func (c *netlinkControl) DelRule(r Rule) error { return c.h.RuleDel(ruleToNetlink(r)) }

// routeToNetlink builds netlink's route for r. Only the onlink flag is
// sent: the others (linkdown, dead) are the kernel's.
func routeToNetlink(r Route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: r.LinkIndex,
		Dst:       ipNetOf(r.Dst),
		Table:     r.Table,
		Protocol:  netlink.RouteProtocol(r.Protocol),
		Priority:  r.Metric,
		Scope:     netlink.Scope(r.Scope),
		Type:      int(r.Type),
		Family:    r.Family(),
	}
	if r.Gw.IsValid() {
		nr.Gw = net.IP(r.Gw.AsSlice())
	}
	if r.OnLink {
		nr.Flags = unix.RTNH_F_ONLINK
	}
	return nr
}

// AddRoute adds a route (exclusively: NLM_F_CREATE|NLM_F_EXCL). See
// RouteControl.
//
// Equivalent to: `ip route add $dst [via $gw] dev $link table $table proto $proto metric $metric`.
func (c *netlinkControl) AddRoute(r Route) error { return c.h.RouteAdd(routeToNetlink(r)) }

// DelRoute deletes a route. See RouteControl.
//
// Equivalent to: `ip route del $dst [via $gw] dev $link table $table proto $proto metric $metric`.
func (c *netlinkControl) DelRoute(r Route) error { return c.h.RouteDel(routeToNetlink(r)) }

// routeFromNetlink converts netlink's route; ok is false for one without
// an IP destination (MPLS).
func routeFromNetlink(r netlink.Route) (Route, bool) {
	if r.Dst == nil {
		return Route{}, false
	}
	dst, ok := prefixOf(r.Dst)
	if !ok {
		return Route{}, false
	}
	rt := Route{
		Table:     r.Table,
		Dst:       dst,
		LinkIndex: r.LinkIndex,
		Protocol:  uint8(r.Protocol),
		Metric:    r.Priority,
		Scope:     uint8(r.Scope),
		Type:      uint8(r.Type),
		OnLink:    r.Flags&unix.RTNH_F_ONLINK != 0,
		MultiPath: len(r.MultiPath) > 0,
	}
	if gw, ok := netip.AddrFromSlice(r.Gw); ok {
		rt.Gw = gw.Unmap()
	}
	return rt, true
}

// prefixOf converts an IPNet (4- or 16-byte IPv4 alike) to a Prefix.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(ip, ones)
	return p, p.IsValid()
}

// ipNetOf converts a Prefix to an IPNet (4 bytes for IPv4).
func ipNetOf(p netip.Prefix) *net.IPNet {
	ip := p.Addr()
	return &net.IPNet{IP: net.IP(ip.AsSlice()), Mask: net.CIDRMask(p.Bits(), ip.BitLen())}
}

// Subscribe subscribes to address, route, link and rule notifications, on
// one socket of its own opened in the namespace, read with nlrecv (one
// reused buffer: vishvananda/netlink's subscriptions each kept a goroutine
// waiting on a 64 KiB stack array, four per Router). See RouteControl.
//
// Equivalent to: `ip monitor address route link rule`.
func (c *netlinkControl) Subscribe() (Subscription, error) {
	groups := []uint{unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV4_ROUTE,
		unix.RTNLGRP_IPV6_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE}
	var ns *nl.NetlinkSocket
	var err error
	if c.ns != nil {
		ns, err = nl.SubscribeAt(*c.ns, netns.None(), unix.NETLINK_ROUTE, groups...)
	} else {
		ns, err = nl.Subscribe(unix.NETLINK_ROUTE, groups...)
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe to addresses, routes, links and rules: %w", err)
	}
	// The four sockets this replaces had 1 MiB each (capped at rmem_max);
	// vethd has CAP_NET_ADMIN, so this one may go past the cap. An overrun
	// is not lost silently: it ends the subscription, and the Router
	// looks again.
	const rcvbuf = 4 << 20
	if ns.SetReceiveBufferSize(rcvbuf, true) != nil {
		if err := ns.SetReceiveBufferSize(rcvbuf, false); err != nil {
			ns.Close()
			return nil, fmt.Errorf("subscribe to addresses, routes, links and rules: %w", err)
		}
	}
	sock, err := nlrecv.Take(ns)
	if err != nil {
		return nil, fmt.Errorf("subscribe to addresses, routes, links and rules: %w", err)
	}
	// An overrun ends the subscription (Events closes) and the Router
	// looks again.
	return nlrecv.Subscribe(sock, func(m syscall.NetlinkMessage) (Event, bool) {
		return eventOf(m.Header.Type, m.Data)
	}, nil), nil
}

var _ Subscription = (*nlrecv.Subscription[Event])(nil)

// eventOf converts one notification (its type and body) into an Event;
// false for other messages and bodies too short to be one.
func eventOf(typ uint16, b []byte) (Event, bool) {
	ne := nl.NativeEndian()
	switch typ {
	case unix.RTM_NEWADDR, unix.RTM_DELADDR: // struct ifaddrmsg: ifa_index at 4
		if len(b) < unix.SizeofIfAddrmsg {
			return Event{}, false
		}
		return Event{Kind: EventAddr, LinkIndex: int(ne.Uint32(b[4:8]))}, true
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE: // struct rtmsg: rtm_table at 4
		if len(b) < unix.SizeofRtMsg {
			return Event{}, false
		}
		ev := Event{Kind: EventRoute, Table: int(b[4])}
		for a := b[unix.SizeofRtMsg:]; len(a) >= unix.SizeofRtAttr; {
			l := int(ne.Uint16(a[0:2]))
			if l < unix.SizeofRtAttr || l > len(a) {
				break
			}
			v := a[unix.SizeofRtAttr:l]
			switch ne.Uint16(a[2:4]) {
			case unix.RTA_OIF:
				if len(v) >= 4 {
					ev.LinkIndex = int(ne.Uint32(v))
				}
			case unix.RTA_TABLE:
				if len(v) >= 4 {
					ev.Table = int(ne.Uint32(v))
				}
			}
			a = a[min(len(a), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
		}
		return ev, true
	case unix.RTM_NEWLINK, unix.RTM_DELLINK: // struct ifinfomsg: ifi_index at 4
		if len(b) < unix.SizeofIfInfomsg {
			return Event{}, false
		}
		return Event{Kind: EventLink, LinkIndex: int(int32(ne.Uint32(b[4:8])))}, true
	case unix.RTM_NEWRULE, unix.RTM_DELRULE:
		t, ok := ruleTable(b)
		if !ok {
			return Event{}, false
		}
		return Event{Kind: EventRule, Table: t}, true
	}
	return Event{}, false
}

// ruleTable returns the table of a rule message's body (a fib_rule_hdr,
// whose table byte FRA_TABLE overrides, then attributes).
func ruleTable(b []byte) (int, bool) {
	const hdrLen = 12 // struct fib_rule_hdr
	if len(b) < hdrLen {
		return 0, false
	}
	table := int(b[4])
	for a := b[hdrLen:]; len(a) >= unix.SizeofRtAttr; {
		l := int(nl.NativeEndian().Uint16(a[0:2]))
		typ := nl.NativeEndian().Uint16(a[2:4])
		if l < unix.SizeofRtAttr || l > len(a) {
			break
		}
		if typ == unix.FRA_TABLE && l >= unix.SizeofRtAttr+4 {
			table = int(nl.NativeEndian().Uint32(a[unix.SizeofRtAttr:]))
		}
		al := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if al > len(a) {
			break
		}
		a = a[al:]
	}
	return table, true
}

// Close closes the handle. See RouteControl.
func (c *netlinkControl) Close() error {
	c.h.Close()
	return nil
}
