package service

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/srcroute"
)

// Routes is how the service keeps a virtual NIC's source routing
// (docs/routing.md); SourceRoutes, over pkg/srcroute, is the real one.
// Its methods may be called from any goroutine.
type Routes interface {
	// Start starts a Router for cfg (srcroute.New): it removes what an
	// earlier run left, installs what the link needs and follows it.
	Start(cfg srcroute.Config) (Router, error)
	// Cleanup removes what a Router for cfg would keep (srcroute.Cleanup).
	Cleanup(cfg srcroute.Config) (srcroute.Removed, error)
}

// Router is a running source router; *srcroute.Router is one.
type Router interface {
	// Close removes the rules, routes and alias and stops following.
	Close() error
}

var _ Router = (*srcroute.Router)(nil)

// SourceRoutes is Routes over pkg/srcroute, in vethd's own network
// namespace.
type SourceRoutes struct{}

var _ Routes = SourceRoutes{}

// Start is Routes' Start: srcroute.New.
func (SourceRoutes) Start(cfg srcroute.Config) (Router, error) {
	r, err := srcroute.New(cfg)
	if err != nil {
		return nil, err // not a nil *srcroute.Router in a non-nil Router
	}
	return r, nil
}

// Cleanup is Routes' Cleanup: srcroute.Cleanup.
func (SourceRoutes) Cleanup(cfg srcroute.Config) (srcroute.Removed, error) {
	return srcroute.Cleanup(cfg)
}

// routeRetry is how soon a Router that could not start is tried again
// (besides at every change of the bridge).
const routeRetry = 2 * time.Second

// routing keeps one instance's source routing in step with its spec and
// its bridge's interface: a Router while routing is on and the interface
// is in vethd's own namespace, re-made when the interface's ifindex
// changes (a re-created TAP) or the spec's table or priority does;
// otherwise none, and what a Router would keep removed (srcroute.Cleanup:
// SourceRouting=no, or leftovers of an earlier run).
//
// Goroutines: routineRoute owns everything below "owned by routineRoute";
// kick and stop may be called from any goroutine (kick from the bridge's
// OnChange: it never blocks), stop once.
type routing struct {
	routes Routes
	log    *slog.Logger
	name   string
	// state returns the instance's routing spec and its bridge's status
	// (ok false while there is no bridge).
	state func() (rs routeSpec, st bridge.Status, ok bool)

	kick chan struct{} // buffered 1
	quit chan bool     // stop's: true = leave the rules for the next vethd
	done chan struct{} // closed when routineRoute ends

	// Owned by routineRoute.
	router     Router
	cur        routeSpec // router's spec
	curIndex   int       // router's ifindex
	cleaned    bool      // Cleanup ran for cleanedFor since the last router
	cleanedFor routeSpec
	elsewhere  string // the namespace "routing is not ours" was last logged for
	failed     string // the last start error logged
}

func newRouting(routes Routes, log *slog.Logger, name string, state func() (routeSpec, bridge.Status, bool)) *routing {
	r := &routing{
		routes: routes, log: log, name: name, state: state,
		kick: make(chan struct{}, 1), quit: make(chan bool), done: make(chan struct{}),
	}
	go r.routineRoute()
	r.poke()
	return r
}

// poke asks routineRoute to look again; it never blocks.
func (r *routing) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// stop ends routineRoute: with keep (a restart: the next vethd's first
// look keeps what is still right, so routing has no gap) the Router is
// left as it is, otherwise closed. It returns when routineRoute has ended.
func (r *routing) stop(keep bool) {
	r.quit <- keep
	<-r.done
}

func (r *routing) routineRoute() {
	defer close(r.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case keep := <-r.quit:
			if r.router != nil && !keep {
				r.closeRouter()
			}
			return
		case <-r.kick:
		case <-retry.C:
		}
		if !r.sync() {
			retry.Reset(routeRetry)
		}
	}
}

// sync brings the routing in step; false means try again later.
func (r *routing) sync() bool {
	rs, st, ok := r.state()
	if !ok {
		return true
	}
	here := st.Namespace == "" && st.IfIndex > 0
	want := rs.On && here
	if r.router != nil && (!want || st.IfIndex != r.curIndex || rs != r.cur) {
		r.closeRouter()
	}
	if rs.On && st.Namespace != "" && r.elsewhere != st.Namespace {
		r.elsewhere = st.Namespace
		r.log.Info(fmt.Sprintf("%s is in another network namespace (%s): its routing is that namespace's; no source routing for it here", r.name, st.Namespace))
	} else if here && r.elsewhere != "" {
		r.elsewhere = ""
	}
	if !want {
		if st.IfIndex == 0 && st.Namespace == "" {
			return true // no interface yet (or just gone): nothing to clean up for
		}
		if r.cleaned && r.cleanedFor == rs {
			return true
		}
		cfg := srcroute.Config{Name: r.name, Table: rs.Table, Priority: rs.Priority, Log: r.log}
		if here {
			cfg.Link = st.IfIndex
		}
		n, err := r.routes.Cleanup(cfg)
		if err != nil {
			r.log.Warn(fmt.Sprintf("Cannot remove the source routing of %s table=%d: %v", r.name, rs.Table, err))
			return false
		}
		r.cleaned, r.cleanedFor = true, rs
		if n.Rules+n.Routes > 0 {
			r.log.Info(fmt.Sprintf("Removed %s of %s table=%d (source routing is off here)", n, r.name, rs.Table))
		}
		return true
	}
	if r.router != nil {
		return true
	}
	rt, err := r.routes.Start(srcroute.Config{Link: st.IfIndex, Name: r.name, Table: rs.Table, Priority: rs.Priority, Log: r.log})
	if err != nil {
		if msg := err.Error(); msg != r.failed {
			r.failed = msg
			r.log.Error(fmt.Sprintf("No source routing for %s: %v", r.name, err))
		}
		return false
	}
	r.router, r.cur, r.curIndex, r.cleaned, r.failed = rt, rs, st.IfIndex, false, ""
	r.log.Info(fmt.Sprintf("Source routing for %s: table=%d priority=%d ifindex=%d", r.name, rs.Table, rs.Priority, st.IfIndex))
	return true
}

// closeRouter closes the Router, which removes its rules and routes.
func (r *routing) closeRouter() {
	if err := r.router.Close(); err != nil {
		r.log.Warn(fmt.Sprintf("Removing the source routing of %s: %v", r.name, err))
	} else {
		r.log.Info(fmt.Sprintf("Source routing for %s ended table=%d", r.name, r.cur.Table))
	}
	r.router = nil
}
