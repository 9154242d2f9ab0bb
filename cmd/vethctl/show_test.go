package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// showFixture is veth1 run by vethd@veth1.service, on the bus, with its
// file.
func showFixture(h *harness) {
	h.writeConfig("veth1", eth0Config)
	h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active", SubState: "running"}}
	h.units.unit = map[string]unitStatus{"vethd@veth1.service": {Name: "vethd@veth1.service", LoadState: "loaded",
		ActiveState: "active", SubState: "running", UnitFileState: "enabled", MainPID: 1234,
		StatusText: "veth1 running on eth0", ActiveEnter: t0.Add(-90 * time.Second)}}
	b := running("veth1", "eth0", "22:43:60:c3:5b:4c")
	b.status.StartedUsec = uint64(t0.Add(-89 * time.Second).UnixMicro())
	b.counters = []dbusapi.Counters{{RxPackets: 12, RxBytes: 3400, RxCoalesced: 2, RxSplit: 1, TxPackets: 5, TxBytes: 600, TxSplit: 3,
		RxDrops: map[string]uint64{"runt": 1}, TxDrops: map[string]uint64{}}}
	b.describe = `{"version":"1.0","pid":1234,"config":{"file":"/etc/vethd/veth1.conf","parent":"eth0","mac_address":"persistent","mtu":"inherit","carrier":"follow"},"status":{"name":"veth1","mac_address":"22:43:60:c3:5b:4c"},"counters":{"rx_packets":12}}`
	h.bridges.bridges["veth1"] = b
}

func TestShow(t *testing.T) {
	h := newHarness(t)
	showFixture(h)
	h.mustRun(0, "show", "veth1")
	out := h.stdout.String()
	for _, line := range []string{
		"           Name: veth1\n",
		"          State: running\n",
		"           Unit: vethd@veth1.service\n",
		"     Unit State: active (running) since ",
		"; 1min 30s ago\n",
		"      Unit File: enabled\n",
		"       Main PID: 1234\n",
		"         Status: veth1 running on eth0\n",
		"    Config File: " + h.dir + "/veth1.conf\n",
		"         Config: Parent=eth0 MACAddress=persistent MTU=inherit Carrier=follow\n",
		"Interface Index: 7\n",
		"    MAC Address: 22:43:60:c3:5b:4c (persistent)\n",
		"        Carrier: on\n",
		"         Parent: eth0 (index 2, carrier on, promiscuous no)\n",
		"       Offloads: csum tso4\n",
		"             RX: 12 packets, 3.4 kB (2 coalesced, 1 split)\n",
		"             TX: 5 packets, 600 B (3 split)\n",
		"       RX Drops: 1 (runt 1)\n",
		"       TX Drops: 0\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("show lacks %q", line)
		}
	}
	// Every line is "Key: value" with the colons aligned.
	col := -1
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		i := strings.Index(l, ": ")
		if col == -1 {
			col = i
		}
		if i != col {
			t.Errorf("misaligned: %q", l)
		}
	}
}

func TestShowNotOnBus(t *testing.T) {
	h := newHarness(t)
	h.writeConfig("veth1", eth0Config)
	h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed"}}
	h.units.unit = map[string]unitStatus{"vethd@veth1.service": {Name: "vethd@veth1.service", LoadState: "loaded",
		ActiveState: "failed", SubState: "failed", UnitFileState: "enabled", Result: "exit-code"}}
	h.mustRun(0, "show", "veth1")
	for _, line := range []string{
		"      State: failed\n",
		" Unit State: failed (failed); result: exit-code\n",
		"     On Bus: no\n",
		"MAC Address: 22:43:60:c3:5b:4c (persistent, from the file)\n",
	} {
		if !strings.Contains(h.stdout.String(), line) {
			t.Errorf("show lacks %q", line)
		}
	}
}

