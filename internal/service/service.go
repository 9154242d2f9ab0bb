// Package service is the vethd daemon's life: it reads the bridges'
// configuration (the seed flags, one NAME.conf, or all of them), starts
// the bridges — adopting their TAPs from systemd's fd store after a
// restart and storing them there —, supervises them in --all mode,
// reloads them on SIGHUP and D-Bus Reload, puts each on the system bus,
// reports to systemd (READY, STATUS, WATCHDOG, STOPPING) and stops them.
//
// It keeps each bridge's source routing (pkg/srcroute, through Routes) in
// step with the bridge and its configuration, and at SIGTERM asks systemd
// whether it restarts the unit, to release the interfaces for the next
// vethd rather than delete them (keepForRestart).
//
// It sees bridges through its own Bridge interface (StartFunc makes them),
// source routing through Routes, systemd through Notifier and Units and the
// bus through a connector, so that all of it runs over fakes in tests.
//
// Goroutines: Run's own (the "Run goroutine") owns the daemon — the set
// of instances, their D-Bus objects and the bus connection — and does all
// reloads; D-Bus Reload calls are handed to it. Each bridge in --all mode
// starts and stops on its supervisor goroutine. The state that those and
// the D-Bus handlers share is an instance's (guarded by instance.mu) and
// the fd store's (guarded by fdStore.mu); there is no daemon-wide lock.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/internal/sdnotify"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/supervisor"
)

// Mode is which bridges a vethd process runs and where they come from.
type Mode int

const (
	ModeSeed     Mode = iota // one bridge from -v/-e/-m; a missing parent is an error
	ModeInstance             // --instance NAME: ConfigDir/NAME.conf
	ModeAll                  // --all: every ConfigDir/*.conf, supervised
)

// Notifier is how the service talks to systemd (sd_notify(3));
// *sdnotify.Notifier is one. Its methods may be called from any goroutine.
type Notifier interface {
	// Enabled reports whether systemd listens.
	Enabled() bool
	// NoFDStore reports whether systemd said it keeps no descriptors.
	NoFDStore() bool
	// Send sends a message such as "READY=1\nSTATUS=…".
	Send(state string) error
	// StoreFD puts a copy of fd in the fd store under name; fd stays ours.
	StoreFD(name string, fd int) error
	// RemoveFD has systemd close the descriptors stored under name.
	RemoveFD(name string) error
	// WatchdogInterval is how often systemd wants WATCHDOG=1 (0: never).
	WatchdogInterval() time.Duration
}

var _ Notifier = (*sdnotify.Notifier)(nil)

const (
	defaultBusRetry = 5 * time.Second  // how often to (re)connect to the system bus
	statusInterval  = 10 * time.Second // how often STATUS= is refreshed
	// defaultHandover is how long vethd --instance NAME waits for
	// vethd.service to hand NAME over.
	defaultHandover = 15 * time.Second
	// handoverPoll is how often it looks whether it did.
	handoverPoll = 100 * time.Millisecond
)

