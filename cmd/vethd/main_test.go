package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vethd/vethd/internal/service"
	"golang.org/x/sys/unix"
)

func TestParseFlagsDefaultsAndForms(t *testing.T) {
	o, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.name != "veth0" || o.parent != "eth0" || o.mac != "persistent" || o.arpIsolation != "yes" {
		t.Fatalf("defaults = %+v, want veth0 on eth0, persistent MAC, ARP isolation", o)
	}
	if o, err := parseFlags([]string{"--source-routing=no", "--route-table", "100", "--route-priority=5", "--kind=veth", "--netns", "ctr"}, &bytes.Buffer{}); err != nil ||
		o.srcRouting != "no" || o.routeTable != "100" || o.routePriority != "5" || o.kind != "veth" || o.netns != "ctr" {
		t.Errorf("routing and kind flags: %+v, %v", o, err)
	}
	for _, args := range [][]string{{"--arp-isolation=no"}, {"--arp-isolation", "no"}, {"-arp-isolation=no"}} {
		if o, err := parseFlags(args, &bytes.Buffer{}); err != nil || o.arpIsolation != "no" {
			t.Errorf("%v parsed as %+v, %v", args, o, err)
		}
	}
	for _, args := range [][]string{
		{"-v", "veth1", "-e", "wan0", "-m", "random"},
		{"--name", "veth1", "--parent", "wan0", "--mac", "random"},
		{"--name=veth1", "-parent=wan0", "-m=random"},
	} {
		o, err := parseFlags(args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if o.name != "veth1" || o.parent != "wan0" || o.mac != "random" {
			t.Fatalf("%v parsed as %+v", args, o)
		}
	}
}

// runCode runs the command line and returns its exit code and stderr.
func runCode(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunUsageAndConfigErrors(t *testing.T) {
	mid := filepath.Join(t.TempDir(), "machine-id")
	os.WriteFile(mid, []byte("3d1219c7c4c5404aaa1d2a6d2adfdaa4\n"), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--bogus"}, exitUsage, "bogus"},
		{[]string{"veth1"}, exitUsage, `unexpected argument "veth1"`},
		{[]string{"-v", "averyveryverylongname"}, exitConfig, "at most 15"},
		{[]string{"-v", "veth/1"}, exitConfig, "not allowed"},
		{[]string{"-v", "veth%d"}, exitConfig, "not allowed"},
		{[]string{"-e", ""}, exitConfig, "-e: invalid interface name"},
		{[]string{"-m", "01:00:5e:00:00:01"}, exitConfig, "multicast"},
		{[]string{"-m", "00:00:00:00:00:00"}, exitConfig, "all-zero"},
		{[]string{"-m", "02:00:00"}, exitConfig, "six hex bytes"},
		{[]string{"--machine-id-file", filepath.Join(t.TempDir(), "none")}, exitConfig, "machine id"},
		{[]string{"--arp-isolation=maybe"}, exitConfig, `--arp-isolation: "maybe" is not yes or no`},
		{[]string{"--arp-isolation"}, exitUsage, "arp-isolation"},
		{[]string{"--source-routing=maybe"}, exitConfig, `--source-routing: "maybe" is not yes or no`},
		{[]string{"--route-table=254"}, exitConfig, "--route-table: 254 is one of the kernel's own tables"},
		{[]string{"--route-table=0"}, exitConfig, "--route-table: 0 is out of range"},
		{[]string{"--route-priority=32766"}, exitConfig, "--route-priority: 32766 is out of range"},
		{[]string{"--route-priority=x"}, exitConfig, `--route-priority: "x" is not a number`},
		{[]string{"--kind=macvlan"}, exitConfig, `--kind: "macvlan" is not tap or veth`},
		{[]string{"--netns=a/b"}, exitConfig, `--netns: "a/b" is neither a name`},
		{[]string{"--instance", "veth1", "--route-table=5"}, exitUsage, "-route-table cannot be combined"},
		{[]string{"--all", "--netns=x"}, exitUsage, "-netns cannot be combined"},
	}
	for _, tc := range cases {
		code, _, stderr := runCode(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("vethd %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

func TestRunHelpAndVersion(t *testing.T) {
	code, out, _ := runCode(t, "--help")
	if code != 0 || !strings.Contains(out, "vethd [-v veth-device] [-e eth-device] [-m mac-address]") {
		t.Fatalf("--help: exit %d, output %q", code, out)
	}
	for _, f := range []string{"--name", "--parent", "--mac", "--arp-isolation", "--source-routing", "--route-table", "--route-priority", "--kind", "--netns", "--version", "--machine-id-file", "--instance", "--all", "--config-dir"} {
		if !strings.Contains(out, f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
	code, out, _ = runCode(t, "--version")
	if code != 0 || out != "vethd "+version+"\n" {
		t.Fatalf("--version: exit %d, output %q", code, out)
	}
}

func TestServiceModeFlags(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "veth1.conf"), []byte("[Bridge]\nParent=eth0\nCarrier=maybe\n"), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--instance", "veth1", "--all"}, exitUsage, "exclude each other"},
		{[]string{"--instance", "veth1", "-e", "eth1"}, exitUsage, "-e cannot be combined"},
		{[]string{"--all", "--mac", "random"}, exitUsage, "-mac cannot be combined"},
		{[]string{"--instance", "veth1", "--arp-isolation=no"}, exitUsage, "-arp-isolation cannot be combined"},
		{[]string{"--instance", "veth/1"}, exitConfig, "--instance: "},
		{[]string{"--instance", "veth1", "--config-dir", dir}, exitConfig, filepath.Join(dir, "veth1.conf") + ":3: Carrier="},
		{[]string{"--instance", "veth9", "--config-dir", dir}, exitConfig, filepath.Join(dir, "veth9.conf")},
		{[]string{"--all", "--config-dir", dir}, exitConfig, filepath.Join(dir, "veth1.conf") + ":3: Carrier="},
	}
	for _, tc := range cases {
		code, _, stderr := runCode(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("vethd %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestEmptyValues: an option given an empty value is a usage error, not
// its default. parseFlags only: were it to fall back, run would start the
// seed's bridge (-v veth0 -e eth0) on this machine's own eth0.
func TestEmptyValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--instance", ""}, "--instance is empty (an unset variable?)"},
		{[]string{"--instance="}, "--instance is empty"},
		{[]string{"--all", "--config-dir", ""}, "--config-dir is empty"},
		{[]string{"--machine-id-file="}, "--machine-id-file is empty"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags %q: %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseFlags([]string{"--instance", "veth1", "--config-dir", "/etc/vethd"}, io.Discard); err != nil {
		t.Errorf("non-empty values: %v", err)
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{nil, exitOK},
		{&service.Error{Kind: service.KindConfig, Err: errors.New("x.conf:3: MTU=")}, exitConfig},
		{&service.Error{Kind: service.KindPermission, Err: unix.EPERM}, exitNoPerm},
		{&service.Error{Kind: service.KindFailure, Err: unix.EPERM}, exitFailure},
		{errors.New("other"), exitFailure},
	} {
		if got := exitCode(c.err); got != c.code {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.code)
		}
	}
}
