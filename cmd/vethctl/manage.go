package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/macaddr"
)

const addHelp = `Write CONFIG-DIR/NAME.conf for the bridge NAME on the parent NIC IF, then,
through systemd, enable vethd@NAME.service and reload systemd; with --now,
also start it and wait until it runs, or, if it runs already (--force), make
vethd apply the new file (the bridge's D-Bus method Reload). If vethd.service
(vethd --all) is active or enabled, the bridge goes to it instead:
vethd@NAME.service is not enabled and, with --now, vethd.service is reloaded
(or started) to pick up the new file, and vethctl waits until NAME is on the
bus.

Options:
      --parent IF         the NIC whose wire is shared (required)
      --mac POLICY        persistent (default), random, or an address
                          such as 02:00:5e:10:00:01
      --mtu N|inherit     the interface's MTU (default inherit: the parent's)
      --carrier follow|on carrier follows the parent's (default) or is on
      --kind tap|veth     what the interface is: a TAP (default) or one end of a
                          veth pair (an Ethernet device to NetworkManager)
      --data-path relay|kernel
                          how frames move: through vethd, or, with --kind
                          veth only, inside the kernel (veth's default)
      --netns NAME|PATH   create the interface in this network namespace
      --now               start the bridge too
      --force             overwrite an existing configuration file
      --no-block          queue systemd jobs, do not wait for them
      --timeout DURATION  how long to wait for a job or for NAME on the bus:
                          90s (default), 2m, 30 (seconds); 0: no limit
`

const removeHelp = `Stop and disable vethd@NAME.service, delete CONFIG-DIR/NAME.conf and reload
systemd. If vethd.service is active, it is reloaded so that it stops NAME, and
vethctl waits until NAME is off the bus.

Options:
      --keep-config       do not delete the configuration file
      --no-block          queue systemd jobs, do not wait for them
      --timeout DURATION  how long to wait for a job or for NAME to leave the
                          bus: 90s (default), 2m, 30 (seconds); 0: no limit
`

const reloadHelp = `Make vethd re-read NAME's configuration file and apply it without removing
the interface. If NAME is on the bus, its D-Bus method Reload does it and
returns once vethd applied the file, or with vethd's reason why it could not
(exit status 1). Otherwise, if vethd@NAME.service is active (vethd without
the bus), the file is checked and the unit reloaded (systemctl reload
vethd@NAME): vethd cannot confirm that it applied the file.

Options:
      --timeout DURATION  how long to wait for the reload job: 90s (default),
                          2m, 30 (seconds); 0: no limit
`

const resetHelp = `Reset the counters of the bridge NAME to zero (D-Bus method ResetCounters).
`

const macHelp = `Print the persistent MAC address the bridge NAME gets on this host: derived
from the machine ID (--machine-id-file, default /etc/machine-id) and NAME.
Needs neither the bus nor root. With --json: {"name": ..., "mac": ...}.
`

// Waiting for systemd and the bus.
const (
	defaultTimeout = 90 * time.Second       // --timeout
	pollInterval   = 200 * time.Millisecond // between looks at the bus
)

// waitOptions say how add, remove and reload wait for systemd's jobs and
// for a bridge to show on the bus or leave it.
type waitOptions struct {
	timeout time.Duration // --timeout; 0: no limit
	noBlock bool          // --no-block: queue jobs and do not wait
}

// register defines --timeout, and --no-block if noBlock.
func (w *waitOptions) register(fs *flag.FlagSet, noBlock bool) {
	w.timeout = defaultTimeout
	fs.Var((*intervalValue)(&w.timeout), "timeout", "")
	if noBlock {
		fs.BoolVar(&w.noBlock, "no-block", false, "")
	}
}

// addOptions are add's options.
type addOptions struct {
	parent, mac, mtu, carrier, kind, netns, dataPath string
	now, force                                       bool
	wait                                             waitOptions
}

func (o *addOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.parent, "parent", "", "")
	fs.StringVar(&o.mac, "mac", "persistent", "")
	fs.StringVar(&o.mtu, "mtu", "inherit", "")
	fs.StringVar(&o.carrier, "carrier", string(config.CarrierFollow), "")
	fs.StringVar(&o.kind, "kind", "", "")
	fs.StringVar(&o.netns, "netns", "", "")
	fs.StringVar(&o.dataPath, "data-path", "", "")
	fs.BoolVar(&o.now, "now", false, "")
	fs.BoolVar(&o.force, "force", false, "")
	o.wait.register(fs, true)
}