// Config is what Run is given.
type Config struct {
	Mode Mode
	// Name, Parent and MAC are the seed flags -v, -e and -m (ModeSeed).
	Name, Parent, MAC string
	// NoARPIsolation is the seed flag --arp-isolation=no (ModeSeed).
	NoARPIsolation bool
	// NoSourceRouting, RouteTable and RoutePriority are the seed flags
	// --source-routing=no, --route-table and --route-priority (ModeSeed;
	// 0 is the default: auto, srcroute.DefaultPriority).
	NoSourceRouting           bool
	RouteTable, RoutePriority int
	// Kind and Namespace are the seed flags --kind and --netns (ModeSeed;
	// "" is the default: config.DefaultKind, vethd's own namespace), as
	// written: config.ParseKind and config.NamespacePath read them.
	Kind, Namespace string
	// BroadcastLimit is the seed flag --broadcast-limit (ModeSeed), as
	// config.ParseBroadcastLimit reads it: 0 is the default.
	BroadcastLimit int
	// DataPath is the seed flag --data-path (ModeSeed), as written:
	// config.ParseDataPath reads it; "" is the kind's default
	// (config.DefaultDataPath). kernel needs Kind veth.
	DataPath string
	// Instance is the NAME of --instance NAME (ModeInstance).
	Instance string
	// ConfigDir is where NAME.conf files are.
	ConfigDir string
	// MachineIDFile is read for persistent MAC addresses.
	MachineIDFile string
	// Version is what Describe reports.
	Version string

	// Log receives the daemon's and the bridges' lines; nil discards them.
	Log *slog.Logger
	// Notifier talks to systemd; nil is a disabled one.
	Notifier Notifier
	// StoredFDs are the descriptors systemd passed at start, by FDNAME
	// (sdnotify.StoredFDs). Run owns them: it closes those no bridge
	// adopted before it returns.
	StoredFDs map[string]*os.File
	// StartBridge starts a bridge; nil is bridge.Start.
	StartBridge StartFunc
	// Routes keeps the bridges' source routing (SourceRoutes is the real
	// one); nil keeps none and touches no rules (the service's tests).
	Routes Routes
	// ConnectBus connects to the system bus; nil is
	// dbusapi.ConnectSystemBus (which bounds what the connection reads).
	ConnectBus func() (*dbus.Conn, error)
	// Units asks systemd and the bus, over a connection ConnectBus made,
	// which unit runs a bridge; nil is the real one (newBusUnits).
	Units func(conn *dbus.Conn) Units
	// HandoverTimeout bounds how long vethd --instance NAME waits for
	// vethd.service to hand NAME over; 0 is 15 s.
	HandoverTimeout time.Duration

	// BusRetry is how often to try to (re)connect to the bus; 0 is 5 s.
	BusRetry time.Duration
	// Backoff is the supervisor's in ModeAll; zero is
	// supervisor.DefaultBackoff.
	Backoff supervisor.Backoff
}

// Run runs the bridges cfg names until a signal other than SIGHUP comes on
// sigs (then it returns nil) or, in seed and instance modes, the bridge
// cannot start or fails (then it returns an *Error). SIGHUP re-reads the
// configuration. Run logs why it ends; the error is for the exit code.
func Run(cfg Config, sigs <-chan os.Signal) error {
	return newDaemon(cfg).serve(sigs)
}

// daemon runs the bridges of one vethd process and connects them to
// systemd and the system bus.
//
// One locking regime instead of three: the fields under "Run goroutine
// only" belong to the goroutine in run and have no lock — other goroutines
// (D-Bus Reload) hand it work through call; the fields above are set by
// newDaemon (sup by run, before the supervisor starts) and only read
// afterwards, or are channels. What goroutines share lives in the
// instances (instance.mu) and the fd store (fdStore.mu).
type daemon struct {
	cfg     Config
	log     *slog.Logger
	notify  Notifier
	connect func() (*dbus.Conn, error)
	fds     *fdStore
	env     *env                   // what instances get
	sup     *supervisor.Supervisor // --all only

	changes   chan struct{} // a bridge changed (buffered 1): publish
	failed    chan error    // the bridge failed (seed and instance modes; buffered 1)
	calls     chan func()   // work handed to the Run goroutine (D-Bus Reload)
	contested chan string   // --all: a bridge's name is in use (contest sends it)
	done      chan struct{} // closed when the main loop ends: calls are refused

	// Run goroutine only.
	instances map[string]*instance
	servers   map[string]*dbusapi.Server // the instances' D-Bus objects, by name
	bus       *dbus.Conn                 // nil without a system bus
	busSaid   bool                       // "No system bus" was logged
	units     Units                      // over bus; nil without one
	// leftOut are the bridges of --all's files that their own
	// vethd@NAME.service claims, by name, as last asked.
	leftOut map[string]Claim
}

