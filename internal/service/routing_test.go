package service

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/srcroute"
)

// fakeRoutes is a Routes without a kernel: it records what the service
// asks for, in order, as "start link=N table=T prio=P", "close link=N",
// "cleanup link=N table=T".
type fakeRoutes struct {
	mu       sync.Mutex
	events   []string
	startErr error
	more     chan struct{} // closed and replaced at each event
}

var _ Routes = (*fakeRoutes)(nil)

func newFakeRoutes() *fakeRoutes { return &fakeRoutes{more: make(chan struct{})} }

func (f *fakeRoutes) record(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	close(f.more)
	f.more = make(chan struct{})
}

func (f *fakeRoutes) Start(cfg srcroute.Config) (Router, error) {
	f.mu.Lock()
	err := f.startErr
	f.mu.Unlock()
	if err != nil {
		f.record("failed start link=" + strconv.Itoa(cfg.Link))
		return nil, err
	}
	f.record(fmt.Sprintf("start link=%d table=%d prio=%d", cfg.Link, cfg.Table, cfg.Priority))
	return &fakeRouter{f: f, link: cfg.Link}, nil
}

func (f *fakeRoutes) Cleanup(cfg srcroute.Config) (srcroute.Removed, error) {
	f.record(fmt.Sprintf("cleanup link=%d table=%d", cfg.Link, cfg.Table))
	return srcroute.Removed{Rules: 2, Routes: 1}, nil
}

func (f *fakeRoutes) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

// waitEvents waits until there are n events and returns them.
func (f *fakeRoutes) waitEvents(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		ev, more := append([]string(nil), f.events...), f.more
		f.mu.Unlock()
		if len(ev) >= n {
			return ev
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("routing events %q, want %d", ev, n)
		}
	}
}

type fakeRouter struct {
	f    *fakeRoutes
	link int
	once sync.Once
}

func (r *fakeRouter) Close() error {
	r.once.Do(func() { r.f.record("close link=" + strconv.Itoa(r.link)) })
	return nil
}

// quiet fails if routing does anything more within a short while.
func (f *fakeRoutes) quiet(t *testing.T, n int) {
	t.Helper()
	time.Sleep(30 * time.Millisecond)
	if ev := f.list(); len(ev) != n {
		t.Errorf("routing events %q, want only the first %d", ev, n)
	}
}

// change applies f to b's status and calls its OnChange, as the bridge
// does after a change.
func change(b *fakeBridge, f func(st *bridge.Status)) {
	b.set(func(b *fakeBridge) { f(&b.status) })
	b.cfg.OnChange()
}

var veth1Table = srcroute.DefaultTable("veth1")

// TestRoutingFollowsBridge (instance mode): a Router for the interface
// from the start, re-made for a re-created interface (new ifindex),
// closed while the interface is in another namespace (said once) and
// started again when it is back, closed at the stop.
func TestRoutingFollowsBridge(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	routes := newFakeRoutes()
	cfg := h.config(ModeInstance)
	cfg.Routes = routes
	h.run(cfg)
	b := h.start.nextStarted(t)
	idx := b.Status().IfIndex
	ev := routes.waitEvents(t, 1)
	if want := fmt.Sprintf("start link=%d table=%d prio=32000", idx, veth1Table); ev[0] != want {
		t.Fatalf("first event %q, want %q", ev[0], want)
	}
	h.log.WaitLine(t, fmt.Sprintf("vethd: Source routing for veth1: table=%d priority=32000 ifindex=%d", veth1Table, idx))

	// Other changes (carrier, say) leave the Router alone.
	change(b, func(st *bridge.Status) { st.Carrier = false })
	routes.quiet(t, 1)

	// A re-created interface has a new ifindex.
	change(b, func(st *bridge.Status) { st.IfIndex = 40 })
	ev = routes.waitEvents(t, 3)
	if ev[1] != fmt.Sprintf("close link=%d", idx) || ev[2] != fmt.Sprintf("start link=40 table=%d prio=32000", veth1Table) {
		t.Errorf("after the ifindex change: %q", ev[1:])
	}

	// Moved into a container: its routing is the container's.
	for range 3 {
		change(b, func(st *bridge.Status) { st.Namespace = "netnsid 3" })
	}
	ev = routes.waitEvents(t, 5)
	if ev[3] != "close link=40" || ev[4] != fmt.Sprintf("cleanup link=0 table=%d", veth1Table) {
		t.Errorf("after the move: %q", ev[3:])
	}
	routes.quiet(t, 5)
	if n := h.log.count("veth1 is in another network namespace (netnsid 3): its routing is that namespace's; no source routing for it here"); n != 1 {
		t.Errorf("the move was logged %d times, want once", n)
	}

	// Back home.
	change(b, func(st *bridge.Status) { st.Namespace = "" })
	ev = routes.waitEvents(t, 6)
	if ev[5] != fmt.Sprintf("start link=40 table=%d prio=32000", veth1Table) {
		t.Errorf("back home: %q", ev[5:])
	}

	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	ev = routes.list()
	if len(ev) != 7 || ev[6] != "close link=40" {
		t.Errorf("after the stop: %q", ev)
	}
}

