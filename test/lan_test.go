package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lanNumbers hands out the LAN numbers X (1 to maxLANs), which pick the
// subnets 198.18.X.0/24 and 2001:db8:X::/64 and name the namespaces. A
// number is free again once its LAN is torn down, so a run of any length
// (go test -count=50) never runs out; only maxLANs LANs at once would.
var lanNumbers struct {
	mu   sync.Mutex
	used [maxLANs + 1]bool
}

// maxLANs is how many LANs may exist at once: X stays a byte, below the
// broadcast-looking 255.
const maxLANs = 250

// takeLANNumber returns the lowest free LAN number, given back by t's
// clean-up after every clean-up registered later (the namespaces').
func takeLANNumber(t *testing.T) int {
	t.Helper()
	lanNumbers.mu.Lock()
	defer lanNumbers.mu.Unlock()
	for x := 1; x <= maxLANs; x++ {
		if !lanNumbers.used[x] {
			lanNumbers.used[x] = true
			t.Cleanup(func() {
				lanNumbers.mu.Lock()
				lanNumbers.used[x] = false
				lanNumbers.mu.Unlock()
			})
			return x
		}
	}
	t.Fatalf("more than %d LANs at once", maxLANs)
	return 0
}

// nsSeq numbers the other namespaces of this run (names only).
var nsSeq atomic.Int32

// LANConfig says which services the LAN namespace runs on lan0.
type LANConfig struct {
	DHCP bool // dnsmasq hands out 198.18.X.100–199/24
	RA   bool // dnsmasq sends router advertisements for 2001:db8:X::/64 (SLAAC only)
}

// LAN is a wire between two namespaces:
//
//	LAN namespace (vt-PID-X-lan)            host namespace (vt-PID-X-host)
//	  lan0 198.18.X.1/24, 2001:db8:X::1/64 ═══ eth0 (the parent)
//	  dnsmasq (DHCP and/or RA) on lan0          vethd / macvlan → veth1, …
//
// The pair is created inside the namespaces (ip -n HOST link add eth0 type
// veth peer name lan0 netns LAN), so nothing ever shows up in the root
// namespace, even briefly. Both namespaces, and every process in them, go
// away with the test.
type LAN struct {
	X       int
	Dir     string // files of this LAN (leases, pid files, scripts) under suiteRoot
	LANNS   *Netns
	Host    *Netns
	Router4 netip.Addr // lan0's IPv4 address, 198.18.X.1
	Router6 netip.Addr // lan0's IPv6 address, 2001:db8:X::1
	LAN0MAC net.HardwareAddr
	Prefix6 netip.Prefix // 2001:db8:X::/64

	cfg     LANConfig
	t       *testing.T
	dnsmasq *Proc
}

// NewLAN builds a LAN for the test; it is torn down by t.Cleanup.
func NewLAN(t *testing.T, cfg LANConfig) *LAN {
	t.Helper()
	needRoot(t)
	needTools(t, "ip")
	if cfg.DHCP || cfg.RA {
		needTools(t, "dnsmasq")
	}
	l := newLANNamespaces(t, cfg)

	// The host namespace gets two (or more) interfaces on one subnet: eth0
	// and the virtual ones. Nothing is set here to make that work: vethd
	// isolates ARP on both (arp_ignore/arp_announce, per device) and routes
	// the virtual NIC's addresses out of it by itself, whatever rp_filter
	// the namespace inherits (tests that emulate a distribution's set it).
	// Only SLAAC is turned on for whatever link appears (the TAP is
	// created by vethd), as a host that takes router advertisements has it.
	for _, scope := range []string{"all", "default"} {
		l.Host.Sysctl(t, "net.ipv6.conf."+scope+".accept_ra", "1")
		l.Host.Sysctl(t, "net.ipv6.conf."+scope+".autoconf", "1")
	}
	l.Host.Sysctl(t, "net.ipv6.conf.all.forwarding", "0")
	// lan0 is the only station on its side: no duplicate address
	// detection, so its link-local address (the source of dnsmasq's RAs)
	// is usable at once instead of a second later, after the host's first
	// router solicitation went unanswered.
	l.LANNS.Sysctl(t, "net.ipv6.conf.all.accept_dad", "0")
	l.LANNS.Sysctl(t, "net.ipv6.conf.default.accept_dad", "0")

	l.createWire("eth0")
	if cfg.DHCP || cfg.RA {
		l.startDnsmasq()
	}
	return l
}

// newLANNamespaces makes the next LAN's numbers, directory and its two
// namespaces (LAN and host), with nothing in them yet.
func newLANNamespaces(t *testing.T, cfg LANConfig) *LAN {
	t.Helper()
	x := takeLANNumber(t)
	dir, err := os.MkdirTemp(suiteRoot, fmt.Sprintf("lan%d-", x))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	id := fmt.Sprintf("%s%d", nsPrefix, x)
	l := &LAN{
		X:       x,
		Dir:     dir,
		cfg:     cfg,
		t:       t,
		Router4: netip.AddrFrom4([4]byte{198, 18, byte(x), 1}),
		Router6: netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", x)),
		Prefix6: netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/64", x)),
		LAN0MAC: net.HardwareAddr{0x02, 0x7e, 0x00, 0x00, byte(x), 0x01},
	}
	l.LANNS = newNetns(t, id+"-lan")
	l.Host = newNetns(t, id+"-host")
	return l
}

