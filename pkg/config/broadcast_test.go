package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseBroadcastLimit(t *testing.T) {
	for v, want := range map[string]int{"off": BroadcastLimitOff, "OFF": BroadcastLimitOff, "1": 1, "1000": 1000, "01000": 1000, "1000000": 1000000} {
		if got, err := ParseBroadcastLimit(v); err != nil || got != want {
			t.Errorf("ParseBroadcastLimit(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for v, msg := range map[string]string{
		"":                        `"" is not a number of frames a second or "off"`,
		"no":                      `"no" is not a number of frames a second or "off"`,
		"-1":                      `"-1" is not a number of frames a second or "off"`,
		"1000/s":                  `"1000/s" is not a number of frames a second or "off"`,
		"0":                       `0 is out of range: a broadcast limit is 1 to 1000000 frames a second, or "off"`,
		"1000001":                 `1000001 is out of range: a broadcast limit is 1 to 1000000 frames a second, or "off"`,
		"99999999999999999999999": `99999999999999999999999 is out of range: a broadcast limit is 1 to 1000000 frames a second, or "off"`,
	} {
		if _, err := ParseBroadcastLimit(v); err == nil || err.Error() != msg {
			t.Errorf("ParseBroadcastLimit(%q): %v, want %q", v, err, msg)
		}
	}
}

// TestBroadcastLimitKey: the key is read (a number, off, empty = the
// default), a bad value names its line, and Marshal writes it only when
// set, in a form Parse reads back.
func TestBroadcastLimitKey(t *testing.T) {
	for text, want := range map[string]int{
		"[Bridge]\nParent=eth0\n":                                      0,
		"[Bridge]\nParent=eth0\nBroadcastLimit=250\n":                  250,
		"[Bridge]\nParent=eth0\nBroadcastLimit=off\n":                  BroadcastLimitOff,
		"[Bridge]\nParent=eth0\nBroadcastLimit=off\nBroadcastLimit=\n": 0,
	} {
		b, err := Parse(strings.NewReader(text), "/etc/vethd/veth1.conf", "veth1")
		if err != nil {
			t.Errorf("Parse(%q): %v", text, err)
			continue
		}
		if b.BroadcastLimit != want {
			t.Errorf("Parse(%q): BroadcastLimit %d, want %d", text, b.BroadcastLimit, want)
		}
		out := b.Marshal()
		if (want == 0) == strings.Contains(string(out), "\nBroadcastLimit=") {
			t.Errorf("Marshal of BroadcastLimit %d:\n%s", want, out)
		}
		back, err := Parse(bytes.NewReader(out), "/etc/vethd/veth1.conf", "veth1")
		if err != nil || back.BroadcastLimit != want {
			t.Errorf("Parse(Marshal()) of %d: %d, %v", want, back.BroadcastLimit, err)
		}
	}
	_, err := Parse(strings.NewReader("[Bridge]\nParent=eth0\nBroadcastLimit=lots\n"), "/etc/vethd/veth1.conf", "veth1")
	if want := `/etc/vethd/veth1.conf:3: BroadcastLimit=: "lots" is not a number of frames a second or "off"`; err == nil || err.Error() != want {
		t.Errorf("bad value: %v, want %s", err, want)
	}
}
