package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/sdnotify/sdnotifytest"
	"github.com/vethd/vethd/pkg/dbusapi"
)

// Tests of "a separate NIC" (issue 8): no ARP flux, and a MAC address
// changed by someone else followed. They run on NewPlainLAN: no sysctl is
// set by the test, in any namespace.

// checkARPDefaults fails the test unless the host namespace's conf/all ARP
// settings are the kernel's defaults, which make the per-device ones count
// (the kernel uses the larger of the two).
func checkARPDefaults(t *testing.T, l *LAN) {
	t.Helper()
	for _, k := range []string{"arp_ignore", "arp_announce"} {
		if v := l.Host.ProcSys(t, "net.ipv4.conf.all."+k); v != "0" {
			t.Fatalf("net.ipv4.conf.all.%s is %s in a new namespace on this machine, not the kernel's 0: the test cannot tell vethd's doing", k, v)
		}
	}
}

// TestARPIsolation: host eth0 = A and veth1 = B on one LAN, default
// sysctls. vethd sets arp_ignore=1 and arp_announce=2 on both (and says
// so), and the LAN, asking for each address by broadcast, gets replies only
// from that address's own NIC.
func TestARPIsolation(t *testing.T) {
	l := NewPlainLAN(t)
	checkARPDefaults(t, l)
	a := l.SetStatic(t, "eth0", 10)
	p := l.StartVethd(t, "veth1", "eth0")
	if err := p.WaitLine("ARP isolation on eth0 and veth1: arp_ignore=1 arp_announce=2", time.Second); err != nil {
		t.Errorf("%v\n%s", err, p.Output())
	}
	b := l.SetStatic(t, "veth1", 11)
	for _, dev := range []string{"eth0", "veth1"} {
		ig, an := l.Host.ProcSys(t, "net.ipv4.conf."+dev+".arp_ignore"), l.Host.ProcSys(t, "net.ipv4.conf."+dev+".arp_announce")
		if ig != "1" || an != "2" {
			t.Errorf("%s: arp_ignore=%s arp_announce=%s, want 1 and 2", dev, ig, an)
		}
	}
	checkARPDefaults(t, l) // vethd changed the devices only
	ethMAC, vethMAC := l.MAC(t, "eth0").String(), l.MAC(t, "veth1").String()
	l.LANNS.WaitPing(t, 5*time.Second, b.String())

	const n = 3
	for _, c := range []struct {
		addr netip.Addr
		mac  string
	}{{b, vethMAC}, {a, ethMAC}} {
		got, out := l.LANNS.ARPing(t, "lan0", c.addr, n)
		t.Logf("arping -b -c %d %s from the LAN: replies by MAC %v", n, c.addr, got)
		if len(got) != 1 || got[c.mac] != n {
			t.Errorf("arping %s: replies by MAC %v, want %d from %s only (eth0 %s, veth1 %s)\n%s", c.addr, got, n, c.mac, ethMAC, vethMAC, out)
		}
	}
}

// TestARPFluxWithoutIsolation: the same with --arp-isolation=no: vethd
// leaves the settings alone, and both NICs answer for both addresses (the
// flux that TestARPIsolation shows gone).
func TestARPFluxWithoutIsolation(t *testing.T) {
	l := NewPlainLAN(t)
	checkARPDefaults(t, l)
	a := l.SetStatic(t, "eth0", 10)
	p := l.StartVethd(t, "veth1", "eth0", "--arp-isolation=no")
	b := l.SetStatic(t, "veth1", 11)
	for _, dev := range []string{"eth0", "veth1"} {
		ig, an := l.Host.ProcSys(t, "net.ipv4.conf."+dev+".arp_ignore"), l.Host.ProcSys(t, "net.ipv4.conf."+dev+".arp_announce")
		if ig != "0" || an != "0" {
			t.Errorf("%s: arp_ignore=%s arp_announce=%s with --arp-isolation=no, want them left at 0", dev, ig, an)
		}
	}
	if strings.Contains(p.Output(), "ARP isolation") {
		t.Errorf("vethd logged ARP isolation with --arp-isolation=no:\n%s", p.Output())
	}
	ethMAC, vethMAC := l.MAC(t, "eth0").String(), l.MAC(t, "veth1").String()
	l.LANNS.WaitPing(t, 5*time.Second, b.String())
	const n = 3
	for _, addr := range []netip.Addr{b, a} {
		got, out := l.LANNS.ARPing(t, "lan0", addr, n)
		t.Logf("arping -b -c %d %s from the LAN: replies by MAC %v", n, addr, got)
		if len(got) != 2 || got[ethMAC] == 0 || got[vethMAC] == 0 {
			t.Errorf("arping %s: replies by MAC %v, want both eth0 (%s) and veth1 (%s): ARP flux\n%s", addr, got, ethMAC, vethMAC, out)
		}
	}
}

