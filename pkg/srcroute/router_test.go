package srcroute_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/srcroute"
	"github.com/vethd/vethd/pkg/srcroute/srcroutetest"
	"golang.org/x/sys/unix"
)

// The fake namespace of every test: eth0 (ifindex 2) is the parent, veth1
// (ifindex 7) the virtual NIC whose addresses are routed, by table 1000.
const (
	eth0  = 2
	veth1 = 7
	table = 1000
)

// recorder is a slog.Handler that keeps "LEVEL message" lines.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// count returns how many lines contain all of subs.
func (r *recorder) count(subs ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func newKernel() *srcroutetest.Kernel {
	k := srcroutetest.NewKernel()
	k.AddLink(eth0, "eth0")
	k.AddLink(veth1, "veth1")
	return k
}

func config(k srcroute.RouteControl, log *recorder) srcroute.Config {
	return srcroute.Config{Link: veth1, Name: "veth1", Table: table, Control: k, Log: slog.New(log)}
}

// start starts a Router for veth1 on k; Close is left to the test's cleanup.
func start(t *testing.T, k *srcroutetest.Kernel) (*srcroute.Router, *recorder) {
	t.Helper()
	log := &recorder{}
	r, err := srcroute.New(config(k, log))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		r.Close()
		if t.Failed() {
			t.Logf("log:\n%s", log)
		}
	})
	return r, log
}

func mustSync(t *testing.T, r *srcroute.Router) {
	t.Helper()
	if err := r.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func rule(src string) string { return fmt.Sprintf("32000: from %s lookup %d proto 118", src, table) }

func wantRules(t *testing.T, k *srcroutetest.Kernel, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := k.RuleList(); !slices.Equal(got, want) {
		t.Errorf("rules:\n got %q\nwant %q", got, want)
	}
}

func wantTable(t *testing.T, k *srcroutetest.Kernel, tb int, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := k.TableList(tb); !slices.Equal(got, want) {
		t.Errorf("table %d:\n got %q\nwant %q", tb, got, want)
	}
}

func wantAlias(t *testing.T, k *srcroutetest.Kernel, want string) {
	t.Helper()
	l, err := k.Link(veth1)
	if err != nil {
		t.Fatal(err)
	}
	if l.Alias != want {
		t.Errorf("alias of veth1 = %q, want %q", l.Alias, want)
	}
}

const (
	subnet4 = "198.18.0.0/24 dev 7 scope link proto 118 metric 0 table 1000"
	subnet6 = "2001:db8::/64 dev 7 proto 118 metric 256 table 1000"
)

func TestAddressAddedAndRemoved(t *testing.T) {
	k := newKernel()
	r, log := start(t, k)
	wantRules(t, k)
	wantTable(t, k, table)
	wantAlias(t, k, "vethd table=1000")

	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "2001:db8::11/64")
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.11"), rule("2001:db8::11"))
	wantTable(t, k, table, subnet4, subnet6)
	st := r.Status()
	if want := []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("2001:db8::11")}; !slices.Equal(st.Sources, want) ||
		st.Routes != 2 || st.Table != table || st.Priority != srcroute.DefaultPriority || st.LastError != "" {
		t.Errorf("Status = %+v", st)
	}
	if log.count("INFO Routing traffic from 198.18.0.11 by veth1 table=1000") != 1 {
		t.Errorf("no log line for 198.18.0.11")
	}

	k.DelAddr(veth1, "198.18.0.11/24")
	mustSync(t, r)
	wantRules(t, k, rule("2001:db8::11"))
	wantTable(t, k, table, subnet6)
	k.DelAddr(veth1, "2001:db8::11/64")
	mustSync(t, r)
	wantRules(t, k)
	wantTable(t, k, table)
	if log.count("INFO No longer routing traffic from 198.18.0.11 by veth1") != 1 || log.count("No longer routing traffic from 2001:db8::11") != 1 {
		t.Errorf("no log lines for the removals")
	}
	if st := r.Status(); len(st.Sources) != 0 || st.Routes != 0 {
		t.Errorf("Status = %+v", st)
	}
	// The parent's table and rules were never touched.
	wantTable(t, k, unix.RT_TABLE_MAIN)
}

