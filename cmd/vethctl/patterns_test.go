package main

import (
	"slices"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	known := []string{"veth1", "veth2", "wan0", "wan1"}
	for _, tc := range []struct {
		args []string
		want []string
		code int
	}{
		{[]string{"veth*"}, []string{"veth1", "veth2"}, 0},
		{[]string{"wan[1]", "veth?", "wan1"}, []string{"wan1", "veth1", "veth2"}, 0}, // repeats dropped
		{[]string{"nosuch"}, []string{"nosuch"}, 0},                                  // names are kept: their look-up fails later
		{[]string{"x*"}, nil, exitNoSuch},
	} {
		got, err := expand(tc.args, known)
		if exitCode(err) != tc.code || !slices.Equal(got, tc.want) {
			t.Errorf("expand(%q) = %q, %v; want %q, exit %d", tc.args, got, err, tc.want, tc.code)
		}
	}
	if !matchAny(nil, "x") || !matchAny([]string{"v*"}, "veth1") || matchAny([]string{"v*"}, "wan0") ||
		!matchAny([]string{"veth1"}, "veth1") {
		t.Error("matchAny wrong")
	}
	if exitCode(checkPatterns([]string{"[x"})) != exitUsage || exitCode(checkPatterns([]string{"a b"})) != exitUsage ||
		checkPatterns([]string{"veth*", "veth1"}) != nil {
		t.Error("checkPatterns wrong")
	}
}

// TestPatternsNoMatch: a pattern that matches nothing is exit 4 for show,
// status and stats, and an empty list for list and metrics.
func TestPatternsNoMatch(t *testing.T) {
	h := newHarness(t)
	goldenHost(h)
	for _, args := range [][]string{{"show", "x*"}, {"status", "x*"}, {"stats", "--interval", "0", "x*"},
		{"watch", "x*"}} {
		h.mustRun(exitNoSuch, args...)
		if !strings.Contains(h.stderr.String(), `no bridge matches "x*"`) {
			t.Errorf("%q: stderr %q", args, h.stderr.String())
		}
	}
	h.mustRun(0, "list", "--no-legend", "x*")
	if h.stdout.Len() != 0 {
		t.Errorf("list x*: %q", h.stdout.String())
	}
	h.mustRun(0, "--json", "list", "x*")
	if h.stdout.String() != "[]\n" {
		t.Errorf("list --json x*: %q", h.stdout.String())
	}
	// A missing name among others: the others are shown, exit 4.
	h.mustRun(exitNoSuch, "show", "veth1", "nosuch", "cfgonly")
	out := h.stdout.String()
	if !strings.Contains(out, "Name: veth1") || !strings.Contains(out, "Name: cfgonly") {
		t.Errorf("show: %s", out)
	}
	if !strings.Contains(h.stderr.String(), "no such bridge nosuch") || !strings.Contains(h.stderr.String(), "1 of 3 bridges not found") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
	// A pattern on stats names the bridges on the bus only.
	h.mustRun(0, "stats", "--interval", "0", "--no-legend", "*")
	if got := strings.Count(h.stdout.String(), "\n"); got != 2 {
		t.Errorf("stats *: %d rows, want 2:\n%s", got, h.stdout.String())
	}
}