func newDaemon(cfg Config) *daemon {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Notifier == nil {
		cfg.Notifier = &sdnotify.Notifier{}
	}
	if cfg.StartBridge == nil {
		cfg.StartBridge = startBridge
	}
	if cfg.ConnectBus == nil {
		cfg.ConnectBus = dbusapi.ConnectSystemBus
	}
	if cfg.BusRetry == 0 {
		cfg.BusRetry = defaultBusRetry
	}
	if cfg.Backoff == (supervisor.Backoff{}) {
		cfg.Backoff = supervisor.DefaultBackoff
	}
	if cfg.Units == nil {
		cfg.Units = newBusUnits
	}
	if cfg.HandoverTimeout == 0 {
		cfg.HandoverTimeout = defaultHandover
	}
	d := &daemon{
		cfg:       cfg,
		log:       cfg.Log,
		notify:    cfg.Notifier,
		connect:   cfg.ConnectBus,
		fds:       newFDStore(cfg.StoredFDs),
		changes:   make(chan struct{}, 1),
		failed:    make(chan error, 1),
		calls:     make(chan func()),
		contested: make(chan string),
		done:      make(chan struct{}),
		instances: map[string]*instance{},
		servers:   map[string]*dbusapi.Server{},
		leftOut:   map[string]Claim{},
	}
	d.env = &env{
		log: d.log, notify: d.notify, fds: d.fds, start: cfg.StartBridge, routes: cfg.Routes,
		changed: d.changed, version: cfg.Version,
	}
	if cfg.Mode != ModeSeed {
		d.env.loadSpec = d.loadSpec
	}
	if cfg.Mode == ModeAll {
		d.env.checkSpec = d.checkSpec
	}
	return d
}

// serve is Run: it runs the daemon and closes the stored descriptors that
// no bridge adopted.
func (d *daemon) serve(sigs <-chan os.Signal) error {
	defer d.fds.closeAll()
	return d.run(sigs)
}

// run loads the specs, starts the bridges, runs the main loop and stops
// the bridges.
func (d *daemon) run(sigs <-chan os.Signal) error {
	specs, err := d.loadSpecs()
	if err != nil {
		d.log.Error(err.Error())
		return &Error{Kind: KindConfig, Err: err}
	}
	d.connectBus()
	defer d.closeBus()

	if d.cfg.Mode == ModeAll {
		d.sup = supervisor.New(d.cfg.Backoff, d.log)
		for _, s := range specs {
			if c, ok := d.instanceClaim(s.cfg.Name); ok {
				d.leaveOut(s.cfg.Name, c, "")
				continue
			}
			d.addSupervised(s)
		}
		for _, in := range d.list() {
			<-in.first
		}
	} else {
		br, stopped, err := d.startOne(specs[0], sigs)
		if err != nil || stopped {
			close(d.done)
			d.shutdownInstances()
			return err
		}
		go func() {
			if err := br.Wait(); err != nil {
				d.failed <- err
			}
		}()
	}
	d.dropUnusedFDs()

	err = d.loop(sigs)
	d.notify.Send("STOPPING=1\nSTATUS=Stopping")
	d.shutdownInstances()
	return err
}