// TestRoutingReload: a reload applies SourceRouting=, RouteTable= and
// RoutePriority=: a changed table or priority makes a new Router, off
// closes it and cleans up what a Router would keep.
func TestRoutingReload(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	routes := newFakeRoutes()
	cfg := h.config(ModeInstance)
	cfg.Routes = routes
	h.run(cfg)
	b := h.start.nextStarted(t)
	idx := b.Status().IfIndex
	routes.waitEvents(t, 1)

	reload := func() {
		t.Helper()
		n := len(h.sd.Messages())
		h.sigs <- syscall.SIGHUP
		h.sd.WaitFor(t, n, 5*time.Second, "READY=1")
	}
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nRouteTable=100\nRoutePriority=900\n")
	reload()
	ev := routes.waitEvents(t, 3)
	if ev[1] != fmt.Sprintf("close link=%d", idx) || ev[2] != fmt.Sprintf("start link=%d table=100 prio=900", idx) {
		t.Errorf("after RouteTable=100: %q", ev[1:])
	}
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nRouteTable=100\nRoutePriority=900\nSourceRouting=no\n")
	reload()
	ev = routes.waitEvents(t, 5)
	if ev[3] != fmt.Sprintf("close link=%d", idx) || ev[4] != fmt.Sprintf("cleanup link=%d table=100", idx) {
		t.Errorf("after SourceRouting=no: %q", ev[3:])
	}
	h.log.WaitLine(t, "vethd: Removed 2 rules, 1 route of veth1 table=100 (source routing is off here)")
	// The same file again: nothing to do.
	reload()
	routes.quiet(t, 5)

	// A bad value keeps the running configuration (and routing).
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nRouteTable=main\n")
	reload()
	routes.quiet(t, 5)

	// Kind= and Namespace= need a restart.
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nRouteTable=100\nRoutePriority=900\nSourceRouting=no\nNamespace=ctr\n")
	reload()
	h.log.WaitLine(t, "vethd: error: Reload failed; keeping the running configuration: reload: Kind= and Namespace= take effect only when veth1 is created")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	routes.quiet(t, 5)
}

// TestRoutingOff: SourceRouting=no at the start starts no Router and
// removes what an earlier run left (Cleanup), once.
func TestRoutingOff(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nSourceRouting=no\n")
	routes := newFakeRoutes()
	cfg := h.config(ModeInstance)
	cfg.Routes = routes
	h.run(cfg)
	b := h.start.nextStarted(t)
	ev := routes.waitEvents(t, 1)
	if want := fmt.Sprintf("cleanup link=%d table=%d", b.Status().IfIndex, veth1Table); ev[0] != want {
		t.Errorf("%q, want %q", ev, want)
	}
	change(b, func(st *bridge.Status) { st.MTU = 9000 })
	routes.quiet(t, 1)
}

// TestRoutingStartFails: a Router that cannot start is tried again, and
// the error logged once.
func TestRoutingStartFails(t *testing.T) {
	h := newHarness(t)
	routes := newFakeRoutes()
	routes.startErr = fmt.Errorf("routing table 1756059 of veth1: %w (veth7)", srcroute.ErrTableInUse)
	cfg := h.config(ModeSeed)
	cfg.MAC = "02:00:5e:10:00:01"
	cfg.Routes = routes
	h.run(cfg)
	b := h.start.nextStarted(t)
	routes.waitEvents(t, 1)
	change(b, func(st *bridge.Status) { st.Carrier = false })
	routes.waitEvents(t, 2)
	routes.mu.Lock()
	routes.startErr = nil
	routes.mu.Unlock()
	change(b, func(st *bridge.Status) { st.Carrier = true })
	ev := routes.waitEvents(t, 3)
	if !strings.HasPrefix(ev[2], "start link=") {
		t.Errorf("%q", ev)
	}
	if n := h.log.count("No source routing for veth1: routing table 1756059 of veth1: routing table in use by another interface (veth7)"); n != 1 {
		t.Errorf("the start error was logged %d times, want once", n)
	}
}

