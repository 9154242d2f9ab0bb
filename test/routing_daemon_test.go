package integration

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/srcroute"
)

// The daemon's source routing (issue 8 item 2, wired into vethd): the real
// vethd binary on a namespace LAN, with nothing set by the test but the
// addresses (no arp_ignore/arp_announce, no rules, no ping -I needed) and,
// to emulate distributions' defaults, rp_filter on the host. What the
// Router itself decides is pkg/srcroute's tests' (TestSourceRouting and
// friends, which run a Router of their own beside vethd
// --source-routing=no); these show that vethd runs it, for every way an
// address gets onto veth1, and cleans up after itself and after kill -9.

// rule is the rule vethd keeps for a, as ip prints it.
func rule(a netip.Addr, table int) string {
	return fmt.Sprintf("32000: from %s lookup %d proto 118", a, table)
}

// runChecks runs every check, IPv4 and IPv6 (v6 false: IPv4 only), and
// fails for each whose frames did not leave by the NIC of its source
// address (veth1 for B, eth0 for A) or that went unanswered.
func (s *srcLAN) runChecks(t *testing.T, v6s ...bool) {
	t.Helper()
	for _, v6 := range v6s {
		for _, c := range s.checks(v6) {
			out, err := s.observe(c)
			name := fmt.Sprintf("v%d %s", map[bool]int{false: 4, true: 6}[v6], c.name)
			t.Logf("%-26s %-6s (%v)", name, out, errOK(err))
			want := viaEth
			if c.fromB {
				want = viaVirt
			}
			if out != want || err != nil {
				t.Errorf("%s: %s (%v), want %s and an answer", name, out, errOK(err), want)
			}
		}
	}
}

