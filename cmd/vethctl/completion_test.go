package main

import (
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
		`[ "$3" = list ] && [ "$4" = --no-legend ] && printf 'onbus - running eth0 02:00:00:00:00:01 on\nveth1 vethd@veth1.service running eth0 22:43:60:c3:5b:4c on\n'` + "\n"
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
		{[]string{fake, ""}, []string{"add", "help", "list", "mac", "reload", "remove", "reset", "show", "stats", "watch"}},
		{[]string{fake, "re"}, []string{"reload", "remove", "reset"}},
		{[]string{fake, "--no"}, []string{"--no-legend"}},
		{[]string{fake, "--json", "sh"}, []string{"show"}},
		{[]string{fake, "add", "veth2", "--"}, []string{"--carrier", "--config-dir", "--force", "--help", "--json", "--kind",
			"--mac", "--machine-id-file", "--mtu", "--netns", "--no-block", "--no-legend", "--now", "--parent", "--timeout", "--version"}},
		{[]string{fake, "add", "veth2", "--kind", "v"}, []string{"veth"}},
		{[]string{fake, "add", "veth2", "--mac", ""}, []string{"persistent", "random"}},
		{[]string{fake, "add", "veth2", "--carrier", "f"}, []string{"follow"}},
		{[]string{fake, "add", "veth2", "--mac", "=", "r"}, []string{"random"}}, // "--mac=r", split at "="
		{[]string{fake, "--config-dir", dir, "show", ""}, []string{"filed", "onbus", "veth1"}},
		{[]string{fake, "--config-dir", dir, "remove", "--keep-config", "f"}, []string{"filed"}},
		{[]string{fake, "--config-dir", dir, "show", "veth1", ""}, nil},
		{[]string{fake, "--config-dir", dir, "stats", "veth1", ""}, []string{"filed", "onbus", "veth1"}},
		{[]string{fake, "--config-dir", dir, "stats", "--interval", ""}, []string{"1s", "2s", "500ms", "5s"}},
		{[]string{fake, "--config-dir", dir, "add", ""}, nil},
	} {
		if got := complete(tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.words[1:], got, tc.want)
		}
	}

	// --parent offers the host's interfaces.
	if _, err := os.Stat("/sys/class/net/lo"); err == nil {
		if got := complete(fake, "add", "veth2", "--parent", "l"); !slices.Contains(got, "lo") {
			t.Errorf("--parent l: got %q, want lo among them", got)
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