// TestFollowsNotifications: without Sync, the Router's own goroutine sees
// the changes (and Status may be read meanwhile).
func TestFollowsNotifications(t *testing.T) {
	k := newKernel()
	r, _ := start(t, k)
	waitRules := func(want ...string) {
		t.Helper()
		slices.Sort(want)
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Equal(k.RuleList(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("rules %q, want %q", k.RuleList(), want)
			}
			_ = r.Status()
			time.Sleep(time.Millisecond)
		}
	}
	k.AddAddr(veth1, "198.18.0.11/24")
	waitRules(rule("198.18.0.11"))
	k.AddAddr(veth1, "198.18.0.12/24")
	waitRules(rule("198.18.0.11"), rule("198.18.0.12"))
	k.DelAddr(veth1, "198.18.0.11/24")
	waitRules(rule("198.18.0.12"))
	k.AddAddr(eth0, "198.18.0.10/24") // the parent's: nothing to do
	k.DelAddr(veth1, "198.18.0.12/24")
	waitRules()
}

// TestExistingAtStart: what the link has when New is called is routed when
// New returns.
func TestExistingAtStart(t *testing.T) {
	k := newKernel()
	k.AddAddr(eth0, "198.18.0.10/24")
	k.AddDefault(eth0, "198.18.0.1", 0)
	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "2001:db8::11/64")
	k.AddDefault(veth1, "198.18.0.1", 100)
	start(t, k)
	wantRules(t, k, rule("198.18.0.11"), rule("2001:db8::11"))
	wantTable(t, k, table, subnet4, subnet6, "default via 198.18.0.1 dev 7 proto 118 metric 100 table 1000")
}

func TestTwoAddressesShareTheSubnetRoute(t *testing.T) {
	k := newKernel()
	r, _ := start(t, k)
	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "198.18.0.12/24") // a secondary: no prefix route of its own in main
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.11"), rule("198.18.0.12"))
	wantTable(t, k, table, subnet4)
	k.DelAddr(veth1, "198.18.0.12/24")
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.11"))
	wantTable(t, k, table, subnet4)
	k.AddAddr(veth1, "198.18.0.12/24")
	k.DelAddr(veth1, "198.18.0.11/24")
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.12"))
	wantTable(t, k, table, subnet4)
	k.DelAddr(veth1, "198.18.0.12/24")
	mustSync(t, r)
	wantRules(t, k)
	wantTable(t, k, table)
}

// TestIPv6DAD: a tentative address gets its rule once duplicate address
// detection ends; one that failed it, and link-local ones, never.
func TestIPv6DAD(t *testing.T) {
	k := newKernel()
	r, _ := start(t, k)
	k.AddAddr(veth1, "fe80::11/64")
	k.AddAddrWith(veth1, srcroute.Addr{Prefix: netip.MustParsePrefix("2001:db8::11/64"), Scope: unix.RT_SCOPE_UNIVERSE, Flags: unix.IFA_F_TENTATIVE})
	k.AddAddrWith(veth1, srcroute.Addr{Prefix: netip.MustParsePrefix("2001:db8::12/64"), Scope: unix.RT_SCOPE_UNIVERSE, Flags: unix.IFA_F_TENTATIVE})
	mustSync(t, r)
	wantRules(t, k)
	k.SetAddrFlags(veth1, "2001:db8::11/64", 0)
	k.SetAddrFlags(veth1, "2001:db8::12/64", unix.IFA_F_DADFAILED)
	mustSync(t, r)
	wantRules(t, k, rule("2001:db8::11"))
	wantTable(t, k, table, subnet6)
}

func TestGatewayMirrored(t *testing.T) {
	k := newKernel()
	r, _ := start(t, k)
	k.AddAddr(eth0, "198.18.0.10/24")
	k.AddDefault(eth0, "198.18.0.1", 0) // the parent's: stays out
	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "2001:db8::11/64")
	k.AddDefault(veth1, "198.18.0.1", 100) // NetworkManager, networkd: one per link
	k.AddDefault(veth1, "fe80::1", 1024)   // a router advertisement's
	mustSync(t, r)
	gw4 := "default via 198.18.0.1 dev 7 proto 118 metric 100 table 1000"
	gw6 := "default via fe80::1 dev 7 proto 118 metric 1024 table 1000"
	wantTable(t, k, table, subnet4, subnet6, gw4, gw6)

	// The gateway changes (a new lease): the copy follows.
	k.DelDefault(veth1, "198.18.0.1", 100)
	k.AddDefault(veth1, "198.18.0.254", 100)
	mustSync(t, r)
	wantTable(t, k, table, subnet4, subnet6, gw6, "default via 198.18.0.254 dev 7 proto 118 metric 100 table 1000")

	// And goes with it.
	k.DelDefault(veth1, "198.18.0.254", 100)
	k.DelDefault(veth1, "fe80::1", 1024)
	mustSync(t, r)
	wantTable(t, k, table, subnet4, subnet6)
	wantRules(t, k, rule("198.18.0.11"), rule("2001:db8::11"))
}

