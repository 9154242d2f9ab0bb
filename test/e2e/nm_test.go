package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The NetworkManager tests run Debian's NetworkManager (1.42, installed on
// this machine by scripts/deps.sh and masked here) in the container, over
// the staged install: vethd's /usr/lib/NetworkManager/conf.d/vethd.conf is
// what keeps the peer unmanaged.

const (
	// nmTestConf is the test's own NetworkManager configuration, an
	// admin's /etc/NetworkManager/conf.d file: the container's eth0 (and
	// the control's bridge) is left to others, as ifupdown's interfaces
	// are on Debian. It also checks that vethd's snippet adds to an admin's
	// unmanaged-devices instead of replacing it. Otherwise NetworkManager
	// runs with its defaults, "Wired connection N" profiles for new
	// Ethernet devices included: were the peer managed, it would run DHCP.
	nmTestConf = `[keyfile]
unmanaged-devices=interface-name:eth0;interface-name:br0
`
	// nmProfileName is the profile the test writes: the command of
	// docs/networkmanager.md.
	nmProfileName = "veth1"

	// Bounds of the waits (the measured times are logged).
	nmLeaseWithin   = 30 * time.Second // a device appearing or NM starting → connected with a lease
	nmCarrierWithin = 20 * time.Second // carrier lost → NM leaves connected, routes gone
)

// nmDevice is a row of `nmcli device status`.
type nmDevice struct{ Type, State, Connection string }

// nmDevices returns NetworkManager's devices by name (nil if nmcli fails,
// as while NetworkManager is stopped).
func (c *Container) nmDevices() map[string]nmDevice {
	out, err := c.RunErr("nmcli", "-t", "-f", "DEVICE,TYPE,STATE,CONNECTION", "device", "status")
	if err != nil {
		return nil
	}
	devs := map[string]nmDevice{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, ":", 4)
		if len(f) == 4 {
			devs[f[0]] = nmDevice{Type: f[1], State: f[2], Connection: f[3]}
		}
	}
	return devs
}

// nmDeviceShow returns `nmcli device show IF` (for the log).
func (c *Container) nmDeviceShow(ifname string) string {
	out, _ := c.RunErr("nmcli", "-f", "GENERAL,CAPABILITIES,WIRED-PROPERTIES,IP4", "device", "show", ifname)
	return out
}

// routes4 lists ifname's IPv4 routes in every table (`ip -4 route show
// table all dev IF`: main, local, and vethd's source-routing table), one
// per line.
func (c *Container) routes4(ifname string) []string {
	out, err := c.RunErr("ip", "-4", "route", "show", "table", "all", "dev", ifname)
	if err != nil {
		return nil
	}
	var rs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			rs = append(rs, l)
		}
	}
	return rs
}

// addrs4 is Addrs4 that returns nil when ifname is gone.
func (c *Container) addrs4(t *testing.T, ifname string) []netip.Prefix {
	t.Helper()
	if c.sysfs(ifname, "ifindex") == "" {
		return nil
	}
	return c.Addrs4(t, ifname)
}

// pollFor polls cond every 100 ms until it holds and returns how long that
// took; it fails the test after within with cond's last word.
func pollFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, last := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v (last: %s)", what, within, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nmLeased waits until NetworkManager has ifname connected with the
// test's profile and an IPv4 address on the LAN that dnsmasq leased to
// ifname's MAC, and returns the address and how long it took.
func (c *Container) nmLeased(t *testing.T, lan *LAN, ifname string, within time.Duration) (netip.Prefix, time.Duration) {
	t.Helper()
	var addr netip.Prefix
	took := pollFor(t, within, ifname+" connected by NetworkManager with a lease", func() (bool, string) {
		d, ok := c.nmDevices()[ifname]
		if !ok {
			return false, fmt.Sprintf("NetworkManager has no device %s", ifname)
		}
		addrs := c.addrs4(t, ifname)
		if d.State != "connected" || d.Connection != nmProfileName || len(addrs) == 0 {
			return false, fmt.Sprintf("%+v, addresses %v", d, addrs)
		}
		addr = addrs[0]
		return true, ""
	})
	if !lan.Prefix.Contains(addr.Addr()) {
		t.Fatalf("%s got %v, not on the LAN %v", ifname, addr, lan.Prefix)
	}
	mac := c.sysfs(ifname, "address")
	if leases := lan.Leases(t); !strings.Contains(leases, mac+" "+addr.Addr().String()+" ") {
		t.Fatalf("dnsmasq has no lease of %v for %s (%s):\n%s", addr, ifname, mac, leases)
	}
	return addr, took
}

