package service

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
)

// TestSeedSpecDataPath: --data-path reaches the bridge's Config ("" when
// not given: the bridge applies its kind's default); a bad value, or kernel without --kind=veth, is a
// configuration error (exit 78) before any bridge starts.
func TestSeedSpecDataPath(t *testing.T) {
	for _, tc := range []struct {
		kind, dataPath string
		want           bridge.DataPath
	}{
		{"", "", ""},
		{"veth", "", ""},
		{"", "relay", bridge.DataPathRelay},
		{"veth", "RELAY", bridge.DataPathRelay},
		{"veth", "kernel", bridge.DataPathKernel},
		{"VETH", "Kernel", bridge.DataPathKernel},
	} {
		d := newDaemon(Config{Mode: ModeSeed, Name: "veth1", Parent: "eth0", MAC: "02:00:5e:10:00:01", Kind: tc.kind, DataPath: tc.dataPath})
		specs, err := d.loadSpecs()
		if err != nil || specs[0].cfg.DataPath != tc.want {
			t.Errorf("--kind=%q --data-path=%q: %+v, %v; want data path %s", tc.kind, tc.dataPath, specs, err, tc.want)
		}
	}
	for _, tc := range []struct{ kind, dataPath, want string }{
		{"", "xdp", `--data-path: "xdp" is not relay or kernel`},
		{"", "kernel", "--data-path: kernel needs --kind=veth (a TAP's frames pass through vethd)"},
		{"tap", "kernel", "--data-path: kernel needs --kind=veth (a TAP's frames pass through vethd)"},
	} {
		h := newHarness(t)
		cfg := h.config(ModeSeed)
		cfg.Kind, cfg.DataPath = tc.kind, tc.dataPath
		h.run(cfg)
		err := h.wait()
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindConfig || err.Error() != tc.want {
			t.Errorf("--kind=%q --data-path=%q: Run = %v, want a KindConfig error %q", tc.kind, tc.dataPath, err, tc.want)
		}
		if n := len(h.start.calls); n != 0 {
			t.Errorf("--kind=%q --data-path=%q: %d bridges started", tc.kind, tc.dataPath, n)
		}
	}
}

