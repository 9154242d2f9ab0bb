package service

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vethd/vethd/internal/journal"
)

func TestSeedSpecWarnsOnUniversalMAC(t *testing.T) {
	var buf strings.Builder
	d := newDaemon(Config{Mode: ModeSeed, Name: "veth1", Parent: "eth0", MAC: "00:16:3e:00:00:01",
		Log: slog.New(journal.NewHandler(&buf, false, slog.LevelInfo))})
	specs, err := d.loadSpecs()
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].cfg.MAC.String() != "00:16:3e:00:00:01" || specs[0].cfg.WaitParent || !strings.Contains(buf.String(), "vethd: warn: ") || !strings.Contains(buf.String(), "universally-administered") {
		t.Fatalf("spec %+v, log %q", specs[0].cfg, buf.String())
	}
}

func TestSeedSpecErrors(t *testing.T) {
	for _, c := range []struct {
		name, parent, mac, want string
	}{
		{"veth/1", "eth0", "persistent", "-v: invalid interface name"},
		{"veth1", "", "persistent", "-e: invalid interface name"},
		{"veth1", "eth0", "02:00", "-m: invalid MAC address"},
	} {
		d := newDaemon(Config{Mode: ModeSeed, Name: c.name, Parent: c.parent, MAC: c.mac})
		if _, err := d.loadSpecs(); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("-v %q -e %q -m %q: %v, want %q", c.name, c.parent, c.mac, err, c.want)
		}
	}
}

func TestInstanceSpec(t *testing.T) {
	dir := t.TempDir()
	mid := filepath.Join(dir, "machine-id")
	os.WriteFile(mid, []byte("3d1219c7c4c5404aaa1d2a6d2adfdaa4\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "veth2.conf"), []byte("[Bridge]\nParent=eth0\nMACAddress=random\nMTU=1400\nCarrier=on\n"), 0o644)
	d := newDaemon(Config{Mode: ModeInstance, Instance: "veth2", ConfigDir: dir, MachineIDFile: mid})
	specs, err := d.loadSpecs()
	if err != nil {
		t.Fatal(err)
	}
	c := specs[0].cfg
	if c.Name != "veth2" || c.Parent != "eth0" || c.MTU != 1400 || !c.CarrierOn || !c.WaitParent || len(c.MAC) != 6 || specs[0].policy.Kind.String() != "random" || specs[0].file != filepath.Join(dir, "veth2.conf") {
		t.Errorf("veth2.conf resolved to %+v (policy %v)", c, specs[0].policy)
	}
	os.WriteFile(filepath.Join(dir, "veth3.conf"), []byte("[Bridge]\nParent=eth0\nMTU=1\n"), 0o644)
	d = newDaemon(Config{Mode: ModeAll, ConfigDir: dir, MachineIDFile: mid})
	if _, err := d.loadSpecs(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "veth3.conf")+":3: MTU=") {
		t.Errorf("--all with a bad file: %v", err)
	}
}

func TestSpecARPIsolation(t *testing.T) {
	d := newDaemon(Config{Mode: ModeSeed, Name: "veth1", Parent: "eth0", MAC: "02:00:5e:10:00:01"})
	specs, err := d.loadSpecs()
	if err != nil || !specs[0].cfg.ARPIsolation {
		t.Errorf("seed default: %+v %v, want ARP isolation on", specs, err)
	}
	d = newDaemon(Config{Mode: ModeSeed, Name: "veth1", Parent: "eth0", MAC: "02:00:5e:10:00:01", NoARPIsolation: true})
	if specs, err = d.loadSpecs(); err != nil || specs[0].cfg.ARPIsolation {
		t.Errorf("--arp-isolation=no: %+v %v, want ARP isolation off", specs, err)
	}

	dir := t.TempDir()
	mid := filepath.Join(dir, "machine-id")
	os.WriteFile(mid, []byte("3d1219c7c4c5404aaa1d2a6d2adfdaa4\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "veth1.conf"), []byte("[Bridge]\nParent=eth0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "veth2.conf"), []byte("[Bridge]\nParent=eth0\nARPIsolation=no\n"), 0o644)
	d = newDaemon(Config{Mode: ModeAll, ConfigDir: dir, MachineIDFile: mid})
	specs, err = d.loadSpecs()
	if err != nil || len(specs) != 2 || !specs[0].cfg.ARPIsolation || specs[1].cfg.ARPIsolation {
		t.Fatalf("specs %+v %v, want veth1 isolated and veth2 not", specs, err)
	}

	// Describe's config says it.
	for i, want := range []string{"yes", "no"} {
		in := newInstance(specs[i], "tap", &env{version: "test"})
		var doc struct {
			Config map[string]any `json:"config"`
		}
		if err := json.Unmarshal([]byte((&busBridge{in: in}).Describe()), &doc); err != nil {
			t.Fatal(err)
		}
		if got := doc.Config["arp_isolation"]; got != want {
			t.Errorf("Describe of %s: arp_isolation %v, want %q (config %v)", specs[i].cfg.Name, got, want, doc.Config)
		}
	}
}
