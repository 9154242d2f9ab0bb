package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vethd/vethd/internal/humanize"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/macaddr"
)

const listHelp = `List every bridge known on this host (or those whose name is one of the
PATTERNs or matches it: "veth*"), from three sources:
systemd's vethd@*.service units (loaded ones in any state, and enabled ones
not loaded), the bridges on the system bus (run by vethd@NAME.service,
vethd.service or by hand) and the files CONFIG-DIR/*.conf.

Columns: NAME UNIT STATE PARENT MAC CARRIER. UNIT is, for a bridge on the
bus, the unit of the process that runs it (as systemd says: vethd@NAME.service,
vethd.service, or a session's scope for a vethd run by hand); for one not on
the bus, the unit that would run it: vethd@NAME.service if that is not
inactive or is enabled, else vethd.service if that is active, else
vethd@NAME.service. STATE is the bridge's state on the bus (starting,
waiting-parent, waiting-namespace, running, degraded, stopping); for a bridge not on the bus, the
state of vethd@NAME.service if that is not inactive (failed, active,
activating, ...), else "invalid" if its file cannot be read or parsed (the
reason goes to standard error; "config_error" with --json), else the state of
the unit in UNIT, else "configured" if it only has a file.
`

// Unit names.
const (
	templatePrefix = "vethd@"
	unitSuffix     = ".service"
	allUnit        = "vethd.service" // vethd --all
)

// unitName returns the instance unit of the bridge name.
func unitName(name string) string { return templatePrefix + name + unitSuffix }

// instanceName returns the bridge name of the instance unit u, if u is one.
func instanceName(u string) (string, bool) {
	s, ok := strings.CutPrefix(u, templatePrefix)
	if !ok {
		return "", false
	}
	s, ok = strings.CutSuffix(s, unitSuffix)
	return s, ok && s != ""
}

// unitable reports whether name can be used as it is as the instance of
// vethd@.service, whose ExecStart= passes %i, the instance as written:
// only characters valid in unit names, and none that systemd-escape
// would escape.
func unitable(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isAlnum(c) || c == '_' || c == '-' || (c == '.' && i > 0)) {
			return false
		}
	}
	return name != ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// live reports whether a unit in ActiveState s is doing something or
// failed: anything but inactive (and unknown).
func live(s string) bool { return s != "" && s != "inactive" }

// enabled reports whether a unit file state makes the unit start at boot
// (or is linked into the search path).
func enabled(s string) bool {
	return strings.HasPrefix(s, "enabled") || strings.HasPrefix(s, "linked") || s == "alias"
}

// busBridge is a bridge as read from the bus.
type busBridge struct {
	status   dbusapi.Status
	counters dbusapi.Counters
	pid      uint32 // the process that owns its bus name; 0 if unknown
	unit     string // the unit that process belongs to; "" if unknown
}

// configFile is a configuration file: the bridge it describes, or why it
// could not be read.
type configFile struct {
	path   string
	bridge *config.Bridge
	err    error
}

// inventory is what vethctl found about the bridges on this host.
type inventory struct {
	units   map[string]unitStatus // instance units by bridge name
	all     *unitStatus           // vethd.service, if loaded
	owners  map[string]unitStatus // the units of the bridges' processes (busBridge.unit), by unit name
	bus     map[string]busBridge  // bridges on the bus by name
	configs map[string]configFile // configuration files by bridge name
	mid     []byte                // machine ID, nil if unreadable
}

// entry is one row of list: a bridge as the three sources show it.
type entry struct {
	Name      string  `json:"name"`
	Unit      string  `json:"unit"`       // unit that runs it; "" if none
	UnitState string  `json:"unit_state"` // that unit's ActiveState; "" if none
	State     string  `json:"state"`      // see listHelp
	Parent    string  `json:"parent"`     // from the bus, else the file; "" if unknown
	MAC       string  `json:"mac"`        // from the bus, else what the file gives; "" if unknown
	Carrier   *bool   `json:"carrier"`    // from the bus; null if not on it
	PID       *uint32 `json:"pid"`        // the process that runs it, from the bus; null if not on it or unknown
	IfIndex   *int32  `json:"ifindex"`    // from the bus; null if not on it
	MTU       *uint32 `json:"mtu"`        // from the bus; null if not on it
	// ConfigError is why the file cannot be read or parsed; "" if it
	// can, or if there is none.
	ConfigError string `json:"config_error"`
}

