package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const bashCompletion = "../../dist/completions/vethctl.bash"

// TestBashCompletion sources the bash completion and checks COMPREPLY for
// a few command lines. A fake vethctl answers "list --no-legend".
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skipf("bash not installed: %v", err)
	}
	if out, err := exec.Command(bash, "-n", bashCompletion).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	tmp := t.TempDir()
	fake := filepath.Join(tmp, "vethctl")
	script := "#!/bin/sh\n" +
		`[ "$3" = list ] && [ "$4" = --no-legend ] && printf 'onbus - running eth0 02:00:00:00:00:01 on\nveth1 vethd@veth1.service running eth0 22:43:60:c3:5b:4c on\n'` + "\n" +
		`[ "$3" = __complete ] && [ "$4" = parents ] && printf 'enp3s0\neth0\n'` + "\n" +
		"exit 0\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"veth1.conf", "filed.conf", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	complete := func(words ...string) []string {
		t.Helper()
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
		src := "source " + bashCompletion + "\n" +
			"COMP_WORDS=(" + strings.Join(quoted, " ") + ")\n" +
			"COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n" +
			"_vethctl\n" +
			`printf '%s\n' "${COMPREPLY[@]}"` + "\n"
		out, err := exec.Command(bash, "--norc", "--noprofile", "-c", src).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", words, err, out)
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		return got
	}

	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{fake, ""}, []string{"add", "help", "list", "mac", "metrics", "reload", "remove", "reset", "show", "stats",
			"status", "watch"}},
		{[]string{fake, "re"}, []string{"reload", "remove", "reset"}},
		{[]string{fake, "--no"}, []string{"--no-legend", "--no-pager"}},
		{[]string{fake, "-"}, []string{"--config-dir", "--help", "--json", "--machine-id-file", "--no-legend", "--no-pager",
			"--version", "-j"}},
		{[]string{fake, "--json", "sh"}, []string{"show"}},
		{[]string{fake, "add", "veth2", "--"}, []string{"--carrier", "--config-dir", "--data-path", "--force", "--help", "--json", "--kind",
			"--mac", "--machine-id-file", "--mtu", "--netns", "--no-block", "--no-legend", "--no-pager", "--now", "--parent", "--timeout",
			"--version"}},
		{[]string{fake, "add", "veth2", "--kind", "v"}, []string{"veth"}},
		{[]string{fake, "add", "veth2", "--data-path", ""}, []string{"kernel", "relay"}},
		{[]string{fake, "add", "veth2", "--mac", ""}, []string{"persistent", "random"}},
		{[]string{fake, "add", "veth2", "--carrier", "f"}, []string{"follow"}},
		{[]string{fake, "add", "veth2", "--mac", "=", "r"}, []string{"random"}}, // "--mac=r", split at "="
		{[]string{fake, "--config-dir", dir, "show", ""}, []string{"filed", "onbus", "veth1"}},
		{[]string{fake, "--config-dir", dir, "remove", "--keep-config", "f"}, []string{"filed"}},
		{[]string{fake, "--config-dir", dir, "show", "veth1", ""}, []string{"filed", "onbus", "veth1"}},
		{[]string{fake, "--config-dir", dir, "status", "v"}, []string{"veth1"}},
		{[]string{fake, "--config-dir", dir, "mac", "veth1", ""}, nil},
		{[]string{fake, "--config-dir", dir, "metrics", "--format", ""}, []string{"openmetrics", "prometheus"}},
		{[]string{fake, "--config-dir", dir, "metrics", "--format", "prometheus", "f"}, []string{"filed"}},
		{[]string{fake, "--config-dir", dir, "reload", "--timeout", "10s", "f"}, []string{"filed"}},
		// --parent: what "vethctl __complete parents" says.
		{[]string{fake, "--config-dir", dir, "add", "veth2", "--parent", ""}, []string{"enp3s0", "eth0"}},
		{[]string{fake, "add", "veth2", "--parent", "=", "en"}, []string{"enp3s0"}},
		{[]string{fake, "--config-dir", dir, "stats", "veth1", ""}, []string{"filed", "onbus", "veth1"}},
		{[]string{fake, "--config-dir", dir, "stats", "--interval", ""}, []string{"1s", "2s", "500ms", "5s"}},
		{[]string{fake, "--config-dir", dir, "add", ""}, nil},
	} {
		if got := complete(tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.words[1:], got, tc.want)
		}
	}

	// A vethctl without "__complete parents": the shell reads /sys
	// itself, Ethernet links only (never lo).
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/class/net/lo"); err == nil {
		if got := complete(fake, "add", "veth2", "--parent", ""); slices.Contains(got, "lo") {
			t.Errorf("--parent: got %q, lo among them", got)
		}
	}
}

// TestZshCompletion checks the zsh completion's syntax where zsh is
// installed.
func TestZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skipf("zsh not installed: %v", err)
	}
	if out, err := exec.Command(zsh, "-n", "../../dist/completions/_vethctl").CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
}

// TestCompleteParents: "__complete parents" offers the Ethernet links of a
// fake /sys/class/net that are not vethd's own.
func TestCompleteParents(t *testing.T) {
	h := newHarness(t)
	sys := t.TempDir()
	for name, typ := range map[string]string{
		"lo": "772", "eth0": "1", "enp3s0": "1", "br0": "1", "wg0": "65534", "tun0": "65534",
		"veth1":    "1", // a bridge's TAP (it has a file)
		"vd-veth2": "1", // the peer of a Kind=veth bridge
		"veth2":    "1", // that bridge, on the bus only
		"ip6tnl0":  "769",
	} {
		if err := os.MkdirAll(filepath.Join(sys, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, name, "type"), []byte(typ+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(sys, "notype"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.writeConfig("veth1", eth0Config)
	h.bridges.bridges["veth2"] = running("veth2", "eth0", "02:00:00:00:00:02")
	h.sysClassNet = sys
	h.mustRun(0, "__complete", "parents")
	if got, want := h.stdout.String(), "br0\nenp3s0\neth0\n"; got != want {
		t.Errorf("parents: %q, want %q", got, want)
	}
	// Without a bus, the files still tell vethd's own.
	h.busErr = errors.New("no bus")
	h.mustRun(0, "__complete", "parents")
	if got, want := h.stdout.String(), "br0\nenp3s0\neth0\nveth2\n"; got != want {
		t.Errorf("parents without a bus: %q, want %q", got, want)
	}
	h.busErr = nil
	h.mustRun(0, "__complete", "bridges")
	if got, want := h.stdout.String(), "veth1\nveth2\n"; got != want {
		t.Errorf("bridges: %q, want %q", got, want)
	}
	h.mustRun(2, "__complete", "frobs")
}
