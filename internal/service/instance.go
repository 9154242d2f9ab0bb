package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vethd/vethd/internal/humanize"
	"github.com/vethd/vethd/internal/journal"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/macaddr"
	"golang.org/x/sys/unix"
)

// env is what an instance needs from the daemon that runs it. It is made
// once by the daemon, shared by every instance and read-only: its fields
// may be used from any goroutine.
type env struct {
	log    *slog.Logger
	notify Notifier
	fds    *fdStore
	start  StartFunc
	// routes keeps the bridges' source routing; nil keeps none (and
	// touches no rules).
	routes Routes
	// changed wakes the Run goroutine to publish a change; it never blocks.
	changed func()
	// loadSpec re-reads a bridge's configuration file; nil in seed mode,
	// where there is none.
	loadSpec func(name string) (spec, error)
	// checkSpec, if not nil, checks a re-read spec against the other
	// bridges of the process (--all: tableClash); it runs on the Run
	// goroutine, as reloads do.
	checkSpec func(s spec) error
	version   string // for Describe
}

// instance is one configured bridge: its spec and the running bridge (nil
// while it starts or restarts).
//
// start and stop run on the Run goroutine (seed and instance modes) or on
// the bridge's supervisor goroutine (--all, in task); reload runs on the
// Run goroutine; status and counters are also read by D-Bus handlers. So
// spec, br and lastErr are guarded by mu; routing and keep are atomics
// (the bridge's OnChange reads routing from any goroutine); the other
// fields are set when the instance is made and not changed.
type instance struct {
	name      string
	fdName    string        // FDNAME of its TAP in systemd's fd store
	env       *env          // shared, read-only
	first     chan struct{} // closed after the first start attempt (--all)
	firstOnce sync.Once

	// routing is the running bridge's source routing (nil while none).
	routing atomic.Pointer[routing]
	// keep makes a stop release the bridge (Bridge.Release: the interface
	// stays for the next vethd) instead of closing it; set before a
	// supervised task is stopped (--all).
	keep atomic.Bool
	// exiting says that the process ends after the stop (shutdown), so
	// a kept bridge's Router may be left as it is for the next vethd: no
	// one in this process follows the interface any more.
	exiting atomic.Bool

	mu      sync.Mutex
	spec    spec
	br      Bridge
	lastErr string
}

func newInstance(s spec, fdName string, e *env) *instance {
	return &instance{name: s.cfg.Name, fdName: fdName, env: e, spec: s, first: make(chan struct{})}
}

// start starts the bridge, adopting its TAP from systemd's fd store when
// systemd kept one (a restart), and stores the TAP's descriptor there.
func (in *instance) start() (Bridge, error) {
	e := in.env
	in.mu.Lock()
	s := in.spec
	in.mu.Unlock()
	cfg := s.cfg
	cfg.Log = e.log
	cfg.OnChange = func() {
		e.changed()
		if r := in.routing.Load(); r != nil {
			r.poke()
		}
	}
	var br Bridge
	var err error
	adopted := false
	if f := e.fds.take(in.fdName); f != nil {
		// Start owns (and on error closes) what it is given: give it a
		// copy, so that a failed adoption can be tried again by the
		// supervisor's next attempt (the interface still exists: systemd
		// holds it).
		dup, derr := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if derr != nil {
			e.fds.put(in.fdName, f)
			return nil, in.setErr(fmt.Errorf("adopt %s: %w", in.name, derr))
		}
		cfg.TAP = os.NewFile(uintptr(dup), f.Name())
		if s.policy.Kind == macaddr.Random {
			cfg.MAC = nil // a restart keeps the address drawn at the first start
		}
		br, err = e.start(cfg)
		switch {
		case errors.Is(err, bridge.ErrNotTAP):
			f.Close()
			e.log.Warn(fmt.Sprintf("The stored descriptor of %s is no longer a TAP interface (%v); creating %s afresh", in.name, err, in.name))
			e.notify.RemoveFD(in.fdName)
			cfg.TAP, cfg.MAC = nil, s.cfg.MAC
			br = nil
		case err != nil:
			e.fds.put(in.fdName, f)
			return nil, in.setErr(err)
		default:
			f.Close()
			adopted = true
			st := br.Status()
			e.log.Info(fmt.Sprintf("Adopted %s from systemd's fd store ifindex=%d mac=%s", st.Name, st.IfIndex, journal.Quote(st.MAC.String())))
		}
	}
	if br == nil {
		if br, err = e.start(cfg); err != nil {
			return nil, in.setErr(err)
		}
	}
	// A veth pair outlives the process by itself: only a TAP needs the
	// fd store (TAPFd's ErrUnsupported says which).
	veth := br.Status().Kind == bridge.KindVeth
	if e.notify.Enabled() && e.notify.NoFDStore() && !veth {
		e.log.Warn(fmt.Sprintf("systemd keeps no descriptors for this service (FileDescriptorStoreMax=0): a restart will re-create %s", in.name))
	} else if e.notify.Enabled() && !veth {
		if err := in.storeFD(br, adopted); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			e.log.Warn(fmt.Sprintf("%s will not survive a restart: %v", in.name, err))
		}
	}
	st := br.Status()
	if st.ParentIfIndex != 0 {
		e.log.Info(fmt.Sprintf("Attached %s into %s mac=%s mtu=%d carrier=%s parent_promiscuity=%d offloads=%s",
			st.Name, st.Parent, journal.Quote(st.MAC.String()), st.MTU, humanize.OnOff(st.Carrier),
			st.Promiscuity, journal.Quote(strings.Join(st.Offloads, ","))))
	}
	in.mu.Lock()
	in.br, in.lastErr = br, ""
	in.mu.Unlock()
	if e.routes != nil {
		in.routing.Store(newRouting(e.routes, e.log, in.name, in.routeState))
	}
	e.changed()
	return br, nil
}

