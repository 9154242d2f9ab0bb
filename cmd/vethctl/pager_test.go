package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPagerCommand(t *testing.T) {
	installed := func(names ...string) func(string) (string, error) {
		return func(p string) (string, error) {
			if slices.Contains(names, p) {
				return "/usr/bin/" + p, nil
			}
			return "", errors.New("not found")
		}
	}
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	for _, tc := range []struct {
		env       map[string]string
		installed []string
		want      string
	}{
		{nil, []string{"less", "more"}, "less"},
		{nil, []string{"pager", "less"}, "pager"},
		{nil, []string{"more"}, "more"},
		{nil, nil, ""},
		{map[string]string{"PAGER": "most"}, []string{"less"}, "most"},
		{map[string]string{"PAGER": "most", "SYSTEMD_PAGER": "less -R"}, nil, "less -R"},
		{map[string]string{"PAGER": "cat"}, []string{"less"}, ""},
		{map[string]string{"SYSTEMD_PAGER": "", "PAGER": "most"}, []string{"less"}, ""},
		{map[string]string{"PAGER": " "}, []string{"less"}, ""},
	} {
		if got := pagerCommand(env(tc.env), installed(tc.installed...)); got != tc.want {
			t.Errorf("env %v, installed %v: %q, want %q", tc.env, tc.installed, got, tc.want)
		}
	}
	got := pagerEnv([]string{"HOME=/root", "LESS=-X"}, env(nil))
	if !slices.Equal(got, []string{"HOME=/root", "LESS=FRSXMK"}) {
		t.Errorf("pagerEnv: %q", got)
	}
	if got := pagerEnv(nil, env(map[string]string{"SYSTEMD_LESS": "R"})); !slices.Equal(got, []string{"LESS=R"}) {
		t.Errorf("pagerEnv with $SYSTEMD_LESS: %q", got)
	}
}

// TestPager: on a terminal, list, status, show and stats go through the
// pager, which gets LESS; --no-pager, a pipe and metrics do not.
func TestPager(t *testing.T) {
	h := newHarness(t)
	goldenHost(h)
	h.terminal = true
	h.env = map[string]string{"PAGER": `echo "pager LESS=$LESS"; sed 's/^/| /'`}
	for _, args := range [][]string{{"list"}, {"status"}, {"show", "veth1"}, {"status", "veth1"}, {"stats", "--interval", "0"}} {
		h.mustRun(0, args...)
		out := h.stdout.String()
		if !strings.HasPrefix(out, "pager LESS=FRSXMK\n| ") || strings.Contains(out, "\n\x00") {
			t.Errorf("%q: not paged: %q", args, out)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n")[1:] {
			if !strings.HasPrefix(l, "|") {
				t.Errorf("%q: line %q not through the pager", args, l)
			}
		}
		h.mustRun(0, append(args, "--no-pager")...)
		if strings.Contains(h.stdout.String(), "pager") || strings.HasPrefix(h.stdout.String(), "|") {
			t.Errorf("%q --no-pager: paged: %q", args, h.stdout.String())
		}
	}
	h.mustRun(0, "metrics")
	if !strings.HasPrefix(h.stdout.String(), "# HELP") {
		t.Errorf("metrics paged: %q", h.stdout.String())
	}
	h.terminal = false
	h.mustRun(0, "list")
	if strings.HasPrefix(h.stdout.String(), "pager") {
		t.Errorf("paged without a terminal: %q", h.stdout.String())
	}
	// An error still reaches stderr, and the exit code stays.
	h.terminal = true
	h.mustRun(4, "show", "nosuch")
	if !strings.Contains(h.stderr.String(), "no such bridge nosuch") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
}
