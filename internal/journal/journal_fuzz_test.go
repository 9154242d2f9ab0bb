package journal

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// printableLine reports whether s is one line of printable text.
func printableLine(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// FuzzQuote: Quote renders any value (error texts, names and paths from
// outside) as one line of printable text that reads back as the value: as
// it is, with no space, '"', '=' or '\\' to end it early, or quoted so
// that strconv.Unquote gives it back. A record whose message and
// attribute hold the value is written as exactly one line.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "eth0", "a b", `a"b`, "k=v", `a\b`, "a\nb", "x\x1b[2J", "\xff", "a\u202eb", "\u00a0", "<3>forged"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		q := Quote(v)
		if !printableLine(q) {
			t.Fatalf("Quote(%q) = %q: not one line of printable text", v, q)
		}
		if q == v {
			if v == "" || strings.ContainsAny(v, " \"=\\") {
				t.Fatalf("Quote(%q) left it as it is", v)
			}
		} else if u, err := strconv.Unquote(q); err != nil || u != v {
			t.Fatalf("Quote(%q) = %s, which reads back as %q, %v", v, q, u, err)
		}
		for _, journal := range []bool{false, true} {
			var b bytes.Buffer
			slog.New(NewHandler(&b, journal, slog.LevelDebug)).Info("m "+v, "k", v)
			line := b.String()
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || !printableLine(strings.TrimSuffix(line, "\n")) {
				t.Fatalf("journal %v: record with %q written as %q", journal, v, line)
			}
		}
	})
}
