package srcroute

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vethd/vethd/internal/journal"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config is what a Router is built from.
type Config struct {
	// Link is the ifindex of the interface whose addresses are routed
	// (vethd's virtual NIC).
	Link int
	// Name is the interface's configured name: it picks the default table
	// (DefaultTable) and names the interface in log messages until the
	// link itself is read.
	Name string
	// Table is the table the rules look up; 0 means DefaultTable(Name).
	// Each interface needs a table of its own (see ErrTableInUse).
	Table int
	// Priority is the rules' priority; 0 means DefaultPriority.
	Priority int
	// Control reaches the kernel; nil means netlink in Namespace
	// (OpenNetlink), opened by New and closed by Close. One given here
	// stays the caller's.
	Control RouteControl
	// Namespace is the network namespace the link is in, when Control is
	// nil; nil means the calling thread's.
	Namespace *netns.NsHandle
	// Log receives the Router's events; nil discards them.
	Log *slog.Logger
}

// resolve fills in the defaults and checks cfg.
func (cfg Config) resolve() (Config, error) {
	if cfg.Link <= 0 {
		return cfg, fmt.Errorf("source routing for %s: no ifindex", cfg.Name)
	}
	if cfg.Table == 0 {
		if cfg.Name == "" {
			return cfg, fmt.Errorf("source routing for link %d: neither a table nor a name to derive it from", cfg.Link)
		}
		cfg.Table = DefaultTable(cfg.Name)
	}
	if err := CheckTable(cfg.Table); err != nil {
		return cfg, fmt.Errorf("source routing for %s: %w", cfg.Name, err)
	}
	if cfg.Priority == 0 {
		cfg.Priority = DefaultPriority
	}
	if err := CheckPriority(cfg.Priority); err != nil {
		return cfg, fmt.Errorf("source routing for %s: %w", cfg.Name, err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("link %d", cfg.Link)
	}
	return cfg, nil
}

// Status is a snapshot of what a Router keeps.
type Status struct {
	Table    int
	Priority int
	// Sources are the addresses that have a rule, sorted.
	Sources []netip.Addr
	// Routes is how many routes the Router keeps in the table.
	Routes int
	// LastError is the error of the last look at the kernel; "" if it went well.
	LastError string
}

// Router keeps the source rules and the table of one link in step with the
// link's addresses and with main's routes through it.
//
// Goroutines: New looks at the kernel once, then starts routineFollow,
// which owns the subscription and everything below "owned by
// routineFollow"; it looks again whenever a notification concerns the link,
// when the subscription was lost (after resubscribing) and when Sync asks.
// Each look reads the link, its addresses, main's routes through it, the
// rules and the table, and adds and removes until the kernel holds the plan
// (makePlan), so a look after any number of missed notifications is right.
// Status, Sync and Close may be called from any goroutine.
type Router struct {
	// Set by New, read-only after.
	link    int
	table   int
	prio    int
	log     *slog.Logger
	rc      RouteControl
	ownRC   bool
	syncReq chan chan error
	stop    chan struct{}
	done    chan struct{}

	// Owned by routineFollow (by New before it starts).
	name      string              // the link's name as last seen, for messages
	sources   map[netip.Addr]bool // sources that have a rule, as last installed
	lastErr   string              // the last look's error, to log each error once
	aliasWarn bool                // the "alias is someone else's" warning was given

	closeOnce sync.Once
	closeErr  error

	state struct {
		sync.Mutex
		st Status
	}
}

// New starts a Router for cfg.Link: it removes what an earlier run left in
// the table (rules and routes of Protocol that the link's current state does
// not call for), installs the rules and routes the link needs now, and then
// follows it. If that first look fails, New removes what it installed and
// returns the error. The error wraps ErrLinkNotFound if the link does not
// exist and ErrTableInUse if another interface's routes are in the table.
func New(cfg Config) (*Router, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	r := &Router{
		link: cfg.Link, table: cfg.Table, prio: cfg.Priority, log: cfg.Log,
		rc: cfg.Control, name: cfg.Name, sources: map[netip.Addr]bool{},
		syncReq: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if r.rc == nil {
		if r.rc, err = OpenNetlink(cfg.Namespace); err != nil {
			return nil, fmt.Errorf("source routing for %s: %w", cfg.Name, err)
		}
		r.ownRC = true
	}
	fail := func(err error) (*Router, error) {
		if r.ownRC {
			r.rc.Close()
		}
		return nil, err
	}
	l, err := r.rc.Link(r.link)
	if err != nil {
		return fail(fmt.Errorf("source routing for %s: %w", cfg.Name, err))
	}
	r.name = l.Name
	if err := r.checkTableFree(); err != nil {
		return fail(err)
	}
	// Subscribe first, then look: a change between the two is then either
	// seen by the look or notified after it, never lost.
	sub, err := r.rc.Subscribe()
	if err != nil {
		return fail(fmt.Errorf("source routing for %s: subscribe: %w", r.name, err))
	}
	r.log.Debug(fmt.Sprintf("Source routing for %s table=%d priority=%d", r.name, r.table, r.prio))
	res, err := r.look()
	if err != nil {
		sub.Close()
		r.removeAll()
		return fail(err)
	}
	if res.staleRules+res.staleRoutes > 0 {
		r.log.Info(fmt.Sprintf("Removed %s and %s of %s left by an earlier run table=%d",
			plural(res.staleRules, "rule"), plural(res.staleRoutes, "route"), r.name, r.table))
	}
	go r.routineFollow(sub)
	return r, nil
}

// checkTableFree fails with ErrTableInUse if the table holds routes of
// Protocol through another link that exists.
func (r *Router) checkTableFree() error {
	routes, err := r.rc.Routes(r.table, 0, Protocol)
	if err != nil {
		return fmt.Errorf("source routing for %s: list table %d: %w", r.name, r.table, err)
	}
	for _, rt := range routes {
		if rt.LinkIndex == r.link || rt.LinkIndex == 0 {
			continue
		}
		if other, err := r.rc.Link(rt.LinkIndex); err == nil {
			return fmt.Errorf("source routing for %s: table %d: %w (%s)", r.name, r.table, ErrTableInUse, other.Name)
		}
	}
	return nil
}

// Table returns the table the Router's rules look up.
func (r *Router) Table() int { return r.table }

// Status returns a snapshot of what the Router keeps.
func (r *Router) Status() Status {
	r.state.Lock()
	defer r.state.Unlock()
	st := r.state.st
	st.Sources = slices.Clone(st.Sources)
	return st
}

// Sync makes the Router look again now: it takes the notifications that are
// waiting, reads the link's state and brings the rules and the table in
// step, and returns that look's error. After Close it returns ErrClosed.
func (r *Router) Sync() error {
	reply := make(chan error, 1)
	select {
	case r.syncReq <- reply:
	case <-r.done:
		return ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-r.done:
		return ErrClosed
	}
}

// Close stops following the link and removes every rule of the table with
// Protocol, the table's routes of Protocol through the link, and the
// link's alias if it is still the Router's. It is idempotent.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.done
		n, err := r.removeAll()
		if err != nil {
			r.log.Warn(fmt.Sprintf("Source routing not (fully) removed table=%d err=%s", r.table, journal.Quote(err.Error())))
		} else {
			r.log.Info(fmt.Sprintf("Removed the source routing of %s table=%d rules=%d routes=%d", r.name, r.table, n.Rules, n.Routes))
		}
		r.closeErr = err
		if r.ownRC {
			r.rc.Close()
		}
	})
	return r.closeErr
}

