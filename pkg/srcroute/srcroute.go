// Package srcroute makes traffic from an interface's addresses leave by that
// interface: source policy routing for vethd's virtual NIC.
//
// With two NICs on one subnet (the parent eth0 with address A, vethd's veth1
// with address B) the main table's first matching route wins, so replies
// from B and traffic the host sends from B leave by eth0, with eth0's MAC;
// with strict reverse-path filtering (rp_filter=1) B is not even reachable.
// A Router keeps, for each usable address of its link, a rule
//
//	from B/32 lookup TABLE priority PRIO proto 118      (B/128 for IPv6)
//
// and in TABLE the link's own routes: a copy of every route of the main
// table through the link (its subnet, its default gateway and any other
// route an address manager put there), and the subnet route of each address
// that main lacks, all without a preferred source. It follows the link's
// addresses, the main table and the link's state over netlink, removes
// what it put there when an address goes, and on Close removes everything.
// What it installs carries the protocol number Protocol, so that rules and
// routes left by a run that was killed are found and removed by the next
// one. docs/routing.md has the whole design.
//
// A Router reaches the kernel only through RouteControl (netlink in
// OpenNetlink; package srcroutetest has an in-memory fake), so everything
// it decides is tested without root.
package srcroute

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Protocol tags every rule (FRA_PROTOCOL) and route (rtm_protocol) a Router
// installs; ip(8) shows it as "proto 118". 118 is ASCII 'v'; it is neither
// in iproute2's rt_protos nor among the kernel's RTPROT_* values (0–4,
// 8–18, 42, 99, 186–189, 192). It is part of a rule's identity: what carries it
// in a Router's table is the Router's, and Cleanup removes exactly that.
const Protocol uint8 = 118

// ProtocolDHCP (RTPROT_DHCP, "proto dhcp") marks the routes that the
// dhclient hook (dist/dhclient/vethd) hands over into a Router's table. A
// Router never adds, changes or removes them; the hook does, and the kernel
// removes them with the link.
const ProtocolDHCP uint8 = unix.RTPROT_DHCP

// DefaultPriority is the rules' priority when Config.Priority is 0: after
// the small numbers admins give their own rules, before the main table's
// rule (32766).
const DefaultPriority = 32000

// Table numbers that are not a Router's: unspecified, and the kernel's
// default, main and local tables.
const (
	tableDefault = unix.RT_TABLE_DEFAULT // 253
	tableMain    = unix.RT_TABLE_MAIN    // 254
	tableLocal   = unix.RT_TABLE_LOCAL   // 255
)

// DefaultTable returns the table a Router for the interface name uses when
// Config.Table is 0: 1000000 + (FNV-1a-32(name) mod 1000000). It depends
// on the name only, so an interface keeps its table across restarts, across
// a re-created TAP (whose ifindex changes) and across reboots; admins can
// refer to it in rules of their own; and the tables of two interfaces
// differ unless their hashes collide (one chance in a million per pair,
// which New detects when both are in use: ErrTableInUse).
func DefaultTable(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return 1000000 + int(h.Sum32()%1000000)
}

// CheckTable says why table cannot be a Router's, or returns nil: it must
// be 1…4294967295 and not one of the kernel's own (253 default, 254 main,
// 255 local).
func CheckTable(table int) error {
	switch {
	case table < 1 || int64(table) > 0xffffffff:
		return fmt.Errorf("table %d: must be 1…4294967295", table)
	case table == tableDefault || table == tableMain || table == tableLocal:
		return fmt.Errorf("table %d: the kernel's own (253 default, 254 main, 255 local)", table)
	}
	return nil
}

// CheckPriority says why priority cannot be the rules' priority, or returns
// nil: 0 is the local table's rule and 32766 the main table's, and a rule
// after main would never be reached, so it must be 1…32765.
func CheckPriority(priority int) error {
	if priority < 1 || priority > 32765 {
		return fmt.Errorf("priority %d: must be 1…32765 (before the main table's rule, 32766)", priority)
	}
	return nil
}

// AliasPrefix starts the alias (IFLA_IFALIAS, `ip link show`'s "alias")
// that a Router gives its link: "vethd table=N". The dhclient hook reads
// it from /sys/class/net/IF/ifalias to learn that vethd routes the
// interface and which table it uses. It lives and dies with the link, so
// it is never stale after a kill -9.
const AliasPrefix = "vethd table="

// Alias returns the alias a Router with table gives its link.
func Alias(table int) string { return AliasPrefix + strconv.Itoa(table) }

// ownAlias reports whether alias was set by a Router (for any table).
func ownAlias(alias string) bool {
	rest, ok := strings.CutPrefix(alias, AliasPrefix)
	if !ok {
		return false
	}
	_, err := strconv.ParseUint(rest, 10, 32)
	return err == nil
}

// ErrLinkNotFound is wrapped by RouteControl.Link's error when no link has
// the ifindex.
var ErrLinkNotFound = errors.New("link not found")

// ErrTableInUse is wrapped by New's error when the table already holds
// routes of this protocol through another existing link: another Router
// (another bridge) uses it.
var ErrTableInUse = errors.New("routing table in use by another interface")

// ErrClosed is returned by Sync after Close.
var ErrClosed = errors.New("router closed")

// Link is what a Router knows of its interface.
type Link struct {
	Index int
	Name  string
	// Up is IFF_UP: the link is administratively up.
	Up bool
	// Alias is IFLA_IFALIAS ("" if none).
	Alias string
}

