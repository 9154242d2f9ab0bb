package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/dbusapi"
)

func TestComputeRates(t *testing.T) {
	prev := dbusapi.Counters{RxPackets: 100, RxBytes: 150_000, TxPackets: 10, TxBytes: 1000, Errors: 1,
		RxDrops: map[string]uint64{"runt": 1}, TxDrops: map[string]uint64{"spoof": 2}}
	cur := dbusapi.Counters{RxPackets: 300, RxBytes: 450_000, TxPackets: 20, TxBytes: 3000, Errors: 1,
		RxDrops: map[string]uint64{"runt": 3, "oversize": 2}, TxDrops: map[string]uint64{"spoof": 2}}
	got := computeRates(prev, cur, 2*time.Second)
	want := rates{IntervalSec: 2, RxPackets: 100, RxBytes: 150_000, RxDropped: 2, TxPackets: 5, TxBytes: 1000}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// Counters reset in between: count from zero.
	got = computeRates(cur, dbusapi.Counters{RxPackets: 50}, 500*time.Millisecond)
	if got.RxPackets != 100 || got.TxPackets != 0 {
		t.Errorf("after a reset: %+v", got)
	}
	if got := computeRates(prev, cur, 0); got.RxPackets != 0 || math.IsInf(got.RxBytes, 0) {
		t.Errorf("zero interval: %+v", got)
	}
}

// twoSamples puts two bridges on the bus whose counters grow between
// the first and the second reading.
func twoSamples(h *harness) {
	v1 := running("veth1", "eth0", "22:43:60:c3:5b:4c")
	v1.counters = []dbusapi.Counters{
		{RxPackets: 1000, RxBytes: 1_500_000, TxPackets: 500, TxBytes: 40_000, RxCoalesced: 10, RxSplit: 2, TxSplit: 1,
			RxDrops: map[string]uint64{"runt": 1}, TxDrops: map[string]uint64{}},
		{RxPackets: 3000, RxBytes: 4_500_000, TxPackets: 700, TxBytes: 60_000, RxCoalesced: 30, RxSplit: 6, TxSplit: 3,
			RxDrops: map[string]uint64{"runt": 1, "oversize": 2}, TxDrops: map[string]uint64{"spoof": 4}, Errors: 1},
	}
	v2 := running("veth2", "eth1", "02:00:00:00:00:02")
	h.bridges.bridges["veth1"] = v1
	h.bridges.bridges["veth2"] = v2
}

func TestStatsTable(t *testing.T) {
	h := newHarness(t)
	twoSamples(h)
	h.mustRun(0, "stats", "--interval", "2s")
	// Sizes and rates in SI units with a space (internal/humanize), the
	// columns still aligned.
	want := `NAME  RX-PKTS RX-BYTES RX-DROPS TX-PKTS TX-BYTES TX-DROPS COALESCED SPLIT ERRORS RX-PPS     RX-RATE TX-PPS     TX-RATE
veth1    3000   4.5 MB        3     700  60.0 kB        4        30     9      1   1000 12.0 Mbit/s    100 80.0 kbit/s
veth2       0      0 B        0       0      0 B        0         0     0      0    0.0     0 bit/s    0.0     0 bit/s

veth1 drops: rx 3 (oversize 2, runt 1); tx 4 (spoof 4)
Rates per second over 2s; RX-RATE and TX-RATE in bits per second.
2 bridges listed.
`
	if got := h.stdout.String(); got != want {
		t.Errorf("stats:\n%s\nwant:\n%s", got, want)
	}
	if h.clock.Sub(t0) != 2*time.Second {
		t.Errorf("slept %v, want 2s", h.clock.Sub(t0))
	}
}