// nmPeerUnmanaged checks that NetworkManager leaves the peer alone: it
// lists it unmanaged, the peer has no IPv4 address, and dnsmasq never
// leased anything to its MAC.
func (c *Container) nmPeerUnmanaged(t *testing.T, lan *LAN, peer string) {
	t.Helper()
	d, ok := c.nmDevices()[peer]
	if !ok || d.State != "unmanaged" {
		t.Errorf("NetworkManager shows the peer %s as %+v (known: %v), want unmanaged", peer, d, ok)
	}
	if a := c.addrs4(t, peer); len(a) != 0 {
		t.Errorf("the peer %s has IPv4 addresses %v", peer, a)
	}
	if mac := c.sysfs(peer, "address"); mac == "" || strings.Contains(lan.Leases(t), mac) {
		t.Errorf("the peer %s (MAC %q) has a lease from dnsmasq:\n%s", peer, mac, lan.Leases(t))
	}
}

// nmCount counts NetworkManager's journal lines containing s.
func (c *Container) nmCount(s string) int {
	return strings.Count(c.journal("NetworkManager.service"), s)
}

// bootNM boots a container with NetworkManager enabled, gives it the test's
// configuration (restarting it) and the LAN, and returns both. The
// journals of NetworkManager and vethd@veth1 are logged if the test fails.
func bootNM(t *testing.T) (*Container, *LAN) {
	t.Helper()
	requireTools(t, "nmcli", "NetworkManager")
	stage := stageInstall(t)
	c := BootWith(t, stage, BootOptions{NetworkManager: true})
	t.Cleanup(func() {
		if t.Failed() && !c.exited() {
			for _, u := range []string{"NetworkManager.service", "vethd@veth1.service"} {
				t.Logf("--- journal of %s ---\n%s", u, c.journal(u))
			}
			out, _ := c.RunErr("nmcli", "device", "status")
			t.Logf("--- nmcli device status ---\n%s", out)
		}
	})
	if en, _ := c.RunErr("systemctl", "is-enabled", "NetworkManager.service"); strings.TrimSpace(en) != "enabled" {
		t.Fatalf("NetworkManager.service is %q after the first boot, want enabled by the presets", strings.TrimSpace(en))
	}
	c.WriteFile(t, "/etc/NetworkManager/conf.d/90-e2e.conf", nmTestConf)
	c.Run(t, "systemctl", "restart", "NetworkManager.service")
	c.nmRunning(t)
	conf := c.Run(t, "NetworkManager", "--print-config")
	if !strings.Contains(conf, "[device-vethd-peer]") {
		t.Fatalf("NetworkManager does not read vethd's conf.d snippet:\n%s", conf)
	}
	c.ReloadBus(t)
	return c, c.LAN(t)
}

// nmRunning waits until NetworkManager answers and has finished starting.
func (c *Container) nmRunning(t *testing.T) {
	t.Helper()
	pollFor(t, 30*time.Second, "NetworkManager running", func() (bool, string) {
		out, err := c.RunErr("nmcli", "-t", "-f", "RUNNING,STARTUP", "general")
		return err == nil && strings.HasPrefix(out, "running:"), strings.TrimSpace(out)
	})
}

// nmAddProfile writes the admin's profile for veth1 (docs/networkmanager.md).
func (c *Container) nmAddProfile(t *testing.T) {
	t.Helper()
	c.Run(t, "nmcli", "connection", "add", "type", "ethernet", "ifname", "veth1", "con-name", nmProfileName)
}