// gather reads the three sources. A source that cannot be read is left
// out with a note on stderr.
func (a *app) gather(ctx context.Context) *inventory {
	inv := newInventory()
	inv.mid, _ = macaddr.ReadMachineID(a.opts.machineIDFile)

	names, err := config.Names(a.opts.configDir)
	if err != nil {
		a.warn("%v", err)
	}
	for _, n := range names {
		inv.configs[n] = a.loadConfig(n)
	}

	b, err := a.bridges(ctx)
	if err != nil {
		a.warn("%v; listing configuration files only", err)
		return inv
	}
	if bus, err := b.List(ctx); err != nil {
		a.warn("%v", err)
	} else {
		for _, n := range bus {
			st, ctr, err := b.Get(ctx, n)
			switch {
			case errors.Is(err, dbusapi.ErrNoSuchBridge): // gone meanwhile
			case err != nil:
				a.warn("%v", err)
			default:
				inv.bus[n] = a.onBus(ctx, b, n, st, ctr)
			}
		}
	}

	u, err := a.units(ctx)
	if err != nil {
		a.warn("%v; not listing systemd units", err)
		return inv
	}
	loaded, err := u.ListUnits(ctx, []string{templatePrefix + "*" + unitSuffix, allUnit})
	if err != nil {
		a.warn("%v; not listing systemd units", err)
		return inv
	}
	for _, us := range loaded {
		if us.Name == allUnit {
			inv.all = &us
		} else if n, ok := instanceName(us.Name); ok {
			if !live(us.ActiveState) {
				// Loaded and inactive: enabled (then vethd.service
				// leaves the bridge to it) or not? ListUnits does not
				// say; the unit's properties do.
				if full, err := u.Unit(ctx, us.Name); err == nil {
					us = full
				}
			}
			inv.units[n] = us
		}
	}
	// Enabled instances that are not loaded: linked instance files show
	// in ListUnitFiles; instances enabled through a .wants/ symlink do
	// not, so the configured names are asked one by one.
	files, err := u.ListUnitFiles(ctx, []string{templatePrefix + "*" + unitSuffix})
	if err != nil {
		a.warn("%v", err)
	}
	for _, f := range files {
		n, ok := instanceName(f.Name)
		if _, seen := inv.units[n]; ok && !seen && enabled(f.State) {
			inv.units[n] = unitStatus{Name: f.Name, ActiveState: "inactive", UnitFileState: f.State}
		}
	}
	for n := range inv.configs {
		if _, seen := inv.units[n]; seen || !unitable(n) {
			continue
		}
		us, err := u.Unit(ctx, unitName(n))
		if err != nil {
			continue
		}
		if live(us.ActiveState) || enabled(us.UnitFileState) {
			inv.units[n] = us
		}
	}
	a.findOwners(ctx, u, inv)
	return inv
}

func newInventory() *inventory {
	return &inventory{
		units:   map[string]unitStatus{},
		owners:  map[string]unitStatus{},
		bus:     map[string]busBridge{},
		configs: map[string]configFile{},
	}
}

// onBus returns the bridge name as the bus shows it, with the PID of
// the process that owns its name (none if the bus does not say).
func (a *app) onBus(ctx context.Context, b bridges, name string, st dbusapi.Status, ctr dbusapi.Counters) busBridge {
	bb := busBridge{status: st, counters: ctr}
	pid, err := b.Owner(ctx, name)
	if err != nil {
		a.warn("%v", err)
	}
	bb.pid = pid
	return bb
}

// findOwners asks systemd which unit each bridge's process on the bus
// belongs to, and that unit's state, so that list names the unit that
// really runs the bridge (vethd.service runs a bridge whose
// vethd@NAME.service is failed, say). A bridge whose unit systemd cannot
// tell keeps what the unit states suggest (inventory.unitOf).
func (a *app) findOwners(ctx context.Context, u units, inv *inventory) {
	for _, n := range sortedKeys(inv.bus) {
		bb := inv.bus[n]
		if bb.pid == 0 {
			continue
		}
		unit, err := u.UnitByPID(ctx, bb.pid)
		if err != nil {
			a.warn("%v", err)
			continue
		}
		if unit == "" {
			continue
		}
		bb.unit = unit
		inv.bus[n] = bb
		if _, seen := inv.owners[unit]; seen {
			continue
		}
		switch in, isInstance := instanceName(unit); {
		case unit == allUnit && inv.all != nil:
			inv.owners[unit] = *inv.all
		case isInstance && inv.units[in].Name == unit:
			inv.owners[unit] = inv.units[in]
		default:
			if us, err := u.Unit(ctx, unit); err == nil {
				inv.owners[unit] = us
			}
		}
	}
}

// loadConfig reads the file of bridge name.
func (a *app) loadConfig(name string) configFile {
	p := config.Path(a.opts.configDir, name)
	b, err := config.Load(p)
	return configFile{path: p, bridge: b, err: err}
}

