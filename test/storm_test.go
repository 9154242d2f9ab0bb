package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// stormRate is what the storm test asks the flooder for; stormMinRate is
// the least the test accepts as a storm (below it, the machine is too
// slow to make one and the test skips).
const (
	stormRate    = 100000
	stormMinRate = 50000
	// stormMaxCPU is the most of one core vethd may use during the
	// storm with its limiter on (measured 5–8 %; off, 40–50 %).
	stormMaxCPU = 20.0
)

// TestStormLimiter: a broadcast storm of ≥ 50k frames/s (IPv4 UDP
// broadcast and IPv6 UDP multicast to ff02::1, from test/internal/flood)
// on the LAN, vethd --instance veth1 from a file without BroadcastLimit=
// (the default). During the storm: the storm-other counter on D-Bus grows
// by about the storm; dhclient renews veth1's lease from dnsmasq
// (INIT-REBOOT with the lease file: DHCPREQUEST, DHCPACK); arping from the
// LAN gets veth1's MAC for its address; an IPv6 ping from the LAN to
// veth1's link-local address, with the LAN's neighbour cache flushed,
// is answered (NDP); and vethd uses less than stormMaxCPU % of a core.
// Then an ARP storm: storm-arp grows, and DHCP and NDP still work.
//
// VETHD_STORM_TEST_LIMIT=off (or a number) writes BroadcastLimit= with it:
// with off the test must fail (no storm drops, CPU 40–50 %).
func TestStormLimiter(t *testing.T) {
	needTools(t, "dhclient", "arping", "ping")
	l := NewLAN(t, LANConfig{DHCP: true})
	conf := "[Bridge]\nParent=eth0\n"
	if v := os.Getenv("VETHD_STORM_TEST_LIMIT"); v != "" {
		conf += "BroadcastLimit=" + v + "\n"
	}
	bus, _, vethd := startOnBus(t, l, conf)
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := dbusapi.NewClient(conn)
	stormDrops := func() uint64 {
		t.Helper()
		_, c, err := client.Get(context.Background(), "veth1")
		if err != nil {
			t.Fatalf("Get veth1: %v", err)
		}
		return c.RxDrops["storm-other"]
	}

	addr := l.DHCP(t, "veth1")
	waitLinkLocal(t, l.Host, "veth1")
	var ll netip.Addr
	for _, a := range addrsOf(t, l.Host, "veth1", unix.AF_INET6, false) {
		if a.IsLinkLocalUnicast() {
			ll = a
		}
	}
	if !ll.IsValid() {
		t.Fatal("veth1 has no link-local address")
	}
	mac := l.MAC(t, "veth1").String()

	flood := startProc(t, l.LANNS, "flood", needFlood(t), "-i", "lan0", "-rate", strconv.Itoa(stormRate), "-kinds", "udp4,udp6")
	warm := time.Now()
	tx0 := l.LANNS.Stat(t, "lan0", "tx_packets")
	time.Sleep(time.Second)
	if r := float64(l.LANNS.Stat(t, "lan0", "tx_packets")-tx0) / time.Since(warm).Seconds(); r < stormMinRate {
		t.Skipf("the flooder reached %.0f frames/s, not a storm of %d/s (machine too slow or busy)", r, stormMinRate)
	}

	start := time.Now()
	cpu0, drops0, lanTx0, rx0 := jiffies(t, vethd.Pid()), stormDrops(), l.LANNS.Stat(t, "lan0", "tx_packets"), l.Host.Stat(t, "veth1", "rx_packets")

	// DHCP, ARP and NDP, one after the other, during the storm.
	renewDHCP(t, l, "veth1", addr)
	macs, out := l.LANNS.ARPing(t, "lan0", addr, 2)
	if macs[mac] == 0 || len(macs) != 1 {
		t.Errorf("arping %s during the storm: replies by MAC %v, want only from veth1's %s\n%s", addr, macs, mac, out)
	}
	l.LANNS.IP(t, "-6", "neigh", "flush", "dev", "lan0")
	err = poll(5*time.Second, func() (bool, string) {
		out, err := l.LANNS.Run("ping", "-6", "-n", "-c", "1", "-W", "1", ll.String()+"%lan0")
		return err == nil, out
	})
	if err != nil {
		t.Errorf("ping -6 %s%%lan0 during the storm: %v", ll, err)
	} else if got := l.LANNS.Neighbour(t, "lan0", ll); got != mac {
		t.Errorf("the LAN's neighbour entry for %s is %q, want veth1's %s (learned by NDP)", ll, got, mac)
	}
	if d := time.Until(start.Add(3 * time.Second)); d > 0 {
		time.Sleep(d)
	}

	secs := time.Since(start).Seconds()
	cpu := 100 * float64(jiffies(t, vethd.Pid())-cpu0) / clkTck / secs
	sent := float64(l.LANNS.Stat(t, "lan0", "tx_packets") - lanTx0)
	drops := float64(stormDrops() - drops0)
	rx := float64(l.Host.Stat(t, "veth1", "rx_packets") - rx0)
	flood.Signal(syscall.SIGTERM)
	flood.Wait(3 * time.Second)
	t.Logf("over %.1f s: storm %.0f frames/s, storm-other %.0f/s, veth1 rx %.0f/s, vethd CPU %.1f %% of a core; %s",
		secs, sent/secs, drops/secs, rx/secs, cpu, strings.TrimSpace(flood.Output()))
	if drops < sent/2 {
		t.Errorf("storm-other grew by %.0f during a storm of %.0f frames, want most of them", drops, sent)
	}
	if cpu > stormMaxCPU {
		t.Errorf("vethd used %.1f %% of a core during the storm, want < %.0f %%", cpu, stormMaxCPU)
	}

	// An ARP storm: it is ARP that gets dropped (storm-arp), DHCP and
	// NDP, in buckets of their own, go on.
	arpDrops := func() uint64 {
		t.Helper()
		_, c, err := client.Get(context.Background(), "veth1")
		if err != nil {
			t.Fatalf("Get veth1: %v", err)
		}
		return c.RxDrops["storm-arp"]
	}
	a0 := arpDrops()
	arpFlood := startProc(t, l.LANNS, "flood arp", needFlood(t), "-i", "lan0", "-rate", strconv.Itoa(stormRate), "-kinds", "arp")
	time.Sleep(500 * time.Millisecond)
	renewDHCP(t, l, "veth1", addr)
	l.LANNS.IP(t, "-6", "neigh", "flush", "dev", "lan0")
	if err := poll(5*time.Second, func() (bool, string) {
		out, err := l.LANNS.Run("ping", "-6", "-n", "-c", "1", "-W", "1", ll.String()+"%lan0")
		return err == nil, out
	}); err != nil {
		t.Errorf("ping -6 %s%%lan0 during an ARP storm: %v", ll, err)
	}
	arpFlood.Signal(syscall.SIGTERM)
	arpFlood.Wait(3 * time.Second)
	if d := arpDrops() - a0; d < stormMinRate/2 {
		t.Errorf("storm-arp grew by %d during an ARP storm (%s), want ≥ %d", d, strings.TrimSpace(arpFlood.Output()), stormMinRate/2)
	}
}