// TestRoutingSeedFlags: the seed flags' routing reaches the Router.
func TestRoutingSeedFlags(t *testing.T) {
	h := newHarness(t)
	routes := newFakeRoutes()
	cfg := h.config(ModeSeed)
	cfg.MAC = "02:00:5e:10:00:01"
	cfg.RouteTable, cfg.RoutePriority = 4242, 100
	cfg.Routes = routes
	h.run(cfg)
	b := h.start.nextStarted(t)
	ev := routes.waitEvents(t, 1)
	if want := fmt.Sprintf("start link=%d table=4242 prio=100", b.Status().IfIndex); ev[0] != want {
		t.Errorf("%q, want %q", ev, want)
	}
}

// TestRoutingNamespaceConfigured: an interface created in another
// namespace (Namespace=) gets no Router here.
func TestRoutingNamespaceConfigured(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nNamespace=ctr\nKind=veth\n")
	routes := newFakeRoutes()
	cfg := h.config(ModeInstance)
	cfg.Routes = routes
	h.run(cfg)
	b := h.start.nextStarted(t)
	if b.cfg.Namespace != "/run/netns/ctr" || b.cfg.Kind != bridge.KindVeth {
		t.Errorf("started with Namespace %q Kind %q", b.cfg.Namespace, b.cfg.Kind)
	}
	ev := routes.waitEvents(t, 1)
	if want := fmt.Sprintf("cleanup link=0 table=%d", veth1Table); ev[0] != want {
		t.Errorf("%q, want %q", ev, want)
	}
	h.log.WaitLine(t, "vethd: veth1 is in another network namespace (/run/netns/ctr)")
	// A veth pair has nothing for the fd store, and that is no warning.
	h.ready(0)
	if n := h.log.count("will not survive a restart"); n != 0 {
		t.Errorf("warned about the fd store for a veth pair")
	}
	if h.sd.Find(0, "FDSTORE=1") >= 0 {
		t.Error("stored a descriptor for a veth pair")
	}
}

// TestAllTableClash (--all): two bridges with one table are a
// configuration error naming both files (exit 78), at the start and when
// a reload adds the second.
func TestAllTableClash(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nRouteTable=100\n")
	h.writeConf("veth2", "[Bridge]\nParent=eth0\nRouteTable=100\n")
	cfg := h.config(ModeAll)
	cfg.Routes = newFakeRoutes()
	h.run(cfg)
	err := h.wait()
	var e *Error
	want := h.dir + "/veth2.conf: RouteTable=: table 100 is veth1's too (" + h.dir + "/veth1.conf); each interface needs a table of its own: set RouteTable= in one of them"
	if !errors.As(err, &e) || e.Kind != KindConfig || err.Error() != want {
		t.Fatalf("Run = %v, want a KindConfig error %q", err, want)
	}

	// No clash when one of them routes nothing here.
	h2 := newHarness(t)
	h2.writeConf("veth1", "[Bridge]\nParent=eth0\nRouteTable=100\n")
	h2.writeConf("veth2", "[Bridge]\nParent=eth0\nRouteTable=100\nSourceRouting=no\n")
	cfg = h2.config(ModeAll)
	cfg.Routes = newFakeRoutes()
	h2.run(cfg)
	h2.ready(0)
	// A reload that makes veth2 route through table 100 is refused for it.
	h2.writeConf("veth2", "[Bridge]\nParent=eth0\nRouteTable=100\n")
	n := len(h2.sd.Messages())
	h2.sigs <- syscall.SIGHUP
	h2.sd.WaitFor(t, n, 5*time.Second, "READY=1")
	h2.log.WaitLine(t, "vethd: error: Reload of veth2 failed; keeping its running configuration: "+h2.dir+"/veth2.conf: RouteTable=: table 100 is veth1's too")
}

// TestRouteLimitsAgree: pkg/config's rules for RouteTable= and
// RoutePriority= are pkg/srcroute's.
func TestRouteLimitsAgree(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 2, 252, 253, 254, 255, 256, 1756059, 1<<31 - 1, 1 << 31, 1<<32 - 1, 1 << 32} {
		_, cerr := config.ParseRouteTable(strconv.Itoa(n))
		serr := srcroute.CheckTable(n)
		if (cerr == nil) != (serr == nil) {
			t.Errorf("table %d: config says %v, srcroute %v", n, cerr, serr)
		}
	}
	for _, n := range []int{-1, 0, 1, 32000, 32765, 32766, 32767, 1 << 16} {
		_, cerr := config.ParseRoutePriority(strconv.Itoa(n))
		serr := srcroute.CheckPriority(n)
		if (cerr == nil) != (serr == nil) {
			t.Errorf("priority %d: config says %v, srcroute %v", n, cerr, serr)
		}
	}
	if config.DefaultRoutePriority != srcroute.DefaultPriority {
		t.Errorf("config.DefaultRoutePriority %d, srcroute.DefaultPriority %d", config.DefaultRoutePriority, srcroute.DefaultPriority)
	}
}
