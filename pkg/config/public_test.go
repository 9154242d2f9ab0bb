package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestPublicQuotesNothing: an Error's Public text (what LastError and
// STATUS= show to any user) names the file, the line, the key and the
// problem, but none of the file's text — the value of a known key, an
// unknown key's or section's name, a line that does not parse — while
// Error (the journal) keeps the value. The secret is in each kind of
// value a file can hold badly.
func TestPublicQuotesNothing(t *testing.T) {
	const secret = "hunter2x"
	tests := []struct {
		name, text, public string
	}{
		{"Parent not a name", "[Bridge]\nParent=hunter2x/y\n",
			testPath + `:2: Parent=: the value is not a valid interface name (at most 15 bytes of printable UTF-8, no '/', ':', '%' or white space)`},
		{"Parent too long", "[Bridge]\nParent=hunter2xhunter2x\n", testPath + `:2: Parent=: the value is not a valid interface name…`},
		{"MACAddress", "[Bridge]\nParent=eth0\nMACAddress=hunter2x\n",
			testPath + `:3: MACAddress=: the value is not a usable MAC address: want persistent, random or a unicast address like 02:00:5e:10:00:01`},
		{"MTU", "[Bridge]\nParent=eth0\nMTU=hunter2x\n", testPath + `:3: MTU=: the value is not a number or "inherit"`},
		{"MTU with a comment", "[Bridge]\nParent=eth0\nMTU=1500 #hunter2x\n",
			testPath + `:3: MTU=: the value is not a number or "inherit"; '#' starts a comment only at the beginning of a line, so put comments on a line of their own`},
		{"Carrier", "[Bridge]\nParent=eth0\nCarrier=hunter2x\n", testPath + `:3: Carrier=: the value is not follow or on`},
		{"ARPIsolation", "[Bridge]\nParent=eth0\nARPIsolation=hunter2x\n", testPath + `:3: ARPIsolation=: the value is not yes or no`},
		{"SourceRouting", "[Bridge]\nParent=eth0\nSourceRouting=hunter2x\n", testPath + `:3: SourceRouting=: the value is not yes or no`},
		{"RouteTable", "[Bridge]\nParent=eth0\nRouteTable=hunter2x\n", testPath + `:3: RouteTable=: the value is not a number or "auto"`},
		{"RoutePriority", "[Bridge]\nParent=eth0\nRoutePriority=hunter2x\n", testPath + `:3: RoutePriority=: the value is not a number`},
		{"Kind", "[Bridge]\nParent=eth0\nKind=hunter2x\n", testPath + `:3: Kind=: the value is not tap or veth`},
		{"DataPath", "[Bridge]\nParent=eth0\nDataPath=hunter2x\n", testPath + `:3: DataPath=: the value is not relay or kernel`},
		{"Namespace", "[Bridge]\nParent=eth0\nNamespace=hunter2x/y\n",
			testPath + `:3: Namespace=: the value is neither a name (as ip netns takes it: no '/') nor an absolute path`},
		{"quoted", "[Bridge]\nParent=\"hunter2x\"\n", testPath + `:2: Parent=: the value is quoted; values are written without quotes`},
		{"backslash", "[Bridge]\nParent=hunter2x\\y\n", testPath + `:2: Parent=: the value holds a backslash…`},
		{"control character", "[Bridge]\nParent=hunter2x\x01\n", testPath + `:2: Parent=: the value holds a control character`},
		{"unknown key", "[Bridge]\nParent=eth0\nhunter2x=1\n",
			testPath + `:3: unknown key; known keys are Parent, MACAddress, MTU, Carrier, ARPIsolation, SourceRouting, RouteTable, RoutePriority, Kind, Namespace, BroadcastLimit, DataPath`},
		{"unknown key with a secret value", "[Bridge]\nParent=eth0\npassword=hunter2x\n", testPath + `:3: unknown key; known keys are…`},
		{"unknown section", "[hunter2x]\nParent=eth0\n", testPath + `:1: unknown section; the only section is [Bridge]`},
		{"syntax", "[Bridge]\nParent=eth0\nhunter2x\n", testPath + `:3: not a Key=value line (nor a comment: those begin with '#' or ';')`},
		{"before any section", "root:hunter2x:20228:0:99999:7:::\n", testPath + `:1: text comes before any section header; the file must begin with [Bridge]`},
		{"a secret key=value file", "DB_PASSWORD=hunter2x\n", testPath + `:1: text comes before any section header…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.text), testPath, "veth1")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse: %v, want an *Error", err)
			}
			pub := e.Public()
			if want, ok := strings.CutSuffix(tt.public, "…"); ok {
				if !strings.HasPrefix(pub, want) {
					t.Errorf("Public()\n%s\ndoes not start with\n%s", pub, want)
				}
			} else if pub != tt.public {
				t.Errorf("Public()\n%s\nwant\n%s", pub, tt.public)
			}
			if strings.Contains(pub, secret[:6]) {
				t.Errorf("Public() %q quotes the file", pub)
			}
			if e.Key != "" && slices.Contains(knownKeys, e.Key) && !strings.Contains(err.Error(), secret[:6]) {
				t.Errorf("Error() %q lost the value (the journal keeps it)", err)
			}
		})
	}
}

// TestPublicOfFileErrors: errors about the file itself quote nothing of
// it and read the same in both texts.
func TestPublicOfFileErrors(t *testing.T) {
	for _, err := range []error{
		func() error { _, err := Load(t.TempDir() + "/missing.conf"); return err }(),
		func() error { _, err := Load(t.TempDir()); return err }(),
		func() error {
			_, err := Parse(strings.NewReader("[Bridge]\nMTU=9000\n"), testPath, "veth1")
			return err
		}(),
	} {
		var e *Error
		if !errors.As(err, &e) || e.Public() != e.Error() {
			t.Errorf("Public() = %q, Error() = %v", e.Public(), err)
		}
	}
}

// TestCheckMTU: each kind's maximum, and the error naming it.
func TestCheckMTU(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		mtu  int
		ok   bool
	}{
		{"", 0, true}, {"", 65521, true}, {"", 65522, false}, {KindTAP, 65535, false},
		{KindVeth, 65535, true}, {KindVeth, 65521, true}, {KindTAP, 68, true},
	} {
		err := CheckMTU(tc.kind, tc.mtu)
		if (err == nil) != tc.ok {
			t.Errorf("CheckMTU(%q, %d) = %v, want ok %v", tc.kind, tc.mtu, err, tc.ok)
		}
	}
	if err := CheckMTU(KindTAP, 65535); err == nil || err.Error() != "65535 is above what an interface of Kind=tap takes: at most 65521 (Kind=veth: 65535)" {
		t.Errorf("CheckMTU(tap, 65535) = %v", err)
	}
	if MaxMTU("") != MaxMTUTAP || MaxMTU(KindVeth) != MaxMTUVeth || MaxMTUTAP != 65521 || MaxMTUVeth != 65535 {
		t.Errorf("MaxMTU: tap %d, veth %d", MaxMTU(""), MaxMTU(KindVeth))
	}
}
