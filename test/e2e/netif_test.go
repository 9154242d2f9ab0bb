package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The host LAN of TestE2ENetworkInterface: 198.18.51.0/24, dnsmasq at .1
// serving .100–.150.
var (
	hostLANPrefix = netip.MustParsePrefix("198.18.51.0/24")
	hostLANRouter = netip.MustParseAddr("198.18.51.1")
)

// HostLAN is a DHCP-served Ethernet segment in the host made of two network
// namespaces: Netns (the "host" the recipe runs in) holding Parent, eth0,
// one end of a veth pair whose other end, lan0 (198.18.51.1/24), is in
// namespace LANNetns with dnsmasq serving DHCP. Its names start with
// vethd-e2e-PID-, so that nothing in the machine's own namespaces is ever
// touched and a run's leftovers are told from another's.
type HostLAN struct {
	Netns, LANNetns string
	Parent          string
	Prefix          netip.Prefix
	Router          netip.Addr
	LeaseFile       string
}

// NewHostLAN builds a HostLAN and registers its removal (dnsmasq stopped,
// both namespaces deleted, checked gone).
func NewHostLAN(t *testing.T) *HostLAN {
	t.Helper()
	requireTools(t, "ip", "dnsmasq")
	n := containerSeq.Add(1)
	base := fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), n)
	l := &HostLAN{
		Netns:     base + "-h",
		LANNetns:  base + "-lan",
		Parent:    "eth0",
		Prefix:    hostLANPrefix,
		Router:    hostLANRouter,
		LeaseFile: filepath.Join(suiteDir, base+"-dnsmasq.leases"),
	}
	var dnsmasq *exec.Cmd
	t.Cleanup(func() {
		if dnsmasq != nil && dnsmasq.Process != nil {
			dnsmasq.Process.Kill()
			dnsmasq.Wait()
		}
		for _, ns := range []string{l.Netns, l.LANNetns} {
			if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
				if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
					t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
				}
			}
			if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
				t.Errorf("network namespace %s left behind", ns)
			}
		}
	})
	router := netip.PrefixFrom(l.Router, l.Prefix.Bits()).String()
	hostRun(t, "ip", "netns", "add", l.Netns)
	hostRun(t, "ip", "netns", "add", l.LANNetns)
	hostRun(t, "ip", "-n", l.Netns, "link", "add", l.Parent, "type", "veth", "peer", "name", "lan0", "netns", l.LANNetns)
	hostRun(t, "ip", "-n", l.LANNetns, "addr", "add", router, "dev", "lan0")
	for _, ns := range []string{l.Netns, l.LANNetns} {
		hostRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	hostRun(t, "ip", "-n", l.LANNetns, "link", "set", "lan0", "up")
	hostRun(t, "ip", "-n", l.Netns, "link", "set", l.Parent, "up")

	bin, _ := exec.LookPath("dnsmasq")
	a := l.Prefix.Addr().As4()
	a[3] = 100
	lo := netip.AddrFrom4(a)
	a[3] = 150
	hi := netip.AddrFrom4(a)
	dnsmasq = exec.Command("ip", "netns", "exec", l.LANNetns, bin,
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
		"--user=root", "--group=root", "--pid-file=",
		"--bind-dynamic", "--interface=lan0", "--except-interface=lo",
		"--dhcp-range="+lo.String()+","+hi.String()+",255.255.255.0,1h",
		"--dhcp-authoritative", "--no-ping", "--log-dhcp",
		"--dhcp-leasefile="+l.LeaseFile)
	if err := dnsmasq.Start(); err != nil {
		t.Fatalf("start dnsmasq in %s: %v", l.LANNetns, err)
	}
	return l
}

// Leases returns dnsmasq's lease file.
func (l *HostLAN) Leases(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(l.LeaseFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// hostRun runs a command in the host (in the test's own namespaces) and
// fails the test if it fails.
func hostRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hostLink is a link in a host namespace: MAC and ifindex.
type hostLink struct {
	MAC   string
	Index int
}

// linkIn returns ifname in host namespace ns, ok false if there is no such
// link.
func linkIn(ns, ifname string) (hostLink, bool) {
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", "dev", ifname).Output()
	if err != nil {
		return hostLink{}, false
	}
	var links []struct {
		Address string `json:"address"`
		Index   int    `json:"ifindex"`
	}
	if json.Unmarshal(out, &links) != nil || len(links) != 1 {
		return hostLink{}, false
	}
	return hostLink{MAC: links[0].Address, Index: links[0].Index}, true
}

// handVethd is a vethd the test runs by hand in a namespace of the host.
type handVethd struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
	err  error // Wait's, valid after done
	// fails are the test's failures, restated after vethd's log when the
	// test fails: the log is long, and what CI shows of a failing test
	// is its last lines.
	fails []string
}

// errorf fails the test, as t.Errorf, and keeps the message for the
// restatement.
func (v *handVethd) errorf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	v.fails = append(v.fails, msg)
	t.Error(msg)
}