// startOne starts the bridge of seed and instance modes. With
// --instance, a bridge that vethd.service runs is taken over first
// (takeOver). It returns the bridge, or stopped if a stop signal came
// while it waited, or the *Error to end Run with (logged).
func (d *daemon) startOne(s spec, sigs <-chan os.Signal) (br Bridge, stopped bool, err error) {
	name := s.cfg.Name
	deadline := time.Now().Add(d.cfg.HandoverTimeout)
	handedOver := false
	if d.cfg.Mode == ModeInstance {
		if handedOver, stopped, err = d.takeOver(name, sigs, deadline); err != nil || stopped {
			return nil, stopped, err
		}
	}
	in := d.newInstance(s)
	for {
		br, err = in.start()
		// vethd.service has let the name go; its TAP goes once systemd
		// closes its copy in vethd.service's fd store.
		if err == nil || !handedOver || !errors.Is(err, bridge.ErrNameInUse) || time.Now().After(deadline) {
			break
		}
		if d.pause(sigs, handoverPoll) {
			return nil, true, nil
		}
	}
	if err == nil {
		// On the bus only now that it holds the interface: a vethd that
		// lost the race for it never owns the name (issue 9 item 3).
		d.export(in)
		return br, false, nil
	}
	if errors.Is(err, bridge.ErrNameInUse) {
		if pid, unit := d.owner(name); pid != 0 {
			e := fmt.Errorf("%w: %s is run by %s; not running it twice", err, name, ownerText(pid, unit))
			d.log.Error(e.Error())
			if d.cfg.Mode == ModeInstance {
				// Another vethd runs it: restarting cannot help.
				return nil, false, &Error{Kind: KindConfig, Err: e}
			}
			return nil, false, startError(e)
		}
	}
	d.log.Error(explain(err, s.cfg))
	return nil, false, startError(err)
}

// takeOver is vethd@NAME.service's side of coexistence: if vethd.service
// runs the bridge name (it owns name's bus name), vethd asks it to reload,
// which makes it hand name over (vethd@NAME.service, starting, claims it),
// and waits until the bus name is free, for at most until deadline. It
// reports whether a handover took place, or stopped if a stop signal came
// on sigs while it waited. A bridge that another vethd runs (by hand, or
// vethd.service not letting go) is an *Error of KindConfig: two places are
// configured to run it, and restarting cannot help.
func (d *daemon) takeOver(name string, sigs <-chan os.Signal, deadline time.Time) (handedOver, stopped bool, err error) {
	pid, unit := d.owner(name)
	if pid == 0 || pid == uint32(os.Getpid()) {
		return false, false, nil
	}
	if unit != allUnit {
		e := fmt.Errorf("%s is run by %s already; not running it twice", name, ownerText(pid, unit))
		d.log.Error(e.Error())
		return false, false, &Error{Kind: KindConfig, Err: e}
	}
	d.log.Info(fmt.Sprintf("%s is run by %s; asking it to hand %s over to %s", name, ownerText(pid, unit), name, instanceUnit(name)))
	ctx, cancel := context.WithTimeout(context.Background(), unitsTimeout)
	err = d.units.Reload(ctx, allUnit)
	cancel()
	if err != nil {
		// A stop of vethd.service under way, say: wait all the same.
		d.log.Warn(fmt.Sprintf("Could not reload %s: %v", allUnit, err))
	}
	for {
		if p, _ := d.owner(name); p == 0 {
			d.log.Info(fmt.Sprintf("%s handed %s over", allUnit, name))
			return true, false, nil
		}
		if time.Now().After(deadline) {
			e := fmt.Errorf("%s did not hand %s over within %s; not running it twice (stop %s, or disable %s)",
				allUnit, name, d.cfg.HandoverTimeout, allUnit, instanceUnit(name))
			d.log.Error(e.Error())
			return false, false, &Error{Kind: KindConfig, Err: e}
		}
		if d.pause(sigs, handoverPoll) {
			return false, true, nil
		}
	}
}

// pause waits for d, or for a stop signal on sigs (true); SIGHUP is
// ignored (there is nothing to reload yet).
func (d *daemon) pause(sigs <-chan os.Signal, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return false
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				d.log.Info(runtimeLine())
				continue
			}
			if sig != syscall.SIGHUP {
				d.log.Info(fmt.Sprintf("Stopping on %v", sig))
				return true
			}
		}
	}
}

// owner returns the process that owns the bridge name's bus name and its
// unit (Units.Owner); pid 0 if there is none, or no bus to ask.
func (d *daemon) owner(name string) (pid uint32, unit string) {
	if d.units == nil {
		return 0, ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), unitsTimeout)
	defer cancel()
	pid, unit, err := d.units.Owner(ctx, name)
	if err != nil {
		d.log.Warn(fmt.Sprintf("Cannot tell who runs %s: %v", name, err))
		return 0, ""
	}
	return pid, unit
}