func TestShowJSON(t *testing.T) {
	h := newHarness(t)
	showFixture(h)
	h.mustRun(0, "show", "veth1", "--json")
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(h.stdout.Bytes(), &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, h.stdout.String())
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"config", "config_error", "counters", "name", "pid", "state", "status", "unit", "version"}; !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	// Describe's document, as vethd gives it: snake_case keys.
	var st dbusapi.Status
	var ctr dbusapi.Counters
	if err := json.Unmarshal(doc["status"], &st); err != nil || st.MACAddress != "22:43:60:c3:5b:4c" {
		t.Errorf("status %s (%v)", doc["status"], err)
	}
	if err := json.Unmarshal(doc["counters"], &ctr); err != nil || ctr.RxPackets != 12 {
		t.Errorf("counters %s (%v)", doc["counters"], err)
	}
	if string(doc["config_error"]) != `""` {
		t.Errorf("config_error %s", doc["config_error"])
	}
	var u unitJSON
	if err := json.Unmarshal(doc["unit"], &u); err != nil || u.Name != "vethd@veth1.service" || u.MainPID != 1234 || u.UnitFileState != "enabled" {
		t.Errorf("unit %s (%v)", doc["unit"], err)
	}
	if string(doc["state"]) != `"running"` || string(doc["pid"]) != "1234" {
		t.Errorf("state %s pid %s", doc["state"], doc["pid"])
	}

	// Without root Describe is refused: the properties and the file stand in.
	h.bridges.errs = map[string]error{"Describe veth1": fmt.Errorf("describe veth1: %w", dbusapi.ErrAccessDenied)}
	h.mustRun(0, "show", "veth1", "--json")
	doc = nil
	if err := json.Unmarshal(h.stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var status map[string]any
	var cfg configJSON
	if err := json.Unmarshal(doc["status"], &status); err != nil || status["mac_address"] != "22:43:60:c3:5b:4c" ||
		status["parent_ifindex"] != 2.0 || status["state"] != "running" {
		t.Errorf("status %s (%v)", doc["status"], err)
	}
	var counters map[string]any
	if err := json.Unmarshal(doc["counters"], &counters); err != nil || counters["rx_packets"] != 12.0 || counters["rx_drops"] == nil {
		t.Errorf("counters %s (%v)", doc["counters"], err)
	}
	if err := json.Unmarshal(doc["config"], &cfg); err != nil || cfg.Parent != "eth0" || cfg.MTU != "inherit" {
		t.Errorf("config %s (%v)", doc["config"], err)
	}
	if h.stderr.Len() != 0 {
		t.Errorf("stderr: %s", h.stderr.String())
	}

	// A file only: status and counters are null.
	h = newHarness(t)
	h.writeConfig("veth2", eth0Config)
	h.mustRun(0, "show", "veth2", "--json")
	doc = nil
	if err := json.Unmarshal(h.stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if string(doc["status"]) != "null" || string(doc["counters"]) != "null" || string(doc["unit"]) != "null" || string(doc["state"]) != `"configured"` {
		t.Errorf("doc %s", h.stdout.String())
	}

	// A broken file: no config, the reason in config_error.
	h.writeConfig("veth3", "[Bridge]\nParent=eth0\nCarrier=off\n")
	h.mustRun(0, "show", "veth3", "--json")
	doc = nil
	if err := json.Unmarshal(h.stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if string(doc["config"]) != "null" || !strings.Contains(string(doc["config_error"]), "veth3.conf:3: Carrier=") ||
		string(doc["state"]) != `"invalid"` {
		t.Errorf("doc %s", h.stdout.String())
	}
}

// TestShowConfigOnly: no unit shows as "-", a broken file as invalid.
func TestShowConfigOnly(t *testing.T) {
	h := newHarness(t)
	h.writeConfig("veth1", "[Bridge]\nParent=eth0\nMTU=9\n")
	h.mustRun(0, "show", "veth1")
	for _, line := range []string{
		"       State: invalid\n",
		"        Unit: -\n",
		"Config Error: " + h.dir + "/veth1.conf:3: MTU=",
	} {
		if !strings.Contains(h.stdout.String(), line) {
			t.Errorf("show lacks %q", line)
		}
	}
	for _, l := range strings.Split(h.stdout.String(), "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space: %q", l)
		}
	}
}

func TestTimespan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		999 * time.Millisecond:  "999ms",
		1500 * time.Millisecond: "1s 500ms",
		time.Second:             "1s",
		90 * time.Second:        "1min 30s",
		time.Hour + 2*time.Minute + 3*time.Second: "1h 2min 3s",
		2 * time.Hour:                "2h",
		26*time.Hour + 5*time.Second: "1d 2h 5s",
		9 * 24 * time.Hour:           "1w 2d",
		400 * 24 * time.Hour:         "1y 1month 4d 7h 30min",
	} {
		if got := timespan(d); got != want {
			t.Errorf("timespan(%v) = %q, want %q", d, got, want)
		}
	}
	h := newHarness(t)
	a := &app{now: func() time.Time { return h.clock }}
	if got := a.when(t0.Add(-3723400 * time.Millisecond)); !strings.HasSuffix(got, "; 1h 2min 3s ago") {
		t.Errorf("when: %q", got)
	}
	if got := a.when(t0); !strings.HasSuffix(got, "; now") {
		t.Errorf("when: %q", got)
	}
}

func TestShowUnknown(t *testing.T) {
	h := newHarness(t)
	h.mustRun(4, "show", "veth9")
	if !strings.Contains(h.stderr.String(), "no such bridge veth9") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
	h.mustRun(2, "show")
	h.mustRun(2, "show", "a b")
}