// removeAll removes what the Router keeps (see Close).
func (r *Router) removeAll() (Removed, error) {
	n, err := cleanup(r.rc, r.link, r.table)
	if err != nil {
		err = fmt.Errorf("remove source routing of %s: %w", r.name, err)
	}
	return n, err
}

// Backoff between attempts to subscribe again after a subscription was lost.
const (
	minResubscribe = 50 * time.Millisecond
	maxResubscribe = 5 * time.Second
)

// routineFollow looks again whenever a notification concerns the link, and
// after a lost subscription; it owns sub. It ends when Close closes stop.
func (r *Router) routineFollow(sub Subscription) {
	defer close(r.done)
	var retry *time.Timer
	var retryC <-chan time.Time
	backoff := minResubscribe
	lose := func() {
		sub.Close()
		sub = nil
		r.log.Debug(fmt.Sprintf("Routing notifications for %s lost; subscribing again", r.name))
		retry = time.NewTimer(0)
		retryC = retry.C
	}
	defer func() {
		if sub != nil {
			sub.Close()
		}
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		var events <-chan Event
		if sub != nil {
			events = sub.Events()
		}
		select {
		case <-r.stop:
			return

		case reply := <-r.syncReq:
			if sub != nil {
				if _, lost := r.drain(events); lost {
					lose()
				}
			}
			_, err := r.lookAndLog()
			reply <- err

		case ev, ok := <-events:
			if !ok {
				lose()
				continue
			}
			dirty := r.concerns(ev)
			more, lost := r.drain(events)
			if lost {
				lose()
			}
			if dirty || more {
				r.lookAndLog()
			}

		case <-retryC:
			s, err := r.rc.Subscribe()
			if err != nil {
				if backoff == minResubscribe {
					r.log.Warn(fmt.Sprintf("Cannot subscribe to routing notifications for %s err=%s", r.name, journal.Quote(err.Error())))
				}
				backoff = min(2*backoff, maxResubscribe)
				retry.Reset(backoff)
				continue
			}
			sub, retryC, backoff = s, nil, minResubscribe
			// Whatever happened while nobody listened.
			r.lookAndLog()
		}
	}
}

