// Package ifname holds the kernel's rules for network interface names. It
// is a leaf: pkg/config, pkg/bridge and vethctl share it without linking
// netlink or the data path.
package ifname

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest interface name the kernel takes (IFNAMSIZ - 1).
const MaxLen = 15

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid interface name")

// Validate checks name against the kernel's rules for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or white
// space; and no '%', which would make the kernel pick a name itself
// (veth%d → veth0, veth1, …). vethd is stricter than the kernel, which
// takes any other byte: a name must also be valid UTF-8 of printable
// characters (unicode.IsPrint), so that no control character, escape
// sequence or invisible character reaches a terminal or a log line.
func Validate(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(name) > MaxLen:
		return fmt.Errorf("%w %q: %d bytes, at most %d allowed", ErrInvalid, name, len(name), MaxLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w %q", ErrInvalid, name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r%"):
		return fmt.Errorf("%w %q: '/', ':', '%%' and white space are not allowed", ErrInvalid, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalid, name)
	case strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }):
		return fmt.Errorf("%w %q: control and other non-printable characters are not allowed", ErrInvalid, name)
	}
	return nil
}