// removeOptions are remove's options.
type removeOptions struct {
	keepConfig bool
	wait       waitOptions
}

func (o *removeOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.keepConfig, "keep-config", false, "")
	o.wait.register(fs, true)
}

// reloadOptions are reload's options.
type reloadOptions struct {
	wait waitOptions
}

func (o *reloadOptions) register(fs *flag.FlagSet) {
	o.wait.register(fs, false)
}

// checkName checks a bridge name given on the command line.
func checkName(name string) error {
	if err := config.Validate(name); err != nil {
		return usageErr("%v", err)
	}
	return nil
}

// bridgeConfig builds and checks the configuration add writes. Its errors
// are usage errors (exit 2).
func (a *app) bridgeConfig(name string, o addOptions) (*config.Bridge, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !unitable(name) {
		return nil, usageErr("%q cannot be the instance of vethd@.service: use letters, digits, '_', '-' and '.' only (or write %s and run vethd.service)",
			name, config.Path(a.opts.configDir, name))
	}
	if o.parent == "" {
		return nil, usageErr("add: --parent IF is required: the NIC whose wire %s shares", name)
	}
	if err := config.CheckParent(name, o.parent); err != nil {
		return nil, usageErr("--parent: %v", err)
	}
	p, err := macaddr.Parse(o.mac)
	if err != nil {
		return nil, usageErr("--mac: %v", err)
	}
	if p.Warning != "" {
		a.warn("warning: %s", p.Warning)
	}
	mtu, err := config.ParseMTU(o.mtu)
	if err != nil {
		return nil, usageErr("--mtu: %v", err)
	}
	carrier, err := config.ParseCarrier(o.carrier)
	if err != nil {
		return nil, usageErr("--carrier: %v", err)
	}
	var kind config.Kind
	if o.kind != "" {
		if kind, err = config.ParseKind(o.kind); err != nil {
			return nil, usageErr("--kind: %v", err)
		}
	}
	if err := config.CheckMTU(kind, mtu); err != nil {
		return nil, usageErr("--mtu: %v", err)
	}
	if _, err := config.NamespacePath(o.netns); err != nil {
		return nil, usageErr("--netns: %v", err)
	}
	var dataPath config.DataPath
	if o.dataPath != "" {
		if dataPath, err = config.ParseDataPath(o.dataPath); err != nil {
			return nil, usageErr("--data-path: %v", err)
		}
		if config.CheckDataPath(kind, dataPath) != nil {
			return nil, usageErr("--data-path: kernel needs --kind veth (a TAP's frames pass through vethd)")
		}
	}
	// The checks are config's own, so vethd reads the file as written.
	return &config.Bridge{
		Name: name, File: config.Path(a.opts.configDir, name), Parent: o.parent,
		MACAddress: p.String(), MAC: p, MTU: mtu, Carrier: carrier,
		Kind: kind, Namespace: o.netns, DataPath: dataPath,
	}, nil
}

// errExists is the error of add without --force on an existing file.
var errExists = errors.New("exists already")

func (a *app) add(ctx context.Context, name string, o addOptions) error {
	b, err := a.bridgeConfig(name, o)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(b.File); err == nil && !o.force {
		return fmt.Errorf("%s %w; use --force to overwrite it, or edit it and run 'vethctl reload %s'", b.File, errExists, name)
	}
	u, err := a.units(ctx)
	if err != nil {
		return err
	}
	// Asked before writing anything: systemd must be there.
	all, err := u.Unit(ctx, allUnit)
	if err != nil {
		return err
	}
	allMode := all.LoadState == "loaded" &&
		(enabled(all.UnitFileState) || all.ActiveState == "active" || all.ActiveState == "reloading" || all.ActiveState == "activating")

	if err := config.Write(b.File, b, o.force); err != nil {
		if errors.Is(err, fs.ErrExist) { // created since the Lstat above
			return fmt.Errorf("%s %w; use --force to overwrite it", b.File, errExists)
		}
		return err
	}
	fmt.Fprintf(a.stdout, "Wrote %s: parent %s, MAC %s.\n", b.File, b.Parent, a.describeMAC(b))

	unit := unitName(name)
	if allMode {
		return a.addAll(ctx, u, name, all, o)
	}

	changes, err := u.Enable(ctx, unit)
	if err != nil {
		return fmt.Errorf("%w (%s was written)", err, b.File)
	}
	a.printChanges(changes)
	if err := u.DaemonReload(ctx); err != nil {
		return err
	}
	if !o.now {
		return nil
	}
	// A start job on an active unit does nothing: the vethd that runs
	// NAME (add --force) must apply the new file itself.
	inst, err := u.Unit(ctx, unit)
	if err != nil {
		return err
	}
	if unitRuns(inst.ActiveState) {
		return a.applyFile(ctx, u, name, unit, o.wait)
	}
	if err := a.runJob(ctx, "start", unit, u.Start, o.wait); err != nil {
		return err
	}
	if !o.wait.noBlock {
		fmt.Fprintf(a.stdout, "Started %s.\n", unit)
	}
	return nil
}