// routeState is the instance's routing's view of it: the spec's source
// routing and the running bridge's status (ok false while there is none).
func (in *instance) routeState() (routeSpec, bridge.Status, bool) {
	in.mu.Lock()
	rs, br := in.spec.route, in.br
	in.mu.Unlock()
	if br == nil {
		return rs, bridge.Status{}, false
	}
	return rs, br.Status(), true
}

// storeFD puts br's TAP in systemd's fd store, replacing any older entry
// (one whose interface was deleted). An adopted TAP is not stored again:
// it came from the store, which still holds it, and systemd checks
// FileDescriptorStoreMax= before it looks for a duplicate, so storing it
// again into a full store (vethd@.service's 1) logs "Cannot store more
// fds than FileDescriptorStoreMax=1".
func (in *instance) storeFD(br Bridge, adopted bool) error {
	if adopted {
		return nil
	}
	fd, err := br.TAPFd()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	in.env.notify.RemoveFD(in.fdName)
	return in.env.notify.StoreFD(in.fdName, fd)
}

// setErr records err as the instance's last error (LastError, STATUS=:
// publicText, which quotes nothing of a configuration file) and returns
// it (whoever logs it logs it whole).
func (in *instance) setErr(err error) error {
	in.mu.Lock()
	in.lastErr = publicText(err)
	in.mu.Unlock()
	in.env.changed()
	return err
}

// task is the supervised life of one bridge (--all): start, run until
// cancelled or failed.
func (in *instance) task(ctx context.Context) error {
	br, err := in.start()
	in.firstOnce.Do(func() { close(in.first) })
	if err != nil {
		return err
	}
	failed := make(chan error, 1)
	go func() { failed <- br.Wait() }()
	select {
	case <-ctx.Done():
		in.stop(in.keep.Load(), in.exiting.Load())
		return nil
	case err := <-failed:
		in.stop(false, false)
		return in.setErr(err)
	}
}

// stop ends the running bridge, if any, and logs its counters: with keep
// it releases it (Bridge.Release: the interface stays for the next vethd
// — a restart, or vethd@NAME.service taking it over), otherwise it closes
// it (the interface goes). Its source routing is removed, except when the
// bridge is kept and the process exits (exiting): then the rules stay,
// unfollowed, for the next vethd, whose first look keeps what is still
// right. (A Router left running in a process that goes on, after a
// handover, would fight the next vethd's.)
func (in *instance) stop(keep, exiting bool) {
	in.mu.Lock()
	br := in.br
	in.br = nil
	in.mu.Unlock()
	if r := in.routing.Swap(nil); r != nil {
		r.stop(keep && exiting)
	}
	if br == nil {
		return
	}
	start := time.Now()
	if keep {
		br.Release()
	} else {
		br.Close()
	}
	c := br.Counters().Snapshot()
	in.env.log.Info(fmt.Sprintf("Detached %s from %s rx_packets=%d rx_bytes=%d rx_coalesced=%d rx_split=%d tx_packets=%d tx_bytes=%d tx_split=%d dropped=%d%s%s errors=%d took=%s",
		in.name, br.Status().Parent, c.RxPackets, c.RxBytes, c.RxCoalesced, c.RxSplit, c.TxPackets, c.TxBytes, c.TxSplit,
		humanize.Sum(c.RxDrops)+humanize.Sum(c.TxDrops), dropFields("rx", c.RxDrops), dropFields("tx", c.TxDrops),
		c.Errors, time.Since(start).Round(time.Millisecond)))
}

// dropFields formats the nonzero drops of m (by reason) as key=value
// fields for a log line, each with a leading space, in the order of
// bridge.DropReasons: dropFields("rx", {"runt": 2, "oversize": 1}) is
// " rx_drop_runt=2 rx_drop_oversize=1". Dashes in a reason become
// underscores (no-parent: rx_drop_no_parent).
func dropFields(dir string, m map[string]uint64) string {
	var b strings.Builder
	for _, r := range bridge.DropReasons() {
		if n := m[r.String()]; n > 0 {
			fmt.Fprintf(&b, " %s_drop_%s=%d", dir, strings.ReplaceAll(r.String(), "-", "_"), n)
		}
	}
	return b.String()
}

