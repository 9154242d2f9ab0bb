package srcroute

import (
	"cmp"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// Metrics of the subnet routes a Router derives from an address when main
// has none: the kernel's own for a prefix route (IPv4 0, IPv6 256), so that
// the derived route and the kernel's copy are the same route.
const (
	subnetMetric4 = 0
	subnetMetric6 = 256
)

// usable reports whether a is an address that gets a rule: global scope,
// not link-local, and (IPv6) past duplicate address detection.
func usable(a Addr) bool {
	ip := a.Prefix.Addr()
	return a.Prefix.IsValid() &&
		// Link-scope and host-scope addresses never source routed traffic.
		a.Scope == unix.RT_SCOPE_UNIVERSE &&
		// fe80::/10 and 169.254/16 added with global scope are still link-local.
		!ip.IsLinkLocalUnicast() && !ip.IsLoopback() && !ip.IsMulticast() && !ip.IsUnspecified() &&
		// A tentative address cannot be used yet, a failed one never.
		a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0
}

// routeKey is what makes two routes of one table the same route to the
// kernel: a second route with the same destination and metric is refused
// with EEXIST (IPv4 and IPv6 alike, for an exclusive add).
type routeKey struct {
	family int
	dst    netip.Prefix
	metric int
}

func keyOf(r Route) routeKey { return routeKey{r.Family(), r.Dst, r.Metric} }

// sameRoute reports whether have (as the kernel lists it) is want: the same
// key and next hop. Flags the kernel sets by itself (linkdown, dead) do
// not count.
func sameRoute(have, want Route) bool {
	return keyOf(have) == keyOf(want) &&
		have.Gw == want.Gw &&
		have.LinkIndex == want.LinkIndex &&
		have.Scope == want.Scope &&
		have.Type == want.Type &&
		have.OnLink == want.OnLink
}

// plan is a link's state as the kernel reports it, and what a Router wants
// the kernel to hold for it.
type plan struct {
	// Rules: one per usable address, sorted by source.
	Rules []Rule
	// Routes: the table's routes for the link, gatewayless ones first.
	Routes []Route
}

// makePlan computes what table should hold for link index: a rule from each
// usable address in addrs, and, if the link is up, a copy of each unicast
// route of main through the link (without its preferred source) plus the
// subnet route of each usable address whose subnet main has no route for.
// Where two routes would have the same destination and metric, the first
// (by gateway) is kept: the kernel would refuse the second.
func makePlan(index int, up bool, table, priority int, addrs []Addr, main []Route) plan {
	var p plan
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		ip := a.Prefix.Addr()
		if !usable(a) || seen[ip] {
			continue
		}
		seen[ip] = true
		p.Rules = append(p.Rules, Rule{Family: family(ip), Src: hostPrefix(ip), Table: table, Priority: priority, Protocol: Protocol})
	}
	slices.SortFunc(p.Rules, func(a, b Rule) int { return a.Src.Addr().Compare(b.Src.Addr()) })
	if !up {
		// IPv4 routes cannot be added through a down link (ENETDOWN), and
		// the kernel flushed them; on up they are added again.
		return p
	}

	byKey := map[routeKey]Route{}
	covered := map[netip.Prefix]bool{} // destinations main has a route for through the link
	sorted := slices.Clone(main)
	slices.SortFunc(sorted, compareRoutes)
	for _, m := range sorted {
		if m.LinkIndex != index || m.MultiPath || m.Type != unix.RTN_UNICAST || !m.Dst.IsValid() {
			continue
		}
		covered[m.Dst] = true
		r := Route{Table: table, Dst: m.Dst, Gw: m.Gw, LinkIndex: index, Protocol: Protocol,
			Metric: m.Metric, Scope: m.Scope, Type: unix.RTN_UNICAST, OnLink: m.OnLink}
		if _, dup := byKey[keyOf(r)]; !dup {
			byKey[keyOf(r)] = r
		}
	}
	for _, a := range addrs {
		ip := a.Prefix.Addr()
		if !usable(a) || a.Prefix.Bits() == ip.BitLen() || a.Flags&unix.IFA_F_NOPREFIXROUTE != 0 {
			// A /32 or /128 has no subnet; noprefixroute means whoever
			// added the address wants no subnet route (NetworkManager adds
			// its own, which main then has).
			continue
		}
		dst := a.Prefix.Masked()
		if covered[dst] {
			continue
		}
		r := Route{Table: table, Dst: dst, LinkIndex: index, Protocol: Protocol, Type: unix.RTN_UNICAST}
		if ip.Is4() {
			r.Scope, r.Metric = unix.RT_SCOPE_LINK, subnetMetric4
		} else {
			r.Scope, r.Metric = unix.RT_SCOPE_UNIVERSE, subnetMetric6
		}
		if _, dup := byKey[keyOf(r)]; !dup {
			byKey[keyOf(r)] = r
		}
	}
	for _, r := range byKey {
		p.Routes = append(p.Routes, r)
	}
	slices.SortFunc(p.Routes, compareRoutes)
	return p
}

// compareRoutes orders routes for adding: gatewayless ones first (a
// gateway must be reachable when its route is added), then by family,
// destination, metric and gateway.
func compareRoutes(a, b Route) int {
	if c := cmp.Compare(boolInt(a.Gw.IsValid()), boolInt(b.Gw.IsValid())); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Family(), b.Family()); c != 0 {
		return c
	}
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Dst.Bits(), b.Dst.Bits()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Metric, b.Metric); c != 0 {
		return c
	}
	return a.Gw.Compare(b.Gw)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
