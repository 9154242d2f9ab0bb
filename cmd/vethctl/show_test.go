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
	b.counters = []dbusapi.Counters{{RxPackets: 12, RxBytes: 3400, RxCoalesced: 2, TxPackets: 5, TxBytes: 600,
		RxDrops: map[string]uint64{"runt": 1}, TxDrops: map[string]uint64{}}}
	b.describe = `{"version":"1.0","pid":1234,"config":{"file":"/etc/vethd/veth1.conf","parent":"eth0","mac_address":"persistent","mtu":"inherit","carrier":"follow"},"status":{"Name":"veth1"},"counters":{"RxPackets":12}}`
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
		"; 1m30s ago\n",
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
		"             RX: 12 packets, 3.4kB (2 coalesced)\n",
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
	if want := []string{"config", "counters", "name", "pid", "state", "status", "unit", "version"}; !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
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
	var st dbusapi.Status
	var cfg configJSON
	if err := json.Unmarshal(doc["status"], &st); err != nil || st.MACAddress != "22:43:60:c3:5b:4c" {
		t.Errorf("status %s (%v)", doc["status"], err)
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
