package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vethd/vethd/internal/humanize"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/macaddr"
)

const showHelp = `Show everything known about each bridge that a PATTERN names or matches
("veth*"; as "vethctl status PATTERN..."): its unit (state, since when,
enablement, main PID, status text), its configuration file, and, when it is on
the bus, its live properties and counters. With --json, print the daemon's
Describe document (or, without root, the same from the bus properties) with
"name", "state" and "unit" added: one object for one NAME, an array of them
for a pattern or several. A NAME that exists nowhere is reported and the
others are shown; the exit status is then 4.
`

// about is what vethctl knows about one bridge.
type about struct {
	inv   *inventory
	entry entry
	unit  *unitStatus // the unit entry.Unit names, with all its properties
}

// lookup gathers what the bus, systemd and the file say about name. It
// fails with exit 4 if none of them knows it, and with errNoBus if there
// is no bus.
func (a *app) lookup(ctx context.Context, name string) (*about, error) {
	if err := config.Validate(name); err != nil {
		return nil, usageErr("%v", err)
	}
	inv := newInventory()
	inv.mid, _ = macaddr.ReadMachineID(a.opts.machineIDFile)
	if cf := a.loadConfig(name); !errors.Is(cf.err, fs.ErrNotExist) {
		inv.configs[name] = cf
	}

	b, err := a.bridges(ctx)
	if err != nil {
		return nil, err
	}
	st, ctr, err := b.Get(ctx, name)
	switch {
	case err == nil:
		inv.bus[name] = a.onBus(ctx, b, name, st, ctr)
	case !errors.Is(err, dbusapi.ErrNoSuchBridge):
		return nil, err
	}

	units := map[string]unitStatus{}
	u, err := a.units(ctx)
	if err != nil {
		a.warn("%v", err)
	} else {
		for _, n := range []string{unitName(name), allUnit} {
			if n == unitName(name) && !unitable(name) {
				continue
			}
			us, err := u.Unit(ctx, n)
			if err != nil {
				a.warn("%v", err)
				break
			}
			units[n] = us
		}
	}
	if us, ok := units[unitName(name)]; ok && (live(us.ActiveState) || enabled(us.UnitFileState)) {
		inv.units[name] = us
	}
	if us, ok := units[allUnit]; ok && us.LoadState == "loaded" {
		inv.all = &us
	}
	if u != nil {
		a.findOwners(ctx, u, inv)
		for n, us := range inv.owners {
			if _, seen := units[n]; !seen {
				units[n] = us
			}
		}
	}

	_, onBus := inv.bus[name]
	_, hasConfig := inv.configs[name]
	if _, hasUnit := inv.units[name]; !onBus && !hasConfig && !hasUnit {
		return nil, noSuch("no such bridge %s: not on the bus, no %s, %s neither active nor enabled",
			name, config.Path(a.opts.configDir, name), unitName(name))
	}
	ab := &about{inv: inv, entry: inv.entry(name)}
	if us, ok := units[ab.entry.Unit]; ok {
		ab.unit = &us
	}
	return ab, nil
}

// show shows each bridge that args name or match, in that order. One
// name without a pattern prints one document (--json: an object, as
// before patterns); otherwise the bridges follow one another, a blank line
// between (--json: an array). A name that exists nowhere is reported and
// the others are still shown; vethctl then exits with 4.
func (a *app) show(ctx context.Context, args []string) error {
	if err := checkPatterns(args); err != nil {
		return err
	}
	names := args
	if slices.ContainsFunc(args, isPattern) {
		var known []string
		for _, e := range a.gather(ctx).entries() {
			known = append(known, e.Name)
		}
		var err error
		if names, err = expand(args, known); err != nil {
			return err
		}
	}
	single := len(args) == 1 && !isPattern(args[0])
	var docs []json.RawMessage
	missing, shown := 0, 0
	for _, name := range names {
		ab, err := a.lookup(ctx, name)
		if err != nil {
			if single || exitCode(err) != exitNoSuch {
				return err
			}
			a.warn("%v", err)
			missing++
			continue
		}
		if a.opts.json {
			doc, err := a.showDoc(ctx, name, ab)
			if err != nil {
				return err
			}
			docs = append(docs, doc)
			continue
		}
		if shown > 0 {
			fmt.Fprintln(a.stdout)
		}
		shown++
		keyValues(a.stdout, a.showLines(name, ab))
	}
	if a.opts.json {
		if single {
			return writeJSON(a.stdout, docs[0])
		}
		if docs == nil {
			docs = []json.RawMessage{}
		}
		if err := writeJSON(a.stdout, docs); err != nil {
			return err
		}
	}
	if missing > 0 {
		return noSuch("%d of %d bridges not found", missing, len(names))
	}
	return nil
}

