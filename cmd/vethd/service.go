package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
	"github.com/vethd/vethd/pkg/supervisor"
	"golang.org/x/sys/unix"
)

// mode is which bridges a vethd process runs and where they come from.
type mode int

const (
	modeSeed     mode = iota // one bridge from -v/-e/-m; a missing parent is an error
	modeInstance             // --instance NAME: /etc/vethd/NAME.conf
	modeAll                  // --all: every /etc/vethd/*.conf, supervised
)

// spec is one bridge's resolved configuration.
type spec struct {
	cfg    bridge.Config // Name, Parent, MAC, MTU, CarrierOn, WaitParent
	policy macaddr.Policy
	file   string // "" in seed mode
}

// daemon runs the bridges of one vethd process and connects them to
// systemd (sd_notify, fd store) and the system bus.
type daemon struct {
	o       options
	mode    mode
	log     *slog.Logger
	notify  *notifier
	bus     *dbus.Conn // nil without a system bus
	busSaid bool       // "No system bus" was logged
	sup     *supervisor.Supervisor

	changes chan struct{} // a bridge changed (buffered 1)
	failed  chan error    // a bridge failed (seed and instance modes)

	reloadMu sync.Mutex // one reload at a time

	mu        sync.Mutex // guards instances and stored
	instances map[string]*instance
	stored    map[string]*os.File // fd store entries not yet adopted, by FDNAME
}

// instance is one configured bridge: its spec, its D-Bus object, and the
// running bridge (nil while it starts or restarts).
type instance struct {
	d      *daemon
	name   string
	fdName string          // FDNAME of its TAP in systemd's fd store
	srv    *dbusapi.Server // nil when not on the bus; main goroutine only
	first  chan struct{}   // closed after the first start attempt
	once   sync.Once

	mu      sync.Mutex // guards spec, br and lastErr
	spec    spec
	br      *bridge.Bridge
	lastErr string
}

// loadSpecs reads the configuration the mode names; errors are *config.Error
// or MAC resolution errors (exit 78 either way).
func (d *daemon) loadSpecs() ([]spec, error) {
	switch d.mode {
	case modeInstance:
		s, err := d.loadSpec(d.o.instance)
		if err != nil {
			return nil, err
		}
		return []spec{s}, nil
	case modeAll:
		names, err := config.Names(d.o.configDir)
		if err != nil {
			return nil, err
		}
		var specs []spec
		for _, n := range names {
			s, err := d.loadSpec(n)
			if err != nil {
				return nil, err
			}
			specs = append(specs, s)
		}
		return specs, nil
	}
	policy, err := macaddr.Parse(d.o.mac)
	if err != nil {
		return nil, fmt.Errorf("-m: %w", err)
	}
	if err := ifname.Validate(d.o.name); err != nil {
		return nil, fmt.Errorf("-v: %w", err)
	}
	if err := ifname.Validate(d.o.parent); err != nil {
		return nil, fmt.Errorf("-e: %w", err)
	}
	if policy.Warning != "" {
		d.log.Warn(policy.Warning)
	}
	mac, err := policy.Resolve(d.o.name, d.o.machineIDFile)
	if err != nil {
		return nil, err
	}
	return []spec{{cfg: bridge.Config{Name: d.o.name, Parent: d.o.parent, MAC: mac}, policy: policy}}, nil
}

// loadSpec reads configDir/NAME.conf and resolves its MAC address.
func (d *daemon) loadSpec(name string) (spec, error) {
	c, err := config.Load(config.Path(d.o.configDir, name))
	if err != nil {
		return spec{}, err
	}
	if c.MAC.Warning != "" {
		d.log.Warn(fmt.Sprintf("%s: %s", c.File, c.MAC.Warning))
	}
	mac, err := c.MAC.Resolve(c.Name, d.o.machineIDFile)
	if err != nil {
		return spec{}, fmt.Errorf("%s: %w", c.File, err)
	}
	return spec{
		cfg: bridge.Config{
			Name: c.Name, Parent: c.Parent, MAC: mac, MTU: c.MTU,
			CarrierOn: c.Carrier == config.CarrierOn, WaitParent: true,
		},
		policy: c.MAC,
		file:   c.File,
	}, nil
}

