package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// update rewrites the golden files: go test ./cmd/vethctl -run Golden -update
var update = flag.Bool("update", false, "rewrite testdata/*.golden with the output")

// checkGolden compares got with testdata/NAME.golden, or writes it there
// with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (run with -update if the change is meant):\n--- got\n%s\n--- want\n%s",
			name, p, got, want)
	}
}

// goldenHost is everyKind with traffic: veth1 and byhand move frames
// and drop some, a storm reason among them (reasons are whatever the
// daemon's maps hold).
func goldenHost(h *harness) {
	everyKind(h)
	v1 := h.bridges.bridges["veth1"]
	v1.pid = 4242
	v1.status.Kind = "tap"
	v1.status.DataPath = "relay"
	v1.status.StartedUsec = uint64(t0.Add(-90 * 60e9).UnixMicro())
	v1.counters = []dbusapi.Counters{
		{RxPackets: 1000, RxBytes: 1_500_000, TxPackets: 500, TxBytes: 40_000, RxCoalesced: 10, RxSplit: 2, TxSplit: 1,
			RxDrops: map[string]uint64{"runt": 1, "filter": 0}, TxDrops: map[string]uint64{}},
		{RxPackets: 3000, RxBytes: 4_500_000, TxPackets: 700, TxBytes: 60_000, RxCoalesced: 30, Errors: 1, RxSplit: 6, TxSplit: 3,
			RxDrops: map[string]uint64{"runt": 1, "oversize": 2, "storm-broadcast": 7, "filter": 0},
			TxDrops: map[string]uint64{"spoof": 4}},
	}
	h.units.pids = map[uint32]string{4242: "vethd@veth1.service"}
	bh := h.bridges.bridges["byhand"]
	bh.status.Kind = "veth"
	bh.status.DataPath = "kernel"
	bh.status.State = "degraded"
	bh.counters = []dbusapi.Counters{{RxPackets: 5, RxBytes: 999_950, TxPackets: 2, TxBytes: 128,
		RxDrops: map[string]uint64{}, TxDrops: map[string]uint64{"no-parent": 2}}}
}

// TestGolden runs every command that prints a table or JSON against one
// host and compares the output with testdata/*.golden.
func TestGolden(t *testing.T) {
	// show prints local times: the golden files have UTC.
	defer func(l *time.Location) { time.Local = l }(time.Local)
	time.Local = time.UTC
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"list", []string{"list"}},
		{"list-no-legend", []string{"list", "--no-legend"}},
		{"list-pattern", []string{"list", "b*", "veth?"}},
		{"list.json", []string{"list", "--json"}},
		{"status", []string{"status"}},
		{"status.json", []string{"status", "-j"}},
		{"status-name", []string{"status", "veth1"}},
		{"status-pattern", []string{"status", "b*"}},
		{"show", []string{"show", "veth1"}},
		{"show.json", []string{"show", "--json", "veth1"}},
		{"show-pattern.json", []string{"-j", "show", "[bc]*"}},
		{"stats", []string{"stats", "--interval", "2s"}},
		{"stats-no-legend", []string{"stats", "--interval", "2s", "--no-legend"}},
		{"stats-pattern", []string{"stats", "--interval", "0", "veth*"}},
		{"stats.json", []string{"stats", "--interval", "2s", "--json"}},
		{"metrics.prom", []string{"metrics"}},
		{"metrics.openmetrics", []string{"metrics", "--format", "openmetrics"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			goldenHost(h)
			h.mustRun(0, tc.args...)
			if strings.Contains(tc.name, "pattern") && h.stderr.Len() != 0 {
				t.Errorf("stderr: %s", h.stderr.String())
			}
			// The temporary config dir, as the manual writes it.
			out := bytes.ReplaceAll(h.stdout.Bytes(), []byte(h.dir), []byte("/etc/vethd"))
			checkGolden(t, tc.name, out)
		})
	}
}