// showLines returns show's "Key: value" lines.
func (a *app) showLines(name string, ab *about) [][2]string {
	var kv [][2]string
	add := func(k, v string) { kv = append(kv, [2]string{k, v}) }
	e := ab.entry
	add("Name", name)
	add("State", e.State)

	if u := ab.unit; u != nil {
		add("Unit", u.Name)
		state := u.ActiveState
		if u.SubState != "" {
			state += " (" + u.SubState + ")"
		}
		if !u.ActiveEnter.IsZero() && u.ActiveState != "inactive" && u.ActiveState != "failed" {
			state += " since " + a.when(u.ActiveEnter)
		}
		if u.ActiveState == "failed" && u.Result != "" && u.Result != "success" {
			state += "; result: " + u.Result
		}
		add("Unit State", state)
		if u.UnitFileState != "" {
			add("Unit File", u.UnitFileState)
		}
		if u.MainPID != 0 {
			add("Main PID", strconv.FormatUint(uint64(u.MainPID), 10))
		}
		if u.StatusText != "" {
			add("Status", u.StatusText)
		}
	} else {
		add("Unit", "-")
	}

	path := config.Path(a.opts.configDir, name)
	switch cf, ok := ab.inv.configs[name]; {
	case !ok:
		add("Config File", path+" (none)")
	case cf.err != nil:
		add("Config File", path)
		add("Config Error", cf.err.Error())
	default:
		c := cf.bridge
		add("Config File", path)
		mtu := "inherit"
		if c.MTU != 0 {
			mtu = strconv.Itoa(c.MTU)
		}
		add("Config", fmt.Sprintf("Parent=%s MACAddress=%s MTU=%s Carrier=%s", c.Parent, c.MACAddress, mtu, c.Carrier))
	}

	bb, onBus := ab.inv.bus[name]
	if !onBus {
		add("On Bus", "no")
		if e.Parent != "" {
			add("Parent", e.Parent)
		}
		if cf := ab.inv.configs[name]; cf.bridge != nil {
			add("MAC Address", fmt.Sprintf("%s (%s, from the file)", e.MAC, cf.bridge.MAC.Kind))
		}
		return kv
	}
	st, c := bb.status, bb.counters
	add("Interface Index", strconv.Itoa(int(st.IfIndex)))
	if st.Kind != "" { // "" from a vethd older than the property
		add("Kind", st.Kind)
	}
	if st.DataPath != "" { // "" from a vethd older than the property
		add("Data Path", st.DataPath)
	}
	if st.Namespace != "" {
		add("Namespace", st.Namespace)
	}
	add("MAC Address", fmt.Sprintf("%s (%s)", st.MACAddress, st.MACPolicy))
	add("MTU", strconv.FormatUint(uint64(st.MTU), 10))
	add("Carrier", humanize.OnOff(st.Carrier))
	add("Parent", fmt.Sprintf("%s (index %d, carrier %s, promiscuous %s)",
		st.Parent, st.ParentIfIndex, humanize.OnOff(st.ParentCarrier), humanize.YesNo(st.Promiscuous)))
	if len(st.Offloads) > 0 {
		add("Offloads", strings.Join(st.Offloads, " "))
	}
	if st.StartedUsec != 0 {
		add("Started", a.when(time.UnixMicro(int64(st.StartedUsec))))
	}
	if st.LastError != "" {
		add("Last Error", st.LastError)
	}
	add("RX", fmt.Sprintf("%d packets, %s (%d coalesced, %d split)", c.RxPackets, humanize.Bytes(c.RxBytes), c.RxCoalesced, c.RxSplit))
	add("RX Drops", drops(c.RxDrops))
	add("TX", fmt.Sprintf("%d packets, %s (%d split)", c.TxPackets, humanize.Bytes(c.TxBytes), c.TxSplit))
	add("TX Drops", drops(c.TxDrops))
	add("Errors", strconv.FormatUint(c.Errors, 10))
	return kv
}

