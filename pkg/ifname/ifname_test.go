package ifname

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"veth0", "eth0", "a", strings.Repeat("x", MaxLen), "veth1.100", "wlan-0_x"} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", strings.Repeat("x", MaxLen+1), "eth/0", "eth:0", "eth 0", "eth\t0", "veth%d", "a\nb"} {
		err := Validate(bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) = %v, want an error wrapping ErrInvalid", bad, err)
		}
	}
}