// pingReply matches a reply line of ping -D: "[1764620000.123456] 64 bytes
// from 198.18.1.11: icmp_seq=5 ttl=64 time=0.061 ms".
var pingReply = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from`)

// replyTimes returns the times of the replies a ping -D printed.
func replyTimes(out string) []time.Time {
	var ts []time.Time
	for _, line := range strings.Split(out, "\n") {
		m := pingReply.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseInt(m[1], 10, 64)
		frac, _ := strconv.ParseFloat("0."+m[2], 64)
		ts = append(ts, time.Unix(sec, int64(frac*1e9)))
	}
	return ts
}

// startCapture runs tcpdump on ifname in ns for filter (not promiscuous,
// each packet printed at once) and waits until it listens.
func startCapture(t *testing.T, ns *Netns, ifname, filter string) *Proc {
	t.Helper()
	needTools(t, "tcpdump")
	p := startProc(t, ns, "tcpdump "+ifname, "tcpdump", "-p", "-n", "-l", "-e", "--immediate-mode", "-i", ifname, filter)
	if err := p.WaitLine("listening on", 5*time.Second); err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, p.Output())
	}
	return p
}

// captured stops a capture and returns the lines that contain substr.
func captured(p *Proc, substr string) []string {
	p.Stop(2 * time.Second)
	var out []string
	for _, l := range strings.Split(p.Output(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// TestMACChangeFollowed: the LAN pings veth1 (B, and B6) 200 times a
// second; `ip link set veth1 address NEW` in the middle of it. vethd logs
// it, re-opens its socket for NEW and announces B and B6 at NEW; the
// LAN's neighbour entries say NEW and the replies resume within a second;
// D-Bus signals the new MACAddress. Then, with the LAN pinned to the old
// MAC, no frame reaches veth1 any more.
func TestMACChangeFollowed(t *testing.T) {
	l := NewPlainLAN(t)
	needTools(t, "ping")
	bus, _, p := startOnBus(t, l, "[Bridge]\nParent=eth0\n")
	conn := bus.Conn(t)
	c := dbusapi.NewClient(conn)
	waitFor(t, 5*time.Second, "veth1 on the bus", func() (bool, string) {
		st, _, err := c.Get(context.Background(), "veth1")
		return err == nil && st.State == "running", fmt.Sprint(st, err)
	})
	props := watchProps(t, conn, "veth1")

	b := l.SetStatic(t, "veth1", 11)
	b6 := l.Addr6(11)
	l.Host.IP(t, "addr", "add", b6.String()+"/64", "dev", "veth1", "nodad")
	oldMAC := l.MAC(t, "veth1")
	newMAC := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, byte(l.X), 0x77}
	l.LANNS.WaitPing(t, 5*time.Second, b.String())
	l.LANNS.WaitPing(t, 5*time.Second, "-6", b6.String())
	if got := l.LANNS.Neighbour(t, "lan0", b); got != oldMAC.String() {
		t.Fatalf("the LAN has %s at %q before the change, want %s", b, got, oldMAC)
	}

	flood := startProc(t, l.LANNS, "ping flood", "ping", "-D", "-n", "-i", "0.005", "-W", "1", b.String())
	waitFor(t, 5*time.Second, "replies to the flood", func() (bool, string) { return len(replyTimes(flood.Output())) >= 50, "" })
	lanCapture := startCapture(t, l.LANNS, "lan0", "arp or icmp6[icmp6type] == icmp6-neighboradvert")
	t0 := time.Now()
	l.Host.IP(t, "link", "set", "veth1", "address", newMAC.String())
	t1 := time.Now()
	if err := p.WaitLine(fmt.Sprintf("MAC address of veth1 changed by someone else; following it mac=%s old_mac=%s", newMAC, oldMAC), time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	// Replies for another second after the change.
	waitFor(t, 5*time.Second, "replies after the change", func() (bool, string) {
		ts := replyTimes(flood.Output())
		return len(ts) > 0 && ts[len(ts)-1].After(t1.Add(time.Second)), ""
	})
	flood.Stop(2 * time.Second)
	ts := replyTimes(flood.Output())
	var before, after time.Time
	for _, r := range ts {
		if r.Before(t0) {
			before = r
		} else if after.IsZero() && r.After(t1) {
			after = r
		}
	}
	if before.IsZero() || after.IsZero() {
		t.Fatalf("no replies on both sides of the change (%d replies)", len(ts))
	}
	gap := after.Sub(t0)
	t.Logf("ip link set took %v; last reply %v before it, first reply %v after it began (%d replies in all)",
		t1.Sub(t0).Round(time.Microsecond), t0.Sub(before).Round(time.Microsecond), gap.Round(time.Microsecond), len(ts))
	if gap >= time.Second {
		t.Errorf("replies resumed %v after the MAC change, want within 1 s", gap)
	}
	for _, addr := range []netip.Addr{b, b6} {
		if got := l.LANNS.Neighbour(t, "lan0", addr); got != newMAC.String() {
			t.Errorf("the LAN has %s at %q after the change, want %s", addr, got, newMAC)
		}
	}
	// What the LAN saw: veth1's announcements, from the new MAC.
	garp := captured(lanCapture, fmt.Sprintf("Request who-has %s tell %s", b, b))
	na := captured(lanCapture, "neighbor advertisement, tgt is "+b6.String())
	t.Logf("on the LAN:\n%s\n%s", strings.Join(garp, "\n"), strings.Join(na, "\n"))
	if len(garp) != 1 || !strings.Contains(garp[0], " "+newMAC.String()+" > ") {
		t.Errorf("gratuitous ARP for %s on the LAN: %q, want one from %s", b, garp, newMAC)
	}
	if len(na) != 1 || !strings.Contains(na[0], " "+newMAC.String()+" > ") {
		t.Errorf("neighbour advertisement for %s on the LAN: %q, want one from %s", b6, na, newMAC)
	}
	for _, line := range strings.Split(p.Output(), "\n") {
		if strings.Contains(line, "Announced") {
			t.Logf("vethd: %s", line)
		}
	}
	if !strings.Contains(p.Output(), fmt.Sprintf("Announced the addresses of veth1 at its MAC address on eth0 addresses=%s,%s", b, b6)) &&
		!strings.Contains(p.Output(), fmt.Sprintf("Announced the addresses of veth1 at its MAC address on eth0 addresses=%s,%s", b6, b)) {
		t.Errorf("no announcement of %s and %s logged:\n%s", b, b6, p.Output())
	}

	// D-Bus.
	props.wait(2*time.Second, map[string]any{"MACAddress": newMAC.String()})
	if st, _, err := c.Get(context.Background(), "veth1"); err != nil || st.MACAddress != newMAC.String() || st.State != "running" || st.LastError != "" {
		t.Errorf("after the change: %+v %v", st, err)
	}

	// The old MAC's frames no longer reach veth1; the new one's do.
	for _, c := range []struct {
		mac     net.HardwareAddr
		reaches bool
	}{{oldMAC, false}, {newMAC, true}} {
		l.LANNS.IP(t, "neigh", "replace", b.String(), "lladdr", c.mac.String(), "nud", "permanent", "dev", "lan0")
		capture := startCapture(t, l.Host, "veth1", "icmp[icmptype] == icmp-echo and dst host "+b.String())
		_, err := l.LANNS.Ping(10, b.String())
		echo := captured(capture, "ICMP echo request")
		t.Logf("LAN pinned to %s: %d of 10 echo requests reached veth1 (ping: %v)", c.mac, len(echo), err)
		if c.reaches && (err != nil || len(echo) != 10) {
			t.Errorf("at the new MAC %s: ping %v, %d requests on veth1, want all 10 answered", c.mac, err, len(echo))
		}
		if !c.reaches && (err == nil || len(echo) != 0) {
			t.Errorf("at the old MAC %s: ping %v, requests on veth1:\n%s", c.mac, err, strings.Join(echo, "\n"))
		}
	}
}

// TestMACChangeKeptAcrossRestart: a MAC address someone set survives a
// restart through the fd store (the interface is kept as it is; the log
// says it is not the configured one); a reload sets the configured one
// again and announces it.
func TestMACChangeKeptAcrossRestart(t *testing.T) {
	l := NewPlainLAN(t)
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\n")
	sd := sdnotifytest.NewIn(t, l.Dir)
	args := []string{"--instance", "veth1", "--config-dir", dir}
	p := startService(t, l, sd, 0, nil, args...)
	sd.WaitFor(t, 0, 10*time.Second, "READY=1")
	configured := l.MAC(t, "veth1")
	b := l.SetStatic(t, "veth1", 11)
	l.LANNS.WaitPing(t, 5*time.Second, b.String())
	newMAC := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, byte(l.X), 0x78}
	l.Host.IP(t, "link", "set", "veth1", "address", newMAC.String())
	if err := p.WaitLine("following it mac="+newMAC.String(), 2*time.Second); err != nil {
		t.Fatal(err)
	}

	n := len(sd.Messages())
	p.Signal(syscall.SIGTERM)
	sd.WaitFor(t, n, 5*time.Second, "STOPPING=1")
	if st := p.Wait(5 * time.Second); st == nil || st.ExitCode() != 0 {
		t.Fatalf("vethd did not exit 0 on SIGTERM: %v", st)
	}
	n = len(sd.Messages())
	p2 := startService(t, l, sd, 0, map[string]*os.File{"tap": sd.Stored("tap")[0]}, args...)
	want := fmt.Sprintf("Adopted veth1 keeps its MAC address mac=%s, not the configured %s; a reload sets the configured one", newMAC, configured)
	if err := p2.WaitLine(want, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p2.Output())
	}
	sd.WaitFor(t, n, 5*time.Second, "READY=1")
	if got := l.MAC(t, "veth1"); !slices.Equal(got, newMAC) {
		t.Errorf("after the restart veth1 has %s, want %s kept", got, newMAC)
	}
	l.LANNS.WaitPing(t, 5*time.Second, b.String())

	n = len(sd.Messages())
	p2.Signal(syscall.SIGHUP)
	sd.WaitFor(t, sd.WaitFor(t, n, 5*time.Second, "RELOADING=1"), 5*time.Second, "READY=1")
	if got := l.MAC(t, "veth1"); !slices.Equal(got, configured) {
		t.Errorf("after the reload veth1 has %s, want the configured %s", got, configured)
	}
	if err := p2.WaitLine("Announced the addresses of veth1 at its MAC address on eth0 addresses="+b.String(), 2*time.Second); err != nil {
		t.Error(err)
	}
	waitFor(t, time.Second, "the LAN's entry at the configured MAC", func() (bool, string) {
		got := l.LANNS.Neighbour(t, "lan0", b)
		return got == configured.String(), got
	})
	l.LANNS.WaitPing(t, 5*time.Second, b.String())
}