// drain takes the events that are waiting, without blocking; it reports
// whether one concerned the link and whether the subscription was lost.
func (r *Router) drain(events <-chan Event) (dirty, lost bool) {
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return dirty, true
			}
			dirty = dirty || r.concerns(ev)
		default:
			return dirty, false
		}
	}
}

// concerns reports whether ev can change what the link needs (its
// addresses, its state, or main's routes through it) or what the Router
// keeps: a rule or a route of its table that someone else removed comes
// back at the next look. (The Router's own changes come back as events
// too; the look they cause finds nothing to do.)
func (r *Router) concerns(ev Event) bool {
	switch {
	case ev.Kind == EventRule:
		return ev.Table == r.table
	case ev.LinkIndex != r.link:
		return false
	case ev.Kind == EventRoute:
		return ev.Table == tableMain || ev.Table == r.table
	}
	return true
}

// lookResult counts what a look removed that the plan did not call for.
type lookResult struct {
	staleRules, staleRoutes int
}

// lookAndLog looks, and logs an error the first time it is seen.
func (r *Router) lookAndLog() (lookResult, error) {
	res, err := r.look()
	if err != nil {
		if msg := err.Error(); msg != r.lastErr {
			r.log.Warn(fmt.Sprintf("Source routing incomplete err=%s", journal.Quote(msg)))
			r.lastErr = msg
		}
	} else if r.lastErr != "" {
		r.log.Info(fmt.Sprintf("Source routing for %s complete again", r.name))
		r.lastErr = ""
	}
	return res, err
}

// look reads the link's state and the Router's rules and routes, and adds
// and removes until they are the plan. It carries on past errors and
// returns them joined, naming the interface.
func (r *Router) look() (lookResult, error) {
	res, err := r.lookOnce()
	if err != nil {
		err = fmt.Errorf("source routing for %s: %w", r.name, err)
		r.state.Lock()
		r.state.st.LastError = err.Error()
		r.state.Unlock()
	}
	return res, err
}

