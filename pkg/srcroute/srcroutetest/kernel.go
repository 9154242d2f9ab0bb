// Package srcroutetest has an in-memory network namespace for testing
// srcroute.Router (and whatever wires one) without root: Kernel is a
// srcroute.RouteControl whose other methods play the rest of the system —
// an address manager, an admin with ip(8), and the kernel's own reactions.
package srcroutetest

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/vethd/vethd/pkg/srcroute"
	"golang.org/x/sys/unix"
)

// Kernel is one network namespace's links, addresses, routes and rules.
// Where a Router can tell, it behaves as Linux does (measured on 6.18, see
// docs/notes/separate-nic-research.md):
//
//   - adding an address adds its prefix route to main (proto kernel, IPv4
//     metric 0 scope link, IPv6 metric 256) unless it has noprefixroute, is
//     a /32 or /128, or the link already has one for that prefix; removing
//     the last address of a prefix removes the route;
//   - a route with the destination and metric of one in its table is
//     refused (EEXIST), and so is one through a down link (ENETDOWN);
//   - a link going down loses its IPv4 routes in every table without a
//     notification, and its IPv6 addresses and routes with one; coming up,
//     it gets its IPv4 prefix routes back;
//   - a deleted link takes its addresses and routes with it (the rules
//     stay);
//   - notifications queue per subscription; one that overflows is lost
//     (its Events channel closes), as with ENOBUFS.
//
// All methods may be called from any goroutine.
type Kernel struct {
	mu     sync.Mutex
	links  map[int]*link
	routes []srcroute.Route
	rules  []srcroute.Rule
	subs   map[*subscription]bool
	fail   map[string]error
	calls  map[string]int
}

type link struct {
	srcroute.Link
	addrs []srcroute.Addr
}

var _ srcroute.RouteControl = (*Kernel)(nil)

// QueueLen is how many notifications a subscription holds before it is lost.
const QueueLen = 256

// NewKernel returns an empty namespace.
func NewKernel() *Kernel {
	return &Kernel{links: map[int]*link{}, subs: map[*subscription]bool{}, fail: map[string]error{}, calls: map[string]int{}}
}

// Fail makes every later call of the RouteControl method op ("AddRule",
// "Routes", …) fail with err; a nil err ends that.
func (k *Kernel) Fail(op string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.fail, op)
	} else {
		k.fail[op] = err
	}
}

// Calls returns how often the RouteControl method op was called.
func (k *Kernel) Calls(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[op]
}

// call counts a call of op and returns its injected error. k.mu is held.
func (k *Kernel) call(op string) error {
	k.calls[op]++
	if err := k.fail[op]; err != nil {
		return fmt.Errorf("%s (injected): %w", op, err)
	}
	return nil
}

// AddLink adds a link, up, and notifies it.
func (k *Kernel) AddLink(index int, name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.links[index] = &link{Link: srcroute.Link{Index: index, Name: name, Up: true}}
	k.emit(srcroute.Event{Kind: srcroute.EventLink, LinkIndex: index})
}

// SetUp brings a link up or down (see Kernel for what goes with it).
func (k *Kernel) SetUp(index int, up bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.mustLink(index)
	if l.Up == up {
		return
	}
	l.Up = up
	if !up {
		// IPv4: routes through the link go, silently. IPv6: addresses and
		// routes go, notified (keep_addr_on_down=0).
		k.routes = slices.DeleteFunc(k.routes, func(r srcroute.Route) bool {
			return r.LinkIndex == index && r.Dst.Addr().Is4()
		})
		var kept []srcroute.Addr
		for _, a := range l.addrs {
			if a.Prefix.Addr().Is4() {
				kept = append(kept, a)
				continue
			}
			k.emit(srcroute.Event{Kind: srcroute.EventAddr, LinkIndex: index})
		}
		l.addrs = kept
		k.routes = slices.DeleteFunc(k.routes, func(r srcroute.Route) bool {
			if r.LinkIndex == index && r.Dst.Addr().Is6() {
				k.emit(srcroute.Event{Kind: srcroute.EventRoute, LinkIndex: index, Table: r.Table})
				return true
			}
			return false
		})
	} else {
		for _, a := range l.addrs {
			k.addPrefixRoute(l, a)
		}
	}
	k.emit(srcroute.Event{Kind: srcroute.EventLink, LinkIndex: index})
}