// Addr is one address of a link, as an address message (RTM_NEWADDR)
// describes it.
type Addr struct {
	// Prefix is the address with its prefix length: 198.18.0.11/24.
	Prefix netip.Prefix
	// Scope is the address's scope: unix.RT_SCOPE_UNIVERSE for a global one.
	Scope uint8
	// Flags are the IFA_F_* flags (tentative, dadfailed, noprefixroute, …).
	Flags uint32
}

// Route is one route, as a route message (RTM_NEWROUTE) describes it.
type Route struct {
	Table int
	// Dst is the destination; 0.0.0.0/0 or ::/0 for a default route.
	Dst netip.Prefix
	// Gw is the gateway; the zero Addr for a route to an attached subnet.
	Gw netip.Addr
	// LinkIndex is the output interface (RTA_OIF); 0 for a multipath route.
	LinkIndex int
	Protocol  uint8
	// Metric is RTA_PRIORITY (what ip(8) calls metric).
	Metric int
	Scope  uint8
	// Type is the route type, unix.RTN_UNICAST for an ordinary route.
	Type uint8
	// OnLink is RTNH_F_ONLINK: the gateway is on the link, whatever the table says.
	OnLink bool
	// MultiPath is set for a route with several next hops (not followed).
	MultiPath bool
}

// Family returns the route's address family (unix.AF_INET or AF_INET6).
func (r Route) Family() int { return family(r.Dst.Addr()) }

// Rule is one policy rule, reduced to the selectors a Router uses.
type Rule struct {
	// Family is unix.AF_INET or unix.AF_INET6.
	Family int
	// Src is the source selector; the zero Prefix for "from all".
	Src      netip.Prefix
	Table    int
	Priority int
	Protocol uint8
}

// EventKind says what an Event is about.
type EventKind int

const (
	// EventAddr: an address was added, changed or removed (RTM_NEWADDR, RTM_DELADDR).
	EventAddr EventKind = iota + 1
	// EventRoute: a route was added, changed or removed (RTM_NEWROUTE, RTM_DELROUTE).
	EventRoute
	// EventLink: a link was added, changed or removed (RTM_NEWLINK, RTM_DELLINK).
	EventLink
	// EventRule: a policy rule was added or removed (RTM_NEWRULE, RTM_DELRULE).
	EventRule
)

// Event is one change notification. A Router reads the state again when an
// event concerns its link, so an event carries only what tells that.
type Event struct {
	Kind EventKind
	// LinkIndex is the link concerned (a route's output link; 0 for a multipath route).
	LinkIndex int
	// Table is a route's or a rule's table (EventRoute, EventRule).
	Table int
}

// RouteControl is what a Router asks of one network namespace's routing:
// netlink in OpenNetlink. Errors from the kernel wrap its errno
// (unix.EEXIST, unix.ESRCH, unix.ENOENT, unix.ENETDOWN, unix.ENODEV, …).
type RouteControl interface {
	// Link returns the link with ifindex index; the error wraps ErrLinkNotFound if there is none.
	Link(index int) (Link, error)
	// SetAlias sets the alias of link index; "" removes it.
	SetAlias(index int, alias string) error
	// Addrs returns the IPv4 and IPv6 addresses of link index.
	Addrs(index int) ([]Addr, error)
	// Routes returns table's IPv4 and IPv6 routes; index > 0 keeps those whose output link is index, proto > 0 those of that protocol.
	Routes(table, index int, proto uint8) ([]Route, error)
	// Rules returns the IPv4 and IPv6 policy rules.
	Rules() ([]Rule, error)
	// AddRule adds r; the error wraps EEXIST if an identical rule exists.
	AddRule(r Rule) error
	// DelRule deletes the rule identical to r; the error wraps ENOENT if there is none.
	DelRule(r Rule) error
	// AddRoute adds r; the error wraps EEXIST if r.Table has a route with r's destination and metric, ENETDOWN if the link is down.
	AddRoute(r Route) error
	// DelRoute deletes the route with r's table, destination, metric, protocol, output link and gateway; the error wraps ESRCH if there is none.
	DelRoute(r Route) error
	// Subscribe starts delivering the namespace's address, route and link notifications.
	Subscribe() (Subscription, error)
	// Close releases the control; subscriptions it started are closed separately.
	Close() error
}

// Subscription is a stream of notifications from a RouteControl.
type Subscription interface {
	// Events delivers the notifications in order; it is closed when the subscription is lost (some were missed: look again).
	Events() <-chan Event
	// Close ends the subscription; it is idempotent.
	Close()
}

// family returns unix.AF_INET or unix.AF_INET6 for ip.
func family(ip netip.Addr) int {
	if ip.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// hostPrefix returns ip/32 or ip/128.
func hostPrefix(ip netip.Addr) netip.Prefix { return netip.PrefixFrom(ip, ip.BitLen()) }

// String renders r as ip(8) would, with the output link by ifindex:
// "198.18.0.0/24 dev 7 scope link proto 118 metric 0 table 1000".
func (r Route) String() string {
	var b strings.Builder
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	fmt.Fprintf(&b, " dev %d", r.LinkIndex)
	if r.Scope == unix.RT_SCOPE_LINK {
		b.WriteString(" scope link")
	}
	fmt.Fprintf(&b, " proto %d metric %d", r.Protocol, r.Metric)
	if r.OnLink {
		b.WriteString(" onlink")
	}
	fmt.Fprintf(&b, " table %d", r.Table)
	return b.String()
}

// String renders r as ip(8) would: "32000: from 198.18.0.11 lookup 1000 proto 118".
func (r Rule) String() string {
	src := "all"
	if r.Src.IsValid() {
		src = r.Src.String()
		if r.Src.IsSingleIP() {
			src = r.Src.Addr().String()
		}
	}
	return fmt.Sprintf("%d: from %s lookup %d proto %d", r.Priority, src, r.Table, r.Protocol)
}