// renewDHCP runs a second dhclient on link with l.DHCP's lease file, so
// that it asks dnsmasq for the lease it holds (DHCPREQUEST, INIT-REBOOT),
// and waits for it to be bound to want again, and for dnsmasq's DHCPACK.
func renewDHCP(t *testing.T, l *LAN, link string, want netip.Addr) {
	t.Helper()
	acks := strings.Count(l.dnsmasq.Output(), "DHCPACK(lan0) "+want.String())
	p := startProc(t, l.Host, "dhclient renew "+link, "dhclient", "-4", "-1", "-d", "-v",
		"-cf", filepath.Join(l.Dir, "dhclient.conf"),
		"-sf", filepath.Join(l.Dir, "dhclient-script"),
		"-pf", filepath.Join(l.Dir, "dhclient-renew-"+link+".pid"),
		"-lf", filepath.Join(l.Dir, "dhclient-"+link+".leases"),
		link)
	if err := p.WaitLine("bound to "+want.String(), 10*time.Second); err != nil {
		t.Errorf("dhclient renew on %s during the storm: %v\n%s", link, err, p.Output())
		return
	}
	if n := strings.Count(l.dnsmasq.Output(), "DHCPACK(lan0) "+want.String()); n <= acks {
		t.Errorf("dnsmasq logged %d DHCPACKs for %s, as before the renewal\n%s", n, want, l.dnsmasq.Output())
	}
}

// clkTck is the kernel's USER_HZ, the unit of /proc/PID/stat's times
// (100 on every Linux architecture vethd runs on).
const clkTck = 100

// jiffies returns utime+stime of pid from /proc/PID/stat.
func jiffies(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name "(…)", which may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, err1 := strconv.ParseUint(f[11], 10, 64) // field 14, utime
	s, err2 := strconv.ParseUint(f[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/%d/stat: %q", pid, b)
	}
	return u + s
}

var (
	floodOnce sync.Once
	floodBin  string
	floodErr  error
)

// needFlood builds test/internal/flood under suiteRoot (once) and returns
// its path.
func needFlood(t *testing.T) string {
	t.Helper()
	floodOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		out := filepath.Join(suiteRoot, "flood")
		cmd := exec.Command(goBin, "build", "-o", out, "./test/internal/flood")
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			floodErr = fmt.Errorf("go build ./test/internal/flood: %w\n%s", err, b)
			return
		}
		floodBin = out
	})
	if floodErr != nil {
		t.Fatal(floodErr)
	}
	return floodBin
}