// serve runs the daemon until a signal stops it or (seed and instance
// modes) the bridge fails; it returns the exit code.
func (d *daemon) serve() int {
	specs, err := d.loadSpecs()
	if err != nil {
		d.log.Error(err.Error())
		return exitConfig
	}
	d.changes = make(chan struct{}, 1)
	d.failed = make(chan error, 1)
	d.instances = map[string]*instance{}
	d.stored = storedFDs()
	d.connectBus()
	defer d.closeBus()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if d.mode == modeAll {
		d.sup = supervisor.New(supervisor.DefaultBackoff, d.log)
		for _, s := range specs {
			d.addSupervised(s)
		}
		for _, in := range d.list() {
			<-in.first
		}
	} else {
		in := d.newInstance(specs[0])
		br, err := in.start()
		if err != nil {
			d.log.Error(explain(err, specs[0].cfg))
			d.shutdownInstances()
			return exitCode(err)
		}
		go func() {
			if err := br.Wait(); err != nil {
				d.failed <- err
			}
		}()
	}
	d.dropUnusedFDs()

	d.notify.send("READY=1\nSTATUS=" + d.statusLine())
	var wdC <-chan time.Time
	if iv := d.notify.watchdogInterval(); iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		wdC = t.C
	}
	statusTick := time.NewTicker(10 * time.Second)
	defer statusTick.Stop()
	// Without a bus (or once it is lost) try again every busRetry, quietly.
	var busGone <-chan struct{}
	var busRetryC <-chan time.Time
	busRetryT := time.NewTicker(busRetry)
	defer busRetryT.Stop()
	if d.bus != nil {
		busGone = d.bus.Context().Done()
	} else {
		busRetryC = busRetryT.C
	}
	unhealthy := ""
	code := exitOK
loop:
	for {
		select {
		case <-busGone:
			d.log.Warn("Lost the system bus; reconnecting")
			d.bus.Close()
			d.bus, busGone = nil, nil
			for _, in := range d.list() {
				in.srv = nil
			}
			busRetryT.Reset(busRetry)
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
			d.log.Info(fmt.Sprintf("Stopping on %v", sig))
			break loop
		case err := <-d.failed:
			d.log.Error(fmt.Sprintf("Stopping: %v", err))
			code = exitFailure
			break loop
		case <-d.changes:
			d.publish()
		case <-statusTick.C:
			d.notify.status(d.statusLine())
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
			d.notify.send("WATCHDOG=1")
		}
	}
	d.notify.send("STOPPING=1\nSTATUS=Stopping")
	d.shutdownInstances()
	return code
}

// busRetry is how often vethd tries to (re)connect to the system bus.
const busRetry = 5 * time.Second

// connectBus connects to the system bus and reports whether it could;
// without one, vethd says so once and runs without D-Bus (the main loop
// tries again every busRetry).
func (d *daemon) connectBus() bool {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		if !d.busSaid {
			d.log.Info(fmt.Sprintf("No system bus (%v); running without D-Bus", err))
			d.busSaid = true
		}
		return false
	}
	d.bus = conn
	return true
}

func (d *daemon) closeBus() {
	if d.bus != nil {
		d.bus.Close()
	}
}

// newInstance registers a bridge and exports its D-Bus object.
func (d *daemon) newInstance(s spec) *instance {
	in := &instance{d: d, name: s.cfg.Name, spec: s, fdName: "tap", first: make(chan struct{})}
	if d.mode == modeAll {
		in.fdName = "tap-" + s.cfg.Name
	}
	d.export(in)
	d.mu.Lock()
	d.instances[in.name] = in
	d.mu.Unlock()
	return in
}

// export puts in's object on the bus, if there is one. Only the main
// goroutine touches in.srv.
func (d *daemon) export(in *instance) {
	if d.bus == nil {
		return
	}
	srv, err := dbusapi.Export(d.bus, in)
	if err != nil {
		d.log.Warn(fmt.Sprintf("%s: not on D-Bus: %v", in.name, err))
		return
	}
	in.srv = srv
}

// addSupervised adds a bridge that the supervisor restarts when it fails.
func (d *daemon) addSupervised(s spec) {
	in := d.newInstance(s)
	d.sup.Start(in.name, in.task)
}

// list returns the instances, sorted by name.
func (d *daemon) list() []*instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := make([]*instance, 0, len(d.instances))
	for _, in := range d.instances {
		l = append(l, in)
	}
	sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
	return l
}

// takeStored returns the stored descriptor named name, if systemd passed one.
func (d *daemon) takeStored(name string) *os.File {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.stored[name]
	delete(d.stored, name)
	return f
}

// putStored gives back a stored descriptor that an attempt could not adopt,
// for the next attempt.
func (d *daemon) putStored(name string, f *os.File) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stored == nil {
		d.stored = map[string]*os.File{}
	}
	d.stored[name] = f
}