// lanNeighbour returns the MAC the LAN namespace's neighbour table has
// for a ("" if none).
func (s *srcLAN) lanNeighbour(t *testing.T, a netip.Addr) string {
	t.Helper()
	f := strings.Fields(s.LANNS.IP(t, "neigh", "show", a.String(), "dev", "lan0"))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

// TestDaemonSourceRouting: vethd routes veth1 by itself. With the host's
// rp_filter left at the namespace's default and set to 1 and 2, after a
// plain `ip addr add` on both NICs, everything veth1's address B sends —
// echo replies to the LAN and to an off-link host, SYN-ACKs, ping -I B, a
// socket bound to B — leaves by veth1 with veth1's MAC (captured on the
// LAN side), and what A sends by eth0; the LAN maps B to veth1's MAC.
func TestDaemonSourceRouting(t *testing.T) {
	for _, rp := range []string{"", "1", "2"} {
		name := "rp_filter=" + rp
		if rp == "" {
			name = "rp_filter=default"
		}
		t.Run(name, func(t *testing.T) {
			s := newSrcLAN(t, rp, LANConfig{})
			table := srcroute.DefaultTable("veth1")
			if err := s.vethd.WaitLine(fmt.Sprintf("Source routing for veth1: table=%d priority=32000", table), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("host rp_filter: all=%s", s.Host.ProcSys(t, "net.ipv4.conf.all.rp_filter"))
			if a := s.Host.MustLink(t, "veth1").Attrs().Alias; a != srcroute.Alias(table) {
				t.Errorf("veth1's alias %q, want %q", a, srcroute.Alias(table))
			}
			s.addressStatic(t)
			waitRules(t, s.Host, table, rule(s.B4, table), rule(s.B6, table))
			s.runChecks(t, false, true)
			if got := s.lanNeighbour(t, s.B4); got != s.virtMAC {
				t.Errorf("the LAN's neighbour entry for %s: %q, want veth1's MAC %s", s.B4, got, s.virtMAC)
			}
			if got := s.lanNeighbour(t, s.A4); got != s.ethMAC {
				t.Errorf("the LAN's neighbour entry for %s: %q, want eth0's MAC %s", s.A4, got, s.ethMAC)
			}

			// The address goes: so does its rule. vethd's stop removes
			// the rest.
			s.Host.IP(t, "addr", "del", s.B4.String()+"/24", "dev", "veth1")
			waitRules(t, s.Host, table, rule(s.B6, table))
			s.vethd.Stop(5 * time.Second)
			waitRules(t, s.Host, table)
			if got := s.Host.IP(t, "route", "show", "table", "all", "proto", "118"); strings.TrimSpace(got) != "" {
				t.Errorf("vethd's routes after its stop:\n%s", got)
			}
		})
	}
}

// TestDaemonSourceRoutingVeth: the same with Kind=veth (veth1 one end of
// a veth pair whose peer vd-veth1 vethd relays), rp_filter=1: the peer
// gets no rule, veth1's address still answers and sends through veth1.
func TestDaemonSourceRoutingVeth(t *testing.T) {
	s := newSrcLAN(t, "1", LANConfig{}, "--kind=veth")
	table := srcroute.DefaultTable("veth1")
	if err := s.vethd.WaitLine("Source routing for veth1: table=", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s.addressStatic(t)
	waitRules(t, s.Host, table, rule(s.B4, table), rule(s.B6, table))
	s.runChecks(t, false, true)
	if got := s.lanNeighbour(t, s.B4); got != s.virtMAC {
		t.Errorf("the LAN's neighbour entry for %s: %q, want veth1's MAC %s", s.B4, got, s.virtMAC)
	}
}

// TestDaemonSourceRoutingDHClient: dhclient with Debian's dhclient-script
// and the hook (dist/dhclient/vethd) on eth0 and veth1, rp_filter=1:
// veth1's lease answers the LAN and an off-link host through veth1, and
// what the host sends from it (ping -I, to the LAN and off-link via the
// gateway the hook handed over) leaves by veth1.
func TestDaemonSourceRoutingDHClient(t *testing.T) {
	s := newSrcLAN(t, "1", LANConfig{DHCP: true})
	table := srcroute.DefaultTable("veth1")
	if err := s.vethd.WaitLine("Source routing for veth1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	e := newDHClientEnv(t, s.LAN)
	e.installHook(t)
	_, a := e.lease(t, s.LAN, "eth0")
	p, b := e.lease(t, s.LAN, "veth1")
	t.Logf("eth0 leased %s, veth1 leased %s", a, b)
	waitRules(t, s.Host, table, rule(b, table))
	waitTable(t, s.Host, table, true, fmt.Sprintf("default via %s dev veth1 proto dhcp", s.Router4))
	t.Logf("table %d: %q", table, tableOf(t, s.Host, table))
	for _, c := range []check{
		{name: "LAN pings B", kind: "echo-reply", src: b, dst: s.Router4,
			run: func() error { return ping1(s.LANNS, b.String()) }},
		{name: "remote pings B", kind: "echo-reply", src: b, dst: s.Remote4,
			run: func() error { return ping1(s.LANNS, "-I", s.Remote4.String(), b.String()) }},
		{name: "ping -I B (LAN)", kind: "echo-request", src: b, dst: s.Router4,
			run: func() error { return ping1(s.Host, "-I", b.String(), s.Router4.String()) }},
		{name: "ping -I B (remote)", kind: "echo-request", src: b, dst: s.Remote4,
			run: func() error { return ping1(s.Host, "-I", b.String(), s.Remote4.String()) }},
		{name: "TCP socket bound to B (remote)", kind: "syn", src: b, dst: s.Remote4,
			run: func() error { return dialTCP(s.Host, b, netip.AddrPortFrom(s.Remote4, uint16(s.lanPort))) }},
		{name: "ping -I A (remote)", kind: "echo-request", src: a, dst: s.Remote4,
			run: func() error { return ping1(s.Host, "-I", a.String(), s.Remote4.String()) }},
	} {
		out, err := s.observe(c)
		t.Logf("%-30s %-6s (%v)", c.name, out, errOK(err))
		want := viaVirt
		if c.src == a {
			want = viaEth
		}
		if out != want || err != nil {
			t.Errorf("%s: %s (%v), want %s and an answer", c.name, out, errOK(err), want)
		}
	}
	if got := s.lanNeighbour(t, b); got != s.virtMAC {
		t.Errorf("the LAN's neighbour entry for %s: %q, want veth1's MAC %s", b, got, s.virtMAC)
	}
	e.release(t, s.LAN, p, "veth1")
	waitRules(t, s.Host, table)
}

// TestDaemonSourceRoutingOff: --source-routing=no keeps no rule, no
// table and no alias, and removes what an earlier run left.
func TestDaemonSourceRoutingOff(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	table := srcroute.DefaultTable("veth1")
	b := l.Addr4(11)
	// An earlier run's leftover, and an admin's rule into the same table.
	l.Host.IP(t, "rule", "add", "from", l.Addr4(12).String(), "lookup", fmt.Sprint(table), "priority", "32000", "protocol", "118")
	l.Host.IP(t, "rule", "add", "from", l.Addr4(77).String(), "lookup", fmt.Sprint(table), "priority", "32000")
	p := l.StartVethd(t, "veth1", "eth0", "--source-routing=no")
	l.Host.IP(t, "addr", "add", b.String()+"/24", "dev", "veth1")
	foreign := fmt.Sprintf("32000: from %s lookup %d", l.Addr4(77), table)
	waitRules(t, l.Host, table, foreign)
	time.Sleep(300 * time.Millisecond) // time enough for a rule that should not come
	if got := rulesOf(t, l.Host, table); len(got) != 1 || got[0] != foreign {
		t.Errorf("rules with --source-routing=no: %q, want only %q", got, foreign)
	}
	// The kernel has no such table at all ("FIB table does not exist").
	if out, err := l.Host.Run("ip", "-4", "route", "show", "table", fmt.Sprint(table)); err == nil && strings.TrimSpace(out) != "" {
		t.Errorf("table %d with --source-routing=no:\n%s", table, out)
	}
	if a := l.Host.MustLink(t, "veth1").Attrs().Alias; a != "" {
		t.Errorf("veth1's alias %q with --source-routing=no", a)
	}
	if strings.Contains(p.Output(), "Source routing for veth1") {
		t.Errorf("vethd says it routes veth1:\n%s", p.Output())
	}
}

// TestDaemonSourceRoutingKill9: vethd killed with SIGKILL leaves its rules
// (its TAP goes with the process); the next vethd removes the stale ones
// and keeps exactly one rule per address of the new veth1.
func TestDaemonSourceRoutingKill9(t *testing.T) {
	s := newSrcLAN(t, "1", LANConfig{})
	table := srcroute.DefaultTable("veth1")
	c4 := s.Addr4(12)
	s.addressStatic(t)
	s.Host.IP(t, "addr", "add", c4.String()+"/24", "dev", "veth1")
	waitRules(t, s.Host, table, rule(s.B4, table), rule(c4, table), rule(s.B6, table))
	s.vethd.Signal(syscall.SIGKILL)
	if s.vethd.Wait(5*time.Second) == nil {
		t.Fatal("vethd did not die")
	}
	waitFor(t, 5*time.Second, "veth1 gone", func() (bool, string) { return s.Host.Link("veth1") == nil, "" })
	waitRules(t, s.Host, table, rule(s.B4, table), rule(c4, table), rule(s.B6, table))

	start := time.Now()
	s.vethd = s.StartVethd(t, "veth1", "eth0")
	if err := s.vethd.WaitLine("left by an earlier run", 5*time.Second); err != nil {
		t.Errorf("%v\n%s", err, s.vethd.Output())
	}
	waitRules(t, s.Host, table)
	t.Logf("stale rules gone %s after the restart", time.Since(start).Round(time.Millisecond))
	s.addressVirt(t) // B again, not C
	waitRules(t, s.Host, table, rule(s.B4, table), rule(s.B6, table))
	time.Sleep(200 * time.Millisecond)
	if got := rulesOf(t, s.Host, table); len(got) != 2 {
		t.Errorf("rules after the restart: %q, want one per address", got)
	}
	s.runChecks(t, false)
}