// ownerText is "vethd.service (PID 123)", or "PID 123" for a process no
// unit knows.
func ownerText(pid uint32, unit string) string {
	if unit == "" {
		return fmt.Sprintf("PID %d", pid)
	}
	return fmt.Sprintf("%s (PID %d)", unit, pid)
}

// instanceClaim asks systemd whether vethd@NAME.service claims the bridge
// name (Claim.Claims), for --all. Without a bus, or for a name no unit
// can have, or if systemd does not answer, nothing is claimed: --all runs
// every file.
func (d *daemon) instanceClaim(name string) (Claim, bool) {
	if d.units == nil || !unitable(name) {
		return Claim{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), unitsTimeout)
	defer cancel()
	c, err := d.units.Claim(ctx, name)
	if err != nil {
		d.log.Warn(fmt.Sprintf("Cannot tell whether %s runs %s (%v); running it here", instanceUnit(name), name, err))
		return Claim{}, false
	}
	return c, c.Claims()
}

// leaveOut records that --all leaves the bridge name to its own unit,
// which claims it as c, and logs it when that is news; what is what a
// reload does with it ("" at start).
func (d *daemon) leaveOut(name string, c Claim, what string) {
	old, was := d.leftOut[name]
	d.leftOut[name] = c
	if was && old == c {
		return
	}
	prefix := ""
	if what != "" {
		prefix = what + ": "
	}
	d.log.Info(fmt.Sprintf("%sLeaving %s to %s (%s): not running it in this process", prefix, name, instanceUnit(name), c))
}

// contest is called by a supervised bridge (--all) whose start found its
// interface name in use: the Run goroutine asks whether vethd@NAME.service
// claims it now (checkContest). It may be called from any goroutine and
// does not block.
func (d *daemon) contest(name string) {
	go func() {
		select {
		case d.contested <- name:
		case <-d.done:
		}
	}()
}

// checkContest hands the bridge name over to vethd@NAME.service if that
// claims it now: the two started it at once, say. Otherwise the
// supervisor keeps trying.
func (d *daemon) checkContest(name string) {
	in := d.instances[name]
	if in == nil {
		return
	}
	c, ok := d.instanceClaim(name)
	if !ok {
		return
	}
	d.log.Info(fmt.Sprintf("%s is in use and %s claims it (%s): stopping it here", name, instanceUnit(name), c))
	d.remove(in, true)
	d.leaveOut(name, c, "")
	d.changed()
}

// networkManagerName is NetworkManager's bus name.
const networkManagerName = "org.freedesktop.NetworkManager"

// hintNetworkManager says, once at start, when NetworkManager runs beside
// bridges of the TAP kind: it treats a TAP as an unmanaged tun device and
// refuses ethernet profiles for it, which the veth kind fixes. It asks the
// bus (NameHasOwner, 1 s at most); without a bus it says nothing.
func (d *daemon) hintNetworkManager() {
	if d.bus == nil {
		return
	}
	var taps []string
	for name, in := range d.instances {
		in.mu.Lock()
		k := in.spec.cfg.Kind
		in.mu.Unlock()
		if k == bridge.KindTAP || k == "" {
			taps = append(taps, name)
		}
	}
	if len(taps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var has bool
	err := d.bus.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, networkManagerName).Store(&has)
	if err != nil || !has {
		return
	}
	slices.Sort(taps)
	d.log.Warn(fmt.Sprintf("NetworkManager runs: it sees %s (Kind=tap) as an unmanaged tun device and refuses ethernet profiles for it; "+
		"with Kind=veth it is an Ethernet device NetworkManager manages (docs/networkmanager.md)", strings.Join(taps, ", ")))
}