// dropUnusedFDs closes the stored descriptors no bridge adopted (a bridge
// removed from the configuration) and has systemd close its copies, so
// their interfaces go.
func (d *daemon) dropUnusedFDs() {
	d.mu.Lock()
	stored := map[string]*os.File{}
	for name, f := range d.stored {
		if !d.claimed(name) {
			stored[name] = f
			delete(d.stored, name)
		}
	}
	d.mu.Unlock()
	for name, f := range stored {
		d.log.Info(fmt.Sprintf("Dropping stored descriptor %s: no such bridge is configured", name))
		f.Close()
		d.notify.removeFD(name)
	}
}

// claimed reports whether a configured bridge stores its TAP under the
// FDNAME name. d.mu must be held.
func (d *daemon) claimed(name string) bool {
	for _, in := range d.instances {
		if in.fdName == name {
			return true
		}
	}
	return false
}

// changed is every bridge's OnChange: it wakes the main loop.
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
		if in.srv != nil {
			in.srv.Update()
		}
	}
	d.notify.status(d.statusLine())
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

// shutdownInstances stops every bridge and releases the bus names.
func (d *daemon) shutdownInstances() {
	if d.sup != nil {
		d.sup.StopAll()
	}
	for _, in := range d.list() {
		in.stop()
		if in.srv != nil {
			in.srv.Close()
		}
	}
}

// reloadAll is SIGHUP: re-read the configuration and apply it without
// removing interfaces. In --all mode bridges whose file appeared are
// started and those whose file went are stopped (their interface removed).
func (d *daemon) reloadAll() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.notify.reloading()
	defer func() { d.notify.send("READY=1\nSTATUS=" + d.statusLine()) }()
	switch d.mode {
	case modeSeed:
		d.log.Info("Reload: nothing to re-read (started from the command line, not a configuration file)")
	case modeInstance:
		for _, in := range d.list() {
			if err := in.reload(); err != nil {
				d.log.Error(fmt.Sprintf("Reload failed; keeping the running configuration: %v", err))
			}
		}
	case modeAll:
		names, err := config.Names(d.o.configDir)
		if err != nil {
			d.log.Error(fmt.Sprintf("Reload failed: %v", err))
			return
		}
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
		}
		for _, in := range d.list() {
			if !want[in.name] {
				d.log.Info(fmt.Sprintf("Reload: %s is no longer configured; removing it", in.name))
				d.sup.Stop(in.name)
				if in.srv != nil {
					in.srv.Close()
				}
				if f := d.takeStored(in.fdName); f != nil {
					f.Close() // never adopted (its start kept failing)
				}
				d.notify.removeFD(in.fdName)
				d.mu.Lock()
				delete(d.instances, in.name)
				d.mu.Unlock()
				continue
			}
			delete(want, in.name)
			if err := in.reload(); err != nil {
				d.log.Error(fmt.Sprintf("Reload of %s failed; keeping its running configuration: %v", in.name, err))
			}
		}
		for _, n := range names {
			if !want[n] {
				continue
			}
			s, err := d.loadSpec(n)
			if err != nil {
				d.log.Error(fmt.Sprintf("Reload: not starting %s: %v", n, err))
				continue
			}
			d.log.Info(fmt.Sprintf("Reload: starting new bridge %s", n))
			d.addSupervised(s)
		}
	}
	d.changed()
}

