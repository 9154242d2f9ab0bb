package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/macaddr"
)

const addHelp = `Write CONFIG-DIR/NAME.conf for the bridge NAME on the parent NIC IF, then,
through systemd, enable vethd@NAME.service and reload systemd; with --now,
also start it and wait until it runs. If vethd.service (vethd --all) is
active or enabled, vethd@NAME.service is not enabled (NAME would run twice):
with --now, vethd.service is reloaded (or started) to pick up the new file.

Options:
      --parent IF         the NIC whose wire is shared (required)
      --mac POLICY        persistent (default), random, or an address
                          such as 02:00:5e:10:00:01
      --mtu N|inherit     the interface's MTU (default inherit: the parent's)
      --carrier follow|on carrier follows the parent's (default) or is on
      --now               start the bridge too
      --force             overwrite an existing configuration file
`

const removeHelp = `Stop and disable vethd@NAME.service, delete CONFIG-DIR/NAME.conf and reload
systemd. If vethd.service is active, it is reloaded so that it stops NAME.

Options:
      --keep-config       do not delete the configuration file
`

const reloadHelp = `Make vethd re-read NAME's configuration file and apply it without removing
the interface: through systemd (systemctl reload vethd@NAME) if
vethd@NAME.service is active, after checking the file; otherwise with the
bridge's D-Bus method Reload (vethd --all, or vethd run by hand).
`

const resetHelp = `Reset the counters of the bridge NAME to zero (D-Bus method ResetCounters).
`

const macHelp = `Print the persistent MAC address the bridge NAME gets on this host: derived
from the machine ID (--machine-id-file, default /etc/machine-id) and NAME.
Needs neither the bus nor root. With --json: {"name": ..., "mac": ...}.
`

// addOptions are add's options.
type addOptions struct {
	parent, mac, mtu, carrier string
	now, force                bool
}

func (o *addOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.parent, "parent", "", "")
	fs.StringVar(&o.mac, "mac", "persistent", "")
	fs.StringVar(&o.mtu, "mtu", "inherit", "")
	fs.StringVar(&o.carrier, "carrier", string(config.CarrierFollow), "")
	fs.BoolVar(&o.now, "now", false, "")
	fs.BoolVar(&o.force, "force", false, "")
}

// removeOptions are remove's options.
type removeOptions struct {
	keepConfig bool
}

func (o *removeOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.keepConfig, "keep-config", false, "")
}

// MTU limits, as vethd.conf(5) gives them.
const (
	minMTU = 68
	maxMTU = 65535
)

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
	if err := config.Validate(o.parent); err != nil {
		return nil, usageErr("--parent: %v", err)
	}
	if o.parent == name {
		return nil, usageErr("--parent %s is the bridge itself; name the NIC whose wire is shared", o.parent)
	}
	p, err := macaddr.Parse(o.mac)
	if err != nil {
		return nil, usageErr("--mac: %v", err)
	}
	if p.Warning != "" {
		a.warn("warning: %s", p.Warning)
	}
	mtu, err := parseMTU(o.mtu)
	if err != nil {
		return nil, usageErr("--mtu: %v", err)
	}
	var carrier config.Carrier
	switch strings.ToLower(o.carrier) {
	case string(config.CarrierFollow):
		carrier = config.CarrierFollow
	case string(config.CarrierOn):
		carrier = config.CarrierOn
	default:
		return nil, usageErr("--carrier: %q is not %s or %s", o.carrier, config.CarrierFollow, config.CarrierOn)
	}
	b := &config.Bridge{
		Name: name, File: config.Path(a.opts.configDir, name), Parent: o.parent,
		MACAddress: p.String(), MAC: p, MTU: mtu, Carrier: carrier,
	}
	// What vethd will read must be what was asked for.
	back, err := config.Parse(bytes.NewReader(b.Marshal()), b.File, name)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	if !reflect.DeepEqual(back, b) {
		return nil, fmt.Errorf("internal error: the configuration reads back as %+v, not %+v", back, b)
	}
	return b, nil
}