// DelLink deletes a link with its addresses and routes.
func (k *Kernel) DelLink(index int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.mustLink(index)
	for range l.addrs {
		k.emit(srcroute.Event{Kind: srcroute.EventAddr, LinkIndex: index})
	}
	k.routes = slices.DeleteFunc(k.routes, func(r srcroute.Route) bool { return r.LinkIndex == index })
	delete(k.links, index)
	k.emit(srcroute.Event{Kind: srcroute.EventLink, LinkIndex: index})
}

// AddAddr adds a global address ("198.18.0.11/24") to a link: what
// `ip addr add` does. It returns the address as added.
func (k *Kernel) AddAddr(index int, prefix string) srcroute.Addr {
	a := srcroute.Addr{Prefix: netip.MustParsePrefix(prefix), Scope: unix.RT_SCOPE_UNIVERSE}
	if a.Prefix.Addr().IsLinkLocalUnicast() {
		a.Scope = unix.RT_SCOPE_LINK
	}
	k.AddAddrWith(index, a)
	return a
}

// AddAddrWith adds a as it is (scope and flags included).
func (k *Kernel) AddAddrWith(index int, a srcroute.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.mustLink(index)
	for _, o := range l.addrs {
		if o.Prefix.Addr() == a.Prefix.Addr() {
			panic(fmt.Sprintf("srcroutetest: %s already on link %d", a.Prefix, index))
		}
	}
	l.addrs = append(l.addrs, a)
	k.emit(srcroute.Event{Kind: srcroute.EventAddr, LinkIndex: index})
	if l.Up {
		k.addPrefixRoute(l, a)
	}
}

// SetAddrFlags changes the flags of an address of a link (duplicate
// address detection ending clears IFA_F_TENTATIVE) and notifies it.
func (k *Kernel) SetAddrFlags(index int, prefix string, flags uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.mustLink(index)
	p := netip.MustParsePrefix(prefix)
	for i := range l.addrs {
		if l.addrs[i].Prefix == p {
			l.addrs[i].Flags = flags
			k.emit(srcroute.Event{Kind: srcroute.EventAddr, LinkIndex: index})
			return
		}
	}
	panic(fmt.Sprintf("srcroutetest: %s not on link %d", prefix, index))
}

// DelAddr removes an address from a link, and its prefix route from main
// if no other address of the link is in that prefix.
func (k *Kernel) DelAddr(index int, prefix string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.mustLink(index)
	p := netip.MustParsePrefix(prefix)
	i := slices.IndexFunc(l.addrs, func(a srcroute.Addr) bool { return a.Prefix == p })
	if i < 0 {
		panic(fmt.Sprintf("srcroutetest: %s not on link %d", prefix, index))
	}
	l.addrs = slices.Delete(l.addrs, i, i+1)
	k.emit(srcroute.Event{Kind: srcroute.EventAddr, LinkIndex: index})
	for _, o := range l.addrs {
		if o.Prefix.Masked() == p.Masked() {
			return
		}
	}
	k.routes = slices.DeleteFunc(k.routes, func(r srcroute.Route) bool {
		if r.Table == unix.RT_TABLE_MAIN && r.LinkIndex == index && r.Dst == p.Masked() && r.Protocol == unix.RTPROT_KERNEL {
			k.emit(srcroute.Event{Kind: srcroute.EventRoute, LinkIndex: index, Table: r.Table})
			return true
		}
		return false
	})
}

// addPrefixRoute adds a's prefix route to main, as the kernel does. k.mu is held.
func (k *Kernel) addPrefixRoute(l *link, a srcroute.Addr) {
	ip := a.Prefix.Addr()
	if a.Flags&unix.IFA_F_NOPREFIXROUTE != 0 || a.Prefix.Bits() == ip.BitLen() || a.Scope != unix.RT_SCOPE_UNIVERSE {
		return
	}
	r := srcroute.Route{Table: unix.RT_TABLE_MAIN, Dst: a.Prefix.Masked(), LinkIndex: l.Index,
		Protocol: unix.RTPROT_KERNEL, Type: unix.RTN_UNICAST, Scope: unix.RT_SCOPE_LINK}
	if ip.Is6() {
		r.Scope, r.Metric = unix.RT_SCOPE_UNIVERSE, 256
	}
	for _, o := range k.routes {
		if o.Table == r.Table && o.LinkIndex == r.LinkIndex && o.Dst == r.Dst && o.Protocol == r.Protocol {
			return // a secondary address: the primary's route serves
		}
	}
	k.routes = append(k.routes, r)
	k.emit(srcroute.Event{Kind: srcroute.EventRoute, LinkIndex: l.Index, Table: r.Table})
}

