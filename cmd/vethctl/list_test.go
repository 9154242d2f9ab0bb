package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vethd/vethd/pkg/dbusapi"
)

const eth0Config = "[Bridge]\nParent=eth0\n"

// everyKind sets up one bridge of each kind list merges.
func everyKind(h *harness) {
	// All three: unit, bus, file.
	h.units.loaded = append(h.units.loaded,
		unitStatus{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active", SubState: "running"})
	h.bridges.bridges["veth1"] = running("veth1", "eth0", "22:43:60:c3:5b:4c")
	h.writeConfig("veth1", eth0Config)
	// A unit only (vethd without D-Bus, file since removed).
	h.units.loaded = append(h.units.loaded,
		unitStatus{Name: "vethd@unitonly.service", LoadState: "loaded", ActiveState: "active", SubState: "running"})
	// On the bus only: vethd run by hand.
	h.bridges.bridges["byhand"] = running("byhand", "eth1", "02:00:00:00:00:01")
	h.bridges.bridges["byhand"].status.Carrier = false
	// A file only, explicit MAC.
	h.writeConfig("cfgonly", "[Bridge]\nParent=eth0\nMACAddress=02:00:5e:10:00:01\n")
	// A failed unit with its file, random MAC.
	h.units.loaded = append(h.units.loaded,
		unitStatus{Name: "vethd@broken.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed"})
	h.writeConfig("broken", "[Bridge]\nParent=eth9\nMACAddress=random\n")
	// Enabled but not loaded, found by asking for the unit of its file.
	h.writeConfig("enabled", "[Bridge]\nParent=eth0\n")
	h.units.unit = map[string]unitStatus{"vethd@enabled.service": {Name: "vethd@enabled.service",
		LoadState: "loaded", ActiveState: "inactive", SubState: "dead", UnitFileState: "enabled"}}
	// Enabled but not loaded, found in the unit files (no file of its own).
	h.units.files = []unitFile{{Name: "vethd@linked.service", State: "enabled"},
		{Name: "vethd@.service", State: "indirect"}, {Name: "vethd@off.service", State: "disabled"}}
	// Loaded and inactive (stopped), with its file.
	h.units.loaded = append(h.units.loaded,
		unitStatus{Name: "vethd@stopped.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead"})
	h.writeConfig("stopped", eth0Config)
}

func TestListTable(t *testing.T) {
	h := newHarness(t)
	everyKind(h)
	h.mustRun(0, "list")
	want := `NAME     UNIT                   STATE      PARENT MAC               CARRIER
broken   vethd@broken.service   failed     eth9   random            -
byhand   -                      running    eth1   02:00:00:00:00:01 off
cfgonly  -                      configured eth0   02:00:5e:10:00:01 -
enabled  vethd@enabled.service  inactive   eth0   d6:ac:3d:11:0b:b1 -
linked   vethd@linked.service   inactive   -      -                 -
stopped  vethd@stopped.service  inactive   eth0   e6:a5:7b:db:d0:11 -
unitonly vethd@unitonly.service active     -      -                 -
veth1    vethd@veth1.service    running    eth0   22:43:60:c3:5b:4c on

8 bridges listed.
`
	if got := h.stdout.String(); got != want {
		t.Errorf("list:\n%s\nwant:\n%s", got, want)
	}
	if h.stderr.Len() != 0 {
		t.Errorf("stderr: %s", h.stderr.String())
	}

	// Without the header, columns are as wide as their cells.
	h.mustRun(0, "list", "--no-legend")
	want = `broken   vethd@broken.service   failed     eth9 random            -
byhand   -                      running    eth1 02:00:00:00:00:01 off
cfgonly  -                      configured eth0 02:00:5e:10:00:01 -
enabled  vethd@enabled.service  inactive   eth0 d6:ac:3d:11:0b:b1 -
linked   vethd@linked.service   inactive   -    -                 -
stopped  vethd@stopped.service  inactive   eth0 e6:a5:7b:db:d0:11 -
unitonly vethd@unitonly.service active     -    -                 -
veth1    vethd@veth1.service    running    eth0 22:43:60:c3:5b:4c on
`
	if got := h.stdout.String(); got != want {
		t.Errorf("list --no-legend:\n%s\nwant:\n%s", got, want)
	}
}

func TestListEmpty(t *testing.T) {
	h := newHarness(t)
	h.mustRun(0, "list")
	if got, want := h.stdout.String(), "NAME UNIT STATE PARENT MAC CARRIER\n\n0 bridges listed.\n"; got != want {
		t.Errorf("list:\n%q\nwant\n%q", got, want)
	}
	h.mustRun(0, "--no-legend")
	if got := h.stdout.String(); got != "" {
		t.Errorf("list --no-legend: %q, want nothing", got)
	}
	h.mustRun(0, "list", "--json")
	if got := h.stdout.String(); got != "[]\n" {
		t.Errorf("list --json: %q, want []", got)
	}
}

func TestListJSON(t *testing.T) {
	h := newHarness(t)
	everyKind(h)
	h.mustRun(0, "--json", "list")
	var got []map[string]any
	if err := json.Unmarshal(h.stdout.Bytes(), &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, h.stdout.String())
	}
	keys := []string{"carrier", "config_error", "ifindex", "mac", "mtu", "name", "parent", "pid", "state", "unit", "unit_state"}
	for _, e := range got {
		if e["config_error"] != "" {
			t.Errorf("%v: config_error %q, want \"\"", e["name"], e["config_error"])
		}
		var k []string
		for key := range e {
			k = append(k, key)
		}
		slices.Sort(k)
		if !slices.Equal(k, keys) {
			t.Errorf("%v: keys %v, want %v", e["name"], k, keys)
		}
	}
	byName := map[string]map[string]any{}
	for _, e := range got {
		byName[e["name"].(string)] = e
	}
	v1 := byName["veth1"]
	if v1["carrier"] != true || v1["ifindex"] != 7.0 || v1["mtu"] != 1500.0 || v1["unit_state"] != "active" ||
		v1["unit"] != "vethd@veth1.service" || v1["state"] != "running" || v1["mac"] != "22:43:60:c3:5b:4c" {
		t.Errorf("veth1: %v", v1)
	}
	cfg := byName["cfgonly"]
	if cfg["carrier"] != nil || cfg["ifindex"] != nil || cfg["mtu"] != nil || cfg["unit"] != "" || cfg["state"] != "configured" {
		t.Errorf("cfgonly: %v", cfg)
	}
	if b := byName["broken"]; b["unit_state"] != "failed" || b["state"] != "failed" {
		t.Errorf("broken: %v", b)
	}
}

// TestListMerge checks the merge rules one case at a time.
func TestListMerge(t *testing.T) {
	active := unitStatus{Name: "vethd@x.service", LoadState: "loaded", ActiveState: "active"}
	failed := unitStatus{Name: "vethd@x.service", LoadState: "loaded", ActiveState: "failed"}
	inactive := unitStatus{Name: "vethd@x.service", LoadState: "loaded", ActiveState: "inactive"}
	enabledInactive := unitStatus{Name: "vethd@x.service", LoadState: "loaded", ActiveState: "inactive", UnitFileState: "enabled"}
	activating := unitStatus{Name: "vethd@x.service", LoadState: "loaded", ActiveState: "activating"}
	all := &unitStatus{Name: "vethd.service", LoadState: "loaded", ActiveState: "active"}
	onBus := busBridge{status: dbusapi.Status{Name: "x", Parent: "eth0", MACAddress: "02:00:00:00:00:02", State: "degraded"}}
	cfg := configFile{path: "/etc/vethd/x.conf"}
	for _, tc := range []struct {
		name            string
		unit            *unitStatus
		all             *unitStatus
		bus, config     bool
		badConfig       bool   // config, which does not parse
		owner           string // the unit of the process on the bus (bus); active
		wantUnit, state string
	}{
		{name: "unit only", unit: &active, wantUnit: "vethd@x.service", state: "active"},
		{name: "bus only", bus: true, wantUnit: "", state: "degraded"},
		{name: "config only", config: true, wantUnit: "", state: "configured"},
		{name: "all three", unit: &active, bus: true, config: true, wantUnit: "vethd@x.service", state: "degraded"},
		{name: "failed unit", unit: &failed, config: true, wantUnit: "vethd@x.service", state: "failed"},
		{name: "inactive unit", unit: &inactive, config: true, wantUnit: "vethd@x.service", state: "inactive"},
		{name: "vethd --all", all: all, bus: true, config: true, wantUnit: "vethd.service", state: "degraded"},
		{name: "vethd --all, not on bus", all: all, config: true, wantUnit: "vethd.service", state: "active"},
		{name: "vethd --all, instance failed", unit: &failed, all: all, config: true, wantUnit: "vethd@x.service", state: "failed"},
		{name: "vethd --all, instance inactive", unit: &inactive, all: all, bus: true, wantUnit: "vethd.service", state: "degraded"},
		{name: "vethd --all, instance enabled", unit: &enabledInactive, all: all, config: true, wantUnit: "vethd@x.service", state: "inactive"},
		// The unit of the process on the bus wins over what the units' states suggest.
		{name: "owner vethd --all, instance failed", unit: &failed, all: all, bus: true, config: true, owner: "vethd.service", wantUnit: "vethd.service", state: "degraded"},
		{name: "owner vethd --all, instance activating", unit: &activating, all: all, bus: true, config: true, owner: "vethd.service", wantUnit: "vethd.service", state: "degraded"},
		{name: "owner instance, vethd --all", unit: &active, all: all, bus: true, config: true, owner: "vethd@x.service", wantUnit: "vethd@x.service", state: "degraded"},
		{name: "owner a scope", bus: true, owner: "session-3.scope", wantUnit: "session-3.scope", state: "degraded"},
		{name: "bad file", badConfig: true, wantUnit: "", state: "invalid"},
		{name: "bad file, on bus", badConfig: true, bus: true, wantUnit: "", state: "degraded"},
		{name: "bad file, unit active", badConfig: true, unit: &active, wantUnit: "vethd@x.service", state: "active"},
		{name: "bad file, unit failed", badConfig: true, unit: &failed, wantUnit: "vethd@x.service", state: "failed"},
		{name: "bad file, unit inactive", badConfig: true, unit: &inactive, wantUnit: "vethd@x.service", state: "invalid"},
		{name: "bad file, vethd --all", badConfig: true, all: all, wantUnit: "vethd.service", state: "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := newInventory()
			inv.all = tc.all
			if tc.unit != nil {
				inv.units["x"] = *tc.unit
			}
			if tc.bus {
				bb := onBus
				if tc.owner != "" {
					bb.pid, bb.unit = 42, tc.owner
					inv.owners[tc.owner] = unitStatus{Name: tc.owner, ActiveState: "active"}
				}
				inv.bus["x"] = bb
			}
			if tc.config {
				inv.configs["x"] = cfg
			}
			if tc.badConfig {
				inv.configs["x"] = configFile{path: cfg.path, err: errors.New("x.conf:2: MTU=: bad")}
			}
			es := inv.entries()
			if len(es) != 1 {
				t.Fatalf("%d entries, want 1", len(es))
			}
			if e := es[0]; e.Unit != tc.wantUnit || e.State != tc.state {
				t.Errorf("unit %q state %q, want %q %q", e.Unit, e.State, tc.wantUnit, tc.state)
			}
			if e := es[0]; tc.owner != "" && (e.UnitState != "active" || e.PID == nil || *e.PID != 42) {
				t.Errorf("unit_state %q pid %v, want the owner's: active, 42", e.UnitState, e.PID)
			}
			if e := es[0]; (e.ConfigError != "") != tc.badConfig {
				t.Errorf("config_error %q", e.ConfigError)
			}
		})
	}
}