// bridge returns the running bridge, nil if there is none.
func (in *instance) bridge() Bridge {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.br
}

// reload re-reads the instance's file and applies it to the running
// bridge; when it fails, the running configuration stays. The Run
// goroutine calls it, so reloads never overlap.
func (in *instance) reload() error {
	if in.env.loadSpec == nil {
		return errors.New("started from the command line: there is no configuration file to re-read")
	}
	s, err := in.env.loadSpec(in.name)
	if err == nil && in.env.checkSpec != nil {
		err = in.env.checkSpec(s)
	}
	if err != nil {
		in.setErr(fmt.Errorf("reload: %w", err))
		return err
	}
	in.mu.Lock()
	old := in.spec
	br := in.br
	if br == nil {
		in.spec = s // (re)starting: the next start uses the new spec
	}
	in.mu.Unlock()
	if br == nil {
		return nil
	}
	if s.cfg.Kind != old.cfg.Kind || s.cfg.Namespace != old.cfg.Namespace {
		err := fmt.Errorf("reload: Kind= and Namespace= take effect only when %s is created: restart vethd to change them (now kind=%s namespace=%s)",
			in.name, old.cfg.Kind, journal.Quote(old.cfg.Namespace))
		return in.setErr(err)
	}
	cfg := s.cfg
	if s.policy.Kind == macaddr.Random && old.policy.Kind == macaddr.Random {
		cfg.MAC = nil // random means once per start, not per reload
	}
	// Reconfigure changes nothing when it fails, so the old spec stays.
	if err := br.Reconfigure(cfg); err != nil {
		return in.setErr(fmt.Errorf("reload: %w", err))
	}
	in.mu.Lock()
	in.spec = s
	in.lastErr = ""
	in.mu.Unlock()
	if r := in.routing.Load(); r != nil {
		r.poke() // a changed SourceRouting=, RouteTable= or RoutePriority=
	}
	in.env.log.Info(fmt.Sprintf("Reloaded %s from %s", in.name, s.file))
	return nil
}

// status is the instance's state as D-Bus shows it: the running bridge's,
// or the spec's while there is none. DataPath is the one in use, so
// relay while no bridge runs (no programs are attached), as a bridge
// says until it attaches them.
func (in *instance) status() dbusapi.Status {
	in.mu.Lock()
	s, br, lastErr := in.spec, in.br, in.lastErr
	in.mu.Unlock()
	if br == nil {
		mac := ""
		if s.cfg.MAC != nil {
			mac = s.cfg.MAC.String()
		}
		return dbusapi.Status{
			Name: in.name, Kind: string(s.cfg.Kind), DataPath: string(bridge.DataPathRelay), Namespace: s.cfg.Namespace,
			Parent: s.cfg.Parent, MACAddress: mac, MACPolicy: s.policy.Kind.String(), State: string(bridge.StateStarting),
			LastError: lastErr,
		}
	}
	st := br.Status()
	if lastErr == "" {
		lastErr = st.LastError
	}
	var started uint64
	if !st.StartedAt.IsZero() {
		started = uint64(st.StartedAt.UnixMicro())
	}
	kind := st.Kind
	if kind == "" {
		kind = s.cfg.Kind
	}
	dataPath := st.DataPath
	if dataPath == "" {
		dataPath = bridge.DataPathRelay
	}
	return dbusapi.Status{
		Name: st.Name, Kind: string(kind), DataPath: string(dataPath), Namespace: st.Namespace, Parent: st.Parent,
		IfIndex: int32(st.IfIndex), ParentIfIndex: int32(st.ParentIfIndex),
		MACAddress: st.MAC.String(), MACPolicy: s.policy.Kind.String(),
		MTU: uint32(st.MTU), State: string(st.State),
		Carrier: st.Carrier, ParentCarrier: st.ParentCarrier, Promiscuous: st.Promiscuity > 0,
		Offloads: st.Offloads, StartedUsec: started, LastError: lastErr,
	}
}

// counters is a snapshot of the running bridge's counters (zero while
// there is none).
func (in *instance) counters() dbusapi.Counters {
	c := dbusapi.Counters{RxDrops: map[string]uint64{}, TxDrops: map[string]uint64{}}
	br := in.bridge()
	if br == nil {
		return c
	}
	s := br.Counters().Snapshot()
	c.RxPackets, c.RxBytes, c.RxCoalesced = s.RxPackets, s.RxBytes, s.RxCoalesced
	c.TxPackets, c.TxBytes, c.Errors = s.TxPackets, s.TxBytes, s.Errors
	c.RxSplit, c.TxSplit = s.RxSplit, s.TxSplit
	c.RxDrops, c.TxDrops = s.RxDrops, s.TxDrops
	return c
}
