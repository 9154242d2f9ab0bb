package service

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
)

// TestLastErrorQuotesNothing (issue 9 item 7): a reload of a bad file —
// also one that is a link to someone's secrets — leaves in LastError and
// STATUS= (world-readable) the file, the line, the key and the problem,
// never the value or other text of the file; the journal keeps the value.
func TestLastErrorQuotesNothing(t *testing.T) {
	const secret = "hunter2x"
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.run(h.config(ModeInstance))
	h.start.nextStarted(t)
	h.ready(0)
	in := h.instance("veth1")
	file := filepath.Join(h.dir, "veth1.conf")
	secrets := filepath.Join(t.TempDir(), "secrets")
	for i, tc := range []struct {
		text, lastError string
		link            bool // veth1.conf a symlink to the secret file
	}{
		{text: "[Bridge]\nParent=eth0\nMTU=hunter2x\n", lastError: "reload: " + file + `:3: MTU=: the value is not a number or "inherit"`},
		{text: "[Bridge]\nParent=hunter2x/\n", lastError: "reload: " + file + `:2: Parent=: the value is not a valid interface name…`},
		{text: "[Bridge]\nParent=eth0\nMACAddress=hunter2x\n", lastError: "reload: " + file + `:3: MACAddress=: the value is not a usable MAC address…`},
		{text: "[Bridge]\nParent=eth0\npassword=hunter2x\n", link: true, lastError: "reload: " + file + `:3: unknown key; known keys are…`},
		{text: "[hunter2x]\n", link: true, lastError: "reload: " + file + `:1: unknown section; the only section is [Bridge]`},
		{text: "DB_PASSWORD=hunter2x\n", link: true, lastError: "reload: " + file + `:1: text comes before any section header…`},
	} {
		os.Remove(file)
		if tc.link {
			if err := os.WriteFile(secrets, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(secrets, file); err != nil {
				t.Fatal(err)
			}
		} else {
			h.writeConf("veth1", tc.text)
		}
		n, lines := len(h.sd.Messages()), len(h.log.Lines())
		h.sigs <- syscall.SIGHUP
		h.ready(h.sd.WaitFor(t, n, 5*time.Second, "RELOADING=1"))
		le := in.status().LastError
		if want, ok := strings.CutSuffix(tc.lastError, "…"); ok && !strings.HasPrefix(le, want) || !ok && le != tc.lastError {
			t.Errorf("%d: LastError\n%s\nwant\n%s", i, le, tc.lastError)
		}
		if strings.Contains(le, secret) || strings.Contains(le, "password") {
			t.Errorf("%d: LastError %q quotes the file", i, le)
		}
		for _, m := range h.sd.Messages()[n:] {
			if strings.Contains(m, secret) {
				t.Errorf("%d: %q quotes the file", i, m)
			}
		}
		// The journal keeps the value of a known key.
		if !tc.link && !strings.Contains(strings.Join(h.log.Lines()[lines:], "\n"), secret) {
			t.Errorf("%d: the log lost the value: %q", i, h.log.Lines()[lines:])
		}
	}
}

// TestMTUOverKindIsConfigError (issue 9 item 6): MTU= above what the
// kind takes ends Run with a configuration error (exit 78) at FILE:LINE
// naming the maximum, before any start; Kind=veth takes 65535.
func TestMTUOverKindIsConfigError(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nMTU=65535\n")
	h.run(h.config(ModeInstance))
	err := h.wait()
	var e *Error
	want := filepath.Join(h.dir, "veth1.conf") + ":3: MTU=: 65535 is above what an interface of Kind=tap takes: at most 65521 (Kind=veth: 65535)"
	if !errors.As(err, &e) || e.Kind != KindConfig || err.Error() != want {
		t.Fatalf("Run = %v, want a KindConfig error %q", err, want)
	}
	if len(h.start.calls) != 0 {
		t.Error("a bridge was started")
	}

	h2 := newHarness(t)
	h2.writeConf("veth1", "[Bridge]\nParent=eth0\nMTU=65535\nKind=veth\n")
	h2.run(h2.config(ModeInstance))
	if b := h2.start.nextStarted(t); b.cfg.MTU != 65535 || b.cfg.Kind != bridge.KindVeth {
		t.Errorf("started with %+v", b.cfg)
	}

	// A bridge refusing an MTU is a configuration error too.
	if se := startError(errors.Join(bridge.ErrMTUTooLarge)); se.Kind != KindConfig {
		t.Errorf("startError(ErrMTUTooLarge) is kind %v", se.Kind)
	}
}

// TestMTULimitsAgree: pkg/config's maximum MTU of each kind is pkg/bridge's.
func TestMTULimitsAgree(t *testing.T) {
	for _, k := range []config.Kind{"", config.KindTAP, config.KindVeth} {
		if c, b := config.MaxMTU(k), bridge.MaxMTU(bridgeKind(k)); c != b {
			t.Errorf("kind %q: config says %d, bridge %d", k, c, b)
		}
	}
}

// TestAllMACClash (--all): one explicit MACAddress= in two files is a
// configuration error naming both files (exit 78), at the start and when
// a reload would make the clash; LastError leaves the address out.
func TestAllMACClash(t *testing.T) {
	const mac = "02:00:5e:10:00:01"
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nMACAddress="+mac+"\n")
	h.writeConf("veth2", "[Bridge]\nParent=eth1\nMACAddress="+mac+"\n")
	h.run(h.config(ModeAll))
	err := h.wait()
	var e *Error
	want := h.dir + "/veth2.conf: MACAddress=: " + mac + " is veth1's too (" + h.dir + "/veth1.conf); two interfaces with one address would both take its frames: give one of them another MACAddress="
	if !errors.As(err, &e) || e.Kind != KindConfig || err.Error() != want {
		t.Fatalf("Run = %v, want a KindConfig error %q", err, want)
	}
	if len(h.start.calls) != 0 {
		t.Error("a bridge was started")
	}

	h2 := newHarness(t)
	h2.writeConf("veth1", "[Bridge]\nParent=eth0\nMACAddress="+mac+"\n")
	h2.writeConf("veth2", "[Bridge]\nParent=eth0\nMACAddress=02:00:5e:10:00:02\n")
	h2.run(h2.config(ModeAll))
	h2.ready(0)
	h2.writeConf("veth2", "[Bridge]\nParent=eth0\nMACAddress="+mac+"\n")
	n := len(h2.sd.Messages())
	h2.sigs <- syscall.SIGHUP
	h2.sd.WaitFor(t, n, 5*time.Second, "READY=1")
	h2.log.WaitLine(t, "vethd: error: Reload of veth2 failed; keeping its running configuration: "+h2.dir+"/veth2.conf: MACAddress=: "+mac+" is veth1's too")
	le := h2.instance("veth2").status().LastError
	if want := "reload: " + h2.dir + "/veth2.conf: MACAddress=: its address is veth1's too (" + h2.dir + "/veth1.conf)…"; !strings.HasPrefix(le, strings.TrimSuffix(want, "…")) || strings.Contains(le, mac) {
		t.Errorf("LastError %q, want %q", le, want)
	}
	// A new file with the clash is not started.
	h2.writeConf("veth3", "[Bridge]\nParent=eth0\nMACAddress="+mac+"\n")
	n = len(h2.sd.Messages())
	h2.sigs <- syscall.SIGHUP
	h2.sd.WaitFor(t, n, 5*time.Second, "READY=1")
	h2.log.WaitLine(t, "vethd: error: Reload: not starting veth3: "+h2.dir+"/veth3.conf: MACAddress=: "+mac+" is veth")
}
