package main

import (
	"bytes"
	"strings"
	"testing"
)

// noParent names no interface on this machine (nor in any test's
// namespace).
const noParent = "vdtest-none0"

// TestDataPathFlag: --data-path takes relay or kernel, a bad value or
// kernel without --kind=veth exits 78 naming the flag, it is a seed flag
// (not with --instance or --all), and --help shows it.
func TestDataPathFlag(t *testing.T) {
	if o, err := parseFlags([]string{"--data-path=kernel", "--kind", "veth"}, &bytes.Buffer{}); err != nil || o.dataPath != "kernel" || o.kind != "veth" {
		t.Errorf("--data-path=kernel --kind veth: %+v, %v", o, err)
	}
	const needsVeth = "--data-path: kernel needs --kind=veth (a TAP's frames pass through vethd)"
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data-path=xdp"}, exitConfig, `--data-path: "xdp" is not relay or kernel`},
		{[]string{"--data-path=kernel"}, exitConfig, needsVeth},
		{[]string{"--data-path", "KERNEL", "--kind=tap"}, exitConfig, needsVeth},
		{[]string{"--kind=macvlan", "--data-path=kernel"}, exitConfig, `--kind: "macvlan" is not tap or veth`},
		{[]string{"--instance", "veth1", "--data-path=kernel"}, exitUsage, "-data-path cannot be combined"},
		{[]string{"--all", "--data-path=relay"}, exitUsage, "-data-path cannot be combined"},
	} {
		args := tc.args
		if args[0] != "--instance" && args[0] != "--all" {
			// A parent that does not exist: should a check fail to
			// refuse the flags, the seed bridge cannot start (exit 1)
			// rather than attach to this machine's eth0.
			args = append([]string{"-v", "vdtest0", "-e", noParent}, args...)
		}
		code, _, stderr := runCode(t, args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("vethd %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	if code, out, _ := runCode(t, "--help"); code != 0 || !strings.Contains(out, "--data-path relay|kernel") {
		t.Errorf("--help (exit %d) does not show --data-path:\n%s", code, out)
	}
}