// fatalf is errorf, then t.FailNow.
func (v *handVethd) fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	v.errorf(t, format, args...)
	t.FailNow()
}

// leaks keeps what container c's shutdown found left behind.
func (v *handVethd) leaks(c *Container) {
	v.fails = append(v.fails, c.leaks...)
}

// hostRun is hostRun with the failure kept.
func (v *handVethd) hostRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		v.fatalf(t, "%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startVethd runs `ip netns exec NS vethd -v veth1 -e PARENT --kind=KIND`
// with the staged binary and registers its stop.
func startVethd(t *testing.T, stage, ns, parent, kind string) *handVethd {
	t.Helper()
	v := &handVethd{log: &lockedBuffer{}, done: make(chan struct{})}
	v.cmd = exec.Command("ip", "netns", "exec", ns, filepath.Join(stage, "usr/sbin/vethd"),
		"-v", "veth1", "-e", parent, "--kind="+kind)
	v.cmd.Env = nspawnEnv()
	v.cmd.Stdout, v.cmd.Stderr = v.log, v.log
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start vethd: %v", err)
	}
	go func() {
		v.err = v.cmd.Wait()
		close(v.done)
	}()
	t.Cleanup(func() {
		if v.running() {
			v.cmd.Process.Kill()
			<-v.done
		}
		if t.Failed() {
			t.Logf("vethd's log:\n%s", v.log.String())
			if len(v.fails) > 0 {
				t.Logf("the failures above, again:\n  %s", strings.Join(v.fails, "\n  "))
			}
		}
	})
	return v
}

func (v *handVethd) running() bool {
	select {
	case <-v.done:
		return false
	default:
		return true
	}
}

