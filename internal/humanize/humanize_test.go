package humanize

import (
	"math"
	"testing"
)

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 999: "999 B", 1000: "1.0 kB", 1500: "1.5 kB", 12_345_678: "12.3 MB",
		999_949: "999.9 kB", 999_950: "1.0 MB", 999_999: "1.0 MB", 1_000_000: "1.0 MB",
		1 << 62: "4.6 EB", math.MaxUint64: "18.4 EB",
	} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestRates(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0 bit/s", 69.8: "558 bit/s", 1_542_500: "12.3 Mbit/s",
		124.9: "999 bit/s", 124.95: "1.0 kbit/s", // 999.6 bit/s rounds up: not "1000 bit/s"
		124_999: "1.0 Mbit/s", -1: "0 bit/s", math.NaN(): "0 bit/s",
	} {
		if got := BitRate(v); got != want {
			t.Errorf("BitRate(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestOnOffYesNoSum(t *testing.T) {
	if OnOff(true) != "on" || OnOff(false) != "off" || YesNo(true) != "yes" || YesNo(false) != "no" {
		t.Error("OnOff/YesNo wrong")
	}
	if got := Sum(map[string]uint64{"a": 1, "b": 2, "c": 0}); got != 3 {
		t.Errorf("Sum = %d, want 3", got)
	}
	if Sum(nil) != 0 {
		t.Error("Sum(nil) != 0")
	}
}