// nmCarrier takes the wire away (down) or brings it back (up) and checks
// what NetworkManager does: down → veth1 leaves "connected" and its routes
// go; up → it reconnects with a lease, the same address. It returns the
// times.
func nmCarrier(t *testing.T, c *Container, lan *LAN, down, up func()) (lost, back time.Duration) {
	t.Helper()
	addrs := c.addrs4(t, "veth1")
	if len(addrs) == 0 || len(c.routes4("veth1")) == 0 {
		t.Fatalf("veth1 has no routes before the carrier test")
	}
	t.Logf("veth1's routes while connected: %q", c.routes4("veth1"))
	down()
	lost = pollFor(t, nmCarrierWithin, "NetworkManager sees veth1's carrier go", func() (bool, string) {
		d := c.nmDevices()["veth1"]
		rs := c.routes4("veth1")
		return d.State != "connected" && len(rs) == 0, fmt.Sprintf("%+v, routes %q", d, rs)
	})
	t.Logf("carrier off: NetworkManager left connected and removed veth1's routes after %.1fs (now %+v; %s carrier %q)",
		lost.Seconds(), c.nmDevices()["veth1"], "veth1", c.sysfs("veth1", "carrier"))
	t.Logf("NetworkManager's journal:\n%s", grepLines(c.journal("NetworkManager.service"), "device (veth1): state change"))
	up()
	addr, back := c.nmLeased(t, lan, "veth1", nmLeaseWithin)
	t.Logf("carrier on: veth1 connected with a lease (%v) again after %.1fs", addr, back.Seconds())
	if addr != addrs[0] {
		t.Errorf("after the carrier came back veth1 has %v, had %v", addr, addrs[0])
	}
	return lost, back
}

// TestE2ENetworkManager runs real NetworkManager with vethd@veth1 of the
// veth kind (Kind=veth) on the container's eth0: the admin's ethernet
// profile (`nmcli connection add type ethernet ifname veth1`) gets a lease
// with nothing set by hand; it survives `systemctl restart vethd@veth1`
// (same interface, same address, NetworkManager never leaves
// "activated"); the peer vd-veth1 stays unmanaged without a lease; the
// parent's carrier lost (the LAN's end of the wire down) makes
// NetworkManager drop veth1's connection and routes, and its return
// reconnects; and whichever starts first, NetworkManager or vethd, veth1
// ends up with a lease.
func TestE2ENetworkManager(t *testing.T) {
	c, lan := bootNM(t)
	const unit = "vethd@veth1.service"
	c.WriteFile(t, "/etc/vethd/veth1.conf", "[Bridge]\nParent="+lan.Parent+"\nKind=veth\n")

	// 1. The profile, then vethd: NetworkManager activates it on its own.
	c.nmAddProfile(t)
	start := time.Now()
	c.Run(t, "systemctl", "start", unit)
	addr, _ := c.nmLeased(t, lan, "veth1", nmLeaseWithin)
	took := time.Since(start)
	t.Logf("NM running, then `systemctl start %s`: veth1 connected with %v after %.1fs", unit, addr, took.Seconds())
	t.Logf("nmcli device show veth1:\n%s", c.nmDeviceShow("veth1"))
	if d := c.nmDevices()["veth1"]; d.Type != "ethernet" {
		t.Errorf("NetworkManager sees veth1 as a %q device, want ethernet (a veth end)", d.Type)
	}
	if kind := c.Run(t, "ip", "-d", "-o", "link", "show", "veth1"); !strings.Contains(kind, " veth ") {
		t.Fatalf("veth1 is not a veth (Kind=veth):\n%s", kind)
	}
	c.nmPeerUnmanaged(t, lan, "vd-veth1")

	// 2. restart: same interface, same address, still activated.
	ifindex := c.sysfs("veth1", "ifindex")
	leftBefore := c.nmCount("device (veth1): state change: activated ->")
	// The kernel counts every carrier loss; NetworkManager logs its own
	// reaction only after a grace period of seconds.
	carrierBefore := c.sysfs("veth1", "carrier_down_count")
	c.Run(t, "systemctl", "restart", unit)
	if st := c.prop(t, unit, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after restart", unit, st)
	}
	c.Run(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "1", "-W", "5", addr.Addr().String())
	if got := c.sysfs("veth1", "ifindex"); got != ifindex {
		t.Errorf("restart re-created veth1 (ifindex %s → %s)", ifindex, got)
	}
	if a, _ := c.nmLeased(t, lan, "veth1", nmLeaseWithin); a != addr {
		t.Errorf("after the restart veth1 has %v, had %v", a, addr)
	}
	if n := c.sysfs("veth1", "carrier_down_count"); n != carrierBefore {
		t.Errorf("veth1 lost its carrier during the restart (carrier_down_count %s → %s)", carrierBefore, n)
	}
	if n := c.nmCount("device (veth1): state change: activated ->"); n != leftBefore {
		t.Errorf("NetworkManager took veth1 out of activated during the restart:\n%s",
			grepLines(c.journal("NetworkManager.service"), "device (veth1)"))
	}
	c.nmPeerUnmanaged(t, lan, "vd-veth1")

	// 3. The parent's carrier: the LAN's end of the wire down, then up.
	lost, back := nmCarrier(t, c, lan,
		func() { c.Run(t, "ip", "-n", lan.Netns, "link", "set", "lan0", "down") },
		func() { c.Run(t, "ip", "-n", lan.Netns, "link", "set", "lan0", "up") })

	// 4. NetworkManager first, then vethd.
	gone := func() {
		pollFor(t, 10*time.Second, "veth1 removed by stop", func() (bool, string) {
			return c.sysfs("veth1", "ifindex") == "" && c.sysfs("vd-veth1", "ifindex") == "", "veth1 or vd-veth1 still there"
		})
	}
	c.Run(t, "systemctl", "stop", unit)
	gone()
	start = time.Now()
	c.Run(t, "systemctl", "start", unit)
	c.nmLeased(t, lan, "veth1", nmLeaseWithin)
	nmFirst := time.Since(start)
	c.nmPeerUnmanaged(t, lan, "vd-veth1")

	// 5. vethd first, then NetworkManager.
	c.Run(t, "systemctl", "stop", "NetworkManager.service")
	c.Run(t, "systemctl", "stop", unit)
	gone()
	c.Run(t, "systemctl", "start", unit)
	if a := c.addrs4(t, "veth1"); len(a) != 0 {
		t.Fatalf("a fresh veth1 has addresses %v", a)
	}
	start = time.Now()
	c.Run(t, "systemctl", "start", "NetworkManager.service")
	c.nmLeased(t, lan, "veth1", nmLeaseWithin)
	vethdFirst := time.Since(start)
	c.nmPeerUnmanaged(t, lan, "vd-veth1")

	t.Logf("times: lease at first start %.1fs; carrier lost → disconnected, routes gone %.1fs; carrier back → lease %.1fs; NM first then vethd → lease %.1fs; vethd first then NM → lease %.1fs",
		took.Seconds(), lost.Seconds(), back.Seconds(), nmFirst.Seconds(), vethdFirst.Seconds())
}