// TestResyncOnLinkUp: admin down flushes the table's IPv4 routes (without a
// notification) and the IPv6 addresses; on up the routes come back.
func TestResyncOnLinkUp(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "2001:db8::11/64")
	k.AddDefault(veth1, "198.18.0.1", 100)
	r, _ := start(t, k)
	wantTable(t, k, table, subnet4, subnet6, "default via 198.18.0.1 dev 7 proto 118 metric 100 table 1000")

	k.SetUp(veth1, false)
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.11")) // IPv4 addresses stay on a down link
	wantTable(t, k, table)

	k.SetUp(veth1, true)
	mustSync(t, r)
	// The gateway is the address manager's to put back into main; the
	// subnet route is the kernel's, and comes back at once.
	wantTable(t, k, table, subnet4)
	k.AddDefault(veth1, "198.18.0.1", 100)
	mustSync(t, r)
	wantTable(t, k, table, subnet4, "default via 198.18.0.1 dev 7 proto 118 metric 100 table 1000")
}

// TestLeftoversRemovedAtStart: what a killed run left (rules for addresses
// that are gone, routes nobody wants) goes; what is still right stays
// without churn; what is someone else's is not touched.
func TestLeftoversRemovedAtStart(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	mk := func(src string, tb int, proto uint8) srcroute.Rule {
		ip := netip.MustParseAddr(src)
		fam := unix.AF_INET
		if ip.Is6() {
			fam = unix.AF_INET6
		}
		return srcroute.Rule{Family: fam, Src: netip.PrefixFrom(ip, ip.BitLen()), Table: tb, Priority: srcroute.DefaultPriority, Protocol: proto}
	}
	for _, ru := range []srcroute.Rule{
		mk("198.18.0.11", table, srcroute.Protocol),  // still right (the TAP was adopted)
		mk("198.18.0.99", table, srcroute.Protocol),  // its address is gone
		mk("2001:db8::99", table, srcroute.Protocol), // likewise
		mk("198.18.0.77", table, unix.RTPROT_BOOT),   // an admin's rule into the table
		mk("198.18.0.78", 2000, srcroute.Protocol),   // another bridge's
	} {
		if err := k.AddRuleAsAdmin(ru); err != nil {
			t.Fatal(err)
		}
	}
	stale := srcroute.Route{Table: table, Dst: netip.MustParsePrefix("10.0.0.0/8"), Gw: netip.MustParseAddr("198.18.0.254"),
		LinkIndex: veth1, Protocol: srcroute.Protocol, Type: unix.RTN_UNICAST}
	hook := srcroute.Route{Table: table, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.18.0.1"),
		LinkIndex: veth1, Protocol: srcroute.ProtocolDHCP, Type: unix.RTN_UNICAST}
	for _, rt := range []srcroute.Route{stale, hook} {
		if err := k.AddRouteAsAdmin(rt); err != nil {
			t.Fatal(err)
		}
	}
	_, log := start(t, k)
	wantRules(t, k, rule("198.18.0.11"),
		"32000: from 198.18.0.77 lookup 1000 proto 3", "32000: from 198.18.0.78 lookup 2000 proto 118")
	wantTable(t, k, table, subnet4, "default via 198.18.0.1 dev 7 proto 16 metric 0 table 1000")
	if k.Calls("AddRule") != 0 {
		t.Errorf("the rule that was right was added again (%d AddRule calls)", k.Calls("AddRule"))
	}
	if log.count("INFO Removed 2 rules and 1 route of veth1 left by an earlier run table=1000") != 1 {
		t.Errorf("no log line for the leftovers")
	}
}