// loop is the main loop: it serves signals, calls, changes, the status
// ticker, the watchdog and the bus until a stop signal or a failure.
func (d *daemon) loop(sigs <-chan os.Signal) error {
	defer close(d.done)
	d.hintNetworkManager()
	d.notify.Send("READY=1\nSTATUS=" + d.status())
	var wdC <-chan time.Time
	if iv := d.notify.WatchdogInterval(); iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		wdC = t.C
	}
	statusTick := time.NewTicker(statusInterval)
	defer statusTick.Stop()
	// Without a bus (or once it is lost) try again every BusRetry, quietly.
	var busGone <-chan struct{}
	var busRetryC <-chan time.Time
	busRetryT := time.NewTicker(d.cfg.BusRetry)
	defer busRetryT.Stop()
	if d.bus != nil {
		busGone = d.bus.Context().Done()
	} else {
		busRetryC = busRetryT.C
	}
	unhealthy := ""
	for {
		select {
		case <-busGone:
			d.log.Warn("Lost the system bus; reconnecting")
			d.bus.Close()
			d.bus, busGone = nil, nil
			d.units = nil
			d.servers = map[string]*dbusapi.Server{}
			busRetryT.Reset(d.cfg.BusRetry)
			busRetryC = busRetryT.C
		case <-busRetryC:
			if !d.connectBus() {
				continue
			}
			d.log.Info("Connected to the system bus")
			busGone, busRetryC = d.bus.Context().Done(), nil
			for _, in := range d.list() {
				d.export(in)
			}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reloadAll()
				continue
			}
			if sig == syscall.SIGUSR1 {
				d.log.Info(runtimeLine())
				continue
			}
			d.log.Info(fmt.Sprintf("Stopping on %v", sig))
			return nil
		case f := <-d.calls:
			f()
		case name := <-d.contested:
			d.checkContest(name)
		case err := <-d.failed:
			d.log.Error(fmt.Sprintf("Stopping: %v", err))
			return &Error{Kind: KindFailure, Err: err}
		case <-d.changes:
			d.publish()
		case <-statusTick.C:
			d.notify.Send(sdnotify.Status(d.status()))
		case <-wdC:
			// Only a healthy relay feeds the watchdog: if a reader or the
			// link watcher hangs, systemd notices and restarts us.
			if err := d.health(); err != nil {
				if err.Error() != unhealthy {
					d.log.Error(fmt.Sprintf("Unhealthy, not feeding the watchdog: %v", err))
				}
				unhealthy = err.Error()
				continue
			}
			unhealthy = ""
			d.notify.Send("WATCHDOG=1")
		}
	}
}

// errStopping is returned by call once the main loop has ended.
var errStopping = errors.New("vethd is stopping")

// call runs f on the Run goroutine, between two events of the main loop,
// and returns its error. It may be called from any goroutine but the Run
// goroutine.
func (d *daemon) call(f func() error) error {
	errc := make(chan error, 1)
	select {
	case d.calls <- func() { errc <- f() }:
		return <-errc
	case <-d.done:
		return errStopping
	}
}

// connectBus connects to the system bus and reports whether it could;
// without one, vethd says so once and runs without D-Bus (the main loop
// tries again every BusRetry).
func (d *daemon) connectBus() bool {
	conn, err := d.connect()
	if err != nil {
		if !d.busSaid {
			d.log.Info(fmt.Sprintf("No system bus (%v); running without D-Bus", err))
			d.busSaid = true
		}
		return false
	}
	d.bus = conn
	d.units = d.cfg.Units(conn)
	return true
}

func (d *daemon) closeBus() {
	if d.bus != nil {
		d.bus.Close()
	}
}

// newInstance registers a bridge; in --all mode it also exports its D-Bus
// object (seed and instance modes export it once the bridge has started:
// startOne).
func (d *daemon) newInstance(s spec) *instance {
	fdName := "tap"
	if d.cfg.Mode == ModeAll {
		fdName = "tap-" + s.cfg.Name
	}
	in := newInstance(s, fdName, d.env)
	d.instances[in.name] = in
	if d.cfg.Mode == ModeAll {
		d.export(in)
	}
	return in
}