func TestStatsJSON(t *testing.T) {
	h := newHarness(t)
	twoSamples(h)
	h.mustRun(0, "stats", "veth1", "--json") // --interval defaults to 1s
	var got []statsRow
	if err := json.Unmarshal(h.stdout.Bytes(), &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, h.stdout.String())
	}
	if len(got) != 1 || got[0].Name != "veth1" || got[0].Rates == nil {
		t.Fatalf("got %+v", got)
	}
	r := got[0]
	if r.RxPackets != 3000 || r.RxDropped != 3 || r.RxDrops["oversize"] != 2 || r.TxDrops["spoof"] != 4 ||
		r.RxSplit != 6 || r.TxSplit != 3 {
		t.Errorf("counters %+v", r)
	}
	want := rates{IntervalSec: 1, RxPackets: 2000, RxBytes: 3_000_000, RxDropped: 2, RxCoalesced: 20, RxSplit: 4,
		TxPackets: 200, TxBytes: 20_000, TxDropped: 4, TxSplit: 2, Errors: 1}
	if *r.Rates != want {
		t.Errorf("rates %+v\nwant %+v", *r.Rates, want)
	}
	// The keys, fixed.
	var raw []map[string]any
	_ = json.Unmarshal(h.stdout.Bytes(), &raw)
	for _, k := range []string{"name", "rx_packets", "rx_bytes", "rx_dropped", "rx_drops", "rx_coalesced", "rx_split",
		"tx_packets", "tx_bytes", "tx_dropped", "tx_drops", "tx_split", "errors", "rates"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("no key %q", k)
		}
	}
}

func TestStatsNoInterval(t *testing.T) {
	h := newHarness(t)
	twoSamples(h)
	h.mustRun(0, "stats", "--interval", "0", "--no-legend", "veth1")
	if got, want := h.stdout.String(), "veth1 1000 1.5 MB 1 500 40.0 kB 0 10 3 0\n"; got != want {
		t.Errorf("stats: %q, want %q", got, want)
	}
	if h.clock != t0 {
		t.Errorf("slept")
	}
	h.mustRun(0, "stats", "--interval", "0", "--json", "veth1")
	if !strings.Contains(h.stdout.String(), `"rates": null`) {
		t.Errorf("stats --json: %s", h.stdout.String())
	}
}

func TestStatsErrors(t *testing.T) {
	h := newHarness(t)
	twoSamples(h)
	h.mustRun(4, "stats", "veth9")
	h.mustRun(2, "stats", "--interval", "soon")
	h.mustRun(2, "stats", "--interval", "-1s")
	h.mustRun(2, "stats", "a/b")
}

// interruptAfter makes h's watch end as on SIGINT at its n+1st wait.
func interruptAfter(h *harness, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	sleeps := 0
	h.sleepHook = func(context.Context) error {
		sleeps++
		if sleeps > n {
			cancel()
			return ctx.Err()
		}
		return nil
	}
}

func TestWatch(t *testing.T) {
	h := newHarness(t)
	twoSamples(h)
	interruptAfter(h, 3) // three refreshes, then SIGINT
	h.mustRun(0, "watch", "--interval", "500ms")
	out := h.stdout.String()
	if n := strings.Count(out, "\nNAME "); n != 3 {
		t.Errorf("%d tables, want 3:\n%s", n, out)
	}
	if strings.Contains(out, clearScreen) {
		t.Errorf("cleared the screen of a non-terminal")
	}
	if !strings.HasPrefix(out, "vethctl watch: every 500ms, ") {
		t.Errorf("output begins %q", out[:40])
	}
	// First refresh: veth1 went from sample 1 to 2 in 0.5s.
	if !strings.Contains(out, "veth1    3000   4.5 MB        3     700  60.0 kB        4        30     9      1   4000") {
		t.Errorf("no rates of 4000 pps:\n%s", out)
	}

	// On a terminal: the screen is cleared at each refresh.
	h = newHarness(t)
	twoSamples(h)
	h.terminal = true
	interruptAfter(h, 2)
	h.mustRun(0, "watch", "veth1")
	if n := strings.Count(h.stdout.String(), clearScreen); n != 2 {
		t.Errorf("%d screen clears, want 2", n)
	}

	// JSON: one array per line.
	h = newHarness(t)
	twoSamples(h)
	interruptAfter(h, 2)
	h.mustRun(0, "watch", "--json")
	lines := strings.Split(strings.TrimSpace(h.stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	for _, l := range lines {
		var rs []statsRow
		if err := json.Unmarshal([]byte(l), &rs); err != nil || len(rs) != 2 {
			t.Errorf("line %q: %v", l, err)
		}
	}

	h.mustRun(2, "watch", "--interval", "0")
	h.mustRun(4, "watch", "veth9")
}