// lookOnce is look without the interface's name on its error.
func (r *Router) lookOnce() (lookResult, error) {
	var res lookResult
	l, err := r.rc.Link(r.link)
	present := err == nil
	if err != nil && !errors.Is(err, ErrLinkNotFound) {
		return res, r.setError(fmt.Errorf("look up link %d: %w", r.link, err))
	}
	var addrs []Addr
	var main []Route
	if present {
		r.name = l.Name
		if addrs, err = r.rc.Addrs(r.link); err != nil {
			return res, r.setError(fmt.Errorf("list addresses: %w", err))
		}
		if main, err = r.rc.Routes(tableMain, r.link, 0); err != nil {
			return res, r.setError(fmt.Errorf("list main routes: %w", err))
		}
	}
	want := makePlan(r.link, present && l.Up, r.table, r.prio, addrs, main)

	allRules, err := r.rc.Rules()
	if err != nil {
		return res, r.setError(fmt.Errorf("list rules: %w", err))
	}
	var haveRules []Rule
	for _, ru := range allRules {
		if ru.Table == r.table && ru.Protocol == Protocol {
			haveRules = append(haveRules, ru)
		}
	}
	haveRoutes, err := r.rc.Routes(r.table, r.link, Protocol)
	if err != nil {
		return res, r.setError(fmt.Errorf("list table %d: %w", r.table, err))
	}

	// Routes first, so that a rule never sends traffic into a table that
	// is still being filled; then rules; then what is no longer wanted,
	// rules before routes.
	var errs []error
	have := map[routeKey]Route{}
	for _, rt := range haveRoutes {
		have[keyOf(rt)] = rt
	}
	kept := map[routeKey]bool{}
	for _, rt := range want.Routes {
		if r.addRoute(rt, have, &errs) {
			kept[keyOf(rt)] = true
		}
	}
	inPlace := map[netip.Addr]bool{} // sources whose rule is in place
	wantRules := map[Rule]bool{}
	for _, ru := range want.Rules {
		wantRules[ru] = true
		if !slices.Contains(haveRules, ru) {
			if err := r.rc.AddRule(ru); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("add rule %s: %w", ru, err))
				continue
			}
		}
		inPlace[ru.Src.Addr()] = true
	}
	for _, ru := range haveRules {
		if wantRules[ru] {
			continue
		}
		if err := r.rc.DelRule(ru); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete rule %s: %w", ru, err))
			continue
		}
		res.staleRules++
	}
	for k, rt := range have {
		if kept[k] {
			continue
		}
		if err := r.rc.DelRoute(rt); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", rt, err))
			continue
		}
		res.staleRoutes++
		r.log.Debug(fmt.Sprintf("Route of %s removed route=%s", r.name, journal.Quote(rt.String())))
	}
	if present {
		if err := r.keepAlias(l); err != nil {
			errs = append(errs, err)
		}
	}

	// Say which sources started or stopped being routed.
	var sources []netip.Addr
	for _, ru := range want.Rules {
		ip := ru.Src.Addr()
		if !inPlace[ip] {
			continue
		}
		sources = append(sources, ip)
		if !r.sources[ip] {
			r.sources[ip] = true
			r.log.Info(fmt.Sprintf("Routing traffic from %s by %s table=%d", ip, r.name, r.table))
		}
	}
	for ip := range r.sources {
		if !inPlace[ip] {
			delete(r.sources, ip)
			r.log.Info(fmt.Sprintf("No longer routing traffic from %s by %s table=%d", ip, r.name, r.table))
		}
	}
	err = errors.Join(errs...)
	r.state.Lock()
	r.state.st = Status{Table: r.table, Priority: r.prio, Sources: sources, Routes: len(kept)}
	if err != nil {
		r.state.st.LastError = err.Error()
	}
	r.state.Unlock()
	return res, err
}

// addRoute puts rt into the table unless have holds it already (replacing
// a route with rt's destination and metric but another next hop), and
// reports whether the table now holds it. Errors that the next look
// resolves by itself are not errors.
func (r *Router) addRoute(rt Route, have map[routeKey]Route, errs *[]error) bool {
	if old, ok := have[keyOf(rt)]; ok {
		if sameRoute(old, rt) {
			return true
		}
		// Same slot, another next hop (a gateway changed): replace.
		if err := r.rc.DelRoute(old); err != nil && !isGone(err) {
			*errs = append(*errs, fmt.Errorf("delete route %s: %w", old, err))
			return true // still ours: not to be deleted below
		}
	}
	switch err := r.rc.AddRoute(rt); {
	case err == nil:
		r.log.Debug(fmt.Sprintf("Route of %s added route=%s", r.name, journal.Quote(rt.String())))
		return true
	case errors.Is(err, unix.EEXIST):
		// Another route holds the slot: the dhclient hook's (proto dhcp)
		// or an admin's. It is theirs, and serves as well.
		r.log.Debug(fmt.Sprintf("Route of %s already in table %d from someone else route=%s", r.name, r.table, journal.Quote(rt.String())))
	case errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.ENODEV):
		// The link went down or away meanwhile: the next look sees it.
	default:
		*errs = append(*errs, fmt.Errorf("add route %s: %w", rt, err))
	}
	return false
}