// TestE2ENetworkManagerControl is TestE2ENetworkManager's NetworkManager
// side with no vethd: a hand-made veth pair veth1/vd-veth1 whose peer is
// bridged to eth0 (br0) stands in for vethd's. It checks the harness and
// the shipped NetworkManager snippet: if TestE2ENetworkManager fails while
// this passes, the fault is vethd's. The carrier goes with the peer taken
// down, which is what vethd does to veth1 when the parent loses its own.
func TestE2ENetworkManagerControl(t *testing.T) {
	c, lan := bootNM(t)
	makePair := func() {
		c.Run(t, "ip", "link", "add", "veth1", "type", "veth", "peer", "name", "vd-veth1")
		c.Run(t, "ip", "link", "set", "vd-veth1", "master", "br0")
		c.Run(t, "ip", "link", "set", "vd-veth1", "up")
	}
	c.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	c.Run(t, "ip", "link", "set", lan.Parent, "master", "br0")
	c.Run(t, "ip", "link", "set", "br0", "up")

	c.nmAddProfile(t)
	start := time.Now()
	makePair()
	addr, _ := c.nmLeased(t, lan, "veth1", nmLeaseWithin)
	first := time.Since(start)
	t.Logf("profile, then the pair: veth1 connected with %v after %.1fs", addr, first.Seconds())
	t.Logf("nmcli device show veth1:\n%s", c.nmDeviceShow("veth1"))
	c.nmPeerUnmanaged(t, lan, "vd-veth1")

	lost, back := nmCarrier(t, c, lan,
		func() { c.Run(t, "ip", "link", "set", "vd-veth1", "down") },
		func() { c.Run(t, "ip", "link", "set", "vd-veth1", "up") })

	// The pair first, then NetworkManager.
	c.Run(t, "systemctl", "stop", "NetworkManager.service")
	c.Run(t, "ip", "link", "del", "veth1")
	makePair()
	start = time.Now()
	c.Run(t, "systemctl", "start", "NetworkManager.service")
	c.nmLeased(t, lan, "veth1", nmLeaseWithin)
	pairFirst := time.Since(start)
	c.nmPeerUnmanaged(t, lan, "vd-veth1")

	t.Logf("times: lease %.1fs; carrier lost → disconnected, routes gone %.1fs; carrier back → lease %.1fs; pair first then NM → lease %.1fs",
		first.Seconds(), lost.Seconds(), back.Seconds(), pairFirst.Seconds())
}

