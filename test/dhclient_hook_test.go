package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/srcroute"
)

// hookSource is the dhclient exit hook under test (test runs in ./test).
const hookSource = "../dist/dhclient/vethd"

// dhclientEnv is a copy of Debian's real /sbin/dhclient-script that looks
// for its hooks under dir/etc/dhcp instead of /etc/dhcp and never touches
// the machine's /etc/resolv.conf or hostname, plus a config and lease and
// pid files of its own.
type dhclientEnv struct {
	dir, script, conf, exitHooks string
}

func newDHClientEnv(t *testing.T, l *LAN) *dhclientEnv {
	t.Helper()
	needTools(t, "dhclient", "run-parts")
	b, err := os.ReadFile("/sbin/dhclient-script")
	if err != nil {
		skipOrFail(t, fmt.Sprintf("needs Debian's dhclient-script (isc-dhcp-client): %v", err))
	}
	e := &dhclientEnv{dir: filepath.Join(l.Dir, "dhclient")}
	etc := filepath.Join(e.dir, "etc")
	text := string(b)
	for _, r := range []struct{ old, new string }{
		{"/etc/dhcp/", etc + "/dhcp/"},
		{`"/etc/resolv.conf"`, `"` + etc + `/resolv.conf"`},
		{`hostname "$new_host_name"`, `: hostname "$new_host_name"`},
	} {
		if !strings.Contains(text, r.old) {
			t.Fatalf("/sbin/dhclient-script has no %q any more: adapt the test", r.old)
		}
		text = strings.ReplaceAll(text, r.old, r.new)
	}
	// Nothing else of the machine's /etc may be written or sourced.
	for i, line := range strings.Split(text, "\n") {
		if code, _, _ := strings.Cut(line, "#"); strings.Contains(code, "/etc/") && !strings.Contains(code, "/etc/fstab") && !strings.Contains(code, etc) {
			t.Fatalf("dhclient-script line %d still names the machine's /etc: %s", i+1, line)
		}
	}
	e.exitHooks = filepath.Join(etc, "dhcp", "dhclient-exit-hooks.d")
	for _, d := range []string{e.exitHooks, filepath.Join(etc, "dhcp", "dhclient-enter-hooks.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.script = filepath.Join(e.dir, "dhclient-script")
	if err := os.WriteFile(e.script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	// No name servers, no host name requested: dhclient-script has
	// nothing to write even to the copy's resolv.conf.
	e.conf = filepath.Join(e.dir, "dhclient.conf")
	conf := "timeout 30;\ninitial-interval 1;\nbackoff-cutoff 2;\nrequest subnet-mask, broadcast-address, routers;\n"
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// installHook puts dist/dhclient/vethd into the exit hooks, as
// /etc/dhcp/dhclient-exit-hooks.d/vethd would be.
func (e *dhclientEnv) installHook(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(hookSource)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.exitHooks, "vethd"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *dhclientEnv) args(link string) []string {
	return []string{"-4", "-v", "-cf", e.conf, "-sf", e.script,
		"-pf", filepath.Join(e.dir, link+".pid"), "-lf", filepath.Join(e.dir, link+".leases"), link}
}

// lease runs dhclient -1 -d on link in the host namespace and waits for the
// lease's address on it; dhclient stays in the foreground until release
// (or the test's cleanup) stops it.
func (e *dhclientEnv) lease(t *testing.T, l *LAN, link string) (*Proc, netip.Addr) {
	t.Helper()
	p := startProc(t, l.Host, "dhclient "+link, append([]string{"dhclient", "-1", "-d"}, e.args(link)...)...)
	var got netip.Addr
	err := poll(30*time.Second, func() (bool, string) {
		for _, a := range l.Addrs4(t, link) {
			if b := a.As4(); b[2] == byte(l.X) && b[3] >= 100 && b[3] < 200 {
				got = a
				return true, ""
			}
		}
		return !p.Running(), fmt.Sprint(l.Addrs4(t, link))
	})
	if err != nil || !got.IsValid() {
		t.Fatalf("dhclient on %s: no lease (%v)\n%s", link, err, p.Output())
	}
	// The exit hooks run after the address is set: wait for dhclient to
	// say it is bound.
	if err := p.WaitLine("bound to", 10*time.Second); err != nil {
		t.Fatalf("dhclient on %s: %v\n%s", link, err, p.Output())
	}
	return p, got
}

// release stops the running dhclient and runs `dhclient -r`, which sends
// DHCPRELEASE and runs the script with reason RELEASE.
func (e *dhclientEnv) release(t *testing.T, l *LAN, p *Proc, link string) {
	t.Helper()
	p.Stop(3 * time.Second)
	// The pid file names the stopped process: dhclient -r must not signal
	// whatever has that pid now.
	os.Remove(filepath.Join(e.dir, link+".pid"))
	l.Host.MustRun(t, append([]string{"dhclient", "-r"}, e.args(link)...)...)
}

// TestDHClientHook: the real dhclient with Debian's real dhclient-script
// (its hook directory moved under the test's directory) on eth0 and on
// vethd's veth1, with strict rp_filter. dhclient-script cannot add veth1's
// default route to main (eth0's is there: "File exists", discarded), so
// without the hook hosts off veth1's subnet cannot reach veth1's lease;
// with dist/dhclient/vethd in the exit hooks the gateway lands in veth1's
// table as "proto dhcp", the remote's pings are answered through veth1,
// and the release removes it again.
func TestDHClientHook(t *testing.T) {
	s := newSrcLAN(t, "1", LANConfig{DHCP: true}, noRouting)
	e := newDHClientEnv(t, s.LAN)
	r, _ := s.startRouter(t, nil)
	table := r.Table()
	// (vethd, started with source routing off, cleans its table once
	// after veth1 appears, possibly after the Router began: the Router
	// puts back what that removes.)
	waitFor(t, 5*time.Second, "veth1's alias "+srcroute.Alias(table), func() (bool, string) {
		a := s.Host.MustLink(t, "veth1").Attrs().Alias
		return a == srcroute.Alias(table), a
	})
	hookRoute := fmt.Sprintf("default via %s dev veth1 proto dhcp", s.Router4)

	_, a := e.lease(t, s.LAN, "eth0")
	mainRoutes := s.Host.IP(t, "-4", "route", "show", "default")
	if !strings.Contains(mainRoutes, "dev eth0") {
		t.Fatalf("dhclient-script did not add eth0's default route:\n%s", mainRoutes)
	}

	// Without the hook.
	p, b := e.lease(t, s.LAN, "veth1")
	t.Logf("eth0 leased %s, veth1 leased %s", a, b)
	mainRoutes = s.Host.IP(t, "-4", "route", "show", "default")
	if strings.Contains(mainRoutes, "dev veth1") {
		t.Fatalf("main has a default route via veth1: the test shows nothing\n%s", mainRoutes)
	}
	waitRules(t, s.Host, table, fmt.Sprintf("32000: from %s lookup %d proto 118", b, table))
	remote := check{name: "remote pings B", kind: "echo-reply", src: b, dst: s.Remote4,
		run: func() error { return ping1(s.LANNS, "-I", s.Remote4.String(), b.String()) }}
	onLAN := check{name: "LAN pings B", kind: "echo-reply", src: b, dst: s.Router4,
		run: func() error { return ping1(s.LANNS, b.String()) }}
	if out, err := s.observe(onLAN); out != viaVirt || err != nil {
		t.Errorf("without the hook: %s: %s (%v), want veth1 (the subnet route is the Router's)", onLAN.name, out, errOK(err))
	}
	if out, err := s.observe(remote); out != viaNone || err == nil {
		t.Errorf("without the hook: %s: %s (%v), want no answer", remote.name, out, errOK(err))
	}
	e.release(t, s.LAN, p, "veth1")
	waitRules(t, s.Host, table)

	// With the hook.
	e.installHook(t)
	p, b2 := e.lease(t, s.LAN, "veth1")
	if b2 != b {
		t.Logf("veth1 leased %s this time", b2)
		b = b2
		remote.src, onLAN.src = b, b
	}
	waitTable(t, s.Host, table, true, hookRoute)
	t.Logf("table %d: %q", table, tableOf(t, s.Host, table))
	for _, c := range []check{onLAN, remote} {
		if out, err := s.observe(c); out != viaVirt || err != nil {
			t.Errorf("with the hook: %s: %s (%v), want veth1", c.name, out, errOK(err))
		}
	}
	if strings.Contains(s.Host.IP(t, "-4", "route", "show", "default"), "dev veth1") {
		t.Errorf("the hook touched main")
	}

	// The release takes the gateway away again.
	e.release(t, s.LAN, p, "veth1")
	waitTable(t, s.Host, table, false, hookRoute)
	waitRules(t, s.Host, table)
}

// TestDHClientHookScript runs dist/dhclient/vethd as dhclient-script would
// (sourced by /bin/sh, with dhclient's variables), with a fake ip(8) that
// records what it is asked, for what a LAN cannot easily show: several
// routers, classless static routes, a /32 lease, leftovers of an earlier
// lease, TIMEOUT, DHCPv6 and foreign interfaces. Needs no root.
func TestDHClientHookScript(t *testing.T) {
	hook, err := filepath.Abs(hookSource)
	if err != nil {
		t.Fatal(err)
	}
	type run struct {
		name   string
		alias  string // veth1's alias ("-": no such interface)
		env    []string
		shown  string // what "ip -4 route show table …" prints
		addrs  string // what "ip -4 -o addr show …" prints
		wantIP []string
	}
	const show = "-4 route show table 1234 dev veth1 proto dhcp"
	runs := []run{{
		name:   "BOUND, one router",
		alias:  "vethd table=1234",
		env:    []string{"reason=BOUND", "new_routers=198.18.1.1", "new_subnet_mask=255.255.255.0"},
		wantIP: []string{"-4 route replace 0.0.0.0/0 via 198.18.1.1 dev veth1 table 1234 proto dhcp metric 0", show},
	}, {
		name:  "RENEW: what an earlier lease left goes, what stays is not touched",
		alias: "vethd table=1234",
		env:   []string{"reason=RENEW", "new_routers=198.18.1.1"},
		shown: "default via 198.18.1.1 \n10.0.0.0/8 via 198.18.1.254 \ndefault via 198.18.1.2 metric 7 \n198.18.1.9 scope link \n",
		wantIP: []string{"-4 route replace 0.0.0.0/0 via 198.18.1.1 dev veth1 table 1234 proto dhcp metric 0", show,
			"-4 route del 10.0.0.0/8 via 198.18.1.254 dev veth1 table 1234 proto dhcp metric 0",
			"-4 route del 0.0.0.0/0 via 198.18.1.2 dev veth1 table 1234 proto dhcp metric 7",
			"-4 route del 198.18.1.9/32 dev veth1 table 1234 proto dhcp metric 0"},
	}, {
		name:  "two routers: metrics 1 and 2, as dhclient-script's",
		alias: "vethd table=1234",
		env:   []string{"reason=REBOOT", "new_routers=198.18.1.1 198.18.1.2"},
		wantIP: []string{"-4 route replace 0.0.0.0/0 via 198.18.1.1 dev veth1 table 1234 proto dhcp metric 1",
			"-4 route replace 0.0.0.0/0 via 198.18.1.2 dev veth1 table 1234 proto dhcp metric 2", show},
	}, {
		name:   "IF_METRIC",
		alias:  "vethd table=1234",
		env:    []string{"reason=BOUND", "new_routers=198.18.1.1", "IF_METRIC=10"},
		wantIP: []string{"-4 route replace 0.0.0.0/0 via 198.18.1.1 dev veth1 table 1234 proto dhcp metric 10", show},
	}, {
		name:  "a /32 lease: a host route to the router first",
		alias: "vethd table=1234",
		env:   []string{"reason=BOUND", "new_routers=198.18.1.1", "new_subnet_mask=255.255.255.255"},
		wantIP: []string{"-4 route replace 198.18.1.1/32 dev veth1 table 1234 proto dhcp metric 0",
			"-4 route replace 0.0.0.0/0 via 198.18.1.1 dev veth1 table 1234 proto dhcp metric 0", show},
	}, {
		name:  "classless static routes replace the routers",
		alias: "vethd table=1234",
		env: []string{"reason=BOUND", "new_routers=198.18.1.1",
			"new_rfc3442_classless_static_routes=24 10 1 2 198 18 1 254 32 10 9 9 9 198 18 1 253 0 198 18 1 1"},
		wantIP: []string{"-4 route replace 10.1.2.0/24 via 198.18.1.254 dev veth1 table 1234 proto dhcp metric 0",
			"-4 route replace 10.9.9.9/32 via 198.18.1.253 dev veth1 table 1234 proto dhcp metric 0",
			"-4 route replace 0.0.0.0/0 via 198.18.1.1 dev veth1 table 1234 proto dhcp metric 0", show},
	}, {
		name:   "RELEASE",
		alias:  "vethd table=1234",
		env:    []string{"reason=RELEASE", "old_routers=198.18.1.1"},
		wantIP: []string{"-4 route flush table 1234 dev veth1 proto dhcp"},
	}, {
		name:   "EXPIRE",
		alias:  "vethd table=1234",
		env:    []string{"reason=EXPIRE"},
		wantIP: []string{"-4 route flush table 1234 dev veth1 proto dhcp"},
	}, {
		name:   "TIMEOUT, the old lease applied",
		alias:  "vethd table=1234",
		env:    []string{"reason=TIMEOUT", "new_ip_address=198.18.1.111", "new_routers=198.18.1.1"},
		addrs:  "7: veth1    inet 198.18.1.111/24 brd 198.18.1.255 scope global veth1\n",
		wantIP: []string{"-4 -o addr show dev veth1 to 198.18.1.111/32", "-4 route replace 0.0.0.0/0 via 198.18.1.1 dev veth1 table 1234 proto dhcp metric 0", show},
	}, {
		name:   "TIMEOUT, the old lease not applied",
		alias:  "vethd table=1234",
		env:    []string{"reason=TIMEOUT", "new_ip_address=198.18.1.111", "new_routers=198.18.1.1"},
		wantIP: []string{"-4 -o addr show dev veth1 to 198.18.1.111/32"},
	}, {
		name:  "DHCPv6: nothing",
		alias: "vethd table=1234",
		env:   []string{"reason=BOUND6", "new_routers=198.18.1.1"},
	}, {
		name:  "no alias: not vethd's",
		alias: "",
		env:   []string{"reason=BOUND", "new_routers=198.18.1.1"},
	}, {
		name:  "someone else's alias",
		alias: "uplink B",
		env:   []string{"reason=BOUND", "new_routers=198.18.1.1"},
	}, {
		name:  "a malformed alias",
		alias: "vethd table=12a",
		env:   []string{"reason=RELEASE"},
	}, {
		name:  "no such interface",
		alias: "-",
		env:   []string{"reason=BOUND", "new_routers=198.18.1.1"},
	}}
	for _, c := range runs {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			sysfs := filepath.Join(dir, "sys")
			logf := filepath.Join(dir, "ip.log")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			fakeIP := fmt.Sprintf("#!/bin/sh\necho \"$*\" >>%s\ncase \"$*\" in\n\"-4 route show \"*) cat %s/shown 2>/dev/null ;;\n\"-4 -o addr show \"*) cat %s/addrs 2>/dev/null ;;\nesac\nexit 0\n", logf, dir, dir)
			if err := os.WriteFile(filepath.Join(bin, "ip"), []byte(fakeIP), 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "shown"), []byte(c.shown), 0o644)
			os.WriteFile(filepath.Join(dir, "addrs"), []byte(c.addrs), 0o644)
			if c.alias != "-" {
				if err := os.MkdirAll(filepath.Join(sysfs, "class/net/veth1"), 0o755); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(sysfs, "class/net/veth1/ifalias"), []byte(c.alias+"\n"), 0o644)
			}
			// As dhclient-script runs it: sourced, in a function, and
			// carrying on after it. The hook must leave nothing behind.
			script := `run_hook() { . "$1"; echo "status=$?"; }
run_hook "$HOOK"
for f in vethd_table vethd_routes vethd_route_args vethd_apply; do
	if command -v $f >/dev/null; then echo "left $f"; fi
done
[ -z "${vethd_t+set}" ] || echo "left vethd_t"
echo done`
			cmd := exec.Command("/bin/sh", "-c", script)
			cmd.Env = append([]string{"PATH=" + bin + ":/usr/bin:/bin", "HOOK=" + hook, "VETHD_HOOK_SYSFS=" + sysfs,
				"interface=veth1"}, c.env...)
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != "status=0\ndone\n" {
				t.Errorf("hook: %v, output:\n%s", err, out)
			}
			b, _ := os.ReadFile(logf)
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if l != "" {
					got = append(got, l)
				}
			}
			if strings.Join(got, "\n") != strings.Join(c.wantIP, "\n") {
				t.Errorf("ip was asked:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.wantIP, "\n  "))
			}
		})
	}
}