// unitRuns reports whether a unit in ActiveState s runs: a start job
// would do nothing.
func unitRuns(s string) bool { return s == "active" || s == "reloading" }

// addAll is the rest of add when vethd.service (vethd --all), whose state
// is all, runs every file or would: NAME's instance is not enabled; with
// --now, vethd.service picks up the new file.
func (a *app) addAll(ctx context.Context, u units, name string, all unitStatus, o addOptions) error {
	fmt.Fprintf(a.stdout, "%s is in use: it runs %s (every %s/*.conf whose own unit is not enabled); not enabling %s.\n",
		allUnit, name, a.opts.configDir, unitName(name))
	allRunning := unitRuns(all.ActiveState)
	op, job := "start", u.Start
	if allRunning {
		op, job = "reload", u.ReloadUnit
	}
	if !o.now {
		fmt.Fprintf(a.stdout, "Run 'systemctl %s %s' to start %s.\n", op, strings.TrimSuffix(allUnit, unitSuffix), name)
		return nil
	}
	if allRunning {
		// With --force, NAME may run already: it applies the new file
		// itself, and says whether it could.
		onBus, err := a.busReload(ctx, name)
		if err != nil {
			return err
		}
		if onBus {
			fmt.Fprintf(a.stdout, "Reloaded %s (%s): vethd applied its new configuration.\n", name, allUnit)
			return nil
		}
	}
	if err := a.runJob(ctx, op, allUnit, job, o.wait); err != nil {
		return err
	}
	if o.wait.noBlock {
		return nil
	}
	// The job's success says nothing about NAME (a reload is a SIGHUP):
	// its name on the bus does.
	if err := a.awaitBus(ctx, name, true, op, o.wait.timeout); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s %s: it runs %s.\n", pastTense(op), allUnit, name)
	return nil
}

