package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Source routing under real systemd (issue 8 item 2): vethd@veth1 keeps,
// by itself, a rule per address of veth1 and a table of veth1's routes, so
// that the second lease answers and sends through veth1 — with the
// address and gateway put there by dhclient with vethd's exit hook, and by
// systemd-networkd from a .network file. The container's IPv4 rp_filter is
// strict (RHEL's default), where without source routing veth1's lease is
// not even reachable from off its subnet. Frames are captured on the LAN
// side (tcpdump on lan0) and told apart by source MAC.

// remoteAddr is an off-link host behind the LAN's router: an address on
// lo of the LAN namespace (198.19.0.0/16 is in the test range).
var remoteAddr = netip.MustParseAddr("198.19.50.1")

// routingSetup builds the LAN with an off-link host, strict rp_filter,
// eth0's own lease by dhclient (the first NIC, as on a real machine) and
// vethd@veth1 running; it returns the LAN and veth1's MAC.
func routingSetup(t *testing.T, c *Container) (*LAN, string) {
	t.Helper()
	lan := c.LAN(t)
	c.Run(t, "ip", "-n", lan.Netns, "addr", "add", remoteAddr.String()+"/32", "dev", "lo")
	c.Run(t, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1")
	eth0 := c.DHCP(t, lan.Parent)
	t.Logf("eth0 leased %v", eth0)
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent=eth0\n")
	c.Run(t, "systemctl", "start", "vethd@veth1.service")
	t.Cleanup(func() {
		if t.Failed() && !c.exited() {
			t.Logf("--- journal of vethd@veth1 ---\n%s", c.journal("vethd@veth1.service"))
			out, _ := c.RunErr("sh", "-c", "ip rule; ip route show table all dev veth1; ip -n lan neigh")
			t.Logf("--- rules, routes, LAN neighbours ---\n%s", out)
		}
	})
	mac := c.sysfs("veth1", "address")
	if mac == "" {
		t.Fatal("veth1 does not exist")
	}
	return lan, mac
}

// sourceRule is the rule of vethd's table for a, or "" if there is none.
func (c *Container) sourceRule(t *testing.T, a netip.Addr) string {
	t.Helper()
	for _, l := range strings.Split(c.Run(t, "ip", "-4", "rule", "show"), "\n") {
		if strings.Contains(l, "from "+a.String()+" lookup ") && strings.Contains(l, "proto 118") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return ""
}

// captureSources runs send in the container while tcpdump on the LAN's
// lan0 captures count frames matching filter, and returns each frame's
// source MAC. send's error fails the test.
func (c *Container) captureSources(t *testing.T, lan *LAN, filter string, count int, send ...string) []string {
	t.Helper()
	script := fmt.Sprintf(`ip netns exec %s timeout 8 tcpdump -Z root -l -i lan0 -nn -e -c %d '%s' >/run/e2e-cap.txt 2>/run/e2e-cap.err &
cap=$!
for i in $(seq 50); do grep -q listening /run/e2e-cap.err 2>/dev/null && break; sleep 0.1; done
%s || echo "SEND FAILED: $?"
wait $cap
cat /run/e2e-cap.txt
sed 's/^/TCPDUMP: /' /run/e2e-cap.err`, lan.Netns, count, filter, strings.Join(send, " "))
	out, err := c.RunErr("sh", "-c", script)
	if err != nil || strings.Contains(out, "SEND FAILED") {
		t.Fatalf("%s: %v\n%s", strings.Join(send, " "), err, out)
	}
	var macs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == ">" {
			macs = append(macs, f[1])
		}
	}
	if len(macs) != count {
		t.Logf("capture %q:\n%s", filter, out)
	}
	return macs
}

// checkThroughVeth1 shows veth1's lease b answering and sending through
// veth1: echo replies to an off-link host, and the host's own echo
// requests from b to it, all with veth1's MAC on the wire; vethd's TX
// counter rises by as much; the LAN maps b to veth1's MAC.
func (c *Container) checkThroughVeth1(t *testing.T, lan *LAN, b netip.Addr, mac string) {
	t.Helper()
	const n = 3
	txBefore := c.busCounter(t, "veth1", "TxPackets")
	replies := c.captureSources(t, lan, "icmp[icmptype] == icmp-echoreply and src host "+b.String(), n,
		"ip", "netns", "exec", lan.Netns, "ping", "-n", "-q", "-c", fmt.Sprint(n), "-i", "0.2", "-W", "2", "-I", remoteAddr.String(), b.String())
	requests := c.captureSources(t, lan, "icmp[icmptype] == icmp-echo and src host "+b.String(), n,
		"ping", "-n", "-q", "-c", fmt.Sprint(n), "-i", "0.2", "-W", "2", "-I", b.String(), remoteAddr.String())
	txAfter := c.busCounter(t, "veth1", "TxPackets")
	t.Logf("echo replies from %s on the wire by source MAC %v; echo requests %v; vethd TxPackets %d → %d (veth1 is %s)",
		b, replies, requests, txBefore, txAfter, mac)
	for what, macs := range map[string][]string{"echo replies to the remote": replies, "ping -I " + b.String(): requests} {
		if len(macs) != n {
			t.Errorf("%s: %d frames captured, want %d", what, len(macs), n)
		}
		for _, m := range macs {
			if m != mac {
				t.Errorf("%s: a frame from %s, not veth1's %s", what, m, mac)
			}
		}
	}
	if txAfter-txBefore < 2*n {
		t.Errorf("vethd relayed %d frames from veth1, want at least %d", txAfter-txBefore, 2*n)
	}
	neigh := c.Run(t, "ip", "-n", lan.Netns, "neigh", "show", b.String())
	if !strings.Contains(neigh, "lladdr "+mac) {
		t.Errorf("the LAN's neighbour entry for %s: %q, want veth1's MAC %s", b, neigh, mac)
	}
}

// busCounter reads a counter property (t) of a bridge with busctl.
func (c *Container) busCounter(t *testing.T, ifname, prop string) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscanf(c.busProp(t, ifname, prop), "t %d", &n); err != nil {
		t.Fatalf("busctl %s %s: %v", ifname, prop, err)
	}
	return n
}