// waitLog waits until vethd's log holds want (counting from offset from)
// and returns the offset after it.
func (v *handVethd) waitLog(t *testing.T, from int, want string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := v.log.String()
		if i := strings.Index(s[from:], want); i >= 0 {
			return from + i + len(want)
		}
		if !v.running() {
			v.fatalf(t, "vethd exited (%v) before logging %q (its log is below)", v.err, want)
		}
		if time.Now().After(deadline) {
			v.fatalf(t, "vethd did not log %q within %v (its log is below)", want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for vethd to exit.
func (v *handVethd) stop(t *testing.T) {
	t.Helper()
	v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		v.fatalf(t, "vethd did not exit within 10s of SIGTERM (its log is below)")
	}
	if v.err != nil {
		v.errorf(t, "vethd exited: %v (its log is below)", v.err)
	}
}

// counter reads key=N from the last "Detached" line of vethd's log.
func (v *handVethd) counter(t *testing.T, key string) int {
	t.Helper()
	s := v.log.String()
	i := strings.LastIndex(s, "Detached veth1 ")
	if i < 0 {
		t.Fatalf("vethd logged no \"Detached veth1\":\n%s", s)
	}
	line, _, _ := strings.Cut(s[i:], "\n")
	for _, f := range strings.Fields(line) {
		if k, val, ok := strings.Cut(f, "="); ok && k == key {
			n, err := strconv.Atoi(val)
			if err != nil {
				t.Fatalf("%s in %q: %v", key, line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s= in %q", key, line)
	return 0
}

// waitLink waits until ifname exists in host namespace ns.
func waitLink(t *testing.T, ns, ifname string, timeout time.Duration) hostLink {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := linkIn(ns, ifname); ok {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in network namespace %s after %v", ifname, ns, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killNspawn ends container c the hard way: SIGKILL to systemd-nspawn, so
// that it cannot move anything back, then to the container's init, which
// takes the container's namespaces down. The harness's cleanup then finds
// it exited and checks for leftovers.
func killNspawn(t *testing.T, c *Container) {
	t.Helper()
	if err := c.nspawn.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill systemd-nspawn of %s: %v", c.Name, err)
	}
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("systemd-nspawn of %s did not die of SIGKILL", c.Name)
	}
	c.kill()
}

// TestE2ENetworkInterface tests docs/namespaces.md's recipe
// "systemd-nspawn --network-interface=veth1", for both kinds: vethd runs by
// hand in a namespace H of the host, whose eth0 is wired to a LAN with
// dnsmasq; a container booted in H with --network-interface=veth1 gets
// veth1 with vethd's MAC, a DHCP lease for that MAC and a working ping to
// the LAN, relayed by vethd, which logs the move and keeps running. When
// the container powers off its namespace goes (systemd 252's nspawn does
// not move the interface back), the kernel deletes veth1 with it, and vethd
// re-creates it in H with the same MAC, ready for a second boot, which
// works the same.
func TestE2ENetworkInterface(t *testing.T) {
	stage := stageInstall(t)
	for _, kind := range []string{"veth", "tap"} {
		t.Run(kind, func(t *testing.T) { testNetworkInterface(t, stage, kind) })
	}
}

func testNetworkInterface(t *testing.T, stage, kind string) {
	lan := NewHostLAN(t)
	v := startVethd(t, stage, lan.Netns, lan.Parent, kind)
	at := v.waitLog(t, 0, "Attached veth1 into "+lan.Parent, 10*time.Second)
	home := waitLink(t, lan.Netns, "veth1", 5*time.Second)
	mac := home.MAC
	if kind == "veth" {
		if _, ok := linkIn(lan.Netns, "vd-veth1"); !ok {
			v.fatalf(t, "no peer vd-veth1 in %s", lan.Netns)
		}
	}
	t.Logf("vethd --kind=%s: veth1 %s ifindex %d in %s", kind, mac, home.Index, lan.Netns)
	opts := BootOptions{Netns: lan.Netns, NetworkInterfaces: []string{"veth1"}}

	// Boots 1 and 2 power off cleanly; boot 3's nspawn is killed.
	for boot := 1; boot <= 3; boot++ {
		start := time.Now()
		c := BootWith(t, stage, opts)
		at = v.waitLog(t, at, "veth1 moved to network namespace netnsid=", 5*time.Second)
		at = v.waitLog(t, at, "; still relaying", time.Second)
		if _, ok := linkIn(lan.Netns, "veth1"); ok {
			v.fatalf(t, "boot %d: veth1 still in %s after the container started", boot, lan.Netns)
		}
		if got := strings.TrimSpace(c.Run(t, "cat", "/sys/class/net/veth1/address")); got != mac {
			v.errorf(t, "boot %d: veth1 in the container has MAC %s, vethd made it %s", boot, got, mac)
		}
		// A move takes a link down; nothing in the container brings
		// veth1 up by itself (no .network file or NM profile matches).
		if flags := c.Run(t, "ip", "-o", "link", "show", "dev", "veth1"); strings.Contains(flags, ",UP") || strings.Contains(flags, "<UP") {
			v.errorf(t, "boot %d: veth1 is up in the container before anything brought it up: %s", boot, flags)
		}
		var addr netip.Addr
		if boot == 1 {
			// dhclient in the container: dnsmasq leases to vethd's MAC.
			got := c.DHCP(t, "veth1")
			if !lan.Prefix.Contains(got.Addr()) {
				v.fatalf(t, "dhclient veth1 in the container got %v, want an address in %v", got, lan.Prefix)
			}
			if leases := lan.Leases(t); !strings.Contains(leases, mac+" "+got.Addr().String()+" ") {
				v.errorf(t, "dnsmasq has no lease of %s for %s:\n%s", got.Addr(), mac, leases)
			}
			addr = got.Addr()
		} else {
			// A plain address.
			a := lan.Prefix.Addr().As4()
			a[3] = byte(58 + boot)
			addr = netip.AddrFrom4(a)
			c.Run(t, "ip", "addr", "add", netip.PrefixFrom(addr, lan.Prefix.Bits()).String(), "dev", "veth1")
			c.Run(t, "ip", "link", "set", "veth1", "up")
		}
		if kind == "veth" {
			if got := strings.TrimSpace(c.Run(t, "cat", "/sys/class/net/veth1/carrier")); got != "1" {
				v.errorf(t, "boot %d: veth1 (up) in the container has carrier %s, want 1", boot, got)
			}
		}
		c.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "veth1", lan.Router.String())
		// The LAN learnt veth1's address at vethd's MAC.
		neigh := v.hostRun(t, "ip", "-n", lan.LANNetns, "neigh", "show", addr.String(), "dev", "lan0")
		if !strings.Contains(neigh, mac) {
			v.errorf(t, "boot %d: the LAN's neighbour entry for %s is %q, want %s", boot, addr, strings.TrimSpace(neigh), mac)
		}
		t.Logf("boot %d: veth1 %s (%s) in the container pinged %s through vethd, %.1fs after the boot began",
			boot, addr, mac, lan.Router, time.Since(start).Seconds())

		stop := time.Now()
		if boot < 3 {
			// systemd 252's nspawn moves veth1 back into its own
			// namespace (H) as the container exits: the same link, not
			// a new one.
			c.Poweroff(t)
			v.leaks(c)
			at = v.waitLog(t, at, "veth1 is back in vethd's network namespace ifindex="+strconv.Itoa(home.Index), 10*time.Second)
		} else {
			// Killed, nspawn cannot: the container's namespace goes,
			// the kernel deletes veth1 with it (and, for the veth
			// kind, its peer vd-veth1 in H), and vethd re-creates it.
			killNspawn(t, c)
			c.Poweroff(t) // its leftover check, here rather than at cleanup
			v.leaks(c)
			at = v.waitLog(t, at, "network namespace of veth1 was destroyed; re-creating veth1", 10*time.Second)
		}
		got := waitLink(t, lan.Netns, "veth1", 5*time.Second)
		t.Logf("boot %d: veth1 back in %s %.2fs after the container's stop began: %s ifindex %d", boot, lan.Netns, time.Since(stop).Seconds(), got.MAC, got.Index)
		if got.MAC != mac {
			v.errorf(t, "boot %d: veth1 came back with MAC %s, had %s", boot, got.MAC, mac)
		}
		if boot < 3 && got.Index != home.Index {
			v.errorf(t, "boot %d: veth1 came back as ifindex %d, was %d: re-created, not moved back", boot, got.Index, home.Index)
		}
		// The container's addresses do not come back with it.
		if out := v.hostRun(t, "ip", "-n", lan.Netns, "-4", "addr", "show", "dev", "veth1"); strings.Contains(out, addr.String()) {
			v.errorf(t, "boot %d: veth1 came back with the container's address %s:\n%s", boot, addr, out)
		}
		if boot < 3 && strings.Contains(v.log.String(), "was destroyed") {
			v.errorf(t, "boot %d: vethd logged a destroyed namespace at a clean poweroff", boot)
		}
		if kind == "veth" {
			if _, ok := linkIn(lan.Netns, "vd-veth1"); !ok {
				v.errorf(t, "boot %d: no peer vd-veth1 in %s after the container's stop", boot, lan.Netns)
			}
		}
		if !v.running() {
			v.fatalf(t, "vethd exited after the container's stop: %v\n%s", v.err, v.log.String())
		}
	}
	// After the re-creation veth1 relays again: from H itself.
	v.hostRun(t, "ip", "-n", lan.Netns, "addr", "add", "198.18.51.62/24", "dev", "veth1")
	v.hostRun(t, "ip", "-n", lan.Netns, "link", "set", "veth1", "up")
	v.hostRun(t, "ip", "netns", "exec", lan.Netns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "198.18.51.62", lan.Router.String())
	if neigh := v.hostRun(t, "ip", "-n", lan.LANNetns, "neigh", "show", "198.18.51.62", "dev", "lan0"); !strings.Contains(neigh, mac) {
		v.errorf(t, "after the re-creation, the LAN's neighbour entry for 198.18.51.62 is %q, want %s", strings.TrimSpace(neigh), mac)
	}
	v.stop(t)
	if n := v.counter(t, "tx_packets"); n == 0 {
		v.errorf(t, "vethd relayed no frames to the LAN (tx_packets=0)")
	}
	if n := v.counter(t, "rx_packets"); n == 0 {
		v.errorf(t, "vethd relayed no frames from the LAN (rx_packets=0)")
	}
	if !t.Failed() {
		t.Logf("vethd's log:\n%s", v.log.String())
	}
}

// sweepStaleNetns removes the host namespaces (HostLAN's) of earlier runs
// whose test binary died: the processes left in them (a vethd, dnsmasq)
// are killed, then the namespace is deleted.
func sweepStaleNetns() {
	names, _ := filepath.Glob(filepath.Join("/run/netns", namePrefix+"*"))
	for _, p := range names {
		o, dead := deadOwner(filepath.Base(p))
		if !dead {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			continue
		}
		want := fmt.Sprintf("net:[%d]", st.Ino)
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && l == want {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		fmt.Fprintf(os.Stderr, "e2e: removing network namespace %s of dead run %d\n", filepath.Base(p), o)
		exec.Command("ip", "netns", "del", filepath.Base(p)).Run()
	}
}