// TestListOwner: list names the unit of the process that owns a bridge's
// bus name, as systemd tells it, not the instance unit that failed to
// start beside vethd.service (issue 8); one systemd does not know keeps
// the guess.
func TestListOwner(t *testing.T) {
	h := newHarness(t)
	h.writeConfig("veth1", eth0Config)
	h.writeConfig("veth2", eth0Config)
	h.writeConfig("veth3", eth0Config)
	h.units.loaded = []unitStatus{
		{Name: "vethd.service", LoadState: "loaded", ActiveState: "active", SubState: "running"},
		{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "activating", SubState: "auto-restart"},
		{Name: "vethd@veth2.service", LoadState: "loaded", ActiveState: "active", SubState: "running"},
		// Loaded, inactive and enabled: vethd.service leaves veth3 to it.
		{Name: "vethd@veth3.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
	}
	h.units.unit = map[string]unitStatus{
		"vethd@veth3.service": {Name: "vethd@veth3.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead", UnitFileState: "enabled"},
		"session-3.scope":     {Name: "session-3.scope", LoadState: "loaded", ActiveState: "active", SubState: "running"},
	}
	h.units.pids = map[uint32]string{100: "vethd.service", 200: "vethd@veth2.service", 300: "session-3.scope"}
	for name, pid := range map[string]uint32{"veth1": 100, "veth2": 200, "byhand": 300, "unknown": 400} {
		b := running(name, "eth0", "02:00:00:00:00:01")
		b.pid = pid
		h.bridges.bridges[name] = b
	}
	h.mustRun(0, "list", "--no-legend")
	want := `byhand  session-3.scope     running  eth0 02:00:00:00:00:01 on
unknown vethd.service       running  eth0 02:00:00:00:00:01 on
veth1   vethd.service       running  eth0 02:00:00:00:00:01 on
veth2   vethd@veth2.service running  eth0 02:00:00:00:00:01 on
veth3   vethd@veth3.service inactive eth0 da:0a:4b:35:8f:82 -
`
	if got := h.stdout.String(); got != want {
		t.Errorf("list:\n%s\nwant:\n%s", got, want)
	}
	h.mustRun(0, "list", "--json")
	var es []entry
	if err := json.Unmarshal(h.stdout.Bytes(), &es); err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Name == "veth1" && (e.PID == nil || *e.PID != 100 || e.UnitState != "active") {
			t.Errorf("veth1: pid %v unit_state %q, want 100, active", e.PID, e.UnitState)
		}
	}
	// show says the same.
	h.mustRun(0, "show", "veth1")
	if out := h.stdout.String(); !strings.Contains(out, "Unit: vethd.service\n") {
		t.Errorf("show veth1:\n%s", out)
	}
	h.mustRun(0, "show", "byhand")
	if out := h.stdout.String(); !strings.Contains(out, "Unit: session-3.scope\n") {
		t.Errorf("show byhand:\n%s", out)
	}
}