// Addr4 returns 198.18.X.host.
func (l *LAN) Addr4(host byte) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(l.X), host}) }

// createWire creates the parent pair: eth0 (named parent) in the host
// namespace, lan0 with a fixed MAC and its addresses in the LAN namespace.
func (l *LAN) createWire(parent string) {
	t := l.t
	l.Host.IP(t, "link", "add", parent, "type", "veth", "peer", "name", "lan0",
		"address", l.LAN0MAC.String(), "netns", l.LANNS.Name)
	l.LANNS.IP(t, "addr", "add", l.Router4.String()+"/24", "dev", "lan0")
	l.LANNS.IP(t, "addr", "add", l.Router6.String()+"/64", "dev", "lan0", "nodad")
	l.LANNS.IP(t, "link", "set", "lan0", "up")
	l.Host.IP(t, "link", "set", parent, "up")
}

// DeleteWire deletes the parent (and with it lan0).
func (l *LAN) DeleteWire(parent string) {
	l.t.Helper()
	l.Host.IP(l.t, "link", "del", parent)
}

// RecreateWire re-creates a deleted parent pair under the name eth0: lan0
// comes back with the same MAC and addresses (the LAN's router did not
// change; the host got a new NIC). dnsmasq is restarted because its DHCP
// socket was bound to the old lan0.
func (l *LAN) RecreateWire() {
	l.t.Helper()
	if l.dnsmasq != nil {
		l.dnsmasq.Stop(3 * time.Second)
		l.dnsmasq = nil
	}
	l.createWire("eth0")
	if l.cfg.DHCP || l.cfg.RA {
		l.startDnsmasq()
	}
}

// LeaseFile is dnsmasq's lease database.
func (l *LAN) LeaseFile() string { return filepath.Join(l.Dir, "dnsmasq.leases") }

// startDnsmasq runs dnsmasq in the LAN namespace, serving lan0 only, with
// DNS off, no config file, and its lease and pid files under l.Dir
// (--user=root: l.Dir is root-only, and dnsmasq would otherwise drop to a
// user that cannot write its lease file there).
func (l *LAN) startDnsmasq() {
	t := l.t
	t.Helper()
	argv := []string{"dnsmasq",
		"--keep-in-foreground", "--log-facility=-", "--log-dhcp",
		"--conf-file=/dev/null", "--port=0",
		"--bind-interfaces", "--interface=lan0", "--except-interface=lo",
		"--user=root", "--group=root",
		"--dhcp-leasefile=" + l.LeaseFile(),
		"--pid-file=" + filepath.Join(l.Dir, "dnsmasq.pid"),
	}
	if l.cfg.DHCP {
		argv = append(argv,
			fmt.Sprintf("--dhcp-range=%s,%s,255.255.255.0,1h", l.Addr4(100), l.Addr4(199)),
			"--dhcp-authoritative",
			// No ICMP probe of an address before offering it: this LAN
			// has nothing but our clients, and the probe costs seconds.
			"--no-ping")
	}
	if l.cfg.RA {
		argv = append(argv, "--enable-ra", "--dhcp-range=::,constructor:lan0,ra-only,64,1h")
	}
	l.dnsmasq = startProc(t, l.LANNS, "dnsmasq", argv...)
	if err := l.dnsmasq.WaitLine("started, version", 10*time.Second); err != nil {
		t.Fatalf("dnsmasq: %v\n%s", err, l.dnsmasq.Output())
	}
	if l.cfg.DHCP {
		if err := l.dnsmasq.WaitLine("DHCP, sockets bound", 10*time.Second); err != nil {
			t.Fatalf("dnsmasq DHCP: %v\n%s", err, l.dnsmasq.Output())
		}
	}
}

// Leases returns dnsmasq's leases as MAC → IPv4 address.
func (l *LAN) Leases(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(l.LeaseFile())
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read lease file: %v", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		// expiry MAC IP hostname client-id
		f := strings.Fields(line)
		if len(f) >= 3 && strings.Count(f[1], ":") == 5 {
			m[strings.ToLower(f[1])] = f[2]
		}
	}
	return m
}

// MAC returns the MAC address of a link in the host namespace.
func (l *LAN) MAC(t *testing.T, name string) net.HardwareAddr {
	t.Helper()
	return l.Host.MustLink(t, name).Attrs().HardwareAddr
}

// SetStatic gives a host-namespace link a static address 198.18.X.host/24.
func (l *LAN) SetStatic(t *testing.T, link string, host byte) netip.Addr {
	t.Helper()
	a := l.Addr4(host)
	l.Host.IP(t, "addr", "add", a.String()+"/24", "dev", link)
	return a
}