// TestE2ENetworkdPeer checks dist/networkd/10-vethd-peer.network with the
// container's real systemd-networkd: a hand-made veth pair veth1/vd-veth1
// (the peer bridged to eth0, as in TestE2ENetworkManagerControl), an
// admin's .network for veth1 and a catch-all that would run DHCP on every
// other link; vethd's file keeps the peer unmanaged (networkctl says so,
// no address, no lease) while veth1 gets its lease.
func TestE2ENetworkdPeer(t *testing.T) {
	stage := stageInstall(t)
	c := Boot(t, stage)
	lan := c.LAN(t)
	c.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	c.Run(t, "ip", "link", "set", lan.Parent, "master", "br0")
	c.Run(t, "ip", "link", "set", "br0", "up")
	c.Run(t, "ip", "link", "add", "veth1", "type", "veth", "peer", "name", "vd-veth1")
	c.Run(t, "ip", "link", "set", "vd-veth1", "master", "br0")
	c.Run(t, "ip", "link", "set", "vd-veth1", "up")
	c.WriteFile(t, "/etc/systemd/network/60-veth1.network", "[Match]\nName=veth1\n\n[Network]\nDHCP=ipv4\n")
	c.WriteFile(t, "/etc/systemd/network/99-e2e-all.network", "[Match]\nName=!lo eth0 br0\n\n[Network]\nDHCP=ipv4\n")
	// (Re)start: the first boot's presets may have started it already.
	c.Run(t, "systemctl", "restart", "systemd-networkd.service")
	t.Cleanup(func() {
		if t.Failed() && !c.exited() {
			t.Logf("--- journal of systemd-networkd ---\n%s", c.journal("systemd-networkd.service"))
		}
	})

	state := func(ifname string) string {
		out, _ := c.RunErr("networkctl", "list", "--no-legend", "--no-pager", ifname)
		f := strings.Fields(out)
		if len(f) < 5 {
			return strings.TrimSpace(out)
		}
		return f[len(f)-1] // SETUP: configured, configuring, unmanaged, …
	}
	took := pollFor(t, nmLeaseWithin, "networkd: veth1 configured with a lease", func() (bool, string) {
		if st := state("vd-veth1"); st != "unmanaged" && st != "" {
			t.Fatalf("networkctl: vd-veth1 is %q, want unmanaged", st)
		}
		a := c.addrs4(t, "veth1")
		return state("veth1") == "configured" && len(a) > 0, fmt.Sprintf("veth1 %s, addresses %v", state("veth1"), a)
	})
	addr := c.Addrs4(t, "veth1")[0]
	t.Logf("veth1 configured by networkd with %v after %.1fs", addr, took.Seconds())
	if st := state("vd-veth1"); st != "unmanaged" {
		t.Errorf("networkctl: vd-veth1 is %q, want unmanaged", st)
	}
	// (An unmanaged link shows "Network File: n/a".)
	out, _ := c.RunErr("networkctl", "list", "--no-pager")
	t.Logf("networkctl list:\n%s", out)
	if a := c.addrs4(t, "vd-veth1"); len(a) != 0 {
		t.Errorf("vd-veth1 has IPv4 addresses %v", a)
	}
	if mac := c.sysfs("vd-veth1", "address"); strings.Contains(lan.Leases(t), mac) {
		t.Errorf("vd-veth1 (%s) has a lease:\n%s", mac, lan.Leases(t))
	}
}
