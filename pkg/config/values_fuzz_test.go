package config

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValues runs one string through every value parser (each reads a
// key of NAME.conf and the flag of the same name): none panics; what each
// accepts is in its range and reads back the same from its canonical
// form; every error is one line of printable text, since it reaches the
// log, STATUS and LastError.
func FuzzValues(f *testing.F) {
	for _, s := range []string{"", "inherit", "INHERIT", "68", "67", "1500", "01500", "65535", "65536", "-1", "+100", " 100", "9999999999999999999999",
		"auto", "253", "254", "256", "4294967295", "4294967296", "32765", "32766", "0", "1",
		"tap", "VETH", "relay", "KERNEL", "follow", "On", "yes", "no", "t", "off", "2",
		"ns1", "/run/netns/ns1", "/", ".", "..", "a/b", "/proc/1/ns/net/../../self/ns/net", "a b", "x\x1b[2J", "\xff", strings.Repeat("n", 256)} {
		f.Add(s)
	}
	printable := func(t *testing.T, what, v string, err error) {
		t.Helper()
		if msg := err.Error(); !utf8.ValidString(msg) || strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) {
			t.Fatalf("%s(%q): error %q is not printable text", what, v, msg)
		}
	}
	f.Fuzz(func(t *testing.T, v string) {
		if n, err := ParseMTU(v); err != nil {
			printable(t, "ParseMTU", v, err)
		} else if n == 0 {
			if !strings.EqualFold(v, "inherit") {
				t.Fatalf("ParseMTU(%q) = 0", v)
			}
		} else if n < 68 || n > 65535 {
			t.Fatalf("ParseMTU(%q) = %d, out of range", v, n)
		} else if m, err := ParseMTU(strconv.Itoa(n)); err != nil || m != n {
			t.Fatalf("ParseMTU(%q) = %d, but ParseMTU(%d) = %d, %v", v, n, n, m, err)
		}

		if n, err := ParseRouteTable(v); err != nil {
			printable(t, "ParseRouteTable", v, err)
		} else if n == 0 {
			if !strings.EqualFold(v, "auto") {
				t.Fatalf("ParseRouteTable(%q) = 0", v)
			}
		} else if n < 1 || n > 1<<32-1 || (n >= 253 && n <= 255) {
			t.Fatalf("ParseRouteTable(%q) = %d", v, n)
		} else if m, err := ParseRouteTable(strconv.Itoa(n)); err != nil || m != n {
			t.Fatalf("ParseRouteTable(%q) = %d, but ParseRouteTable(%d) = %d, %v", v, n, n, m, err)
		}

		if n, err := ParseRoutePriority(v); err != nil {
			printable(t, "ParseRoutePriority", v, err)
		} else if n < 1 || n > 32765 {
			t.Fatalf("ParseRoutePriority(%q) = %d", v, n)
		} else if m, err := ParseRoutePriority(strconv.Itoa(n)); err != nil || m != n {
			t.Fatalf("ParseRoutePriority(%q) = %d, but ParseRoutePriority(%d) = %d, %v", v, n, n, m, err)
		}

		if k, err := ParseKind(v); err != nil {
			printable(t, "ParseKind", v, err)
		} else if (k != KindTAP && k != KindVeth) || !strings.EqualFold(v, string(k)) {
			t.Fatalf("ParseKind(%q) = %q", v, k)
		}

		if dp, err := ParseDataPath(v); err != nil {
			printable(t, "ParseDataPath", v, err)
		} else if (dp != DataPathRelay && dp != DataPathKernel) || !strings.EqualFold(v, string(dp)) {
			t.Fatalf("ParseDataPath(%q) = %q", v, dp)
		} else if err := CheckDataPath(KindVeth, dp); err != nil {
			t.Fatalf("CheckDataPath(veth, %q) = %v", dp, err)
		}

		if c, err := ParseCarrier(v); err != nil {
			printable(t, "ParseCarrier", v, err)
		} else if (c != CarrierFollow && c != CarrierOn) || !strings.EqualFold(v, string(c)) {
			t.Fatalf("ParseCarrier(%q) = %q", v, c)
		}

		if b, err := ParseBoolean(v); err != nil {
			printable(t, "ParseBoolean", v, err)
		} else {
			yes := map[string]bool{"1": true, "yes": true, "y": true, "true": true, "t": true, "on": true}
			no := map[string]bool{"0": true, "no": true, "n": true, "false": true, "f": true, "off": true}
			if l := strings.ToLower(v); (b && !yes[l]) || (!b && !no[l]) {
				t.Fatalf("ParseBoolean(%q) = %v", v, b)
			}
		}

		if p, err := NamespacePath(v); err != nil {
			printable(t, "NamespacePath", v, err)
		} else if v == "" {
			if p != "" {
				t.Fatalf("NamespacePath(\"\") = %q", p)
			}
		} else if p == "/" {
			t.Fatalf("NamespacePath(%q) = \"/\", a directory", v)
		} else if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			t.Fatalf("NamespacePath(%q) = %q, not a clean absolute path", v, p)
		} else if !strings.HasPrefix(v, "/") && (filepath.Dir(p) != NetnsDir || filepath.Base(p) != v) {
			t.Fatalf("NamespacePath(%q) = %q, not in %s", v, p, NetnsDir)
		}

		if err := Validate(v); err != nil {
			printable(t, "Validate", v, err)
		}
	})
}