// Addrs4 returns the IPv4 addresses of a host-namespace link.
func (l *LAN) Addrs4(t *testing.T, link string) []netip.Addr {
	t.Helper()
	return addrsOf(t, l.Host, link, netlink.FAMILY_V4, false)
}

// addrsOf lists a link's addresses of a family; usable=true keeps only
// global, non-tentative ones.
func addrsOf(t *testing.T, ns *Netns, link string, family int, usable bool) []netip.Addr {
	t.Helper()
	lk := ns.Link(link)
	if lk == nil {
		return nil
	}
	as, err := netlinksafe.RetryDump(func() ([]netlink.Addr, error) { return ns.NL.AddrList(lk, family) })
	if err != nil {
		t.Fatalf("addresses of %s: %v", link, err)
	}
	var out []netip.Addr
	for _, a := range as {
		if usable && (a.Scope != unix.RT_SCOPE_UNIVERSE || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0) {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// DHCP runs dhclient -4 -1 -d on a host-namespace link and waits for the
// lease to be applied; it returns the leased address. dhclient stays in the
// foreground (killed at cleanup) instead of forking away. It runs with a
// config file, a script, a pid file and a lease file of its own under
// l.Dir: the script only adds the address, so the stock dhclient-script
// never runs and the machine's /etc/resolv.conf is never touched.
func (l *LAN) DHCP(t *testing.T, link string) netip.Addr {
	t.Helper()
	needTools(t, "dhclient")
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(l.Dir, "dhclient-script")
	if _, err := os.Stat(script); err != nil {
		// dnsmasq on this LAN always hands out /24s.
		body := fmt.Sprintf(`#!/bin/sh
# Test stand-in for dhclient-script: addresses only; no routes, no DNS.
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
	if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
		%[1]s addr del "$old_ip_address/24" dev "$interface"
	fi
	exec %[1]s addr replace "$new_ip_address/24" dev "$interface" ;;
esac
exit 0
`, ipBin)
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		conf := "timeout 30;\ninitial-interval 1;\nbackoff-cutoff 2;\nrequest subnet-mask, broadcast-address;\n"
		if err := os.WriteFile(filepath.Join(l.Dir, "dhclient.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := startProc(t, l.Host, "dhclient "+link, "dhclient", "-4", "-1", "-d", "-v",
		"-cf", filepath.Join(l.Dir, "dhclient.conf"),
		"-sf", script,
		"-pf", filepath.Join(l.Dir, "dhclient-"+link+".pid"),
		"-lf", filepath.Join(l.Dir, "dhclient-"+link+".leases"),
		link)
	var got netip.Addr
	err = poll(30*time.Second, func() (bool, string) {
		for _, a := range l.Addrs4(t, link) {
			if a.As4()[2] == byte(l.X) && a.As4()[3] >= 100 && a.As4()[3] < 200 {
				got = a
				return true, ""
			}
		}
		if !p.Running() {
			return true, "dhclient exited"
		}
		return false, fmt.Sprint(l.Addrs4(t, link))
	})
	if err != nil || !got.IsValid() {
		t.Fatalf("dhclient on %s: no lease (%v)\n%s", link, err, p.Output())
	}
	return got
}

// StartVethd runs `vethd -v name -e parent extra…` in the host namespace and
// waits for "Attached NAME into PARENT" (10 s). It is stopped at cleanup;
// its stderr is logged if the test fails.
func (l *LAN) StartVethd(t *testing.T, name, parent string, extra ...string) *Proc {
	t.Helper()
	p := l.SpawnVethd(t, append([]string{"-v", name, "-e", parent}, extra...)...)
	want := fmt.Sprintf("Attached %s into %s", name, parent)
	if err := p.WaitLine(want, 10*time.Second); err != nil {
		t.Fatalf("vethd %s: %v\n%s", name, err, p.Output())
	}
	return p
}

// SpawnVethd starts vethd with args in the host namespace and returns
// without waiting for anything.
func (l *LAN) SpawnVethd(t *testing.T, args ...string) *Proc {
	t.Helper()
	needVethd(t)
	return startProc(t, l.Host, "vethd "+strings.Join(args, " "), append([]string{vethdBin}, args...)...)
}

// AddMacvlan creates a kernel macvlan (bridge mode) on the parent: the
// stand-in used to check the harness itself. The kernel's macvlan does not
// isolate ARP by itself (vethd does), so the control sets, deliberately,
// on both links what vethd sets: arp_ignore=1, arp_announce=2.
func (l *LAN) AddMacvlan(t *testing.T, name, parent string) {
	t.Helper()
	l.Host.IP(t, "link", "add", name, "link", parent, "type", "macvlan", "mode", "bridge")
	for _, dev := range []string{parent, name} {
		l.Host.Sysctl(t, "net.ipv4.conf."+dev+".arp_ignore", "1")
		l.Host.Sysctl(t, "net.ipv4.conf."+dev+".arp_announce", "2")
	}
	l.Host.IP(t, "link", "set", name, "up")
}