// TestDataPathFromFile: DataPath= reaches the bridge's Config; D-Bus's
// DataPath is the bridge's (the one in use), Describe has both the
// configured one (config.data_path) and the one in use
// (status.data_path); DataPath=kernel with a TAP is a configuration
// error naming the file and line, before any start.
func TestDataPathFromFile(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nKind=veth\nDataPath=kernel\n")
	h.run(h.config(ModeInstance))
	b := h.start.nextStarted(t)
	if b.cfg.DataPath != bridge.DataPathKernel || b.cfg.Kind != bridge.KindVeth {
		t.Fatalf("started with DataPath %q Kind %q, want kernel veth", b.cfg.DataPath, b.cfg.Kind)
	}
	h.ready(0)
	in := h.instance("veth1")
	if st := in.status(); st.DataPath != "kernel" || st.Kind != "veth" {
		t.Errorf("status: DataPath %q Kind %q, want kernel veth", st.DataPath, st.Kind)
	}
	// The kernel refused the programs: the bridge relays, and says so.
	b.set(func(b *fakeBridge) { b.status.DataPath = bridge.DataPathRelay })
	if st := in.status(); st.DataPath != "relay" {
		t.Errorf("status after the fallback: DataPath %q, want relay", st.DataPath)
	}
	var doc struct {
		Config map[string]any `json:"config"`
		Status map[string]any `json:"status"`
	}
	if err := json.Unmarshal([]byte(h.d.busBridge(in).Describe()), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Config["data_path"] != "kernel" || doc.Config["kind"] != "veth" || doc.Status["data_path"] != "relay" {
		t.Errorf("Describe: config %v, status %v; want config data_path kernel, status data_path relay", doc.Config, doc.Status)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	h = newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nDataPath=kernel\n")
	h.run(h.config(ModeInstance))
	err := h.wait()
	var e *Error
	want := filepath.Join(h.dir, "veth1.conf") + ":3: DataPath=: kernel is for Kind=veth only (this bridge is Kind=tap, the default): a TAP's frames pass through vethd"
	if !errors.As(err, &e) || e.Kind != KindConfig || err.Error() != want {
		t.Fatalf("Run = %v, want a KindConfig error %q", err, want)
	}
	if n := len(h.start.calls); n != 0 {
		t.Errorf("%d bridges started", n)
	}
}

// TestReloadDataPath: a changed DataPath= is applied in place, as
// Parent= is (the bridge swaps its data path: Reconfigure, not a new
// bridge), both ways; DataPath=kernel with a TAP is refused, keeping
// the running configuration.
func TestReloadDataPath(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nKind=veth\nDataPath=relay\n")
	h.run(h.config(ModeInstance))
	b := h.start.nextStarted(t)
	if b.cfg.DataPath != bridge.DataPathRelay {
		t.Fatalf("started with DataPath %q, want relay", b.cfg.DataPath)
	}
	h.ready(0)
	in := h.instance("veth1")
	reload := func() {
		t.Helper()
		n := len(h.sd.Messages())
		h.sigs <- syscall.SIGHUP
		h.ready(h.sd.WaitFor(t, n, 5*time.Second, "RELOADING=1"))
	}

	h.writeConf("veth1", "[Bridge]\nParent=eth0\nKind=veth\nDataPath=kernel\n")
	reload()
	rc := b.reconfigs()
	if len(rc) != 1 || rc[0].DataPath != bridge.DataPathKernel {
		t.Fatalf("reconfigured with %+v, want DataPath kernel", rc)
	}
	if st := in.status(); st.DataPath != "kernel" || st.LastError != "" {
		t.Errorf("after DataPath=kernel: DataPath %q LastError %q", st.DataPath, st.LastError)
	}

	h.writeConf("veth1", "[Bridge]\nParent=eth0\nKind=veth\nDataPath=relay\n")
	reload()
	if rc = b.reconfigs(); len(rc) != 2 || rc[1].DataPath != bridge.DataPathRelay {
		t.Fatalf("reconfigured with %+v, want DataPath relay", rc)
	}
	if st := in.status(); st.DataPath != "relay" {
		t.Errorf("after DataPath=relay: DataPath %q", st.DataPath)
	}

	// DataPath= removed: the kind's default, which the bridge applies.
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nKind=veth\n")
	reload()
	if rc = b.reconfigs(); len(rc) != 3 || rc[2].DataPath != "" {
		t.Fatalf("reconfigured with %+v, want DataPath \"\"", rc)
	}
	if st := in.status(); st.DataPath != "kernel" {
		t.Errorf("after DataPath= removed: DataPath %q, want the veth kind's default, kernel", st.DataPath)
	}
	var doc struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal([]byte(h.d.busBridge(in).Describe()), &doc); err != nil || doc.Config["data_path"] != "kernel" {
		t.Errorf("Describe without DataPath=: config %v, %v; want data_path kernel (the veth kind's default)", doc.Config, err)
	}

	file := filepath.Join(h.dir, "veth1.conf")
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nDataPath=kernel\n")
	reload()
	line := h.log.WaitLine(t, "Reload failed")
	if want := "vethd: error: Reload failed; keeping the running configuration: " + file + ":3: DataPath=: kernel is for Kind=veth only"; !strings.HasPrefix(line, want) {
		t.Errorf("log %q, want it to start with %q", line, want)
	}
	if st := in.status(); !strings.HasPrefix(st.LastError, "reload: "+file+":3: DataPath=: the value is for Kind=veth only") || st.DataPath != "kernel" {
		t.Errorf("after a refused reload: LastError %q, DataPath %q", st.LastError, st.DataPath)
	}
	if len(b.reconfigs()) != 3 {
		t.Error("a refused file reached the bridge")
	}
	if n := len(h.start.bridges("veth1")); n != 1 {
		t.Errorf("%d bridges started, want 1 (reloads reconfigure the running one)", n)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultDataPathAgrees: a file without DataPath= means the same data
// path to pkg/config (docs, Describe) as to pkg/bridge (what runs).
func TestDefaultDataPathAgrees(t *testing.T) {
	for _, k := range []config.Kind{"", config.KindTAP, config.KindVeth} {
		if c, b := config.DefaultDataPath(k), bridge.DefaultDataPath(bridgeKind(k)); string(c) != string(b) {
			t.Errorf("kind %q: config's default data path %q, bridge's %q", k, c, b)
		}
	}
	if config.DefaultDataPath(config.KindVeth) != config.DataPathKernel || config.DefaultDataPath("") != config.DataPathRelay {
		t.Errorf("default data paths: veth %q, tap %q", config.DefaultDataPath(config.KindVeth), config.DefaultDataPath(""))
	}
}