func TestListNoBus(t *testing.T) {
	h := newHarness(t)
	h.busErr = fmt.Errorf("%w: dial unix /run/dbus/system_bus_socket: no such file or directory", errNoBus)
	h.writeConfig("veth1", eth0Config)
	h.mustRun(0, "list")
	want := "NAME  UNIT STATE      PARENT MAC               CARRIER\nveth1 -    configured eth0   22:43:60:c3:5b:4c -\n\n1 bridge listed.\n"
	if got := h.stdout.String(); got != want {
		t.Errorf("list:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(h.stderr.String(), "cannot connect to the system bus") {
		t.Errorf("stderr has no note: %q", h.stderr.String())
	}
	// The other commands that need the bus exit 1.
	for _, args := range [][]string{{"show", "veth1"}, {"stats"}, {"reset", "veth1"}, {"reload", "veth1"},
		{"remove", "veth1"}, {"add", "veth2", "--parent", "eth0"}, {"watch"}} {
		h.mustRun(1, args...)
		if !strings.Contains(h.stderr.String(), "vethctl: cannot connect to the system bus: ") {
			t.Errorf("%v: stderr %q", args, h.stderr.String())
		}
	}
	// mac needs no bus.
	h.mustRun(0, "mac", "veth1")
}

func TestListNoSystemd(t *testing.T) {
	h := newHarness(t)
	h.bridges.bridges["veth1"] = running("veth1", "eth0", "22:43:60:c3:5b:4c")
	h.units.errs = map[string]error{"ListUnits": errors.New("list systemd units: The name org.freedesktop.systemd1 was not provided by any .service files")}
	h.mustRun(0, "list", "--no-legend")
	if got, want := h.stdout.String(), "veth1 - running eth0 22:43:60:c3:5b:4c on\n"; got != want {
		t.Errorf("list: %q, want %q", got, want)
	}
	if !strings.Contains(h.stderr.String(), "not listing systemd units") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
}

func TestListBadConfig(t *testing.T) {
	h := newHarness(t)
	h.writeConfig("veth1", "[Bridge]\nParent=eth0\nMTU=9\n")
	h.writeConfig("veth2", eth0Config)
	h.mustRun(0, "list", "--no-legend")
	if got, want := h.stdout.String(), "veth1 - invalid    -    -                 -\n"+
		"veth2 - configured eth0 36:56:b5:98:50:63 -\n"; got != want {
		t.Errorf("list: %q, want %q", got, want)
	}
	if !strings.Contains(h.stderr.String(), "veth1.conf:3: MTU=") {
		t.Errorf("stderr: %q", h.stderr.String())
	}

	h.mustRun(0, "list", "--json")
	var got []entry
	if err := json.Unmarshal(h.stdout.Bytes(), &got); err != nil || len(got) != 2 {
		t.Fatalf("list --json: %v\n%s", err, h.stdout.String())
	}
	if e := got[0]; e.State != "invalid" || !strings.Contains(e.ConfigError, "veth1.conf:3: MTU=") || e.Parent != "" {
		t.Errorf("veth1: %+v", e)
	}
	if e := got[1]; e.State != "configured" || e.ConfigError != "" {
		t.Errorf("veth2: %+v", e)
	}

	// A failed unit says more than the file.
	h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed"}}
	h.mustRun(0, "list", "--no-legend")
	if got := h.stdout.String(); !strings.HasPrefix(got, "veth1 vethd@veth1.service failed ") {
		t.Errorf("list: %q", got)
	}
}