// export puts in's object on the bus, if there is one.
func (d *daemon) export(in *instance) {
	if d.bus == nil {
		return
	}
	srv, err := dbusapi.Export(d.bus, d.busBridge(in))
	if err != nil {
		d.log.Warn(fmt.Sprintf("%s: not on D-Bus: %v", in.name, err))
		return
	}
	d.servers[in.name] = srv
	if srv.Queued() {
		// The bus hands the name over when the owner lets it go.
		d.log.Info(fmt.Sprintf("%s: another connection owns %s; queued for it", in.name, srv.BusName()))
	}
}

// busBridge returns in's D-Bus adapter.
func (d *daemon) busBridge(in *instance) *busBridge {
	return &busBridge{in: in, reload: func() error {
		return d.call(func() error {
			err := in.reload()
			if err != nil { // as SIGHUP's (the caller gets the public text)
				d.log.Error(fmt.Sprintf("Reload of %s over D-Bus failed; keeping the running configuration: %v", in.name, err))
			}
			d.changed()
			return err
		})
	}}
}

// addSupervised adds a bridge that the supervisor restarts when it fails.
// A start that finds the name in use asks whether vethd@NAME.service has
// it (contest).
func (d *daemon) addSupervised(s spec) {
	in := d.newInstance(s)
	d.sup.Start(in.name, func(ctx context.Context) error {
		err := in.task(ctx)
		if errors.Is(err, bridge.ErrNameInUse) {
			d.contest(in.name)
		}
		return err
	})
}

// remove stops a bridge of --all mode (its file went, or its own unit
// claims it), drops its TAP from the fd store (its interface goes) and
// then takes it off the bus: once the name is free, the interface is gone
// or going, which vethd@NAME.service's takeOver relies on. With handover
// (its own unit claims it) the bridge is released, not closed, so that a
// veth pair stays for vethd@NAME.service to adopt.
func (d *daemon) remove(in *instance, handover bool) {
	in.keep.Store(handover)
	d.sup.Stop(in.name)
	if f := d.fds.take(in.fdName); f != nil {
		f.Close() // never adopted (its start kept failing)
	}
	d.notify.RemoveFD(in.fdName)
	if srv := d.servers[in.name]; srv != nil {
		srv.Close()
		delete(d.servers, in.name)
	}
	delete(d.instances, in.name)
}

// list returns the instances, sorted by name.
func (d *daemon) list() []*instance {
	l := make([]*instance, 0, len(d.instances))
	for _, in := range d.instances {
		l = append(l, in)
	}
	sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
	return l
}

// dropUnusedFDs closes the stored descriptors no bridge claims (a bridge
// removed from the configuration) and has systemd close its copies, so
// their interfaces go.
func (d *daemon) dropUnusedFDs() {
	for name, f := range d.fds.takeUnclaimed(d.claimed) {
		why := "no such bridge is configured"
		if n, ok := strings.CutPrefix(name, "tap-"); ok && d.cfg.Mode == ModeAll {
			if _, left := d.leftOut[n]; left {
				why = fmt.Sprintf("%s runs %s", instanceUnit(n), n)
			}
		}
		d.log.Info(fmt.Sprintf("Dropping stored descriptor %s: %s", name, why))
		f.Close()
		d.notify.RemoveFD(name)
	}
}

// claimed reports whether a configured bridge stores its TAP under the
// FDNAME name.
func (d *daemon) claimed(name string) bool {
	for _, in := range d.instances {
		if in.fdName == name {
			return true
		}
	}
	return false
}

// status is the STATUS= text: statusLine, and in --all mode the
// bridges left to their own units. Run goroutine only.
func (d *daemon) status() string {
	if len(d.leftOut) == 0 {
		return d.statusLine()
	}
	s := d.statusLine()
	if len(d.instances) == 0 {
		s = "No bridges of its own"
	}
	return s + "; left to their own units: " + strings.Join(sortedNames(d.leftOut), ", ")
}

