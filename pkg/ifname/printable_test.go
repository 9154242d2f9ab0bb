package ifname

import (
	"errors"
	"strings"
	"testing"
)

// TestValidateRefusesNonPrintable: the kernel takes control characters,
// escape sequences and other non-printable bytes in a name; vethd does not,
// so that no name can rewrite a terminal or a log line.
func TestValidateRefusesNonPrintable(t *testing.T) {
	for _, bad := range []string{"veth\x1b[31m", "veth\x00", "a\x7fb", "v\x07", "v\xff", "v\u200b", "v\u00a0x"} {
		err := Validate(bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) = %v, want an error wrapping ErrInvalid", bad, err)
			continue
		}
		if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("Validate(%q): error %q holds a control character", bad, err)
		}
	}
	for _, ok := range []string{"vethé", "br-lan", "v_1.2"} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
}
