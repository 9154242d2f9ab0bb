package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/srcroute"
)

// udhcpcScript is Debian's busybox udhcpc dispatcher (package udhcpc).
const udhcpcScript = "/etc/udhcpc/default.script"

// routingDoc holds the lines docs/routing.md tells udhcpc users to add.
const routingDoc = "../docs/routing.md"

// udhcpcSnippets returns, from docs/routing.md's udhcpc item, the block to
// add to the script's bound|renew branch and the line for its deconfig
// branch: the test runs what the documentation says, not a copy of it.
func udhcpcSnippets(t *testing.T) (bound, deconfig string) {
	t.Helper()
	b, err := os.ReadFile(routingDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "**busybox udhcpc**")
	if i < 0 {
		t.Fatalf("%s has no busybox udhcpc item any more: adapt the test", routingDoc)
	}
	item := doc[i:]
	if j := strings.Index(item[2:], "\n- **"); j >= 0 {
		item = item[:j+2] // up to the next item
	}
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(item, -1)
	if len(m) != 2 {
		t.Fatalf("%s: the udhcpc item has %d sh blocks, want 2 (bound|renew, deconfig)", routingDoc, len(m))
	}
	return m[0][1], m[1][1]
}

// udhcpcEnv writes Debian's udhcpc script with docs/routing.md's lines
// added, its resolv.conf moved under the test's directory and resolvconf
// and logger out of the way (nothing of the machine's /etc is written).
func udhcpcEnv(t *testing.T, l *LAN) string {
	t.Helper()
	needTools(t, "busybox")
	b, err := os.ReadFile(udhcpcScript)
	if err != nil {
		skipOrFail(t, fmt.Sprintf("needs Debian's udhcpc script (package udhcpc): %v", err))
	}
	bound, deconfig := udhcpcSnippets(t)
	dir := filepath.Join(l.Dir, "udhcpc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, r := range []struct{ old, new string }{
		{`RESOLV_CONF="/etc/resolv.conf"`, `RESOLV_CONF="` + dir + `/resolv.conf"`},
		{`/sbin/resolvconf`, dir + `/no-resolvconf`},
		{`logger -t`, `echo >&2`},
		{"\tlog info \"$1: IP=", bound + "\n\tlog info \"$1: IP="},
		{"\tlog notice \"deconfigured\"", deconfig + "\n\tlog notice \"deconfigured\""},
	} {
		if !strings.Contains(text, r.old) {
			t.Fatalf("%s has no %q any more: adapt the test", udhcpcScript, r.old)
		}
		text = strings.ReplaceAll(text, r.old, r.new)
	}
	script := filepath.Join(dir, "default.script")
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// udhcpcLease runs busybox udhcpc on link until it has a lease and quits
// (-q), and returns its output, which must hold no error of the script's
// commands (the deconfig branch runs first, before any lease).
func udhcpcLease(t *testing.T, l *LAN, script, link string) string {
	t.Helper()
	p := startProc(t, l.Host, "udhcpc "+link, "busybox", "udhcpc", "-f", "-q", "-n", "-t", "10", "-T", "1", "-i", link, "-s", script)
	if st := p.Wait(30 * time.Second); st == nil || !st.Success() {
		t.Fatalf("udhcpc on %s: %v\n%s", link, st, p.Output())
	}
	if strings.Contains(p.Output(), "Error:") {
		t.Errorf("udhcpc on %s: the script's commands failed:\n%s", link, p.Output())
	}
	return p.Output()
}

// TestDaemonSourceRoutingUDHCPC: busybox udhcpc with Debian's script plus
// the lines docs/routing.md gives, on eth0 and on vethd's veth1, with
// strict rp_filter. The script's own default route for veth1 fails (eth0's
// is in main); the documented lines put the gateway into veth1's table,
// so a host off the subnet reaches veth1's lease through veth1, and the
// host's own traffic from it leaves by veth1.
func TestDaemonSourceRoutingUDHCPC(t *testing.T) {
	s := newSrcLAN(t, "1", LANConfig{DHCP: true})
	table := srcroute.DefaultTable("veth1")
	if err := s.vethd.WaitLine("Source routing for veth1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	script := udhcpcEnv(t, s.LAN)
	udhcpcLease(t, s.LAN, script, "eth0")
	if main := s.Host.IP(t, "-4", "route", "show", "default"); !strings.Contains(main, "dev eth0") {
		t.Fatalf("udhcpc's script did not add eth0's default route:\n%s", main)
	}
	out := udhcpcLease(t, s.LAN, script, "veth1")
	var b, a = s.B4, s.A4
	for _, link := range []string{"eth0", "veth1"} {
		addrs := s.Addrs4(t, link)
		if len(addrs) != 1 {
			t.Fatalf("%s: addresses %v after udhcpc\n%s", link, addrs, out)
		}
		if link == "veth1" {
			b = addrs[0]
		} else {
			a = addrs[0]
		}
	}
	t.Logf("eth0 leased %s, veth1 leased %s", a, b)
	waitRules(t, s.Host, table, rule(b, table))
	waitTable(t, s.Host, table, true, fmt.Sprintf("default via %s dev veth1 proto dhcp", s.Router4))
	for _, c := range []check{
		{name: "remote pings B", kind: "echo-reply", src: b, dst: s.Remote4,
			run: func() error { return ping1(s.LANNS, "-I", s.Remote4.String(), b.String()) }},
		{name: "ping -I B (remote)", kind: "echo-request", src: b, dst: s.Remote4,
			run: func() error { return ping1(s.Host, "-I", b.String(), s.Remote4.String()) }},
		{name: "ping -I A (remote)", kind: "echo-request", src: a, dst: s.Remote4,
			run: func() error { return ping1(s.Host, "-I", a.String(), s.Remote4.String()) }},
	} {
		got, err := s.observe(c)
		t.Logf("%-30s %-6s (%v)", c.name, got, errOK(err))
		want := viaVirt
		if c.src == a {
			want = viaEth
		}
		if got != want || err != nil {
			t.Errorf("%s: %s (%v), want %s and an answer", c.name, got, errOK(err), want)
		}
	}
	// The deconfig branch: the documented flush takes the gateway out of
	// veth1's table again.
	if out := s.Host.MustRun(t, "env", "interface=veth1", script, "deconfig"); strings.Contains(out, "Error:") {
		t.Errorf("deconfig: %s", out)
	}
	waitTable(t, s.Host, table, false, fmt.Sprintf("default via %s dev veth1 proto dhcp", s.Router4))
}