// TestE2ESourceRoutingDHClient: vethd@veth1 with dhclient and the hook
// dist/dhclient/vethd (what `make install` puts into
// /etc/dhcp/dhclient-exit-hooks.d): the lease's gateway lands in veth1's
// table, and veth1's lease answers an off-link host and sends to it
// through veth1.
func TestE2ESourceRoutingDHClient(t *testing.T) {
	stage := stageInstall(t)
	hook, err := os.ReadFile(filepath.Join(stage, "etc", "dhcp", "dhclient-exit-hooks.d", "vethd"))
	if err != nil {
		t.Fatalf("the staged install has no dhclient hook: %v", err)
	}
	c := Boot(t, stage)
	c.ReloadBus(t)
	c.WriteFile(t, "/etc/dhcp/dhclient-exit-hooks.d/vethd", string(hook))
	lan, mac := routingSetup(t, c)

	b := c.DHCP(t, "veth1").Addr()
	t.Logf("veth1 leased %s", b)
	table := ""
	waitUntil(t, 5*time.Second, "vethd's rule for veth1's lease", func() (bool, string) {
		r := c.sourceRule(t, b)
		if _, tb, ok := strings.Cut(r, " lookup "); ok {
			table, _, _ = strings.Cut(tb, " ")
		}
		return r != "", c.Run(t, "ip", "rule")
	})
	routes := c.Run(t, "ip", "-4", "route", "show", "table", table)
	t.Logf("rule %q; table %s:\n%s", c.sourceRule(t, b), table, routes)
	if !strings.Contains(routes, "default via "+lanRouter.String()+" dev veth1 proto dhcp") {
		t.Errorf("the hook did not hand veth1's gateway over to table %s:\n%s", table, routes)
	}
	if a := c.sysfs("veth1", "ifalias"); a != "vethd table="+table {
		t.Errorf("veth1's alias %q", a)
	}
	if j := c.journal("vethd@veth1.service"); !strings.Contains(j, "Source routing for veth1: table="+table) {
		t.Errorf("the journal does not say vethd routes veth1:\n%s", j)
	}
	c.checkThroughVeth1(t, lan, b, mac)

	// A restart keeps veth1 (TAP in the fd store) and its routing.
	c.Run(t, "systemctl", "restart", "vethd@veth1.service")
	waitUntil(t, 5*time.Second, "the rule after the restart", func() (bool, string) {
		return c.sourceRule(t, b) != "", c.Run(t, "ip", "rule")
	})
	c.checkThroughVeth1(t, lan, b, mac)
	const kept = "systemd restarts vethd@veth1.service (job restart): keeping the interfaces for the next vethd"
	if j := c.journal("vethd@veth1.service"); strings.Count(j, kept) != 1 {
		t.Errorf("the journal does not say once %q:\n%s", kept, j)
	}

	// Stop removes the rule (and vethd does not keep the interface).
	c.Run(t, "systemctl", "stop", "vethd@veth1.service")
	if r := c.sourceRule(t, b); r != "" {
		t.Errorf("rule %q left after the stop", r)
	}
	if j := c.journal("vethd@veth1.service"); strings.Count(j, kept) != 1 || !strings.Contains(j, "Source routing for veth1 ended") {
		t.Errorf("the stop kept the interfaces, or did not end the routing:\n%s", j)
	}
}

// TestE2ESourceRoutingNetworkd: vethd@veth1 configured by
// systemd-networkd (a .network file with DHCP=yes): networkd puts veth1's
// gateway into main at a metric of its own, vethd copies it into veth1's
// table, and veth1's lease answers and sends through veth1.
func TestE2ESourceRoutingNetworkd(t *testing.T) {
	stage := stageInstall(t)
	c := Boot(t, stage)
	c.ReloadBus(t)
	lan, mac := routingSetup(t, c)
	c.WriteFile(t, "/etc/systemd/network/60-veth1.network", "[Match]\nName=veth1\n\n[Network]\nDHCP=yes\n")
	c.Run(t, "systemctl", "restart", "systemd-networkd.service")
	t.Cleanup(func() {
		if t.Failed() && !c.exited() {
			t.Logf("--- journal of systemd-networkd ---\n%s", c.journal("systemd-networkd.service"))
		}
	})
	var b netip.Addr
	waitUntil(t, 30*time.Second, "networkd leases veth1 an address and vethd routes it", func() (bool, string) {
		for _, a := range c.addrs4(t, "veth1") {
			if lan.Prefix.Contains(a.Addr()) {
				b = a.Addr()
			}
		}
		return b.IsValid() && c.sourceRule(t, b) != "", fmt.Sprint(c.addrs4(t, "veth1"))
	})
	rule := c.sourceRule(t, b)
	_, table, _ := strings.Cut(rule, " lookup ")
	table, _, _ = strings.Cut(table, " ")
	waitUntil(t, 10*time.Second, "veth1's gateway in its table", func() (bool, string) {
		routes := c.Run(t, "ip", "-4", "route", "show", "table", table)
		return strings.Contains(routes, "default via "+lanRouter.String()+" dev veth1 proto 118"), routes
	})
	t.Logf("veth1 leased %s by networkd; rule %q; table %s:\n%s", b, rule, table, c.Run(t, "ip", "-4", "route", "show", "table", table))
	c.checkThroughVeth1(t, lan, b, mac)
}