// busReload makes the vethd that runs name apply its file, with the
// bridge's D-Bus method Reload: it returns once vethd did, or with its
// reason why not (dbusapi.ErrReloadFailed). It reports false if the
// bridge is not on the bus.
func (a *app) busReload(ctx context.Context, name string) (bool, error) {
	b, err := a.bridges(ctx)
	if err != nil {
		return false, err
	}
	switch err := b.Reload(ctx, name); {
	case errors.Is(err, dbusapi.ErrNoSuchBridge):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// applyFile makes the vethd of unit, which is active, apply name's file:
// with the bridge's D-Bus method Reload if it is on the bus, else with
// reloadUnit.
func (a *app) applyFile(ctx context.Context, u units, name, unit string, w waitOptions) error {
	onBus, err := a.busReload(ctx, name)
	if err != nil {
		return err
	}
	if onBus {
		fmt.Fprintf(a.stdout, "Reloaded %s (%s): vethd applied its new configuration.\n", name, unit)
		return nil
	}
	return a.reloadUnit(ctx, u, name, unit, w)
}

// reloadUnit makes the vethd of unit, which is active but not on the
// bus, re-read name's file: after checking the file, with a reload job
// of unit (a SIGHUP), whose success does not say that vethd applied it.
func (a *app) reloadUnit(ctx context.Context, u units, name, unit string, w waitOptions) error {
	if _, err := config.Load(config.Path(a.opts.configDir, name)); err != nil {
		return fmt.Errorf("%w; not reloading %s", err, unit)
	}
	if err := a.runJob(ctx, "reload", unit, u.ReloadUnit, w); err != nil {
		return err
	}
	if !w.noBlock {
		fmt.Fprintf(a.stdout, "Reloaded %s, not confirmed: %s is not on the bus to say whether vethd applied the file (see 'systemctl status %s').\n",
			unit, name, strings.TrimSuffix(unit, unitSuffix))
	}
	return nil
}

// awaitBus looks at the bus every pollInterval until the bridge name is
// on it (present) or off it (!present), for up to timeout (0: no limit),
// after a job op of vethd.service. It is an error if it is not so in
// time.
func (a *app) awaitBus(ctx context.Context, name string, present bool, op string, timeout time.Duration) error {
	b, err := a.bridges(ctx)
	if err != nil {
		return err
	}
	deadline := a.now().Add(timeout)
	for {
		_, _, err := b.Get(ctx, name)
		gone := errors.Is(err, dbusapi.ErrNoSuchBridge)
		switch {
		case err != nil && !gone:
			return err
		case present != gone:
			return nil
		}
		if timeout > 0 && !a.now().Before(deadline) {
			break
		}
		if err := a.sleep(ctx, pollInterval); err != nil {
			return fmt.Errorf("interrupted while waiting for %s on the bus: %w", name, err)
		}
	}
	base := strings.TrimSuffix(allUnit, unitSuffix)
	if present {
		return fmt.Errorf("%s is not on the bus %s after the %s of %s; see 'systemctl status %s' and 'journalctl -u %s'",
			name, timespan(timeout), op, allUnit, base, base)
	}
	return fmt.Errorf("%s is still on the bus %s after the %s of %s; see 'systemctl status %s' and 'journalctl -u %s'",
		name, timespan(timeout), op, allUnit, base, base)
}

// describeMAC says which address a configuration gives.
func (a *app) describeMAC(b *config.Bridge) string {
	switch b.MAC.Kind {
	case macaddr.Persistent:
		if id, err := macaddr.ReadMachineID(a.opts.machineIDFile); err == nil {
			return macaddr.PersistentAddr(id, b.Name).String() + " (persistent)"
		}
		return "persistent"
	case macaddr.Random:
		return "random (a new one at each start)"
	}
	return b.MAC.Addr.String()
}

func pastTense(op string) string {
	switch op {
	case "start":
		return "Started"
	case "stop":
		return "Stopped"
	case "reload":
		return "Reloaded"
	}
	return op
}

// runJob queues a systemd job op on unit and, unless w.noBlock, waits
// for it for up to w.timeout (0: no limit). A result other than "done",
// or no result in time, is a failure (exit 1) with the way to find out
// why.
func (a *app) runJob(ctx context.Context, op, unit string, job func(context.Context, string, bool) (string, error), w waitOptions) error {
	if w.noBlock {
		if _, err := job(ctx, unit, false); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Queued a %s job for %s (--no-block: not waiting for it).\n", op, unit)
		return nil
	}
	jctx, cancel := ctx, context.CancelFunc(func() {})
	if w.timeout > 0 {
		jctx, cancel = context.WithTimeout(ctx, w.timeout)
	}
	defer cancel()
	result, err := job(jctx, unit, true)
	base := strings.TrimSuffix(unit, unitSuffix)
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("interrupted while waiting for the %s job of %s, which goes on; see 'systemctl status %s': %w",
			op, unit, base, err)
	case err != nil && jctx.Err() != nil:
		return fmt.Errorf("the %s job of %s did not end within %s (--timeout); it goes on: see 'systemctl status %s' and 'journalctl -u %s'",
			op, unit, timespan(w.timeout), base, base)
	case err != nil:
		return err
	case result != "done":
		return fmt.Errorf("%s %s failed (job result: %s); see 'systemctl status %s' and 'journalctl -u %s'",
			op, unit, result, base, base)
	}
	return nil
}

// printChanges prints the symlinks systemd made or removed, as systemctl
// does.
func (a *app) printChanges(changes []unitChange) {
	for _, c := range changes {
		switch c.Type {
		case "symlink":
			fmt.Fprintf(a.stdout, "Created symlink %s → %s.\n", c.Filename, c.Destination)
		case "unlink":
			fmt.Fprintf(a.stdout, "Removed %q.\n", c.Filename)
		default:
			fmt.Fprintf(a.stdout, "%s %s %s\n", c.Type, c.Filename, c.Destination)
		}
	}
}

func (a *app) remove(ctx context.Context, name string, o removeOptions) error {
	if err := checkName(name); err != nil {
		return err
	}
	path := config.Path(a.opts.configDir, name)
	_, statErr := os.Lstat(path)
	hasConfig := statErr == nil
	u, err := a.units(ctx)
	if err != nil {
		return err
	}
	unit := unitName(name)
	var inst unitStatus
	hasUnit := false
	if unitable(name) {
		if inst, err = u.Unit(ctx, unit); err != nil {
			return err
		}
		hasUnit = live(inst.ActiveState) || enabled(inst.UnitFileState)
	}
	if !hasConfig && !hasUnit {
		return noSuch("no such bridge %s: no %s, and %s is neither active nor enabled", name, path, unit)
	}

	if hasUnit {
		switch inst.ActiveState {
		case "inactive":
		case "failed":
			if err := u.ResetFailed(ctx, unit); err != nil {
				a.warn("%v", err)
			}
		default:
			if err := a.runJob(ctx, "stop", unit, u.Stop, o.wait); err != nil {
				return err
			}
			if !o.wait.noBlock {
				fmt.Fprintf(a.stdout, "Stopped %s.\n", unit)
			}
		}
		changes, err := u.Disable(ctx, unit)
		if err != nil {
			return err
		}
		a.printChanges(changes)
	}
	removed := false
	if hasConfig && !o.keepConfig {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		removed = true
		fmt.Fprintf(a.stdout, "Removed %s.\n", path)
	}
	if err := u.DaemonReload(ctx); err != nil {
		return err
	}
	// vethd --all stops a bridge whose file went when it reloads.
	if all, err := u.Unit(ctx, allUnit); err == nil && all.ActiveState == "active" {
		if !removed {
			fmt.Fprintf(a.stdout, "%s keeps running %s: its file was kept.\n", allUnit, name)
			return nil
		}
		if err := a.runJob(ctx, "reload", allUnit, u.ReloadUnit, o.wait); err != nil {
			return err
		}
		if o.wait.noBlock {
			return nil
		}
		if err := a.awaitBus(ctx, name, false, "reload", o.wait.timeout); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Reloaded %s: it stopped %s.\n", allUnit, name)
	}
	return nil
}

func (a *app) reload(ctx context.Context, name string, o reloadOptions) error {
	if err := checkName(name); err != nil {
		return err
	}
	// On the bus, vethd says whether it applied the file.
	onBus, err := a.busReload(ctx, name)
	if err != nil {
		return err
	}
	if onBus {
		fmt.Fprintf(a.stdout, "Reloaded %s: vethd applied its configuration.\n", name)
		return nil
	}
	unit := unitName(name)
	if unitable(name) {
		u, err := a.units(ctx)
		if err != nil {
			return err
		}
		us, err := u.Unit(ctx, unit)
		if err != nil {
			return err
		}
		if unitRuns(us.ActiveState) {
			return a.reloadUnit(ctx, u, name, unit, o.wait)
		}
	}
	return noSuch("no such bridge %s: no vethd on the bus runs it and %s is not active", name, unit)
}

func (a *app) reset(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	b, err := a.bridges(ctx)
	if err != nil {
		return err
	}
	return b.ResetCounters(ctx, name)
}

// macJSON is mac's JSON.
type macJSON struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
}

func (a *app) mac(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	id, err := macaddr.ReadMachineID(a.opts.machineIDFile)
	if err != nil {
		// macaddr's hint (use --mac random or an address) is add's.
		if cause := errors.Unwrap(err); cause != nil {
			err = fmt.Errorf("read machine id (persistent MAC addresses are derived from it; see --machine-id-file): %w", cause)
		}
		return err
	}
	hw := macaddr.PersistentAddr(id, name).String()
	if cf := a.loadConfig(name); cf.bridge != nil && cf.bridge.MAC.Kind != macaddr.Persistent {
		a.warn("note: %s sets MACAddress=%s, so %s does not get this address", cf.path, cf.bridge.MACAddress, name)
	}
	if a.opts.json {
		return writeJSON(a.stdout, macJSON{Name: name, MAC: hw})
	}
	fmt.Fprintln(a.stdout, hw)
	return nil
}