// start starts the bridge, adopting its TAP from systemd's fd store when
// systemd kept one (a restart), and stores the TAP's descriptor there.
func (in *instance) start() (*bridge.Bridge, error) {
	d := in.d
	in.mu.Lock()
	s := in.spec
	in.mu.Unlock()
	cfg := s.cfg
	cfg.Log = d.log
	cfg.OnChange = d.changed
	var br *bridge.Bridge
	var err error
	adopted := false
	if f := d.takeStored(in.fdName); f != nil {
		// bridge.Start owns (and on error closes) what it is given: give
		// it a copy, so that a failed adoption can be tried again by the
		// supervisor's next attempt (the interface still exists: systemd
		// holds it).
		dup, derr := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if derr != nil {
			d.putStored(in.fdName, f)
			return nil, in.setErr(fmt.Errorf("adopt %s: %w", in.name, derr))
		}
		cfg.TAP = os.NewFile(uintptr(dup), f.Name())
		if s.policy.Kind == macaddr.Random {
			cfg.MAC = nil // a restart keeps the address drawn at the first start
		}
		br, err = bridge.Start(cfg)
		switch {
		case errors.Is(err, bridge.ErrNotTAP):
			f.Close()
			d.log.Warn(fmt.Sprintf("The stored descriptor of %s is no longer a TAP interface (%v); creating %s afresh", in.name, err, in.name))
			d.notify.removeFD(in.fdName)
			cfg.TAP, cfg.MAC = nil, s.cfg.MAC
			br = nil
		case err != nil:
			d.putStored(in.fdName, f)
			return nil, in.setErr(err)
		default:
			f.Close()
			adopted = true
			st := br.Status()
			d.log.Info(fmt.Sprintf("Adopted %s from systemd's fd store", st.Name), "ifindex", st.IfIndex, "mac", st.MAC)
		}
	}
	if br == nil {
		if br, err = bridge.Start(cfg); err != nil {
			return nil, in.setErr(err)
		}
	}
	if d.notify.enabled() && os.Getenv("FDSTORE") == "0" {
		// systemd ≥ 254 says how many descriptors it keeps.
		d.log.Warn(fmt.Sprintf("systemd keeps no descriptors for this service (FileDescriptorStoreMax=0): a restart will re-create %s", in.name))
	} else if d.notify.enabled() {
		if err := in.storeFD(br, adopted); err != nil {
			d.log.Warn(fmt.Sprintf("%s will not survive a restart: %v", in.name, err))
		}
	}
	st := br.Status()
	if st.ParentIfIndex != 0 {
		d.log.Info(fmt.Sprintf("Attached %s into %s", st.Name, st.Parent),
			"mac", st.MAC, "mtu", st.MTU, "carrier", onOff(st.Carrier),
			"parent_promiscuity", st.Promiscuity, "offloads", strings.Join(st.Offloads, ","))
	}
	in.mu.Lock()
	in.br, in.lastErr = br, ""
	in.mu.Unlock()
	d.changed()
	return br, nil
}

// storeFD puts br's TAP in systemd's fd store. A new TAP replaces any older
// entry (one whose interface was deleted); an adopted one is stored again
// without removing the entry first (systemd ignores a descriptor it holds
// already), so that a refused store cannot lose the interface.
func (in *instance) storeFD(br *bridge.Bridge, adopted bool) error {
	fd, err := br.TAPFd()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !adopted {
		in.d.notify.removeFD(in.fdName)
	}
	return in.d.notify.storeFD(in.fdName, fd)
}

// setErr records err as the instance's last error and returns it.
func (in *instance) setErr(err error) error {
	in.mu.Lock()
	in.lastErr = err.Error()
	in.mu.Unlock()
	in.d.changed()
	return err
}

// task is the supervised life of one bridge (--all): start, run until
// cancelled or failed.
func (in *instance) task(ctx context.Context) error {
	br, err := in.start()
	in.once.Do(func() { close(in.first) })
	if err != nil {
		return err
	}
	failed := make(chan error, 1)
	go func() { failed <- br.Wait() }()
	select {
	case <-ctx.Done():
		in.stop()
		return nil
	case err := <-failed:
		in.stop()
		return in.setErr(err)
	}
}

// stop closes the running bridge, if any, and logs its counters.
func (in *instance) stop() {
	in.mu.Lock()
	br := in.br
	in.br = nil
	in.mu.Unlock()
	if br == nil {
		return
	}
	start := time.Now()
	br.Close()
	c := br.Counters().Snapshot()
	in.d.log.Info(fmt.Sprintf("Detached %s from %s", in.name, br.Status().Parent),
		"rx_packets", c.RxPackets, "rx_bytes", c.RxBytes, "rx_coalesced", c.RxCoalesced,
		"tx_packets", c.TxPackets, "tx_bytes", c.TxBytes,
		"dropped", dropSum(c), "errors", c.Errors, "took", time.Since(start).Round(time.Millisecond))
}

func (in *instance) bridge() *bridge.Bridge {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.br
}

// reload re-reads the instance's file and applies it to the running bridge.
func (in *instance) reload() error {
	d := in.d
	if d.mode == modeSeed {
		return errors.New("started from the command line: there is no configuration file to re-read")
	}
	s, err := d.loadSpec(in.name)
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
	d.log.Info(fmt.Sprintf("Reloaded %s from %s", in.name, s.file))
	return nil
}

// The instance is the D-Bus object's dbusapi.Bridge.

