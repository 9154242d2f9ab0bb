// Package ifname holds the kernel's rules for network interface names. It
// is a leaf: pkg/config, pkg/bridge and vethctl share it without linking
// netlink or the data path.
package ifname

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLen is the longest interface name the kernel takes (IFNAMSIZ - 1).
const MaxLen = 15

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid interface name")

// Validate checks name against the kernel's rules for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or white
// space; and no '%', which would make the kernel pick a name itself
// (veth%d → veth0, veth1, …).
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
	}
	return nil
}
