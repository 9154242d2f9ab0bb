package dbusapi

import (
	"regexp"
	"testing"
)

// labelRE is what an escaped label may be: an element of a bus name and of
// an object path that does not start with a digit.
var labelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// FuzzEscapeLabel: EscapeLabel makes any string (interface names come
// from files, flags and the bus) into a valid bus-name and object-path
// element, and UnescapeLabel gives it back, so two names never share a bus
// name or an object.
func FuzzEscapeLabel(f *testing.F) {
	for _, s := range []string{"veth1", "", "_", "1a", "my-br.0", "a_b", "_5f", "ëth0", "\x00", "\xff", "a/b", "veth1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapeLabel(s)
		if !labelRE.MatchString(e) {
			t.Fatalf("EscapeLabel(%q) = %q, not a label", s, e)
		}
		if u := UnescapeLabel(e); u != s {
			t.Fatalf("UnescapeLabel(EscapeLabel(%q)) = %q", s, u)
		}
		if p := ObjectPath(s); !p.IsValid() {
			t.Fatalf("ObjectPath(%q) = %q, not a valid object path", s, p)
		}
		if len(s) <= 15 {
			// A bus name is at most 255 bytes; every interface name fits.
			if n := BusName(s); len(n) > 255 {
				t.Fatalf("BusName(%q) = %q: %d bytes", s, n, len(n))
			}
		}
	})
}
