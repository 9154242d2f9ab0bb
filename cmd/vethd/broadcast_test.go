package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBroadcastLimitFlag: --broadcast-limit takes a number or off, a bad
// value exits 78 naming the flag, it is a seed flag (not with --instance),
// and --help shows it.
func TestBroadcastLimitFlag(t *testing.T) {
	if o, err := parseFlags([]string{"--broadcast-limit=off"}, &bytes.Buffer{}); err != nil || o.bcastLimit != "off" {
		t.Errorf("--broadcast-limit=off: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--broadcast-limit=0"}, exitConfig, "--broadcast-limit: 0 is out of range: a broadcast limit is 1 to 1000000"},
		{[]string{"--broadcast-limit=lots"}, exitConfig, `--broadcast-limit: "lots" is not a number of frames a second or "off"`},
		{[]string{"--instance", "veth1", "--broadcast-limit=5"}, exitUsage, "-broadcast-limit cannot be combined"},
	} {
		code, _, stderr := runCode(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("vethd %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	if code, out, _ := runCode(t, "--help"); code != 0 || !strings.Contains(out, "--broadcast-limit N|off") {
		t.Errorf("--help (exit %d) does not show --broadcast-limit:\n%s", code, out)
	}
}
