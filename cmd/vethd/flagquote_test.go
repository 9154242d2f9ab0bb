package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestUsageErrorsEscapeControlCharacters: a flag or value holding an escape
// sequence is printed escaped, never raw to the terminal or the journal.
func TestUsageErrorsEscapeControlCharacters(t *testing.T) {
	for _, args := range [][]string{
		{"--\x1b[2Jx"},
		{"-v", "veth0", "stray\x1b]0;pwned\x07"},
		{"--instance", "a", "--all"},
		{"-\x00"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
		out := stderr.String()
		if strings.ContainsFunc(strings.TrimSuffix(out, "\n"), func(r rune) bool { return r != '\n' && (r < 0x20 || r == 0x7f) }) {
			t.Errorf("%q: stderr %q holds a control character", args, out)
		}
		if !strings.Contains(out, "vethd: ") {
			t.Errorf("%q: stderr %q lacks the error", args, out)
		}
	}
	var stdout, stderr bytes.Buffer
	run([]string{"--\x1b[2Jx"}, &stdout, &stderr)
	if !strings.Contains(stderr.String(), `\x1b[2Jx`) {
		t.Errorf("stderr %q: want the flag shown escaped as \\x1b[2Jx", stderr.String())
	}
}

func TestEscapeNonPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain -x é": "plain -x é",
		"a\x1b[2J":   `a\x1b[2J`,
		"a\xffb":     `a\xffb`,
		"a\u200bb":   `a\u200bb`,
		"a\ufffdb":   "a\ufffdb",
		"a\x00":      `a\x00`,
	} {
		if got := escapeNonPrintable(in); got != want {
			t.Errorf("escapeNonPrintable(%q) = %q, want %q", in, got, want)
		}
	}
}