// TestCloseRemovesEverything: Close removes the Router's rules, routes and
// alias, and leaves the hook's route and others' rules.
func TestCloseRemovesEverything(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "2001:db8::11/64")
	k.AddDefault(veth1, "198.18.0.1", 100)
	if err := k.AddRuleAsAdmin(srcroute.Rule{Family: unix.AF_INET, Table: 500, Priority: 100, Protocol: unix.RTPROT_BOOT}); err != nil {
		t.Fatal(err)
	}
	r, log := start(t, k)
	hook := srcroute.Route{Table: table, Dst: netip.MustParsePrefix("10.0.0.0/8"), Gw: netip.MustParseAddr("198.18.0.1"),
		LinkIndex: veth1, Protocol: srcroute.ProtocolDHCP, Type: unix.RTN_UNICAST}
	if err := k.AddRouteAsAdmin(hook); err != nil {
		t.Fatal(err)
	}
	mustSync(t, r)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantRules(t, k, "100: from all lookup 500 proto 3")
	wantTable(t, k, table, "10.0.0.0/8 via 198.18.0.1 dev 7 proto 16 metric 0 table 1000")
	wantAlias(t, k, "")
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := r.Sync(); !errors.Is(err, srcroute.ErrClosed) {
		t.Errorf("Sync after Close = %v, want ErrClosed", err)
	}
	if n := k.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left open", n)
	}
	if k.Calls("Close") != 0 {
		t.Errorf("Close closed a RouteControl it was given")
	}
	if log.count("INFO Removed the source routing of veth1 table=1000 rules=2 routes=3") != 1 {
		t.Errorf("no log line for Close")
	}
}

// TestCleanup: what the service runs when source routing is off.
func TestCleanup(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "2001:db8::11/64")
	log := &recorder{}
	r, err := srcroute.New(config(k, log))
	if err != nil {
		t.Fatal(err)
	}
	// As if killed: the subscription stops, nothing is removed.
	k.Fail("Rules", unix.EPERM)
	k.Fail("DelRule", unix.EPERM)
	k.Fail("SetAlias", unix.EPERM)
	r.Close()
	k.Fail("Rules", nil)
	k.Fail("DelRule", nil)
	k.Fail("SetAlias", nil)
	wantRules(t, k, rule("198.18.0.11"), rule("2001:db8::11"))
	wantAlias(t, k, "vethd table=1000")

	n, err := srcroute.Cleanup(srcroute.Config{Link: veth1, Name: "veth1", Table: table, Control: k})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if n != (srcroute.Removed{Rules: 2, Routes: 2}) {
		t.Errorf("Cleanup removed %v", n)
	}
	wantRules(t, k)
	wantTable(t, k, table)
	wantAlias(t, k, "")
	if n, err := srcroute.Cleanup(srcroute.Config{Link: veth1, Name: "veth1", Table: table, Control: k}); err != nil || n != (srcroute.Removed{}) {
		t.Errorf("second Cleanup = %v, %v", n, err)
	}
}

// TestCleanupDefaultTable: a Config without a table cleans the name's.
func TestCleanupDefaultTable(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	r, err := srcroute.New(srcroute.Config{Link: veth1, Name: "veth1", Control: k})
	if err != nil {
		t.Fatal(err)
	}
	if r.Table() != srcroute.DefaultTable("veth1") {
		t.Errorf("Table() = %d, want %d", r.Table(), srcroute.DefaultTable("veth1"))
	}
	// Leave the rule behind as a killed run would.
	k.Fail("Rules", unix.EPERM)
	r.Close()
	k.Fail("Rules", nil)
	if len(k.RuleList()) != 1 {
		t.Fatalf("rules %q", k.RuleList())
	}
	n, err := srcroute.Cleanup(srcroute.Config{Name: "veth1", Control: k})
	if err != nil || n.Rules != 1 || n.Routes != 1 {
		t.Errorf("Cleanup = %v, %v; rules %q", n, err, k.RuleList())
	}
}

