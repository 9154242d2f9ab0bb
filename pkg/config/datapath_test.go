package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseDataPath(t *testing.T) {
	for v, want := range map[string]DataPath{"relay": DataPathRelay, "Relay": DataPathRelay, "kernel": DataPathKernel, "KERNEL": DataPathKernel} {
		if got, err := ParseDataPath(v); err != nil || got != want {
			t.Errorf("ParseDataPath(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for v, msg := range map[string]string{
		"":        `"" is not relay or kernel`,
		"tc":      `"tc" is not relay or kernel`,
		"kernel ": `"kernel " is not relay or kernel`,
		"xdp":     `"xdp" is not relay or kernel`,
	} {
		if _, err := ParseDataPath(v); err == nil || err.Error() != msg {
			t.Errorf("ParseDataPath(%q): %v, want %q", v, err, msg)
		}
	}
}

func TestCheckDataPath(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		dp   DataPath
		want string // "" for no error
	}{
		{"", "", ""},
		{"", DataPathRelay, ""},
		{KindTAP, DataPathRelay, ""},
		{KindVeth, DataPathRelay, ""},
		{KindVeth, DataPathKernel, ""},
		{KindVeth, "", ""},
		{"", DataPathKernel, "kernel is for Kind=veth only (this bridge is Kind=tap, the default): a TAP's frames pass through vethd"},
		{KindTAP, DataPathKernel, "kernel is for Kind=veth only (this bridge is Kind=tap): a TAP's frames pass through vethd"},
	} {
		err := CheckDataPath(tc.kind, tc.dp)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
			t.Errorf("CheckDataPath(%q, %q) = %v, want %q", tc.kind, tc.dp, err, tc.want)
		}
		var ve *ValueError
		if err != nil && !errors.As(err, &ve) {
			t.Errorf("CheckDataPath(%q, %q): %T, want a *ValueError", tc.kind, tc.dp, err)
		}
	}
}

// TestDataPathKey: the key is read (relay, kernel, empty = the default),
// kernel needs Kind=veth (wherever Kind= is in the file), a bad value or
// kernel with a TAP names the line of DataPath=, and Marshal writes the
// key only when set, in a form Parse reads back.
func TestDataPathKey(t *testing.T) {
	for text, want := range map[string]DataPath{
		"[Bridge]\nParent=eth0\n":                                            "",
		"[Bridge]\nParent=eth0\nDataPath=relay\n":                            DataPathRelay,
		"[Bridge]\nParent=eth0\nKind=tap\nDataPath=Relay\n":                  DataPathRelay,
		"[Bridge]\nParent=eth0\nKind=veth\nDataPath=kernel\n":                DataPathKernel,
		"[Bridge]\nParent=eth0\nDataPath=KERNEL\nKind=veth\n":                DataPathKernel,
		"[Bridge]\nParent=eth0\nKind=veth\nDataPath=kernel\nDataPath=\n":     "",
		"[Bridge]\nParent=eth0\nDataPath=kernel\nDataPath=relay\n":           DataPathRelay,
		"[Bridge]\nParent=eth0\nKind=veth\nNamespace=ctr\nDataPath=kernel\n": DataPathKernel,
	} {
		b, err := Parse(strings.NewReader(text), testPath, "veth1")
		if err != nil {
			t.Errorf("Parse(%q): %v", text, err)
			continue
		}
		if b.DataPath != want {
			t.Errorf("Parse(%q): DataPath %q, want %q", text, b.DataPath, want)
		}
		out := b.Marshal()
		if (want == "") == strings.Contains(string(out), "\nDataPath=") {
			t.Errorf("Marshal of DataPath %q:\n%s", want, out)
		}
		if want != "" && !strings.Contains(string(out), "\nDataPath="+string(want)+"\n") {
			t.Errorf("Marshal of DataPath %q does not write DataPath=%s:\n%s", want, want, out)
		}
		back, err := Parse(bytes.NewReader(out), testPath, "veth1")
		if err != nil || back.DataPath != want || back.Kind != b.Kind {
			t.Errorf("Parse(Marshal()) of %q: %+v, %v", want, back, err)
		}
	}
	for _, tc := range []struct {
		text, want, public string
		line               int
	}{
		{"[Bridge]\nParent=eth0\nDataPath=tc\n",
			testPath + `:3: DataPath=: "tc" is not relay or kernel`,
			testPath + `:3: DataPath=: the value is not relay or kernel`, 3},
		{"[Bridge]\nParent=eth0\nDataPath=kernel # fast\n",
			testPath + `:3: DataPath=: "kernel # fast" is not relay or kernel; '#' starts a comment only at the beginning of a line, so put comments on a line of their own`,
			testPath + `:3: DataPath=: the value is not relay or kernel; '#' starts a comment only at the beginning of a line, so put comments on a line of their own`, 3},
		{"[Bridge]\nParent=eth0\nDataPath=kernel\n",
			testPath + `:3: DataPath=: kernel is for Kind=veth only (this bridge is Kind=tap, the default): a TAP's frames pass through vethd`,
			testPath + `:3: DataPath=: the value is for Kind=veth only (this bridge is Kind=tap, the default): a TAP's frames pass through vethd`, 3},
		{"[Bridge]\nParent=eth0\nDataPath=kernel\nKind=tap\n",
			testPath + `:3: DataPath=: kernel is for Kind=veth only (this bridge is Kind=tap): a TAP's frames pass through vethd`,
			testPath + `:3: DataPath=: the value is for Kind=veth only (this bridge is Kind=tap): a TAP's frames pass through vethd`, 3},
		// The last assignment is the one checked, and named.
		{"[Bridge]\nParent=eth0\nKind=veth\nDataPath=relay\nDataPath=kernel\nKind=\n",
			testPath + `:5: DataPath=: kernel is for Kind=veth only (this bridge is Kind=tap, the default): a TAP's frames pass through vethd`,
			testPath + `:5: DataPath=: the value is for Kind=veth only…`, 5},
	} {
		_, err := Parse(strings.NewReader(tc.text), testPath, "veth1")
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Parse(%q) = %v, want an *Error", tc.text, err)
			continue
		}
		if err.Error() != tc.want || e.Line != tc.line || e.Key != "DataPath" {
			t.Errorf("Parse(%q):\n%v (line %d, key %q)\nwant\n%s (line %d, key DataPath)", tc.text, err, e.Line, e.Key, tc.want, tc.line)
		}
		pub := e.Public()
		if want, ok := strings.CutSuffix(tc.public, "…"); ok {
			if !strings.HasPrefix(pub, want) {
				t.Errorf("Public() of %q:\n%s\ndoes not start with\n%s", tc.text, pub, want)
			}
		} else if pub != tc.public {
			t.Errorf("Public() of %q:\n%s\nwant\n%s", tc.text, pub, tc.public)
		}
	}
}
