package config

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
)

const testPath = "/etc/vethd/veth1.conf"

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	hw, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

// defaults returns what "[Bridge]\nParent=eth0" gives for veth1.
func defaults() Bridge {
	return Bridge{
		Name:       "veth1",
		File:       testPath,
		Parent:     "eth0",
		MACAddress: "persistent",
		MAC:        macaddr.Policy{Kind: macaddr.Persistent},
		MTU:        0,
		Carrier:    CarrierFollow,
	}
}

func TestParseGood(t *testing.T) {
	explicit := macaddr.Policy{Kind: macaddr.Explicit, Addr: mustMAC(t, "02:00:5e:10:00:01")}
	tests := []struct {
		name string
		text string
		edit func(b *Bridge) // applied to defaults()
	}{
		{"minimal", "[Bridge]\nParent=eth0\n", nil},
		{"no final newline", "[Bridge]\nParent=eth0", nil},
		{"all keys, defaults written out",
			"[Bridge]\nParent=eth0\nMACAddress=persistent\nMTU=inherit\nCarrier=follow\nARPIsolation=yes\n", nil},
		{"all keys set",
			"[Bridge]\nParent=enp3s0\nMACAddress=02:00:5e:10:00:01\nMTU=9000\nCarrier=on\nARPIsolation=no\n",
			func(b *Bridge) {
				b.Parent, b.MACAddress, b.MAC, b.MTU, b.Carrier = "enp3s0", "02:00:5e:10:00:01", explicit, 9000, CarrierOn
				b.NoARPIsolation = true
			}},
		{"ARPIsolation as systemd reads booleans", "[Bridge]\nParent=eth0\nARPIsolation=Off\n",
			func(b *Bridge) { b.NoARPIsolation = true }},
		{"ARPIsolation on", "[Bridge]\nParent=eth0\nARPIsolation=0\nARPIsolation=TRUE\n", nil},
		{"ARPIsolation reset", "[Bridge]\nParent=eth0\nARPIsolation=no\nARPIsolation=\n", nil},
		{"MACAddress random", "[Bridge]\nParent=eth0\nMACAddress=random\n",
			func(b *Bridge) { b.MACAddress, b.MAC = "random", macaddr.Policy{Kind: macaddr.Random} }},
		{"MACAddress keeps its spelling", "[Bridge]\nParent=eth0\nMACAddress=02-00-5E-10-00-01\n",
			func(b *Bridge) { b.MACAddress, b.MAC = "02-00-5E-10-00-01", explicit }},
		{"MACAddress universal gives a warning, not an error", "[Bridge]\nParent=eth0\nMACAddress=00:16:3e:00:00:01\n",
			func(b *Bridge) {
				p, _ := macaddr.Parse("00:16:3e:00:00:01")
				b.MACAddress, b.MAC = "00:16:3e:00:00:01", p
			}},
		{"MTU minimum", "[Bridge]\nParent=eth0\nMTU=68\n", func(b *Bridge) { b.MTU = 68 }},
		{"MTU maximum of a TAP", "[Bridge]\nParent=eth0\nMTU=65521\n", func(b *Bridge) { b.MTU = 65521 }},
		{"MTU maximum of a veth", "[Bridge]\nParent=eth0\nMTU=65535\nKind=veth\n", func(b *Bridge) { b.MTU, b.Kind = 65535, KindVeth }},
		{"MTU leading zero", "[Bridge]\nParent=eth0\nMTU=01500\n", func(b *Bridge) { b.MTU = 1500 }},
		{"keywords in any case", "[Bridge]\nParent=eth0\nMACAddress=Random\nMTU=Inherit\nCarrier=ON\n",
			func(b *Bridge) {
				b.MACAddress, b.MAC, b.Carrier = "Random", macaddr.Policy{Kind: macaddr.Random}, CarrierOn
			}},
		{"values and keys trimmed", "[Bridge]\n  Parent =  eth0  \n\tMTU\t=\t1400\t\n",
			func(b *Bridge) { b.MTU = 1400 }},
		{"comments and blank lines",
			"# vethd bridge\n; another comment\n\n[Bridge]\n  # indented comment\nParent=eth0\n\n;MTU=9000\n#Carrier=on\n", nil},
		{"'#' not at the start of a line belongs to the value", "[Bridge]\nParent=eth#0\n",
			func(b *Bridge) { b.Parent = "eth#0" }},
		{"CRLF line ends", "[Bridge]\r\nParent=eth0\r\nMTU=1400\r\n", func(b *Bridge) { b.MTU = 1400 }},
		{"byte order mark", "\uFEFF[Bridge]\nParent=eth0\n", nil},
		{"continuation line", "[Bridge]\nParent=eth0\nMACAddress=\\\n    02:00:5e:10:00:01\n",
			func(b *Bridge) { b.MACAddress, b.MAC = "02:00:5e:10:00:01", explicit }},
		{"continuation ended by a blank line", "[Bridge]\nParent=eth0\nMTU=\\\n9000\\\n\nCarrier=on\n",
			func(b *Bridge) { b.MTU, b.Carrier = 9000, CarrierOn }},
		{"continuation at the end of the file", "[Bridge]\nParent=eth0\nMTU=9000\\",
			func(b *Bridge) { b.MTU = 9000 }},
		{"comment inside a continuation is left out", "[Bridge]\nParent=eth0\nMTU=\\\n# jumbo frames \\\n9000\n",
			func(b *Bridge) { b.MTU = 9000 }},
		{"repeated key: the last wins", "[Bridge]\nParent=eth0\nParent=eth1\nMTU=1400\nMTU=9000\nCarrier=on\nCarrier=follow\n",
			func(b *Bridge) { b.Parent, b.MTU = "eth1", 9000 }},
		{"empty assignment resets to the default",
			"[Bridge]\nParent=eth0\nMACAddress=random\nMTU=9000\nCarrier=on\nMACAddress=\nMTU=\nCarrier=  \n", nil},
		{"reset, then set again", "[Bridge]\nParent=eth0\nMTU=9000\nMTU=\nMTU=1280\n", func(b *Bridge) { b.MTU = 1280 }},
		{"two [Bridge] sections are one", "[Bridge]\nParent=eth0\n[Bridge]\nMTU=1400\n", func(b *Bridge) { b.MTU = 1400 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.text), testPath, "veth1")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := defaults()
			if tt.edit != nil {
				tt.edit(&want)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

func TestParseWarning(t *testing.T) {
	b, err := Parse(strings.NewReader("[Bridge]\nParent=eth0\nMACAddress=00:16:3e:00:00:01\n"), testPath, "veth1")
	if err != nil {
		t.Fatal(err)
	}
	if b.MAC.Warning == "" {
		t.Error("a universally-administered address gave no Warning")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    string // the whole message, or its start if it ends in "…"
		line    int
		key     string
		is      error // if not nil, errors.Is(err, is) must hold
		contain string
	}{
		{name: "unknown section", text: "[Bridge]\nParent=eth0\n[Network]\nAddress=10.0.0.1\n",
			want: testPath + `:3: unknown section "[Network]"; the only section is [Bridge]`, line: 3},
		{name: "unknown empty section", text: "[Bridge]\nParent=eth0\n\n[Match]\n",
			want: testPath + `:4: unknown section "[Match]"; the only section is [Bridge]`, line: 4},
		{name: "section names are case-sensitive", text: "[bridge]\nParent=eth0\n",
			want: testPath + `:1: unknown section "[bridge]"…`, line: 1},
		{name: "unknown key", text: "[Bridge]\nParent=eth0\nMAC=02:00:5e:10:00:01\n",
			want: testPath + ":3: MAC=: unknown key; known keys are Parent, MACAddress, MTU, Carrier, ARPIsolation, SourceRouting, RouteTable, RoutePriority, Kind, Namespace, BroadcastLimit, DataPath", line: 3, key: "MAC"},
		{name: "key in the wrong case", text: "[Bridge]\nparent=eth0\n",
			want: testPath + ":2: parent=: unknown key; known keys are Parent, MACAddress, MTU, Carrier, ARPIsolation, SourceRouting, RouteTable, RoutePriority, Kind, Namespace, BroadcastLimit, DataPath; did you mean Parent= (keys are case-sensitive)?",
			line: 2, key: "parent"},
		{name: "no key", text: "[Bridge]\nParent=eth0\n=eth1\n",
			want: testPath + ":3: line begins with '=': no key is named", line: 3},
		{name: "Parent missing", text: "[Bridge]\nMTU=9000\n",
			want: testPath + ": Parent=: missing; name the NIC whose wire is shared", key: "Parent"},
		{name: "empty file", text: "",
			want: testPath + ": Parent=: missing; name the NIC whose wire is shared", key: "Parent"},
		{name: "Parent reset by an empty assignment", text: "[Bridge]\nParent=eth0\nParent=\n",
			want: testPath + ": Parent=: missing…", key: "Parent"},
		{name: "Parent with a trailing comment", text: "[Bridge]\nParent=eth0 # uplink\n",
			want: testPath + `:2: Parent=: invalid interface name "eth0 # uplink": '/', ':', '%' and white space are not allowed; '#' starts a comment only at the beginning of a line, so put comments on a line of their own`,
			line: 2, key: "Parent", is: ifname.ErrInvalid},
		{name: "Parent too long", text: "[Bridge]\nParent=enp0s31f6xyzabcd\n",
			want: testPath + `:2: Parent=: invalid interface name "enp0s31f6xyzabcd": 16 bytes, at most 15 allowed`,
			line: 2, key: "Parent", is: ifname.ErrInvalid},
		{name: "Parent with a slash", text: "[Bridge]\n\nParent=eth/0\n",
			want: testPath + `:3: Parent=: invalid interface name "eth/0"…`, line: 3, key: "Parent", is: ifname.ErrInvalid},
		{name: "Parent is the bridge", text: "[Bridge]\nParent=eth0\nParent=veth1\n",
			want: testPath + `:3: Parent=: "veth1" is the bridge itself; name the NIC whose wire is shared`, line: 3, key: "Parent"},
		{name: "continuation joins with a space", text: "[Bridge]\nParent=eth\\\n0\n",
			want: testPath + `:2: Parent=: invalid interface name "eth 0"…`, line: 2, key: "Parent", is: ifname.ErrInvalid},
		{name: "backslash in a value", text: "[Bridge]\nParent=eth\\0\n",
			want: testPath + `:2: Parent=: "eth\\0" holds a backslash…`, line: 2, key: "Parent"},
		{name: "control character in a value", text: "[Bridge]\nParent=eth\x000\n",
			want: testPath + `:2: Parent=: "eth\x000" holds a control character`, line: 2, key: "Parent"},
		{name: "MACAddress not an address", text: "[Bridge]\nParent=eth0\nMACAddress=02:00:5e:10:00\n",
			want: testPath + `:3: MACAddress=: invalid MAC address "02:00:5e:10:00": want persistent, random or six hex bytes like 02:00:5e:10:00:01`,
			line: 3, key: "MACAddress", is: macaddr.ErrInvalid},
		{name: "MACAddress multicast", text: "[Bridge]\nParent=eth0\nMACAddress=01:00:5e:00:00:01\n",
			want: testPath + `:3: MACAddress=: invalid MAC address 01:00:5e:00:00:01: it is a multicast address…`,
			line: 3, key: "MACAddress", is: macaddr.ErrInvalid},
		{name: "MACAddress with a trailing comment", text: "[Bridge]\nParent=eth0\nMACAddress=random ; for now\n",
			want: testPath + `:3: MACAddress=: invalid MAC address "random ; for now"…`, contain: "';' starts a comment only at the beginning of a line",
			line: 3, key: "MACAddress", is: macaddr.ErrInvalid},
		{name: "MTU not a number", text: "[Bridge]\nParent=eth0\n\nMTU=big\n",
			want: testPath + `:4: MTU=: "big" is not a number or "inherit"`, line: 4, key: "MTU"},
		{name: "MTU negative", text: "[Bridge]\nParent=eth0\nMTU=-1\n",
			want: testPath + `:3: MTU=: "-1" is not a number or "inherit"`, line: 3, key: "MTU"},
		{name: "MTU too small", text: "[Bridge]\nParent=eth0\nMTU=67\n",
			want: testPath + `:3: MTU=: 67 is out of range: an MTU is 68 to 65535, or "inherit"`, line: 3, key: "MTU"},
		{name: "MTU too large", text: "[Bridge]\nParent=eth0\nMTU=65536\n",
			want: testPath + `:3: MTU=: 65536 is out of range…`, line: 3, key: "MTU"},
		{name: "MTU above a TAP's", text: "[Bridge]\nParent=eth0\nMTU=65535\n",
			want: testPath + `:3: MTU=: 65535 is above what an interface of Kind=tap takes: at most 65521 (Kind=veth: 65535)`, line: 3, key: "MTU"},
		{name: "MTU above a TAP's, Kind= after it", text: "[Bridge]\nParent=eth0\nMTU=65522\nKind=tap\n",
			want: testPath + `:3: MTU=: 65522 is above what an interface of Kind=tap takes: at most 65521…`, line: 3, key: "MTU"},
		{name: "MTU above a TAP's, Kind=veth reset", text: "[Bridge]\nParent=eth0\nKind=veth\nMTU=9000\nMTU=65535\nKind=\n",
			want: testPath + `:5: MTU=: 65535 is above what an interface of Kind=tap takes…`, line: 5, key: "MTU"},
		{name: "MTU overflows", text: "[Bridge]\nParent=eth0\nMTU=99999999999999999999999\n",
			want: testPath + `:3: MTU=: 99999999999999999999999 is out of range…`, line: 3, key: "MTU"},
		{name: "MTU with a trailing comment", text: "[Bridge]\nParent=eth0\nMTU=9000 # jumbo\n",
			want: testPath + `:3: MTU=: "9000 # jumbo" is not a number or "inherit"; '#' starts a comment only at the beginning of a line, so put comments on a line of their own`,
			line: 3, key: "MTU"},
		{name: "MTU bad, though overridden later", text: "[Bridge]\nParent=eth0\nMTU=big\nMTU=1500\n",
			want: testPath + `:3: MTU=: "big" is not a number or "inherit"`, line: 3, key: "MTU"},
		{name: "line after a continued value", text: "[Bridge]\nParent=eth0\nMACAddress=\\\n 02:00:5e:10:00:01\nMTU=big\n",
			want: testPath + `:5: MTU=: "big"…`, line: 5, key: "MTU"},
		{name: "Carrier", text: "[Bridge]\nParent=eth0\nCarrier=off\n",
			want: testPath + `:3: Carrier=: "off" is not follow or on`, line: 3, key: "Carrier"},
		{name: "ARPIsolation", text: "[Bridge]\nParent=eth0\n\nARPIsolation=maybe\n",
			want: testPath + `:4: ARPIsolation=: "maybe" is not yes or no`, line: 4, key: "ARPIsolation"},
		{name: "ARPIsolation with a trailing comment", text: "[Bridge]\nParent=eth0\nARPIsolation=no # VIPs on lo\n",
			want: testPath + `:3: ARPIsolation=: "no # VIPs on lo" is not yes or no; '#' starts a comment only at the beginning of a line…`,
			line: 3, key: "ARPIsolation"},
		{name: "syntax: no '='", text: "[Bridge]\nParent eth0\n",
			want: testPath + `:2: not a Key=value line (nor a comment: those begin with '#' or ';')`, line: 2},
		{name: "syntax: no '=' at the end of the file", text: "[Bridge]\nParent=eth0\nMTU",
			want: testPath + `:3: not a Key=value line…`, line: 3},
		{name: "syntax: key before any section", text: "# veth1\nParent=eth0\n[Bridge]\n",
			want: testPath + `:2: text comes before any section header; the file must begin with [Bridge]`, line: 2},
		{name: "syntax: section header not closed", text: "[Bridge\nParent=eth0\n",
			want: testPath + `:1: section header has no closing ']'`, line: 1},
		{name: "syntax: comment after a section header", text: "[Bridge] # veth1\nParent=eth0\n",
			want: testPath + `:1: text after the section header; comments go on a line of their own`, line: 1},
		{name: "syntax: comment line ending in a backslash", text: "[Bridge]\nParent=eth0\n# C:\\\nMTU=9000\n",
			want: testPath + `:3: comment line ends with a backslash…`, line: 3},
		{name: "syntax: line too long", text: "[Bridge]\nParent=eth0\n# " + strings.Repeat("x", 3000) + "\n",
			want: testPath + `:3: line is 3002 bytes long; at most 2047 allowed`, line: 3, is: unit.ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Parse(strings.NewReader(tt.text), testPath, "veth1")
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", b)
			}
			msg := err.Error()
			if want, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(msg, want) {
					t.Errorf("error\n%s\ndoes not start with\n%s", msg, want)
				}
			} else if msg != tt.want {
				t.Errorf("error\n%s\nwant\n%s", msg, tt.want)
			}
			if tt.contain != "" && !strings.Contains(msg, tt.contain) {
				t.Errorf("error %q does not contain %q", msg, tt.contain)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error", err)
			}
			if e.File != testPath || e.Line != tt.line || e.Key != tt.key {
				t.Errorf("Error{File: %q, Line: %d, Key: %q}, want {%q, %d, %q}", e.File, e.Line, e.Key, testPath, tt.line, tt.key)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}

func TestParseBadName(t *testing.T) {
	for _, name := range []string{"", "bad name", "0123456789abcdef", "..", "a:b"} {
		_, err := Parse(strings.NewReader("[Bridge]\nParent=eth0\n"), "/etc/vethd/x.conf", name)
		var e *Error
		if !errors.As(err, &e) || e.Line != 0 || e.Key != "" || !errors.Is(err, ifname.ErrInvalid) {
			t.Errorf("Parse(name %q) = %v, want an *Error at line 0 wrapping ifname.ErrInvalid", name, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "/etc/vethd/x.conf: invalid interface name") {
			t.Errorf("Parse(name %q) = %q", name, err)
		}
	}
}

func TestErrorString(t *testing.T) {
	e := errors.New("msg")
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "f.conf", Line: 4, Key: "MTU", Err: e}, "f.conf:4: MTU=: msg"},
		{Error{File: "f.conf", Key: "Parent", Err: e}, "f.conf: Parent=: msg"},
		{Error{File: "f.conf", Line: 2, Err: e}, "f.conf:2: msg"},
		{Error{File: "f.conf", Err: e}, "f.conf: msg"},
		{Error{Line: 3, Key: "MTU", Err: e}, "3: MTU=: msg"},
		{Error{Key: "MTU", Err: e}, "MTU=: msg"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.err, got, tt.want)
		}
		if !errors.Is(&tt.err, e) {
			t.Errorf("%+v does not unwrap to its Err", tt.err)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	texts := []string{
		"[Bridge]\nParent=eth0\n",
		"[Bridge]\nParent=enp3s0\nMACAddress=02-00-5E-10-00-01\nMTU=9000\nCarrier=on\n",
		"[Bridge]\nParent=eth0\nARPIsolation=off\n",
		"[Bridge]\nParent=eth0\nMACAddress=Random\nMTU=0068\nCarrier=FOLLOW\n",
		"[Bridge]\nParent=eth0\nMACAddress=00:16:3e:00:00:01\n",
		"[Bridge]\nParent=#x=y[z]\n",
		"[Bridge]\nParent=eth0\nSourceRouting=no\nRouteTable=100\nRoutePriority=1000\nKind=veth\nNamespace=ctr1\n",
		"[Bridge]\nParent=eth0\nRouteTable=auto\nKind=TAP\nNamespace=/proc/1/ns/net\n",
		"[Bridge]\nParent=eth0\nKind=veth\nDataPath=Kernel\nBroadcastLimit=off\n",
		"[Bridge]\nParent=eth0\nDataPath=relay\n",
	}
	for _, text := range texts {
		b, err := Parse(strings.NewReader(text), testPath, "veth1")
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		out := b.Marshal()
		b2, err := Parse(bytes.NewReader(out), testPath, "veth1")
		if err != nil {
			t.Fatalf("Parse(Marshal()) of %q: %v\n%s", text, err, out)
		}
		if !reflect.DeepEqual(b, b2) {
			t.Errorf("round trip of %q:\n%+v\nbecame\n%+v\nthrough\n%s", text, b, b2, out)
		}
	}
}

func TestMarshalBuiltInCode(t *testing.T) {
	b := &Bridge{Name: "veth2", Parent: "eth1",
		MAC: macaddr.Policy{Kind: macaddr.Explicit, Addr: mustMAC(t, "02:00:5e:10:00:02")}}
	out := b.Marshal()
	for _, want := range []string{
		"# vethd bridge veth2:",
		"\n[Bridge]\nParent=eth1\nMACAddress=02:00:5e:10:00:02\nMTU=inherit\nCarrier=follow\nARPIsolation=yes\n",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("Marshal() =\n%s\nwithout %q", out, want)
		}
	}
	got, err := Parse(bytes.NewReader(out), "veth2.conf", "veth2")
	if err != nil {
		t.Fatal(err)
	}
	if got.Parent != "eth1" || got.MAC.String() != "02:00:5e:10:00:02" || got.MTU != 0 || got.Carrier != CarrierFollow || got.NoARPIsolation {
		t.Errorf("Parse(Marshal()) = %+v", got)
	}

	// A name that would break the comment header is left out of it.
	bad := &Bridge{Name: "x\n[Evil]", Parent: "eth0"}
	if _, err := Parse(bytes.NewReader(bad.Marshal()), "f.conf", "veth3"); err != nil {
		t.Errorf("Marshal of a Bridge with a bad Name does not parse: %v", err)
	}
}

func TestNames(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"veth1.conf", "veth0.conf", "a-b.conf", "a.conf", "notes.txt", "veth1.conf.bak", ".conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("[Bridge]\nParent=eth0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("veth0.conf", filepath.Join(dir, "link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub.conf", filepath.Join(dir, "dirlink.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("gone", filepath.Join(dir, "dangling.conf")); err != nil {
		t.Fatal(err)
	}
	got, err := Names(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a-b", "link", "veth0", "veth1"}; !slices.Equal(got, want) {
		t.Errorf("Names = %q, want %q", got, want)
	}

	got, err = Names(filepath.Join(dir, "missing"))
	if err != nil || len(got) != 0 {
		t.Errorf("Names(missing dir) = %q, %v; want an empty list and no error", got, err)
	}
}

func TestPath(t *testing.T) {
	if got := Path(Dir, "veth1"); got != "/etc/vethd/veth1.conf" {
		t.Errorf("Path = %q", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir, "veth1")
	if err := os.WriteFile(path, []byte("[Bridge]\nParent=eth0\nMTU=1400\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "veth1" || b.File != path || b.Parent != "eth0" || b.MTU != 1400 {
		t.Errorf("Load = %+v", b)
	}

	// Parent=veth1 is an error because the name comes from the file.
	if err := os.WriteFile(path, []byte("[Bridge]\nParent=veth1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+`:2: Parent=: "veth1" is the bridge itself`) {
		t.Errorf("Load(Parent=own name) = %v", err)
	}

	bad := filepath.Join(dir, "bad name.conf")
	if err := os.WriteFile(bad, []byte("[Bridge]\nParent=eth0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	var e *Error
	if !errors.As(err, &e) || e.Line != 0 || !errors.Is(err, ifname.ErrInvalid) ||
		!strings.HasPrefix(err.Error(), bad+`: invalid interface name "bad name"`) {
		t.Errorf("Load(%q) = %v", bad, err)
	}
}

func TestLoadMissing(t *testing.T) {
	path := Path(t.TempDir(), "veth9")
	b, err := Load(path)
	if err == nil {
		t.Fatalf("Load = %+v, want an error", b)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != path || e.Line != 0 || e.Key != "" {
		t.Errorf("Load error = %#v, want an *Error for %s at line 0", err, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	if want := path + ": open: no such file or directory"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestExampleFile(t *testing.T) {
	const example = "../../dist/vethd/veth1.conf.example"
	f, err := os.Open(example)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := Parse(f, example, "veth1")
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	want := defaults()
	want.File = example
	if !reflect.DeepEqual(*b, want) {
		t.Errorf("example = %+v, want %+v", *b, want)
	}
}

// TestScanAgrees checks that the line scan and go-systemd see the same
// sections and keys, so the lines errors give are the right ones.
func TestScanAgrees(t *testing.T) {
	text := "# c\n\n[Bridge]\n  Parent = eth0\nMACAddress=\\\n  # c \\\n  random\nMTU=\\\n\n[Other]\nX=1\n[Bridge]\r\nCarrier=on\r\n"
	checkScan(t, []byte(text))
	secs, serr := scan([]byte(text))
	if serr != nil {
		t.Fatalf("scan: line %d: %v", serr.line, serr)
	}
	var got []int
	for _, s := range secs {
		got = append(got, s.line)
		for _, e := range s.entries {
			got = append(got, e.line)
		}
	}
	if want := []int{3, 4, 5, 8, 10, 11, 12, 13}; !slices.Equal(got, want) {
		t.Errorf("scan lines = %v, want %v", got, want)
	}
}

// checkScan fails if go-systemd and scan disagree about data: where
// go-systemd fails scan must fail too, and where both accept data they must
// see the same sections and keys.
func checkScan(t *testing.T, data []byte) {
	t.Helper()
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	sections, err := unit.DeserializeSections(bytes.NewReader(data))
	scanned, serr := scan(data)
	switch {
	case err != nil && serr == nil:
		t.Fatalf("go-systemd fails (%v) where scan does not on %q", err, data)
	case err == nil && serr == nil:
		if l := lineMap(sections, scanned); l.secs == nil && len(sections) > 0 {
			t.Fatalf("go-systemd and scan disagree on %q:\n%v\n%+v", data, sections, scanned)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"[Bridge]\nParent=eth0\n",
		"[Bridge]\nParent=eth0\nMACAddress=02:00:5e:10:00:01\nMTU=9000\nCarrier=on\n",
		"# c\n[Bridge]\r\nParent = eth0 \\\n\nMTU=\\\n# x\\\n1400\nMTU=\n",
		"[Bridge]\nParent=eth0 # uplink\n",
		"[Bridge\nParent=eth0]\n",
		"x[Bridge]\nParent=eth0",
		"[Bridge]\nParent=eth\\\\\nMTU=1400",
		"[Bridge]\nParent=eth0\nKind=veth\nDataPath=kernel\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkScan(t, data)
		b, err := Parse(bytes.NewReader(data), testPath, "veth1")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != testPath {
				t.Fatalf("Parse error %#v is not an *Error for %s", err, testPath)
			}
			return
		}
		out := b.Marshal()
		b2, err := Parse(bytes.NewReader(out), testPath, "veth1")
		if err != nil {
			t.Fatalf("Parse(Marshal()) of %q: %v\n%s", data, err, out)
		}
		if !reflect.DeepEqual(b, b2) {
			t.Fatalf("round trip of %q:\n%+v\nbecame\n%+v", data, b, b2)
		}
	})
}

func TestLoadRefusesHiddenQuotedAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("veth1.conf", "[Bridge]\nParent=eth0\n")
	write(".veth1.conf", "[Bridge]\nParent=eth0\n")
	write("veth2.conf", "[Bridge]\nParent=\"eth0\"\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "veth3.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	names, err := Names(dir)
	if err != nil || !slices.Equal(names, []string{"veth1", "veth2"}) {
		t.Errorf("Names = %v, %v; want veth1 veth2 (no hidden file, no FIFO)", names, err)
	}
	_, err = Load(filepath.Join(dir, "veth2.conf"))
	if err == nil || !strings.Contains(err.Error(), "veth2.conf:2: Parent=: \"eth0\" is quoted; values are written without quotes (Parent=eth0)") {
		t.Errorf("quoted Parent: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := Load(filepath.Join(dir, "veth3.conf")); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Load of a FIFO hangs")
	}
}

// TestSyntaxErrorsQuoteNothing: a file that is no configuration at all (a
// symlink to /etc/shadow, say) gets an error that names the line and
// quotes none of its text: errors reach LastError, which every local user
// may read (issue 9 item 7).
func TestSyntaxErrorsQuoteNothing(t *testing.T) {
	for _, text := range []string{
		"root:hunter2:20228:0:99999:7:::\n",
		"[hunter2\n",
		"[Bridge] hunter2\n",
		"[Bridge]\nhunter2\n",
		"# a comment\nsecret=hunter2\n[Bridge]\n",
	} {
		_, err := Parse(strings.NewReader(text), testPath, "veth1")
		if err == nil {
			t.Errorf("%q: no error", text)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error quotes the file: %v", text, err)
		}
		if !strings.Contains(err.Error(), testPath+":") {
			t.Errorf("%q: the error names no FILE:LINE: %v", text, err)
		}
	}
}