// TestHookRouteLeftAlone: a gateway the dhclient hook handed over (proto
// dhcp) holds the slot of main's copy; the Router does not fight it.
func TestHookRouteLeftAlone(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	r, log := start(t, k)
	hook := srcroute.Route{Table: table, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.18.0.1"),
		LinkIndex: veth1, Protocol: srcroute.ProtocolDHCP, Type: unix.RTN_UNICAST}
	if err := k.AddRouteAsAdmin(hook); err != nil {
		t.Fatal(err)
	}
	k.AddDefault(veth1, "198.18.0.1", 0) // the same gateway in main too
	for range 3 {
		mustSync(t, r)
	}
	wantTable(t, k, table, subnet4, "default via 198.18.0.1 dev 7 proto 16 metric 0 table 1000")
	if st := r.Status(); st.LastError != "" {
		t.Errorf("LastError = %q", st.LastError)
	}
	if log.count("WARN") != 0 {
		t.Errorf("warnings:\n%s", log)
	}
}

func TestTableInUse(t *testing.T) {
	k := newKernel()
	k.AddAddr(eth0, "198.18.0.10/24")
	if err := k.AddRouteAsAdmin(srcroute.Route{Table: table, Dst: netip.MustParsePrefix("198.18.0.0/24"), LinkIndex: eth0,
		Protocol: srcroute.Protocol, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST}); err != nil {
		t.Fatal(err)
	}
	_, err := srcroute.New(config(k, &recorder{}))
	if !errors.Is(err, srcroute.ErrTableInUse) || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("New = %v, want ErrTableInUse naming eth0", err)
	}
	if n := k.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left open", n)
	}
}

func TestConfigErrors(t *testing.T) {
	k := newKernel()
	for _, c := range []struct {
		cfg  srcroute.Config
		want string
	}{
		{srcroute.Config{Name: "veth1", Control: k}, "no ifindex"},
		{srcroute.Config{Link: veth1, Control: k}, "neither a table nor a name"},
		{srcroute.Config{Link: veth1, Name: "veth1", Table: 254, Control: k}, "the kernel's own"},
		{srcroute.Config{Link: veth1, Name: "veth1", Priority: 32766, Control: k}, "must be 1…32765"},
		{srcroute.Config{Link: 42, Name: "veth9", Control: k}, "link 42"},
	} {
		_, err := srcroute.New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", c.cfg, err, c.want)
		}
	}
	if _, err := srcroute.New(srcroute.Config{Link: 42, Name: "veth9", Control: k}); !errors.Is(err, srcroute.ErrLinkNotFound) {
		t.Errorf("missing link: %v, want ErrLinkNotFound", err)
	}
}

// TestNewFailsCleanly: a first look that fails leaves nothing behind.
func TestNewFailsCleanly(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	k.AddAddr(veth1, "198.18.0.12/24")
	k.Fail("AddRule", unix.EPERM)
	_, err := srcroute.New(config(k, &recorder{}))
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("New = %v, want EPERM", err)
	}
	wantRules(t, k)
	wantTable(t, k, table)
	wantAlias(t, k, "")
	if n := k.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left open", n)
	}
}

// TestErrorsLoggedOnce: a failure that lasts is logged once and shown in
// Status; when it ends, that is logged too.
func TestErrorsLoggedOnce(t *testing.T) {
	k := newKernel()
	r, log := start(t, k)
	k.Fail("AddRule", unix.EPERM)
	k.AddAddr(veth1, "198.18.0.11/24")
	for range 3 {
		if err := r.Sync(); !errors.Is(err, unix.EPERM) {
			t.Fatalf("Sync = %v, want EPERM", err)
		}
	}
	if st := r.Status(); !strings.Contains(st.LastError, "add rule") || len(st.Sources) != 0 {
		t.Errorf("Status = %+v", st)
	}
	if n := log.count(`WARN Source routing incomplete err="source routing for veth1: add rule`); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log)
	}
	k.Fail("AddRule", nil)
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.11"))
	if st := r.Status(); st.LastError != "" || len(st.Sources) != 1 {
		t.Errorf("Status = %+v", st)
	}
	if log.count("INFO Source routing for veth1 complete again") != 1 {
		t.Errorf("no log line for the recovery")
	}
}

// TestLostSubscription: notifications lost (ENOBUFS) → subscribe again and
// look, so that what happened meanwhile is seen.
func TestLostSubscription(t *testing.T) {
	k := newKernel()
	_, _ = start(t, k)
	k.LoseSubscriptions()
	k.AddAddr(veth1, "198.18.0.11/24") // notified to nobody
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(k.RuleList(), []string{rule("198.18.0.11")}) {
		if time.Now().After(deadline) {
			t.Fatalf("rules %q after a lost subscription", k.RuleList())
		}
		time.Sleep(time.Millisecond)
	}
	if n := k.Subscribers(); n != 1 {
		t.Errorf("%d subscriptions, want 1", n)
	}
}

