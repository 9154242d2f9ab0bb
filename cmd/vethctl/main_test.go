package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUsage(t *testing.T) {
	h := newHarness(t)
	h.mustRun(0, "--help")
	if !strings.HasPrefix(h.stdout.String(), "Usage: vethctl [OPTIONS] COMMAND") {
		t.Errorf("--help: %q", h.stdout.String())
	}
	h.mustRun(0, "-h")
	h.mustRun(0, "help")
	h.mustRun(0, "add", "--help")
	if !strings.HasPrefix(h.stdout.String(), "Usage: vethctl add NAME --parent IF") || !strings.Contains(h.stdout.String(), "--carrier") {
		t.Errorf("add --help: %q", h.stdout.String())
	}
	// Every command is in --help, but the hidden ones.
	h.mustRun(0, "--help")
	usage := h.stdout.String()
	for name, cmd := range (&app{}).commands() {
		if listed := strings.Contains(usage, "\n  "+name+" "); listed == cmd.hidden {
			t.Errorf("command %s: in --help %v, hidden %v", name, listed, cmd.hidden)
		}
	}
	for name := range (&app{}).commands() {
		h.mustRun(0, name, "-h")
		if !strings.HasPrefix(h.stdout.String(), "Usage: vethctl "+name) {
			t.Errorf("%s -h: %q", name, h.stdout.String())
		}
	}

	defer func(v string) { version = v }(version)
	version = "1.2.3"
	h.mustRun(0, "--version")
	if got := h.stdout.String(); got != "vethctl 1.2.3\n" {
		t.Errorf("--version: %q", got)
	}

	h.mustRun(2, "frobnicate")
	if got := h.stderr.String(); got != "vethctl: unknown command \"frobnicate\"\nTry 'vethctl --help'.\n" {
		t.Errorf("stderr: %q", got)
	}
	h.mustRun(2, "--bogus")
	if !strings.Contains(h.stderr.String(), "unknown option --bogus") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
	h.mustRun(2, "show")       // a NAME or PATTERN at least
	h.mustRun(2, "list", "[x") // a bad pattern
	if got := h.stderr.String(); !strings.Contains(got, `invalid pattern "[x"`) {
		t.Errorf("stderr: %q", got)
	}
	h.mustRun(2, "list", "a/b") // not a name
	h.mustRun(2, "mac", "-x", "veth1")
	if !strings.Contains(h.stderr.String(), "unknown option -x") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
	h.mustRun(2, "--json=maybe", "list")
	if got, want := h.stderr.String(), "vethctl: invalid boolean value \"maybe\" for --json: parse error\nTry 'vethctl --help'.\n"; got != want {
		t.Errorf("stderr: %q, want %q", got, want)
	}
	h.mustRun(2, "stats", "--interval", "x")
	if got := h.stderr.String(); !strings.HasPrefix(got, "vethctl: stats: invalid value \"x\" for --interval: not a duration") {
		t.Errorf("stderr: %q", got)
	}
	h.mustRun(2, "reload", "veth1", "--no-block")
	if !strings.Contains(h.stderr.String(), "unknown option --no-block") {
		t.Errorf("stderr: %q", h.stderr.String())
	}

	h.mustRun(0, "--help")
	for _, s := range []string{"--timeout DURATION", "--no-block", "\n  help ", "-j, --json", "--no-pager",
		"status [PATTERN...]", "metrics [PATTERN...]"} {
		if !strings.Contains(h.stdout.String(), s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	for _, cmd := range []string{"add", "remove", "reload"} {
		h.mustRun(0, cmd, "--help")
		if !strings.Contains(h.stdout.String(), "--timeout DURATION") {
			t.Errorf("%s --help lacks --timeout", cmd)
		}
	}
}

// TestSignalContext: the first SIGTERM ends the context; by then the
// default handling is back, so that a second one kills vethctl. It runs
// in a child process, the test binary again.
func TestSignalContext(t *testing.T) {
	const env = "VETHCTL_TEST_SIGNAL_CHILD"
	if os.Getenv(env) == "1" {
		if signal.Ignored(syscall.SIGTERM) {
			os.Exit(5)
		}
		ctx, stop := signalContext(context.Background())
		defer stop()
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			os.Exit(3) // the first signal did not end ctx
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(10 * time.Second)
		os.Exit(4) // the second signal did not kill
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalContext$")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v, want killed by SIGTERM\n%s", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	switch {
	case ws.Exited() && ws.ExitStatus() == 5:
		t.Skip("SIGTERM is ignored in this process")
	case !ws.Signaled() || ws.Signal() != syscall.SIGTERM:
		t.Errorf("child: %v, want killed by SIGTERM\n%s", err, out)
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		now  bool
		p    string
	}{
		{[]string{"veth1", "--parent", "eth0", "--now"}, []string{"veth1"}, true, "eth0"},
		{[]string{"--now", "veth1", "--parent=eth0"}, []string{"veth1"}, true, "eth0"},
		{[]string{"a", "b", "--parent", "x", "c"}, []string{"a", "b", "c"}, false, "x"},
		{[]string{"--parent", "x", "--", "--now"}, []string{"--now"}, false, "x"},
		{nil, nil, false, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		now := fs.Bool("now", false, "")
		p := fs.String("parent", "", "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *now != tc.now || *p != tc.p {
			t.Errorf("%q: pos %q now %v parent %q err %v", tc.args, pos, *now, *p, err)
		}
	}
}

func TestUnitable(t *testing.T) {
	for name, want := range map[string]bool{
		"veth1": true, "v-1": true, "v_1": true, "v.1": true, "V1": true,
		"": false, ".v": false, "v+1": false, "v@1": false, "v\\1": false, "ü": false,
	} {
		if got := unitable(name); got != want {
			t.Errorf("unitable(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestHumanRate: packets per second. Bytes and bit rates are
// internal/humanize's.
func TestHumanRate(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{humanRate(0.25), "0.2"},
		{humanRate(99.94), "99.9"},
		{humanRate(100), "100"},
		{humanRate(12345.6), "12346"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestTable(t *testing.T) {
	tb := newTable(column{title: "NAME"}, column{title: "N", right: true}, column{title: "LAST"})
	tb.add("a", "1", "")
	tb.add("longer", "1000", "x")
	var b strings.Builder
	tb.write(&b, true)
	want := "NAME      N LAST\na         1 -\nlonger 1000 x\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}