// sortedNames returns m's keys, sorted.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// changed is every bridge's OnChange: it wakes the main loop. It may be
// called from any goroutine and never blocks.
func (d *daemon) changed() {
	select {
	case d.changes <- struct{}{}:
	default:
	}
}

// publish sends the state-like properties that changed on D-Bus and the
// new status line to systemd.
func (d *daemon) publish() {
	for _, in := range d.list() {
		if srv := d.servers[in.name]; srv != nil {
			srv.Update()
		}
	}
	d.notify.Send(sdnotify.Status(d.status()))
}

// health is nil when every running bridge is healthy. The bridges are
// asked at once, so a check takes at most one bridge's timeout.
func (d *daemon) health() error {
	ins := d.list()
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		if br := in.bridge(); br != nil {
			wg.Go(func() { errs[i] = br.Health() })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// shutdownInstances stops every bridge and releases the bus names. If
// systemd is restarting the unit (keepForRestart), the bridges are
// released, so their interfaces stay for the next vethd; otherwise closed.
func (d *daemon) shutdownInstances() {
	keep := d.keepForRestart()
	for _, in := range d.list() {
		in.keep.Store(keep)
		in.exiting.Store(true)
	}
	if d.sup != nil {
		d.sup.StopAll()
	}
	for _, in := range d.list() {
		in.stop(keep, true)
		if srv := d.servers[in.name]; srv != nil {
			srv.Close()
		}
	}
}

// reloadAll is SIGHUP: re-read the configuration and apply it without
// removing interfaces. In --all mode bridges whose file appeared are
// started and those whose file went are stopped (their interface removed).
func (d *daemon) reloadAll() {
	d.notify.Send(sdnotify.Reloading())
	defer func() { d.notify.Send("READY=1\nSTATUS=" + d.status()) }()
	switch d.cfg.Mode {
	case ModeSeed:
		d.log.Info("Reload: nothing to re-read (started from the command line, not a configuration file)")
	case ModeInstance:
		for _, in := range d.list() {
			if err := in.reload(); err != nil {
				d.log.Error(fmt.Sprintf("Reload failed; keeping the running configuration: %v", err))
			}
		}
	case ModeAll:
		names, err := config.Names(d.cfg.ConfigDir)
		if err != nil {
			d.log.Error(fmt.Sprintf("Reload failed: %v", err))
			return
		}
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
		}
		for n := range d.leftOut {
			if !want[n] {
				delete(d.leftOut, n)
			}
		}
		for _, in := range d.list() {
			if !want[in.name] {
				d.log.Info(fmt.Sprintf("Reload: %s is no longer configured; removing it", in.name))
				d.remove(in, false)
				continue
			}
			delete(want, in.name)
			if c, ok := d.instanceClaim(in.name); ok {
				d.log.Info(fmt.Sprintf("Reload: handing %s over to %s (%s): stopping it in this process", in.name, instanceUnit(in.name), c))
				d.remove(in, true)
				d.leftOut[in.name] = c
				continue
			}
			if err := in.reload(); err != nil {
				d.log.Error(fmt.Sprintf("Reload of %s failed; keeping its running configuration: %v", in.name, err))
			}
		}
		for _, n := range names {
			if !want[n] {
				continue
			}
			c, claimed := d.instanceClaim(n)
			if claimed {
				d.leaveOut(n, c, "Reload")
				continue
			}
			s, err := d.loadSpec(n)
			if err == nil {
				err = d.checkSpec(s)
			}
			if err != nil {
				d.log.Error(fmt.Sprintf("Reload: not starting %s: %v", n, err))
				continue
			}
			if _, was := d.leftOut[n]; was {
				delete(d.leftOut, n)
				d.log.Info(fmt.Sprintf("Reload: %s no longer claims %s (%s); starting it here", instanceUnit(n), n, c))
			} else {
				d.log.Info(fmt.Sprintf("Reload: starting new bridge %s", n))
			}
			d.addSupervised(s)
		}
	}
	d.changed()
}
