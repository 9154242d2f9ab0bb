package macaddr

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// printableLine reports whether s is one line of printable text (what an
// error must be, since it reaches logs, LastError and terminals).
func printableLine(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// FuzzParse: whatever Parse accepts is a usable policy that reads back
// the same from its String form; an explicit address is six bytes,
// unicast and not all-zero, and is net.ParseMAC's reading of the input.
// Errors wrap ErrInvalid and are printable.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "persistent", "RANDOM", " random ", "02:00:5e:10:00:01", "02-00-5E-10-00-01", "00:11:22:33:44:55",
		"01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "0200.5e10.0001", "02:00:5e:10:00:01:02:03", "02:00:5e:10:00:0\x1b", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, not ErrInvalid", s, err)
			}
			if !printableLine(err.Error()) {
				t.Fatalf("Parse(%q): error %q is not printable text", s, err)
			}
			return
		}
		switch p.Kind {
		case Persistent, Random:
			if p.Addr != nil {
				t.Fatalf("Parse(%q) = %+v: an address with kind %v", s, p, p.Kind)
			}
		case Explicit:
			hw, perr := net.ParseMAC(s)
			if perr != nil || !bytes.Equal(hw, p.Addr) {
				t.Fatalf("Parse(%q) = %s, net.ParseMAC: %s %v", s, p.Addr, hw, perr)
			}
			if len(p.Addr) != 6 || p.Addr[0]&0x01 != 0 || bytes.Equal(p.Addr, make([]byte, 6)) {
				t.Fatalf("Parse(%q) accepted %s", s, p.Addr)
			}
			if (p.Warning != "") != (p.Addr[0]&0x02 == 0) {
				t.Fatalf("Parse(%q): warning %q for %s", s, p.Warning, p.Addr)
			}
		default:
			t.Fatalf("Parse(%q): kind %v", s, p.Kind)
		}
		q, err := Parse(p.String())
		if err != nil || q.Kind != p.Kind || !bytes.Equal(q.Addr, p.Addr) {
			t.Fatalf("Parse(%q) = %+v, but Parse(%q) = %+v, %v", s, p, p.String(), q, err)
		}
	})
}

// FuzzReadMachineID: ReadMachineID takes any file content; what it
// accepts is 32 hex digits (surrounded by white space at most) that are
// not all zeros, decoded; what it refuses it refuses without quoting the
// file's content (which may be any file a symlink points at).
func FuzzReadMachineID(f *testing.F) {
	for _, s := range []string{"0123456789abcdef0123456789abcdef\n", "0123456789ABCDEF0123456789ABCDEF", "00000000000000000000000000000000\n",
		"", "\n", "0123456789abcdef0123456789abcde\n", "0123456789abcdef0123456789abcdef0\n", "root:*:20228:0:99999:7:::\n", "uninitialized\n",
		" 0123456789abcdef0123456789abcdef \n\n", strings.Repeat("a", 5000)} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "machine-id")
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		id, err := ReadMachineID(path)
		trimmed := strings.TrimSpace(string(content))
		if err == nil {
			if len(id) != 16 || bytes.Equal(id, make([]byte, 16)) || len(trimmed) != 32 || !strings.EqualFold(trimmed, hexString(id)) {
				t.Fatalf("ReadMachineID(%q) = %x", content, id)
			}
			return
		}
		if len(content) <= maxMachineIDSize && len(trimmed) == 32 && isHex(trimmed) && strings.Trim(trimmed, "0") != "" {
			t.Fatalf("ReadMachineID(%q) refused a machine ID: %v", content, err)
		}
		msg := err.Error()
		if !printableLine(msg) {
			t.Fatalf("ReadMachineID(%q): error %q is not printable text", content, msg)
		}
		// The content may appear only where the message's own text has it.
		if len(trimmed) >= 3 && strings.Contains(strings.ReplaceAll(msg, path, ""), trimmed) && !strings.Contains(machineIDMessages, trimmed) {
			t.Fatalf("ReadMachineID(%q): error %q quotes the file", content, msg)
		}
	})
}

// machineIDMessages is the fixed text of ReadMachineID's errors.
const machineIDMessages = "read machine id (needed for a persistent MAC; use --mac random or an address instead): " +
	"does not hold 32 hex digits is all zeros (uninitialized) is larger than 4096 bytes (a machine ID is 33)"

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&0xf])
	}
	return s.String()
}

func isHex(s string) bool {
	return strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}