// entries merges an inventory into list rows, sorted by name.
func (inv *inventory) entries() []entry {
	seen := map[string]bool{}
	for n := range inv.units {
		seen[n] = true
	}
	for n := range inv.bus {
		seen[n] = true
	}
	for n := range inv.configs {
		seen[n] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]entry, 0, len(names))
	for _, n := range names {
		out = append(out, inv.entry(n))
	}
	return out
}

// entry merges what the sources say about the bridge name.
func (inv *inventory) entry(name string) entry {
	e := entry{Name: name}
	bb, onBus := inv.bus[name]
	cf, hasConfig := inv.configs[name]
	e.Unit, e.UnitState = inv.unitOf(name, bb.unit, onBus || hasConfig)
	if hasConfig && cf.err != nil {
		e.ConfigError = cf.err.Error()
	}

	switch {
	case onBus:
		e.State = bb.status.State
	case live(e.UnitState) && e.Unit != allUnit:
		e.State = e.UnitState // failed, active, activating, …
	case e.ConfigError != "":
		// Whatever vethd.service does, it cannot run this file.
		e.State = "invalid"
	case e.UnitState != "":
		e.State = e.UnitState
	default:
		e.State = "configured"
	}

	switch {
	case onBus:
		st := bb.status
		e.Parent, e.MAC = st.Parent, st.MACAddress
		e.Carrier, e.IfIndex, e.MTU = &st.Carrier, &st.IfIndex, &st.MTU
		if bb.pid != 0 {
			e.PID = &bb.pid
		}
	case hasConfig && cf.bridge != nil:
		e.Parent = cf.bridge.Parent
		e.MAC = configMAC(cf.bridge, inv.mid)
	}
	return e
}

// unitOf returns the unit that runs (or would run) bridge name and its
// ActiveState:
//
//  1. owner, the unit of the process that owns the bridge's bus name, if
//     systemd told (its state as systemd says, if it could be asked);
//  2. else vethd@NAME.service if it is active, activating, failed, …;
//  3. else vethd@NAME.service if it is enabled (inactive): vethd.service
//     leaves such a bridge to it;
//  4. else vethd.service if that is live, and the bridge is on the bus or
//     has a file (vethd --all runs every other file);
//  5. else vethd@NAME.service if it is loaded (inactive);
//  6. else none.
func (inv *inventory) unitOf(name, owner string, busOrConfig bool) (unit, state string) {
	inst, ok := inv.units[name]
	switch {
	case owner != "":
		return owner, inv.owners[owner].ActiveState
	case ok && live(inst.ActiveState):
		return inst.Name, inst.ActiveState
	case ok && enabled(inst.UnitFileState):
		return inst.Name, "inactive"
	case inv.all != nil && live(inv.all.ActiveState) && busOrConfig:
		return inv.all.Name, inv.all.ActiveState
	case ok:
		return inst.Name, "inactive"
	}
	return "", ""
}

// configMAC returns the address a file gives: the explicit address, the
// persistent one (if the machine ID is known), or the policy's name.
func configMAC(b *config.Bridge, mid []byte) string {
	switch {
	case b.MAC.Kind == macaddr.Explicit:
		return b.MAC.Addr.String()
	case b.MAC.Kind == macaddr.Persistent && mid != nil:
		return macaddr.PersistentAddr(mid, b.Name).String()
	}
	return b.MAC.Kind.String()
}

func (a *app) list(ctx context.Context, patterns []string) error {
	if err := checkPatterns(patterns); err != nil {
		return err
	}
	inv := a.gather(ctx)
	for _, n := range sortedKeys(inv.configs) {
		if err := inv.configs[n].err; err != nil && matchAny(patterns, n) {
			a.warn("%v", err)
		}
	}
	var es []entry
	for _, e := range inv.entries() {
		if matchAny(patterns, e.Name) {
			es = append(es, e)
		}
	}
	if es == nil {
		es = []entry{} // "[]" in JSON
	}
	if a.opts.json {
		return writeJSON(a.stdout, es)
	}
	a.listTable(es)
	return nil
}

// listTable prints the list as a table.
func (a *app) listTable(es []entry) {
	t := newTable(column{title: "NAME"}, column{title: "UNIT"}, column{title: "STATE"},
		column{title: "PARENT"}, column{title: "MAC"}, column{title: "CARRIER"})
	for _, e := range es {
		carrier := ""
		if e.Carrier != nil {
			carrier = humanize.OnOff(*e.Carrier)
		}
		t.add(e.Name, e.Unit, e.State, e.Parent, e.MAC, carrier)
	}
	legend := !a.opts.noLegend
	if len(es) > 0 || legend {
		t.write(a.stdout, legend)
	}
	if legend {
		fmt.Fprintf(a.stdout, "\n%s listed.\n", plural(len(es), "bridge", "bridges"))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
