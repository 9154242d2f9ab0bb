package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
)

func TestParseMTU(t *testing.T) {
	for v, want := range map[string]int{"inherit": 0, "INHERIT": 0, "68": 68, "1500": 1500, "01500": 1500, "65535": 65535} {
		if got, err := ParseMTU(v); err != nil || got != want {
			t.Errorf("ParseMTU(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for v, msg := range map[string]string{
		"":                        `"" is not a number or "inherit"`,
		"big":                     `"big" is not a number or "inherit"`,
		"-1":                      `"-1" is not a number or "inherit"`,
		"+100":                    `"+100" is not a number or "inherit"`,
		" 100":                    `" 100" is not a number or "inherit"`,
		"67":                      `67 is out of range: an MTU is 68 to 65535, or "inherit"`,
		"0010":                    `0010 is out of range: an MTU is 68 to 65535, or "inherit"`,
		"65536":                   `65536 is out of range: an MTU is 68 to 65535, or "inherit"`,
		"99999999999999999999999": `99999999999999999999999 is out of range: an MTU is 68 to 65535, or "inherit"`,
	} {
		if _, err := ParseMTU(v); err == nil || err.Error() != msg {
			t.Errorf("ParseMTU(%q): %v, want %q", v, err, msg)
		}
	}
}

func TestParseCarrier(t *testing.T) {
	for v, want := range map[string]Carrier{"follow": CarrierFollow, "Follow": CarrierFollow, "on": CarrierOn, "ON": CarrierOn} {
		if got, err := ParseCarrier(v); err != nil || got != want {
			t.Errorf("ParseCarrier(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{"", "off", "true", " on", "follows"} {
		if _, err := ParseCarrier(v); err == nil || err.Error() != strings.ReplaceAll(`Q is not follow or on`, "Q", `"`+v+`"`) {
			t.Errorf("ParseCarrier(%q): %v", v, err)
		}
	}
}

func TestParseBoolean(t *testing.T) {
	for v, want := range map[string]bool{
		"1": true, "yes": true, "Y": true, "true": true, "t": true, "ON": true,
		"0": false, "no": false, "n": false, "False": false, "f": false, "off": false,
	} {
		if got, err := ParseBoolean(v); err != nil || got != want {
			t.Errorf("ParseBoolean(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "maybe", "2", " yes", "yess"} {
		if _, err := ParseBoolean(v); err == nil || err.Error() != fmt.Sprintf("%q is not yes or no", v) {
			t.Errorf("ParseBoolean(%q): %v", v, err)
		}
	}
}

func TestCheckParent(t *testing.T) {
	for _, p := range []string{"eth0", "enp3s0", "#x=y[z]", "a;b", "ü"} {
		if err := CheckParent("veth1", p); err != nil {
			t.Errorf("CheckParent(veth1, %q): %v", p, err)
		}
	}
	for _, tc := range []struct{ parent, msg string }{
		{"veth1", `"veth1" is the bridge itself; name the NIC whose wire is shared`},
		{"a/b", `invalid interface name "a/b": '/', ':', '%' and white space are not allowed`},
		{"", "invalid interface name: empty"},
		{"x\xff", `invalid interface name "x\xff": not valid UTF-8`},
		{`eth\0`, `"eth\\0" holds a backslash`},
		{"eth\x01", `"eth\x01" holds a control character`},
		{`"eth0"`, `"eth0" is quoted; values are written without quotes (Parent=eth0)`},
		{"\u00a0eth0", `"\u00a0eth0" begins or ends with white space`},
		{"eth0\u2003", `"eth0\u2003" begins or ends with white space`},
	} {
		err := CheckParent("veth1", tc.parent)
		if err == nil || !strings.HasPrefix(err.Error(), tc.msg) {
			t.Errorf("CheckParent(veth1, %q): %v, want %q", tc.parent, err, tc.msg)
		}
	}
	if err := CheckParent("veth1", "a/b"); !errors.Is(err, ifname.ErrInvalid) {
		t.Errorf("CheckParent(a/b): %v does not wrap ifname.ErrInvalid", err)
	}
}

// roundTrip builds the Bridge that values accepted by CheckParent,
// macaddr.Parse, ParseMTU and ParseCarrier give, as vethctl add does, and
// fails the test unless Marshal writes a file that Parse reads back the
// same. Values the checks refuse are skipped.
func roundTrip(t *testing.T, name, parent, mac, mtu, carrier string) {
	t.Helper()
	if Validate(name) != nil || CheckParent(name, parent) != nil {
		return
	}
	p, err := macaddr.Parse(mac)
	if err != nil {
		return
	}
	n, err := ParseMTU(mtu)
	if err != nil {
		return
	}
	c, err := ParseCarrier(carrier)
	if err != nil {
		return
	}
	b := &Bridge{Name: name, File: testPath, Parent: parent, MACAddress: p.String(), MAC: p, MTU: n, Carrier: c}
	out := b.Marshal()
	back, err := Parse(bytes.NewReader(out), testPath, name)
	if err != nil {
		t.Fatalf("Parse(Marshal(%+v)): %v\n%s", b, err, out)
	}
	if !reflect.DeepEqual(back, b) {
		t.Fatalf("Marshal(%+v) reads back as %+v:\n%s", b, back, out)
	}
}

func TestCheckedValuesRoundTrip(t *testing.T) {
	for _, tc := range [][5]string{
		{"veth1", "eth0", "persistent", "inherit", "follow"},
		{"veth1", "enp3s0", "02-00-5E-10-00-01", "0068", "ON"},
		{"veth1", "#x=y[z]", "Random", "65521", "Follow"},
		{"v.1", "a;b", "00:16:3e:00:00:01", "1500", "on"},
		{"veth1", "x\xff", "persistent", "9000", "on"},
		{"veth1", "eth0\u00a0", "persistent", "9000", "on"}, // refused: Parse would trim it
	} {
		roundTrip(t, tc[0], tc[1], tc[2], tc[3], tc[4])
	}
}

// FuzzParentRoundTrip: whatever CheckParent accepts, a file written with
// Marshal holds, so that vethctl add need not read its file back. (The
// other values are keywords and numbers that ParseMTU, ParseCarrier and
// macaddr.Parse accept only in forms that Marshal writes as they are.)
func FuzzParentRoundTrip(f *testing.F) {
	for _, p := range []string{"eth0", "#x=y[z]", "eth\u00a0", "a;b", "x\xff", `"q"`} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, parent string) {
		roundTrip(t, "veth1", parent, "persistent", "inherit", "follow")
	})
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vethd")
	path := filepath.Join(dir, "veth1.conf")
	b := &Bridge{Name: "veth1", Parent: "eth0", MAC: macaddr.Policy{Kind: macaddr.Random}, MTU: 1400, Carrier: CarrierOn}
	if err := Write(path, b, false); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{path: 0o644, dir: fs.ModeDir | 0o755} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v %v, want mode %v", p, fi.Mode(), err, want)
		}
	}
	got, err := Load(path)
	if err != nil || got.Parent != "eth0" || got.MTU != 1400 || got.Carrier != CarrierOn || got.MAC.Kind != macaddr.Random {
		t.Errorf("Load: %+v, %v", got, err)
	}

	// Without replace an existing file stays as it is.
	b2 := &Bridge{Name: "veth1", Parent: "eth1"}
	err = Write(path, b2, false)
	if !errors.Is(err, fs.ErrExist) || !strings.HasPrefix(err.Error(), "write "+path+": ") {
		t.Errorf("Write over an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := Load(path); got == nil || got.Parent != "eth0" {
		t.Errorf("file changed: %+v", got)
	}

	// With replace it is replaced, and no temporary file is left.
	if err := Write(path, b2, true); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(path); err != nil || got.Parent != "eth1" {
		t.Errorf("after replace: %+v, %v", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode() != 0o644 {
		t.Errorf("after replace: mode %v, %v", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestParseRouting(t *testing.T) {
	b, err := Parse(strings.NewReader("[Bridge]\nParent=eth0\n"), testPath, "veth1")
	if err != nil || b.NoSourceRouting || b.RouteTable != 0 || b.RoutePriority != 0 || b.Kind != "" || b.Namespace != "" {
		t.Fatalf("defaults: %+v, %v", b, err)
	}
	b, err = Parse(strings.NewReader("[Bridge]\nParent=eth0\nSourceRouting=off\nRouteTable=4294967295\nRoutePriority=32765\nKind=Veth\nNamespace=ctr-1\n"), testPath, "veth1")
	if err != nil || !b.NoSourceRouting || b.RouteTable != 4294967295 || b.RoutePriority != 32765 || b.Kind != KindVeth || b.Namespace != "ctr-1" {
		t.Fatalf("set: %+v, %v", b, err)
	}
	b, err = Parse(strings.NewReader("[Bridge]\nParent=eth0\nRouteTable=100\nRouteTable=\nRoutePriority=5\nRoutePriority=\nKind=veth\nKind=\nNamespace=x\nNamespace=\n"), testPath, "veth1")
	if err != nil || b.RouteTable != 0 || b.RoutePriority != 0 || b.Kind != "" || b.Namespace != "" {
		t.Fatalf("reset: %+v, %v", b, err)
	}
	for text, want := range map[string]string{
		"RouteTable=254":        testPath + ":3: RouteTable=: 254 is one of the kernel's own tables (253 default, 254 main, 255 local); pick another, or \"auto\"",
		"RouteTable=0":          testPath + ":3: RouteTable=: 0 is out of range: a routing table is 1 to 4294967295, or \"auto\"",
		"RouteTable=4294967296": testPath + ":3: RouteTable=: 4294967296 is out of range: a routing table is 1 to 4294967295, or \"auto\"",
		"RouteTable=main":       testPath + ":3: RouteTable=: \"main\" is not a number or \"auto\"",
		"RoutePriority=32766":   testPath + ":3: RoutePriority=: 32766 is out of range: a rule priority is 1 to 32765 (0 is the local table's rule, 32766 the main table's)",
		"RoutePriority=0":       testPath + ":3: RoutePriority=: 0 is out of range: a rule priority is 1 to 32765 (0 is the local table's rule, 32766 the main table's)",
		"SourceRouting=maybe":   testPath + ":3: SourceRouting=: \"maybe\" is not yes or no",
		"Kind=macvlan":          testPath + ":3: Kind=: \"macvlan\" is not tap or veth",
		"Namespace=a/b":         testPath + ":3: Namespace=: \"a/b\" is neither a name (as ip netns takes it: no '/') nor an absolute path",
		"Namespace=..":          testPath + ":3: Namespace=: \"..\" is not a valid network namespace name",
		"Namespace=/":           testPath + ":3: Namespace=: \"/\" is a directory, not a network namespace file",
	} {
		_, err := Parse(strings.NewReader("[Bridge]\nParent=eth0\n"+text+"\n"), testPath, "veth1")
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v\nwant %s", text, err, want)
		}
	}
}

func TestNamespacePath(t *testing.T) {
	for v, want := range map[string]string{"": "", "ctr1": "/run/netns/ctr1", "/proc/42/ns/net": "/proc/42/ns/net", "/run/netns//x/": "/run/netns/x"} {
		if got, err := NamespacePath(v); err != nil || got != want {
			t.Errorf("NamespacePath(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{".", "..", "a/b", "a b", strings.Repeat("n", 256), "\"x\"", "x\x01"} {
		if got, err := NamespacePath(v); err == nil {
			t.Errorf("NamespacePath(%q) = %q, want an error", v, got)
		}
	}
}

func TestMarshalRouting(t *testing.T) {
	b := &Bridge{Name: "veth1", Parent: "eth0", NoSourceRouting: true, RouteTable: 77, RoutePriority: 900, Kind: KindVeth, Namespace: "ctr"}
	out := string(b.Marshal())
	if !strings.Contains(out, "SourceRouting=no\nRouteTable=77\nRoutePriority=900\nKind=veth\nNamespace=ctr\n") {
		t.Errorf("Marshal() =\n%s", out)
	}
	out = string((&Bridge{Name: "veth1", Parent: "eth0"}).Marshal())
	if !strings.HasSuffix(out, "ARPIsolation=yes\nSourceRouting=yes\n") {
		t.Errorf("Marshal() of defaults pins more than SourceRouting:\n%s", out)
	}
}