// AddDefault adds "default via gw dev index metric metric proto dhcp" to
// main, as an address manager would.
func (k *Kernel) AddDefault(index int, gw string, metric int) srcroute.Route {
	r := defaultRoute(index, gw, metric)
	if err := k.AddRouteAsAdmin(r); err != nil {
		panic(fmt.Sprintf("srcroutetest: add %s: %v", r, err))
	}
	return r
}

// DelDefault removes what AddDefault added.
func (k *Kernel) DelDefault(index int, gw string, metric int) {
	r := defaultRoute(index, gw, metric)
	if err := k.DelRouteAsAdmin(r); err != nil {
		panic(fmt.Sprintf("srcroutetest: delete %s: %v", r, err))
	}
}

func defaultRoute(index int, gw string, metric int) srcroute.Route {
	g := netip.MustParseAddr(gw)
	return srcroute.Route{Table: unix.RT_TABLE_MAIN, Dst: netip.PrefixFrom(unspecified(g), 0), Gw: g,
		LinkIndex: index, Protocol: unix.RTPROT_DHCP, Metric: metric, Type: unix.RTN_UNICAST}
}

func unspecified(ip netip.Addr) netip.Addr {
	if ip.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// RuleList returns the rules as ip(8) prints them, sorted.
func (k *Kernel) RuleList() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, r := range k.rules {
		out = append(out, r.String())
	}
	sort.Strings(out)
	return out
}

// TableList returns a table's routes as srcroute.Route's String prints them, sorted.
func (k *Kernel) TableList(table int) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, r := range k.routes {
		if r.Table == table {
			out = append(out, r.String())
		}
	}
	sort.Strings(out)
	return out
}

// LoseSubscriptions loses every subscription (their Events close), as a
// receive queue overflow (ENOBUFS) would.
func (k *Kernel) LoseSubscriptions() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for s := range k.subs {
		k.lose(s)
	}
}

// Subscribers returns how many subscriptions are live.
func (k *Kernel) Subscribers() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.subs)
}

// mustLink returns link index or panics (a test's mistake). k.mu is held.
func (k *Kernel) mustLink(index int) *link {
	l := k.links[index]
	if l == nil {
		panic(fmt.Sprintf("srcroutetest: no link %d", index))
	}
	return l
}

// emit queues ev on every subscription, losing those that are full. k.mu is held.
func (k *Kernel) emit(ev srcroute.Event) {
	for s := range k.subs {
		select {
		case s.ch <- ev:
		default:
			k.lose(s)
		}
	}
}

// lose ends s, closing its Events. k.mu is held.
func (k *Kernel) lose(s *subscription) {
	if k.subs[s] {
		delete(k.subs, s)
		close(s.ch)
	}
}

// Link is srcroute.RouteControl's.
func (k *Kernel) Link(index int) (srcroute.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("Link"); err != nil {
		return srcroute.Link{}, err
	}
	l := k.links[index]
	if l == nil {
		return srcroute.Link{}, fmt.Errorf("link %d: %w", index, srcroute.ErrLinkNotFound)
	}
	return l.Link, nil
}

// SetAlias is srcroute.RouteControl's.
func (k *Kernel) SetAlias(index int, alias string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("SetAlias"); err != nil {
		return err
	}
	l := k.links[index]
	if l == nil {
		return fmt.Errorf("set alias of link %d: %w", index, unix.ENODEV)
	}
	l.Alias = alias
	k.emit(srcroute.Event{Kind: srcroute.EventLink, LinkIndex: index})
	return nil
}

// SetAliasAsAdmin sets a link's alias the way `ip link set … alias` would.
func (k *Kernel) SetAliasAsAdmin(index int, alias string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mustLink(index).Alias = alias
	k.emit(srcroute.Event{Kind: srcroute.EventLink, LinkIndex: index})
}

// Addrs is srcroute.RouteControl's.
func (k *Kernel) Addrs(index int) ([]srcroute.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("Addrs"); err != nil {
		return nil, err
	}
	if l := k.links[index]; l != nil {
		return slices.Clone(l.addrs), nil
	}
	return nil, nil
}

