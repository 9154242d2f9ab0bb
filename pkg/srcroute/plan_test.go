package srcroute

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func addr(p string) Addr {
	return Addr{Prefix: netip.MustParsePrefix(p), Scope: unix.RT_SCOPE_UNIVERSE}
}

func mainRoute(dst, gw string, link, metric int) Route {
	r := Route{Table: tableMain, Dst: netip.MustParsePrefix(dst), LinkIndex: link, Metric: metric, Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_KERNEL}
	if gw != "" {
		r.Gw = netip.MustParseAddr(gw)
		r.Protocol = unix.RTPROT_DHCP
	} else if r.Dst.Addr().Is4() {
		r.Scope = unix.RT_SCOPE_LINK
	}
	return r
}

func strs[T interface{ String() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}

func TestMakePlan(t *testing.T) {
	const link, table, prio = 7, 1000, 32000
	tentative := addr("2001:db8::12/64")
	tentative.Flags = unix.IFA_F_TENTATIVE
	failed := addr("2001:db8::13/64")
	failed.Flags = unix.IFA_F_DADFAILED
	deprecated := addr("2001:db8::14/64")
	deprecated.Flags = unix.IFA_F_DEPRECATED
	noprefix := addr("198.18.5.11/24")
	noprefix.Flags = unix.IFA_F_NOPREFIXROUTE
	linkScope := addr("fe80::11/64")
	linkScope.Scope = unix.RT_SCOPE_LINK
	zeroconf := addr("169.254.3.4/16") // global scope, still link-local
	multipath := mainRoute("198.19.0.0/16", "198.18.0.1", 0, 0)
	multipath.MultiPath = true
	blackhole := mainRoute("198.19.1.0/24", "", link, 0)
	blackhole.Type = unix.RTN_BLACKHOLE

	cases := []struct {
		name       string
		up         bool
		addrs      []Addr
		main       []Route
		wantRules  []string
		wantRoutes []string
	}{{
		name:       "one address, its prefix route in main",
		up:         true,
		addrs:      []Addr{addr("198.18.0.11/24")},
		main:       []Route{mainRoute("198.18.0.0/24", "", link, 0)},
		wantRules:  []string{"32000: from 198.18.0.11 lookup 1000 proto 118"},
		wantRoutes: []string{"198.18.0.0/24 dev 7 scope link proto 118 metric 0 table 1000"},
	}, {
		name:       "prefix route not (yet) in main: derived, same as the kernel's",
		up:         true,
		addrs:      []Addr{addr("198.18.0.11/24"), addr("2001:db8::11/64")},
		wantRules:  []string{"32000: from 198.18.0.11 lookup 1000 proto 118", "32000: from 2001:db8::11 lookup 1000 proto 118"},
		wantRoutes: []string{"198.18.0.0/24 dev 7 scope link proto 118 metric 0 table 1000", "2001:db8::/64 dev 7 proto 118 metric 256 table 1000"},
	}, {
		name:       "two addresses in one subnet share one route",
		up:         true,
		addrs:      []Addr{addr("198.18.0.12/24"), addr("198.18.0.11/24"), addr("198.18.0.11/24")},
		main:       []Route{mainRoute("198.18.0.0/24", "", link, 0)},
		wantRules:  []string{"32000: from 198.18.0.11 lookup 1000 proto 118", "32000: from 198.18.0.12 lookup 1000 proto 118"},
		wantRoutes: []string{"198.18.0.0/24 dev 7 scope link proto 118 metric 0 table 1000"},
	}, {
		name:  "gateways and other routes through the link are copied, others not",
		up:    true,
		addrs: []Addr{addr("198.18.0.11/24")},
		main: []Route{
			mainRoute("0.0.0.0/0", "198.18.0.1", 2, 0), // the parent's
			mainRoute("0.0.0.0/0", "198.18.0.1", link, 100),
			mainRoute("10.0.0.0/8", "198.18.0.254", link, 0), // a classless static route
			mainRoute("198.18.0.0/24", "", 2, 0),
			mainRoute("198.18.0.0/24", "", link, 0),
			mainRoute("::/0", "fe80::1", link, 1024), // a router advertisement's
			multipath, blackhole,
		},
		wantRules: []string{"32000: from 198.18.0.11 lookup 1000 proto 118"},
		wantRoutes: []string{
			"198.18.0.0/24 dev 7 scope link proto 118 metric 0 table 1000",
			"default via 198.18.0.1 dev 7 proto 118 metric 100 table 1000",
			"10.0.0.0/8 via 198.18.0.254 dev 7 proto 118 metric 0 table 1000",
			"default via fe80::1 dev 7 proto 118 metric 1024 table 1000",
		},
	}, {
		name:       "two gateways with one metric: the kernel takes one, so the plan does",
		up:         true,
		main:       []Route{mainRoute("0.0.0.0/0", "198.18.0.254", link, 5), mainRoute("0.0.0.0/0", "198.18.0.1", link, 5)},
		wantRoutes: []string{"default via 198.18.0.1 dev 7 proto 118 metric 5 table 1000"},
	}, {
		name: "addresses without a rule",
		up:   true,
		addrs: []Addr{tentative, failed, linkScope, zeroconf, addr("127.0.0.2/8"),
			{Prefix: netip.MustParsePrefix("198.18.9.1/24"), Scope: unix.RT_SCOPE_HOST}},
	}, {
		name:       "deprecated addresses keep theirs (connections still use them)",
		up:         true,
		addrs:      []Addr{deprecated},
		main:       []Route{mainRoute("2001:db8::/64", "", link, 256)},
		wantRules:  []string{"32000: from 2001:db8::14 lookup 1000 proto 118"},
		wantRoutes: []string{"2001:db8::/64 dev 7 proto 118 metric 256 table 1000"},
	}, {
		name:      "noprefixroute and host prefixes get no derived route",
		up:        true,
		addrs:     []Addr{noprefix, addr("198.18.6.11/32"), addr("2001:db8:6::11/128")},
		wantRules: []string{"32000: from 198.18.5.11 lookup 1000 proto 118", "32000: from 198.18.6.11 lookup 1000 proto 118", "32000: from 2001:db8:6::11 lookup 1000 proto 118"},
	}, {
		name:       "NetworkManager: noprefixroute, its own prefix route at metric 100",
		up:         true,
		addrs:      []Addr{noprefix},
		main:       []Route{mainRoute("198.18.5.0/24", "", link, 100)},
		wantRules:  []string{"32000: from 198.18.5.11 lookup 1000 proto 118"},
		wantRoutes: []string{"198.18.5.0/24 dev 7 scope link proto 118 metric 100 table 1000"},
	}, {
		name:       "DHCPv6 /128 with the on-link prefix from a router advertisement",
		up:         true,
		addrs:      []Addr{addr("2001:db8:7::1234/128")},
		main:       []Route{mainRoute("2001:db8:7::/64", "", link, 100)},
		wantRules:  []string{"32000: from 2001:db8:7::1234 lookup 1000 proto 118"},
		wantRoutes: []string{"2001:db8:7::/64 dev 7 proto 118 metric 100 table 1000"},
	}, {
		name:      "link down: rules, no routes",
		up:        false,
		addrs:     []Addr{addr("198.18.0.11/24")},
		main:      []Route{mainRoute("198.18.0.0/24", "", link, 0)},
		wantRules: []string{"32000: from 198.18.0.11 lookup 1000 proto 118"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := makePlan(link, c.up, table, prio, c.addrs, c.main)
			if got := strs(p.Rules); !slices.Equal(got, c.wantRules) {
				t.Errorf("rules:\n got %q\nwant %q", got, c.wantRules)
			}
			if got := strs(p.Routes); !slices.Equal(got, c.wantRoutes) {
				t.Errorf("routes:\n got %q\nwant %q", got, c.wantRoutes)
			}
		})
	}
}

func TestDefaultTable(t *testing.T) {
	// The documented example (docs/routing.md); the formula must not change.
	if got := DefaultTable("veth1"); got != 1756059 {
		t.Errorf("DefaultTable(veth1) = %d, want 1756059", got)
	}
	seen := map[int]string{}
	for _, name := range []string{"veth0", "veth1", "veth2", "veth3", "wan1", "lan-b", "a", "abcdefghijklmno"} {
		tb := DefaultTable(name)
		if tb != DefaultTable(name) {
			t.Errorf("DefaultTable(%s) is not stable", name)
		}
		if tb < 1000000 || tb >= 2000000 || CheckTable(tb) != nil {
			t.Errorf("DefaultTable(%s) = %d, out of range", name, tb)
		}
		if other, ok := seen[tb]; ok {
			t.Errorf("DefaultTable(%s) = DefaultTable(%s) = %d", name, other, tb)
		}
		seen[tb] = name
	}
}

func TestCheckTableAndPriority(t *testing.T) {
	for _, tb := range []int{0, -1, 253, 254, 255, 1 << 32} {
		if CheckTable(tb) == nil {
			t.Errorf("CheckTable(%d) accepted", tb)
		}
	}
	for _, tb := range []int{1, 100, 252, 256, 1000000, 1<<32 - 1} {
		if err := CheckTable(tb); err != nil {
			t.Errorf("CheckTable(%d): %v", tb, err)
		}
	}
	for _, p := range []int{0, -1, 32766, 32767, 40000} {
		if CheckPriority(p) == nil {
			t.Errorf("CheckPriority(%d) accepted", p)
		}
	}
	for _, p := range []int{1, 1000, DefaultPriority, 32765} {
		if err := CheckPriority(p); err != nil {
			t.Errorf("CheckPriority(%d): %v", p, err)
		}
	}
}

func TestAlias(t *testing.T) {
	if got := Alias(1756059); got != "vethd table=1756059" {
		t.Errorf("Alias = %q", got)
	}
	for alias, want := range map[string]bool{
		"vethd table=1": true, "vethd table=1756059": true,
		"": false, "vethd": false, "vethd table=": false, "vethd table=x": false,
		"vethd table=5 extra": false, "uplink B": false, "vethd table=99999999999": false,
	} {
		if got := ownAlias(alias); got != want {
			t.Errorf("ownAlias(%q) = %v, want %v", alias, got, want)
		}
	}
}
