package dbusapi

import (
	"regexp"
	"testing"

	sd "github.com/coreos/go-systemd/v22/dbus"
)

func TestEscapeLabel(t *testing.T) {
	tests := []struct{ in, want string }{
		{"veth1", "veth1"},
		{"1a", "_31a"},
		{"my-br.0", "my_2dbr_2e0"},
		{"", "_"},
		{"_", "_5f"},
		{"a_b", "a_5fb"},
		{"eth0", "eth0"},
		{"0", "_30"},
		{"Br9", "Br9"},
		{"a b/c", "a_20b_2fc"},
		{"\xff\x00", "_ff_00"},
	}
	for _, tt := range tests {
		if got := EscapeLabel(tt.in); got != tt.want {
			t.Errorf("EscapeLabel(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := UnescapeLabel(tt.want); got != tt.in {
			t.Errorf("UnescapeLabel(%q) = %q, want %q", tt.want, got, tt.in)
		}
	}
}

func TestUnescapeLabelInvalid(t *testing.T) {
	// Like systemd's bus_label_unescape: a '_' that starts no valid escape
	// is kept.
	tests := []struct{ in, want string }{
		{"a_", "a_"},
		{"a_4", "a_4"},
		{"a_zz", "a_zz"},
		{"_2D", "-"},
	}
	for _, tt := range tests {
		if got := UnescapeLabel(tt.in); got != tt.want {
			t.Errorf("UnescapeLabel(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscapeLabelRoundTrip(t *testing.T) {
	// Every byte, alone, first and not first.
	element := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	for c := 0; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), string([]byte{byte(c), 'x'}), string([]byte{'x', byte(c)})} {
			e := EscapeLabel(s)
			if !element.MatchString(e) {
				t.Errorf("EscapeLabel(%q) = %q: not a valid bus name / path element", s, e)
			}
			if u := UnescapeLabel(e); u != s {
				t.Errorf("UnescapeLabel(EscapeLabel(%q)) = %q", s, u)
			}
		}
	}
}

func TestNames(t *testing.T) {
	if got, want := BusName("my-br.0"), "io.github.vethd.Bridge1.my_2dbr_2e0"; got != want {
		t.Errorf("BusName = %q, want %q", got, want)
	}
	p := ObjectPath("1a")
	if got, want := string(p), "/io/github/vethd/Bridge1/_31a"; got != want {
		t.Errorf("ObjectPath = %q, want %q", got, want)
	}
	if !p.IsValid() {
		t.Errorf("ObjectPath %q is not valid", p)
	}
}

// TestEscapeLabelIsSystemds: systemd names a unit's object
// /org/freedesktop/systemd1/unit/ + bus_label_escape(unit name), the same
// escaping as a bridge's label, so vethctl's fake systemd uses EscapeLabel
// for unit paths. go-systemd's PathBusEscape implements it too, except for
// bytes below 0x10, which it writes with one hex digit ("_1") where
// systemd writes two ("_01"); no unit name holds one.
func TestEscapeLabelIsSystemds(t *testing.T) {
	for name, want := range map[string]string{
		"vethd@veth1.service":      "vethd_40veth1_2eservice",
		"vethd.service":            "vethd_2eservice",
		"dbus.service":             "dbus_2eservice",
		"-.mount":                  "_2d_2emount",
		"systemd-networkd.service": "systemd_2dnetworkd_2eservice",
		"":                         "_",
		"\x01":                     "_01", // systemd's hexchar pair; go-systemd: "_1"
	} {
		if got := EscapeLabel(name); got != want {
			t.Errorf("EscapeLabel(%q) = %q, want %q", name, got, want)
		}
	}
	for c := 0x10; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), string([]byte{byte(c), 'x'}), string([]byte{'x', byte(c)})} {
			if got, want := EscapeLabel(s), sd.PathBusEscape(s); got != want {
				t.Errorf("EscapeLabel(%q) = %q, go-systemd's PathBusEscape %q", s, got, want)
			}
		}
	}
}