// Routes is srcroute.RouteControl's.
func (k *Kernel) Routes(table, index int, proto uint8) ([]srcroute.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("Routes"); err != nil {
		return nil, err
	}
	var out []srcroute.Route
	for _, r := range k.routes {
		if r.Table == table && (index == 0 || r.LinkIndex == index) && (proto == 0 || r.Protocol == proto) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Rules is srcroute.RouteControl's.
func (k *Kernel) Rules() ([]srcroute.Rule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("Rules"); err != nil {
		return nil, err
	}
	return slices.Clone(k.rules), nil
}

// AddRule is srcroute.RouteControl's.
func (k *Kernel) AddRule(r srcroute.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("AddRule"); err != nil {
		return err
	}
	return k.addRule(r)
}

// AddRuleAsAdmin adds a rule as `ip rule add` would (not counted, never
// failed by Fail).
func (k *Kernel) AddRuleAsAdmin(r srcroute.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.addRule(r)
}

func (k *Kernel) addRule(r srcroute.Rule) error {
	if slices.Contains(k.rules, r) {
		return fmt.Errorf("add rule %s: %w", r, unix.EEXIST)
	}
	k.rules = append(k.rules, r)
	return nil
}

// DelRule is srcroute.RouteControl's.
func (k *Kernel) DelRule(r srcroute.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("DelRule"); err != nil {
		return err
	}
	i := slices.Index(k.rules, r)
	if i < 0 {
		return fmt.Errorf("delete rule %s: %w", r, unix.ENOENT)
	}
	k.rules = slices.Delete(k.rules, i, i+1)
	return nil
}

// AddRoute is srcroute.RouteControl's.
func (k *Kernel) AddRoute(r srcroute.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("AddRoute"); err != nil {
		return err
	}
	return k.addRoute(r)
}

// AddRouteAsAdmin adds a route as `ip route add` (or an address manager)
// would: not counted, never failed by Fail.
func (k *Kernel) AddRouteAsAdmin(r srcroute.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.addRoute(r)
}

func (k *Kernel) addRoute(r srcroute.Route) error {
	l := k.links[r.LinkIndex]
	switch {
	case l == nil:
		return fmt.Errorf("add route %s: %w", r, unix.ENODEV)
	case !l.Up:
		return fmt.Errorf("add route %s: %w", r, unix.ENETDOWN)
	}
	if r.Type == 0 {
		r.Type = unix.RTN_UNICAST
	}
	if r.Dst.Addr().Is6() && r.Metric == 0 {
		r.Metric = 1024 // IP6_RT_PRIO_USER
	}
	for _, o := range k.routes {
		if o.Table == r.Table && o.Dst == r.Dst && o.Metric == r.Metric {
			return fmt.Errorf("add route %s: %w", r, unix.EEXIST)
		}
	}
	k.routes = append(k.routes, r)
	k.emit(srcroute.Event{Kind: srcroute.EventRoute, LinkIndex: r.LinkIndex, Table: r.Table})
	return nil
}

// DelRoute is srcroute.RouteControl's: it matches table, destination and
// metric, and protocol, link and gateway where r gives them.
func (k *Kernel) DelRoute(r srcroute.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("DelRoute"); err != nil {
		return err
	}
	return k.delRoute(r)
}

// DelRouteAsAdmin deletes a route as `ip route del` would.
func (k *Kernel) DelRouteAsAdmin(r srcroute.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.delRoute(r)
}

func (k *Kernel) delRoute(r srcroute.Route) error {
	metric := r.Metric
	if r.Dst.Addr().Is6() && metric == 0 {
		metric = 1024
	}
	i := slices.IndexFunc(k.routes, func(o srcroute.Route) bool {
		return o.Table == r.Table && o.Dst == r.Dst && o.Metric == metric &&
			(r.Protocol == 0 || o.Protocol == r.Protocol) &&
			(r.LinkIndex == 0 || o.LinkIndex == r.LinkIndex) &&
			(!r.Gw.IsValid() || o.Gw == r.Gw)
	})
	if i < 0 {
		return fmt.Errorf("delete route %s: %w", r, unix.ESRCH)
	}
	gone := k.routes[i]
	k.routes = slices.Delete(k.routes, i, i+1)
	k.emit(srcroute.Event{Kind: srcroute.EventRoute, LinkIndex: gone.LinkIndex, Table: gone.Table})
	return nil
}

// Subscribe is srcroute.RouteControl's.
func (k *Kernel) Subscribe() (srcroute.Subscription, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.call("Subscribe"); err != nil {
		return nil, err
	}
	s := &subscription{k: k, ch: make(chan srcroute.Event, QueueLen)}
	k.subs[s] = true
	return s, nil
}

// Close is srcroute.RouteControl's; the fake stays usable.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls["Close"]++
	return nil
}

// subscription is a Kernel's srcroute.Subscription.
type subscription struct {
	k  *Kernel
	ch chan srcroute.Event
}

func (s *subscription) Events() <-chan srcroute.Event { return s.ch }

func (s *subscription) Close() {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.lose(s)
}