// parseMTU reads "inherit" (0) or a number from minMTU to maxMTU.
func parseMTU(s string) (int, error) {
	if strings.EqualFold(s, "inherit") {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number or \"inherit\"", s)
	}
	if n < minMTU || n > maxMTU {
		return 0, fmt.Errorf("%d is out of range: an MTU is %d to %d, or \"inherit\"", n, minMTU, maxMTU)
	}
	return n, nil
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

	if err := writeConfig(b.File, b.Marshal(), o.force); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Wrote %s: parent %s, MAC %s.\n", b.File, b.Parent, a.describeMAC(b))

	unit := unitName(name)
	if allMode {
		fmt.Fprintf(a.stdout, "%s runs every %s/*.conf: not enabling %s (it would run %s twice).\n",
			allUnit, a.opts.configDir, unit, name)
		if !o.now {
			fmt.Fprintf(a.stdout, "Run 'systemctl reload %s' to start %s.\n", strings.TrimSuffix(allUnit, unitSuffix), name)
			return nil
		}
		op, job := "reload", u.ReloadUnit
		if all.ActiveState != "active" && all.ActiveState != "reloading" {
			op, job = "start", u.Start
		}
		if err := runJob(ctx, op, allUnit, job); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s %s: it runs %s.\n", pastTense(op), allUnit, name)
		return nil
	}

	changes, err := u.Enable(ctx, unit)
	if err != nil {
		return fmt.Errorf("%w (%s was written)", err, b.File)
	}
	a.printChanges(changes)
	if err := u.DaemonReload(ctx); err != nil {
		return err
	}
	if o.now {
		if err := runJob(ctx, "start", unit, u.Start); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Started %s.\n", unit)
	}
	return nil
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

// runJob runs a systemd job on unit and waits for it; a result other than
// "done" is a failure (exit 1) with the way to find out why.
func runJob(ctx context.Context, op, unit string, job func(context.Context, string) (string, error)) error {
	result, err := job(ctx, unit)
	if err != nil {
		return err
	}
	if result != "done" {
		base := strings.TrimSuffix(unit, unitSuffix)
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

// writeConfig writes data to path with mode 0644, creating its directory
// with mode 0755. Without force it fails with errExists if path exists;
// with force it replaces path atomically (a temporary file renamed).
func writeConfig(path string, data []byte, force bool) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	var f *os.File
	var err error
	if force {
		f, err = os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s %w; use --force to overwrite it", path, errExists)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644) // whatever the umask; CreateTemp makes 0600
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && force {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
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
			if err := runJob(ctx, "stop", unit, u.Stop); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Stopped %s.\n", unit)
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
		if err := runJob(ctx, "reload", allUnit, u.ReloadUnit); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Reloaded %s: it stops %s.\n", allUnit, name)
	}
	return nil
}

func (a *app) reload(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	u, err := a.units(ctx)
	if errors.Is(err, errNoBus) {
		return err
	}
	unit := unitName(name)
	if err == nil && unitable(name) {
		us, err := u.Unit(ctx, unit)
		if err == nil && (us.ActiveState == "active" || us.ActiveState == "reloading") {
			// systemd's reload job succeeds whatever vethd makes of the
			// file, so check it first.
			if _, err := config.Load(config.Path(a.opts.configDir, name)); err != nil {
				return fmt.Errorf("%w; not reloading %s", err, unit)
			}
			return runJob(ctx, "reload", unit, u.ReloadUnit)
		}
	}
	b, err := a.bridges(ctx)
	if err != nil {
		return err
	}
	if err := b.Reload(name); err != nil {
		if errors.Is(err, dbusapi.ErrNoSuchBridge) {
			return noSuch("no such bridge %s: %s is not active and no vethd on the bus runs %s", name, unit, name)
		}
		return err
	}
	return nil
}

func (a *app) reset(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	b, err := a.bridges(ctx)
	if err != nil {
		return err
	}
	return b.ResetCounters(name)
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