// drops formats drops by reason: "3 (oversize 1, runt 2)" or "0".
func drops(m map[string]uint64) string {
	total := humanize.Sum(m)
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(m)) {
		if m[r] != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, m[r]))
		}
	}
	if len(parts) == 0 {
		return strconv.FormatUint(total, 10)
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// when formats a point in time as systemctl does, with how long ago:
// "Tue 2026-11-03 09:58:30 UTC; 1min 30s ago".
func (a *app) when(t time.Time) string {
	s := t.Local().Format("Mon 2006-01-02 15:04:05 MST")
	switch ago := a.now().Sub(t); {
	case ago >= time.Second:
		s += "; " + timespan(ago.Truncate(time.Second)) + " ago"
	case ago >= 0:
		s += "; now"
	}
	return s
}

// timespanUnits are systemd's units of a time span (format_timespan),
// largest first: a year is 365.25 days, a month a twelfth of that.
var timespanUnits = []struct {
	name string
	d    time.Duration
}{
	{"y", 31_557_600 * time.Second},
	{"month", 2_629_800 * time.Second},
	{"w", 7 * 24 * time.Hour},
	{"d", 24 * time.Hour},
	{"h", time.Hour},
	{"min", time.Minute},
	{"s", time.Second},
	{"ms", time.Millisecond},
}

// timespan formats d to the millisecond as systemd does: "1h 2min 3s",
// "2d 4h", "1s 500ms", "0s".
func timespan(d time.Duration) string {
	var parts []string
	for _, u := range timespanUnits {
		if n := d / u.d; n > 0 {
			parts = append(parts, strconv.FormatInt(int64(n), 10)+u.name)
			d -= n * u.d
		}
	}
	if len(parts) == 0 {
		return "0s"
	}
	return strings.Join(parts, " ")
}

// unitJSON is a unit in show's JSON.
type unitJSON struct {
	Name            string `json:"name"`
	LoadState       string `json:"load_state"`
	ActiveState     string `json:"active_state"`
	SubState        string `json:"sub_state"`
	UnitFileState   string `json:"unit_file_state"`
	MainPID         uint32 `json:"main_pid"`
	Result          string `json:"result"`
	StatusText      string `json:"status_text"`
	ActiveEnterUsec int64  `json:"active_enter_usec"`
}

// configJSON is a configuration in show's JSON, as Describe gives it.
type configJSON struct {
	File       string `json:"file"`
	Parent     string `json:"parent"`
	MACAddress string `json:"mac_address"`
	MTU        string `json:"mtu"`
	Carrier    string `json:"carrier"`
}

// showDoc returns the daemon's Describe document (or its equivalent from
// the properties and the file) with name, state, unit and config_error
// added. Its keys: name, state, unit, config_error, config, status,
// counters (null when unknown), and those Describe adds (version, pid).
func (a *app) showDoc(ctx context.Context, name string, ab *about) (json.RawMessage, error) {
	doc := map[string]any{"config": nil, "status": nil, "counters": nil}
	if bb, onBus := ab.inv.bus[name]; onBus {
		desc := ""
		if b, err := a.bridges(ctx); err == nil {
			desc, err = b.Describe(ctx, name)
			if err != nil && !isAccessDenied(err) { // Describe is root's; the properties are not
				a.warn("%v", err)
			}
		}
		var m map[string]json.RawMessage
		if desc != "" && json.Unmarshal([]byte(desc), &m) == nil {
			for k, v := range m {
				doc[k] = v
			}
		}
		if isNull(doc["status"]) {
			doc["status"] = bb.status
		}
		if isNull(doc["counters"]) {
			doc["counters"] = bb.counters
		}
	}
	if cf, ok := ab.inv.configs[name]; ok && cf.bridge != nil && isNull(doc["config"]) {
		mtu := "inherit"
		if cf.bridge.MTU != 0 {
			mtu = strconv.Itoa(cf.bridge.MTU)
		}
		doc["config"] = configJSON{File: cf.path, Parent: cf.bridge.Parent,
			MACAddress: cf.bridge.MAC.String(), MTU: mtu, Carrier: string(cf.bridge.Carrier)}
	}
	doc["name"] = name
	doc["state"] = ab.entry.State
	// The file as it is now, whatever the running vethd read before.
	doc["config_error"] = ab.entry.ConfigError
	doc["unit"] = nil
	if u := ab.unit; u != nil {
		uj := unitJSON{Name: u.Name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState,
			UnitFileState: u.UnitFileState, MainPID: u.MainPID, Result: u.Result, StatusText: u.StatusText}
		if !u.ActiveEnter.IsZero() {
			uj.ActiveEnterUsec = u.ActiveEnter.UnixMicro()
		}
		doc["unit"] = uj
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return b, nil
}

// isNull reports whether a JSON document's value v is missing or null.
func isNull(v any) bool {
	if r, ok := v.(json.RawMessage); ok {
		return string(bytes.TrimSpace(r)) == "null"
	}
	return v == nil
}
