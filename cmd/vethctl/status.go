package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/vethd/vethd/internal/humanize"
	"github.com/vethd/vethd/pkg/dbusapi"
)

const statusHelp = `With PATTERNs, show each bridge they name or match, as "vethctl show" does.

Without, print a summary of every bridge on this host (what "vethctl list"
finds: units, bridges on the bus, configuration files), as "networkctl
status" does for links: the overall state, the bridges by state, and the
sums of the counters of the bridges on the bus. The overall State is, in
this order: "none" if there is no bridge; "failed" if one is failed or
invalid; "degraded" if one is degraded, waiting-parent or
waiting-namespace; "starting" if one is starting or activating; "running"
if one is running; else "off". With --json, an object: "state", "states"
(the number of bridges in each state), "bridges" (as "vethctl list --json"
prints them) and "counters" (the sums, drops by reason).
`

// stateOrder is the order of the states in the summary; others follow,
// sorted.
var stateOrder = []string{
	"running", "degraded", "starting", "waiting-parent", "waiting-namespace", "stopping", // on the bus
	"failed", "invalid", "activating", "deactivating", "reloading", "active", "inactive", "configured",
}

// summary is what status prints without arguments.
type summary struct {
	State    string           `json:"state"`
	States   map[string]int   `json:"states"`
	Bridges  []entry          `json:"bridges"`
	Counters dbusapi.Counters `json:"counters"`
}

// overallState is the State of a summary (statusHelp).
func overallState(states map[string]int) string {
	any := func(ss ...string) bool {
		return slices.ContainsFunc(ss, func(s string) bool { return states[s] > 0 })
	}
	switch {
	case len(states) == 0:
		return "none"
	case any("failed", "invalid"):
		return "failed"
	case any("degraded", "waiting-parent", "waiting-namespace"):
		return "degraded"
	case any("starting", "activating"):
		return "starting"
	case any("running"):
		return "running"
	}
	return "off"
}

// summarize sums up the bridges of inv.
func summarize(inv *inventory) summary {
	s := summary{States: map[string]int{}, Bridges: inv.entries(),
		Counters: dbusapi.Counters{RxDrops: map[string]uint64{}, TxDrops: map[string]uint64{}}}
	for _, e := range s.Bridges {
		s.States[e.State]++
	}
	for _, n := range sortedKeys(inv.bus) {
		c := inv.bus[n].counters
		t := &s.Counters
		t.RxPackets += c.RxPackets
		t.RxBytes += c.RxBytes
		t.RxCoalesced += c.RxCoalesced
		t.RxSplit += c.RxSplit
		t.TxPackets += c.TxPackets
		t.TxBytes += c.TxBytes
		t.TxSplit += c.TxSplit
		t.Errors += c.Errors
		for r, v := range c.RxDrops {
			t.RxDrops[r] += v
		}
		for r, v := range c.TxDrops {
			t.TxDrops[r] += v
		}
	}
	s.State = overallState(s.States)
	return s
}

// orderedStates returns the states of m in stateOrder, then the others
// sorted.
func orderedStates(m map[string]int) []string {
	var out []string
	for _, st := range stateOrder {
		if m[st] > 0 {
			out = append(out, st)
		}
	}
	for _, st := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(stateOrder, st) {
			out = append(out, st)
		}
	}
	return out
}

// stateTitle is a state as a key: "waiting-parent" → "Waiting Parent".
func stateTitle(s string) string {
	words := strings.Split(s, "-")
	for i, w := range words {
		if w != "" {
			words[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(words, " ")
}

// lines returns the summary's "Key: value" lines.
func (s summary) lines() [][2]string {
	kv := [][2]string{{"State", s.State}}
	var counts []string
	for _, st := range orderedStates(s.States) {
		counts = append(counts, fmt.Sprintf("%d %s", s.States[st], st))
	}
	bridges := strconv.Itoa(len(s.Bridges))
	if len(counts) > 0 {
		bridges += " (" + strings.Join(counts, ", ") + ")"
	}
	kv = append(kv, [2]string{"Bridges", bridges})
	for _, st := range orderedStates(s.States) {
		var names []string
		for _, e := range s.Bridges {
			if e.State == st {
				names = append(names, e.Name)
			}
		}
		kv = append(kv, [2]string{stateTitle(st), strings.Join(names, " ")})
	}
	c := s.Counters
	kv = append(kv,
		[2]string{"RX", fmt.Sprintf("%d packets, %s (%d coalesced, %d split)", c.RxPackets, humanize.Bytes(c.RxBytes), c.RxCoalesced, c.RxSplit)},
		[2]string{"RX Drops", drops(c.RxDrops)},
		[2]string{"TX", fmt.Sprintf("%d packets, %s (%d split)", c.TxPackets, humanize.Bytes(c.TxBytes), c.TxSplit)},
		[2]string{"TX Drops", drops(c.TxDrops)},
		[2]string{"Errors", u64(c.Errors)})
	return kv
}

func (a *app) status(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return a.show(ctx, args)
	}
	inv := a.gather(ctx)
	for _, n := range sortedKeys(inv.configs) {
		if err := inv.configs[n].err; err != nil {
			a.warn("%v", err)
		}
	}
	s := summarize(inv)
	if a.opts.json {
		return writeJSON(a.stdout, s)
	}
	keyValues(a.stdout, s.lines())
	return nil
}