// Status is dbusapi.Bridge's Status.
func (in *instance) Status() dbusapi.Status {
	in.mu.Lock()
	s, br, lastErr := in.spec, in.br, in.lastErr
	in.mu.Unlock()
	if br == nil {
		mac := ""
		if s.cfg.MAC != nil {
			mac = s.cfg.MAC.String()
		}
		return dbusapi.Status{
			Name: in.name, Parent: s.cfg.Parent, MACAddress: mac,
			MACPolicy: s.policy.Kind.String(), State: string(bridge.StateStarting), LastError: lastErr,
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
	return dbusapi.Status{
		Name: st.Name, Parent: st.Parent,
		IfIndex: int32(st.IfIndex), ParentIfIndex: int32(st.ParentIfIndex),
		MACAddress: st.MAC.String(), MACPolicy: s.policy.Kind.String(),
		MTU: uint32(st.MTU), State: string(st.State),
		Carrier: st.Carrier, ParentCarrier: st.ParentCarrier, Promiscuous: st.Promiscuity > 0,
		Offloads: st.Offloads, StartedUsec: started, LastError: lastErr,
	}
}

// Counters is dbusapi.Bridge's Counters.
func (in *instance) Counters() dbusapi.Counters {
	c := dbusapi.Counters{RxDrops: map[string]uint64{}, TxDrops: map[string]uint64{}}
	br := in.bridge()
	if br == nil {
		return c
	}
	s := br.Counters().Snapshot()
	c.RxPackets, c.RxBytes, c.RxCoalesced = s.RxPackets, s.RxBytes, s.RxCoalesced
	c.TxPackets, c.TxBytes, c.Errors = s.TxPackets, s.TxBytes, s.Errors
	c.RxDrops, c.TxDrops = s.RxDrops, s.TxDrops
	return c
}

// Reload is dbusapi.Bridge's Reload.
func (in *instance) Reload() error {
	in.d.reloadMu.Lock()
	defer in.d.reloadMu.Unlock()
	err := in.reload()
	in.d.changed()
	return err
}

// ResetCounters is dbusapi.Bridge's ResetCounters.
func (in *instance) ResetCounters() {
	if br := in.bridge(); br != nil {
		br.Counters().Reset()
		in.d.log.Info(fmt.Sprintf("Counters of %s reset", in.name))
	}
}

// Describe is dbusapi.Bridge's Describe: configuration, status and
// counters as one JSON document.
func (in *instance) Describe() string {
	in.mu.Lock()
	s := in.spec
	in.mu.Unlock()
	carrier := "follow"
	if s.cfg.CarrierOn {
		carrier = "on"
	}
	mtu := "inherit"
	if s.cfg.MTU != 0 {
		mtu = fmt.Sprint(s.cfg.MTU)
	}
	doc := map[string]any{
		"version": version,
		"pid":     os.Getpid(),
		"config": map[string]any{
			"file": s.file, "parent": s.cfg.Parent, "mac_address": s.policy.String(),
			"mtu": mtu, "carrier": carrier,
		},
		"status":   in.Status(),
		"counters": in.Counters(),
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return string(b)
}

// statusLine is the STATUS= text systemctl status shows.
func (d *daemon) statusLine() string {
	ins := d.list()
	if len(ins) == 0 {
		return "No bridges configured in " + d.o.configDir
	}
	if len(ins) == 1 {
		return ins[0].statusText()
	}
	var parts []string
	var rx, tx uint64
	for _, in := range ins {
		st := in.Status()
		parts = append(parts, in.name+" "+st.State)
		c := in.Counters()
		rx += c.RxPackets
		tx += c.TxPackets
	}
	return fmt.Sprintf("%d bridges: %s; rx %d packets, tx %d packets", len(ins), strings.Join(parts, ", "), rx, tx)
}

// statusText describes one bridge in a line.
func (in *instance) statusText() string {
	st := in.Status()
	c := in.Counters()
	traffic := fmt.Sprintf("rx %d packets (%s), tx %d packets (%s)", c.RxPackets, humanBytes(c.RxBytes), c.TxPackets, humanBytes(c.TxBytes))
	switch st.State {
	case string(bridge.StateRunning):
		return fmt.Sprintf("%s running on %s, mac %s; %s", st.Name, st.Parent, st.MACAddress, traffic)
	case string(bridge.StateDegraded):
		return fmt.Sprintf("%s degraded: parent %s has no carrier; %s", st.Name, st.Parent, traffic)
	case string(bridge.StateWaitingParent):
		return fmt.Sprintf("%s waiting for parent %s to appear", st.Name, st.Parent)
	}
	if st.LastError != "" {
		return fmt.Sprintf("%s %s (last error: %s)", st.Name, st.State, st.LastError)
	}
	return st.Name + " " + st.State
}

// humanBytes formats n in SI units, like systemctl.
func humanBytes(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