// keepAlias gives the link the Router's alias unless someone else gave it
// one (then it warns once: the dhclient hook cannot find the table).
func (r *Router) keepAlias(l Link) error {
	want := Alias(r.table)
	switch {
	case l.Alias == want:
		return nil
	case l.Alias == "" || ownAlias(l.Alias):
		if err := r.rc.SetAlias(r.link, want); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("set alias: %w", err)
		}
		r.aliasWarn = false
	case !r.aliasWarn:
		r.aliasWarn = true
		r.log.Warn(fmt.Sprintf("%s has an alias of its own alias=%s: the dhclient hook cannot learn that table %d is its table, and does not hand over the gateway of a lease on it",
			r.name, journal.Quote(l.Alias), r.table))
	}
	return nil
}

// setError records a look that could not read the kernel's state: the
// status keeps what the last complete look saw. It returns err.
func (r *Router) setError(err error) error {
	r.state.Lock()
	defer r.state.Unlock()
	r.state.st.Table, r.state.st.Priority = r.table, r.prio
	r.state.st.LastError = err.Error()
	return err
}

// isGone reports whether err says that what was to be deleted is not there.
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}

// Removed counts what Cleanup removed.
type Removed struct {
	Rules, Routes int
}

// Cleanup removes what a Router for cfg keeps, or what a run that ended
// without Close (kill -9) left: every rule of the table with Protocol, the
// table's routes of Protocol (through cfg.Link, or through any link when
// cfg.Link is 0), and the link's alias if it is a Router's. Routes the
// dhclient hook handed over (ProtocolDHCP) and anything else of someone
// else's stay. It is what the service runs when source routing is off, so
// that turning it off also undoes it. Table and Namespace are resolved as
// for New.
func Cleanup(cfg Config) (Removed, error) {
	table := cfg.Table
	if table == 0 {
		table = DefaultTable(cfg.Name)
	}
	if err := CheckTable(table); err != nil {
		return Removed{}, fmt.Errorf("source routing cleanup for %s: %w", cfg.Name, err)
	}
	rc := cfg.Control
	if rc == nil {
		var err error
		if rc, err = OpenNetlink(cfg.Namespace); err != nil {
			return Removed{}, fmt.Errorf("source routing cleanup for %s: %w", cfg.Name, err)
		}
		defer rc.Close()
	}
	n, err := cleanup(rc, cfg.Link, table)
	if err != nil {
		return n, fmt.Errorf("source routing cleanup for %s: %w", cfg.Name, err)
	}
	return n, nil
}

// cleanup removes the rules of table with Protocol, its routes of Protocol
// through link (any link if 0), and link's alias if it is a Router's.
func cleanup(rc RouteControl, link, table int) (Removed, error) {
	var n Removed
	var errs []error
	rules, err := rc.Rules()
	if err != nil {
		return n, fmt.Errorf("list rules: %w", err)
	}
	for _, ru := range rules {
		if ru.Table != table || ru.Protocol != Protocol {
			continue
		}
		if err := rc.DelRule(ru); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete rule %s: %w", ru, err))
			continue
		}
		n.Rules++
	}
	routes, err := rc.Routes(table, link, Protocol)
	if err != nil {
		return n, errors.Join(append(errs, fmt.Errorf("list table %d: %w", table, err))...)
	}
	for _, rt := range routes {
		if err := rc.DelRoute(rt); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", rt, err))
			continue
		}
		n.Routes++
	}
	if link > 0 {
		if l, err := rc.Link(link); err == nil && ownAlias(l.Alias) {
			if err := rc.SetAlias(link, ""); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("remove alias of %s: %w", l.Name, err))
			}
		}
	}
	return n, errors.Join(errs...)
}

// String renders a Removed for log lines: "2 rules, 1 route".
func (n Removed) String() string {
	return strings.Join([]string{plural(n.Rules, "rule"), plural(n.Routes, "route")}, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