// TestResubscribeRetried: subscribing again fails for a while: warned once,
// retried with backoff until it works.
func TestResubscribeRetried(t *testing.T) {
	k := newKernel()
	_, log := start(t, k)
	k.Fail("Subscribe", unix.ENOBUFS)
	k.LoseSubscriptions()
	deadline := time.Now().Add(5 * time.Second)
	for k.Calls("Subscribe") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d Subscribe calls", k.Calls("Subscribe"))
		}
		time.Sleep(time.Millisecond)
	}
	k.AddAddr(veth1, "198.18.0.11/24")
	k.Fail("Subscribe", nil)
	for k.Subscribers() != 1 || len(k.RuleList()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not subscribed again: %d subscriptions, rules %q", k.Subscribers(), k.RuleList())
		}
		time.Sleep(time.Millisecond)
	}
	if n := log.count("WARN Cannot subscribe to routing notifications for veth1"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log)
	}
}

// TestAlias: the Router names its table in the link's alias, replaces a
// stale alias of its own, and leaves an admin's (warning once).
func TestAlias(t *testing.T) {
	k := newKernel()
	k.SetAliasAsAdmin(veth1, "vethd table=5")
	r, log := start(t, k)
	wantAlias(t, k, "vethd table=1000")
	k.SetAliasAsAdmin(veth1, "uplink B")
	mustSync(t, r)
	mustSync(t, r)
	wantAlias(t, k, "uplink B")
	if n := log.count(`WARN veth1 has an alias of its own alias="uplink B"`); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log)
	}
	r.Close()
	wantAlias(t, k, "uplink B")
}

// TestLinkGone: the link deleted (or moved to another namespace) takes its
// addresses along, so the rules go; when it is back, they come back.
func TestLinkGone(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	r, _ := start(t, k)
	wantRules(t, k, rule("198.18.0.11"))
	k.DelLink(veth1)
	mustSync(t, r)
	wantRules(t, k)
	wantTable(t, k, table)
	if st := r.Status(); len(st.Sources) != 0 || st.LastError != "" {
		t.Errorf("Status = %+v", st)
	}
	k.AddLink(veth1, "veth1")
	k.AddAddr(veth1, "198.18.0.11/24")
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.11"))
	wantTable(t, k, table, subnet4)
	wantAlias(t, k, "vethd table=1000")
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestNoPrefixRoute: an address with noprefixroute gets its rule but no
// subnet route until whoever added it adds one (NetworkManager does).
func TestNoPrefixRoute(t *testing.T) {
	k := newKernel()
	r, _ := start(t, k)
	k.AddAddrWith(veth1, srcroute.Addr{Prefix: netip.MustParsePrefix("198.18.0.11/24"), Scope: unix.RT_SCOPE_UNIVERSE, Flags: unix.IFA_F_NOPREFIXROUTE})
	mustSync(t, r)
	wantRules(t, k, rule("198.18.0.11"))
	wantTable(t, k, table)
	if err := k.AddRouteAsAdmin(srcroute.Route{Table: unix.RT_TABLE_MAIN, Dst: netip.MustParsePrefix("198.18.0.0/24"), LinkIndex: veth1,
		Protocol: unix.RTPROT_KERNEL, Metric: 100, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, r)
	wantTable(t, k, table, "198.18.0.0/24 dev 7 scope link proto 118 metric 100 table 1000")
}

// TestPriority: a configured priority is used, and rules at another one
// (an earlier configuration) are replaced.
func TestPriority(t *testing.T) {
	k := newKernel()
	k.AddAddr(veth1, "198.18.0.11/24")
	cfg := config(k, &recorder{})
	r1, err := srcroute.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k.Fail("Rules", unix.EPERM) // "killed": leave the rule
	r1.Close()
	k.Fail("Rules", nil)
	cfg.Priority = 1500
	r2, err := srcroute.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	wantRules(t, k, "1500: from 198.18.0.11 lookup 1000 proto 118")
}
