package ifname

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// refValid is Validate's rule written plainly, rule by rule.
func refValid(name string) bool {
	if len(name) < 1 || len(name) > MaxLen || name == "." || name == ".." || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '/' || r == ':' || r == '%' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// FuzzValidate: Validate accepts exactly what refValid does, and its
// errors (which reach logs, LastError and terminals) are one line of
// printable text whatever the name holds.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"eth0", "", ".", "..", "a/b", "veth%d", "x y", "0123456789abcdef", "ëth0", "e\x1b[2J", "\xff", "a\u202eb", "a\u00a0b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := Validate(name)
		if got, want := err == nil, refValid(name); got != want {
			t.Fatalf("Validate(%q) = %v, reference says valid = %v", name, err, want)
		}
		if err == nil {
			return
		}
		if msg := err.Error(); !utf8.ValidString(msg) || strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) {
			t.Fatalf("Validate(%q): error %q is not printable text", name, msg)
		}
	})
}
