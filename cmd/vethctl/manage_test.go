package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/macaddr"
)

func TestAdd(t *testing.T) {
	h := newHarness(t)
	h.mustRun(0, "add", "veth1", "--parent", "eth0", "--mac", "02-00-5E-10-00-01", "--mtu", "1400", "--carrier", "on", "--now")

	path := filepath.Join(h.dir, "veth1.conf")
	got, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &config.Bridge{Name: "veth1", File: path, Parent: "eth0", MACAddress: "02:00:5e:10:00:01",
		MAC: macaddr.Policy{Kind: macaddr.Explicit, Addr: net.HardwareAddr{2, 0, 0x5e, 0x10, 0, 1}},
		MTU: 1400, Carrier: config.CarrierOn}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("file reads back as\n%+v\nwant\n%+v", got, want)
	}
	for _, fi := range []string{path, h.dir} {
		st, err := os.Stat(fi)
		if err != nil {
			t.Fatal(err)
		}
		if wantMode := map[bool]fs.FileMode{false: 0o644, true: fs.ModeDir | 0o755}[st.IsDir()]; st.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", fi, st.Mode(), wantMode)
		}
	}
	calls := []string{"Enable vethd@veth1.service", "DaemonReload", "Start vethd@veth1.service"}
	if got := h.units.mutating(); !slices.Equal(got, calls) {
		t.Errorf("systemd calls %q, want %q", got, calls)
	}
	for _, s := range []string{"Wrote " + path, "Created symlink /etc/systemd/system/multi-user.target.wants/vethd@veth1.service → /usr/lib/systemd/system/vethd@.service.", "Started vethd@veth1.service."} {
		if !strings.Contains(h.stdout.String(), s) {
			t.Errorf("stdout lacks %q", s)
		}
	}
}

func TestAddDefaults(t *testing.T) {
	h := newHarness(t)
	// Options before the name, global options after the command.
	h.mustRun(0, "add", "--parent=eth0", "veth1", "--config-dir", h.dir)
	got, err := config.Load(filepath.Join(h.dir, "veth1.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Parent != "eth0" || got.MAC.Kind != macaddr.Persistent || got.MTU != 0 || got.Carrier != config.CarrierFollow {
		t.Errorf("got %+v", got)
	}
	if calls := h.units.mutating(); !slices.Equal(calls, []string{"Enable vethd@veth1.service", "DaemonReload"}) {
		t.Errorf("without --now: calls %q", calls)
	}
	if !strings.Contains(h.stdout.String(), "MAC 22:43:60:c3:5b:4c (persistent)") {
		t.Errorf("stdout: %s", h.stdout.String())
	}
}

func TestAddKindNetns(t *testing.T) {
	h := newHarness(t)
	h.mustRun(0, "add", "veth1", "--parent", "eth0", "--kind", "veth", "--netns", "lab1")
	got, err := config.Load(filepath.Join(h.dir, "veth1.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != config.KindVeth || got.Namespace != "lab1" || got.DataPath != "" {
		t.Errorf("Kind %q, Namespace %q, DataPath %q; want veth, lab1, none", got.Kind, got.Namespace, got.DataPath)
	}
	h = newHarness(t)
	h.mustRun(0, "add", "veth1", "--parent", "eth0", "--kind", "veth", "--data-path", "Kernel")
	if got, err = config.Load(filepath.Join(h.dir, "veth1.conf")); err != nil || got.Kind != config.KindVeth || got.DataPath != config.DataPathKernel {
		t.Errorf("--kind veth --data-path Kernel: %+v, %v; want Kind veth, DataPath kernel", got, err)
	}
	// Without the options the file pins none (the vethd reading it decides).
	h = newHarness(t)
	h.mustRun(0, "add", "veth1", "--parent", "eth0")
	b, err := os.ReadFile(filepath.Join(h.dir, "veth1.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "\nKind=") || strings.Contains(string(b), "\nNamespace=") || strings.Contains(string(b), "\nDataPath=") {
		t.Errorf("file pins a default:\n%s", b)
	}
}

func TestAddExisting(t *testing.T) {
	h := newHarness(t)
	path := h.writeConfig("veth1", "[Bridge]\nParent=eth1\n")
	h.mustRun(1, "add", "veth1", "--parent", "eth0")
	if !strings.Contains(h.stderr.String(), "exists already; use --force") {
		t.Errorf("stderr: %s", h.stderr.String())
	}
	if b, _ := os.ReadFile(path); string(b) != "[Bridge]\nParent=eth1\n" {
		t.Errorf("file changed: %q", b)
	}
	if calls := h.units.mutating(); len(calls) != 0 {
		t.Errorf("systemd calls %q", calls)
	}

	h.mustRun(0, "add", "veth1", "--parent", "eth0", "--force")
	got, err := config.Load(path)
	if err != nil || got.Parent != "eth0" {
		t.Errorf("after --force: %+v, %v", got, err)
	}
	if ents, _ := os.ReadDir(h.dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestAddInvalid(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"veth1", "--parent", "eth0", "--mac", "01:00:5e:00:00:01"}, "multicast"},
		{[]string{"veth1", "--parent", "eth0", "--mac", "nonsense"}, "--mac: invalid MAC address"},
		{[]string{"veth1", "--parent", "eth0", "--mac", "00:00:00:00:00:00"}, "all-zero"},
		{[]string{"veth1"}, "--parent IF is required"},
		{[]string{"veth1", "--parent", "a/b"}, "--parent:"},
		{[]string{"veth1", "--parent", "veth1"}, `--parent: "veth1" is the bridge itself`},
		// What a file cannot hold: config's rules, not vethctl's.
		{[]string{"veth1", "--parent", `eth\0`}, `--parent: "eth\\0" holds a backslash`},
		{[]string{"veth1", "--parent", `"eth0"`}, `--parent: "eth0" is quoted`},
		{[]string{"veth1", "--parent", "eth0\u00a0"}, `--parent: "eth0\u00a0" begins or ends with white space`},
		{[]string{"veth1", "--parent", "eth0", "--mtu", ""}, `--mtu: "" is not a number or "inherit"`},
		{[]string{"veth1", "--parent", "eth0", "--mtu", "65536"}, `--mtu: 65536 is out of range: an MTU is 68 to 65535, or "inherit"`},
		{[]string{"veth1", "--parent", "eth0", "--carrier", ""}, `--carrier: "" is not follow or on`},
		{[]string{"veth1", "--parent", "eth0", "--mtu", "10"}, "--mtu: 10 is out of range"},
		{[]string{"veth1", "--parent", "eth0", "--mtu", "65535"}, "--mtu: 65535 is above what an interface of Kind=tap takes: at most 65521 (Kind=veth: 65535)"},
		{[]string{"veth1", "--parent", "eth0", "--mtu", "65522", "--kind", "tap"}, "--mtu: 65522 is above what an interface of Kind=tap takes: at most 65521"},
		{[]string{"veth1", "--parent", "eth0", "--mtu", "big"}, "--mtu:"},
		{[]string{"veth1", "--parent", "eth0", "--carrier", "off"}, `--carrier: "off" is not follow or on`},
		{[]string{"veth1", "--parent", "eth0", "--kind", "tun"}, `--kind: "tun" is not tap or veth`},
		{[]string{"veth1", "--parent", "eth0", "--data-path", "xdp"}, `--data-path: "xdp" is not relay or kernel`},
		{[]string{"veth1", "--parent", "eth0", "--data-path", "kernel"}, "--data-path: kernel needs --kind veth (a TAP's frames pass through vethd)"},
		{[]string{"veth1", "--parent", "eth0", "--data-path", "kernel", "--kind", "tap"}, "--data-path: kernel needs --kind veth"},
		{[]string{"veth1", "--parent", "eth0", "--netns", "a/b"}, `--netns: "a/b" is neither a name`},
		{[]string{"veth1", "--parent", "eth0", "--netns", ".."}, `--netns:`},
		{[]string{"a/b", "--parent", "eth0"}, "a/b"},
		{[]string{"waytoolonginterfacename", "--parent", "eth0"}, "waytoolong"},
		{[]string{"v+1", "--parent", "eth0"}, "cannot be the instance"},
		{[]string{"--parent", "eth0"}, "usage: vethctl add"},
		{[]string{"veth1", "veth2", "--parent", "eth0"}, "usage: vethctl add"},
		{[]string{"veth1", "--parent", "eth0", "--bogus"}, "unknown option --bogus"},
		{[]string{"veth1", "--parent"}, "option --parent needs an argument"},
	} {
		h := newHarness(t)
		h.mustRun(2, append([]string{"add"}, tc.args...)...)
		if !strings.Contains(h.stderr.String(), tc.msg) || !strings.HasPrefix(h.stderr.String(), "vethctl: ") {
			t.Errorf("add %v: stderr %q, want it to contain %q", tc.args, h.stderr.String(), tc.msg)
		}
		if _, err := os.Stat(h.dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("add %v: wrote %s", tc.args, h.dir)
		}
		if len(h.units.calls) != 0 {
			t.Errorf("add %v: systemd calls %q", tc.args, h.units.calls)
		}
	}
}

func TestAddUniversalMACWarns(t *testing.T) {
	h := newHarness(t)
	h.mustRun(0, "add", "veth1", "--parent", "eth0", "--mac", "00:11:22:33:44:55")
	if !strings.Contains(h.stderr.String(), "warning:") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
}

func TestAddStartFails(t *testing.T) {
	h := newHarness(t)
	h.units.result = map[string]string{"Start vethd@veth1.service": "failed"}
	h.mustRun(1, "add", "veth1", "--parent", "eth0", "--now")
	if !strings.Contains(h.stderr.String(), "journalctl -u vethd@veth1") {
		t.Errorf("stderr has no hint: %q", h.stderr.String())
	}
}

func TestAddAccessDenied(t *testing.T) {
	h := newHarness(t)
	h.units.errs = map[string]error{"Enable vethd@veth1.service": fmt.Errorf("enable vethd@veth1.service: %w",
		dbus.Error{Name: "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", Body: []any{"Interactive authentication required."}})}
	h.mustRun(77, "add", "veth1", "--parent", "eth0")
	if !strings.Contains(h.stderr.String(), "run vethctl as root") {
		t.Errorf("stderr has no hint: %q", h.stderr.String())
	}
}

// TestAddAllMode: with vethd.service running every file, add does not
// enable the instance but reloads vethd.service, and waits until the
// bridge is on the bus.
func TestAddAllMode(t *testing.T) {
	allActive := unitStatus{Name: "vethd.service", LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled"}
	t.Run("appears", func(t *testing.T) {
		h := newHarness(t)
		h.units.loaded = []unitStatus{allActive}
		polls := 0
		h.sleepHook = func(ctx context.Context) error {
			// vethd takes a few looks to show the new bridge.
			if polls++; polls == 3 {
				h.bridges.set("veth1", running("veth1", "eth0", "22:43:60:c3:5b:4c"))
			}
			return ctx.Err()
		}
		h.mustRun(0, "add", "veth1", "--parent", "eth0", "--now")
		if calls := h.units.mutating(); !slices.Equal(calls, []string{"ReloadUnit vethd.service"}) {
			t.Errorf("calls %q", calls)
		}
		if !strings.Contains(h.stdout.String(), "Reloaded vethd.service: it runs veth1.") || polls != 3 {
			t.Errorf("stdout %q after %d polls", h.stdout.String(), polls)
		}
	})
	t.Run("does not appear", func(t *testing.T) {
		h := newHarness(t)
		h.units.loaded = []unitStatus{allActive}
		h.mustRun(1, "add", "veth1", "--parent", "eth0", "--now", "--timeout", "5s")
		if got, want := h.stderr.String(), "vethctl: veth1 is not on the bus 5s after the reload of vethd.service; "+
			"see 'systemctl status vethd' and 'journalctl -u vethd'\n"; got != want {
			t.Errorf("stderr %q, want %q", got, want)
		}
		if h.clock.Sub(t0) < 5*time.Second || h.clock.Sub(t0) > 6*time.Second {
			t.Errorf("waited %v, want 5s", h.clock.Sub(t0))
		}
	})
	t.Run("no-block", func(t *testing.T) {
		h := newHarness(t)
		h.units.loaded = []unitStatus{allActive}
		h.units.result = map[string]string{"ReloadUnit vethd.service": "hang"}
		h.mustRun(0, "add", "veth1", "--parent", "eth0", "--now", "--no-block")
		if calls := h.units.mutating(); !slices.Equal(calls, []string{"ReloadUnit vethd.service --no-block"}) {
			t.Errorf("calls %q", calls)
		}
		if h.bridges.called("Get veth1") {
			t.Errorf("looked at the bus: %q", h.bridges.calls)
		}
	})
	t.Run("force, on the bus", func(t *testing.T) {
		// veth1 runs already: it applies the new file itself.
		h := newHarness(t)
		h.units.loaded = []unitStatus{allActive}
		h.writeConfig("veth1", "[Bridge]\nParent=eth1\n")
		h.bridges.set("veth1", running("veth1", "eth1", "22:43:60:c3:5b:4c"))
		h.mustRun(0, "add", "veth1", "--parent", "eth0", "--now", "--force")
		if calls := h.units.mutating(); len(calls) != 0 || !h.bridges.called("Reload veth1") {
			t.Errorf("systemd calls %q, bus calls %q", calls, h.bridges.calls)
		}
		if !strings.Contains(h.stdout.String(), "Reloaded veth1 (vethd.service): vethd applied its new configuration.") {
			t.Errorf("stdout %q", h.stdout.String())
		}
	})
	t.Run("inactive", func(t *testing.T) {
		h := newHarness(t)
		h.units.loaded = []unitStatus{{Name: "vethd.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead", UnitFileState: "enabled"}}
		h.units.onCall = func(call string) {
			if call == "Start vethd.service" {
				h.bridges.set("veth1", running("veth1", "eth0", "22:43:60:c3:5b:4c"))
			}
		}
		h.mustRun(0, "add", "veth1", "--parent", "eth0", "--now")
		if calls := h.units.mutating(); !slices.Equal(calls, []string{"Start vethd.service"}) {
			t.Errorf("calls %q", calls)
		}
		if !strings.Contains(h.stdout.String(), "Started vethd.service: it runs veth1.") {
			t.Errorf("stdout %q", h.stdout.String())
		}
	})
}

// TestAddAllModeHint: without --now, add says how to start the bridge:
// reload vethd.service if it runs, start it if it is only enabled.
func TestAddAllModeHint(t *testing.T) {
	for state, want := range map[string]string{
		"active":   "Run 'systemctl reload vethd' to start veth1.\n",
		"inactive": "Run 'systemctl start vethd' to start veth1.\n",
	} {
		h := newHarness(t)
		h.units.loaded = []unitStatus{{Name: "vethd.service", LoadState: "loaded", ActiveState: state, UnitFileState: "enabled"}}
		h.mustRun(0, "add", "veth1", "--parent", "eth0")
		if !strings.HasSuffix(h.stdout.String(), want) {
			t.Errorf("vethd.service %s: stdout %q, want it to end with %q", state, h.stdout.String(), want)
		}
		if calls := h.units.mutating(); len(calls) != 0 {
			t.Errorf("vethd.service %s: calls %q", state, calls)
		}
	}
}

// TestAddForceNowActive: add --force --now on a running instance makes
// vethd apply the new file; a start job would do nothing.
func TestAddForceNowActive(t *testing.T) {
	active := unitStatus{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled"}
	t.Run("on the bus", func(t *testing.T) {
		h := newHarness(t)
		h.writeConfig("veth1", "[Bridge]\nParent=eth1\n")
		h.units.loaded = []unitStatus{active}
		h.bridges.set("veth1", running("veth1", "eth1", "22:43:60:c3:5b:4c"))
		h.mustRun(0, "add", "veth1", "--parent", "eth0", "--force", "--now")
		want := []string{"Enable vethd@veth1.service", "DaemonReload"}
		if got := h.units.mutating(); !slices.Equal(got, want) {
			t.Errorf("systemd calls %q, want %q", got, want)
		}
		if !h.bridges.called("Reload veth1") {
			t.Errorf("bus calls %q", h.bridges.calls)
		}
		if out := h.stdout.String(); !strings.Contains(out, "Reloaded veth1 (vethd@veth1.service): vethd applied its new configuration.") ||
			strings.Contains(out, "Started") {
			t.Errorf("stdout %q", out)
		}
	})
	t.Run("reload fails", func(t *testing.T) {
		h := newHarness(t)
		h.units.loaded = []unitStatus{active}
		h.bridges.set("veth1", running("veth1", "eth1", "22:43:60:c3:5b:4c"))
		h.bridges.errs = map[string]error{"Reload veth1": fmt.Errorf("reload veth1: %w: set veth1 mtu: invalid argument", dbusapi.ErrReloadFailed)}
		h.mustRun(1, "add", "veth1", "--parent", "eth0", "--force", "--now")
		if got := h.stderr.String(); got != "vethctl: reload veth1: reload failed: set veth1 mtu: invalid argument\n" {
			t.Errorf("stderr %q", got)
		}
	})
	t.Run("not on the bus", func(t *testing.T) {
		h := newHarness(t)
		h.units.loaded = []unitStatus{active}
		h.mustRun(0, "add", "veth1", "--parent", "eth0", "--force", "--now")
		want := []string{"Enable vethd@veth1.service", "DaemonReload", "ReloadUnit vethd@veth1.service"}
		if got := h.units.mutating(); !slices.Equal(got, want) {
			t.Errorf("systemd calls %q, want %q", got, want)
		}
		if !strings.Contains(h.stdout.String(), "Reloaded vethd@veth1.service, not confirmed") {
			t.Errorf("stdout %q", h.stdout.String())
		}
	})
}

// TestAddNoBlock: --no-block queues the start job and does not wait.
func TestAddNoBlock(t *testing.T) {
	h := newHarness(t)
	h.units.result = map[string]string{"Start vethd@veth1.service": "hang"}
	h.mustRun(0, "add", "veth1", "--parent", "eth0", "--now", "--no-block")
	want := []string{"Enable vethd@veth1.service", "DaemonReload", "Start vethd@veth1.service --no-block"}
	if got := h.units.mutating(); !slices.Equal(got, want) {
		t.Errorf("systemd calls %q, want %q", got, want)
	}
	if out := h.stdout.String(); !strings.Contains(out, "Queued a start job for vethd@veth1.service") || strings.Contains(out, "Started") {
		t.Errorf("stdout %q", out)
	}
}

// TestAddTimeout: a start job that does not end within --timeout fails.
func TestAddTimeout(t *testing.T) {
	h := newHarness(t)
	h.units.result = map[string]string{"Start vethd@veth1.service": "hang"}
	start := time.Now()
	h.mustRun(1, "add", "veth1", "--parent", "eth0", "--now", "--timeout", "50ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	want := "vethctl: the start job of vethd@veth1.service did not end within 50ms (--timeout); it goes on: " +
		"see 'systemctl status vethd@veth1' and 'journalctl -u vethd@veth1'\n"
	if got := h.stderr.String(); got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	h.mustRun(2, "add", "veth2", "--parent", "eth0", "--timeout", "soon")
	if got := h.stderr.String(); !strings.Contains(got, `invalid value "soon" for --timeout: not a duration`) {
		t.Errorf("stderr %q", got)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errors.New("x"), 1},
		{usageErr("x"), 2},
		{noSuch("x"), 4},
		{fmt.Errorf("reset counters of veth1: %w", dbusapi.ErrNoSuchBridge), 4},
		{fmt.Errorf("reset counters of veth1: %w", dbusapi.ErrAccessDenied), 77},
		{fmt.Errorf("write x: %w", &fs.PathError{Op: "open", Path: "/etc/vethd/x.conf", Err: syscall.EACCES}), 77},
		{fmt.Errorf("write x: %w", &fs.PathError{Op: "open", Path: "/etc/vethd/x.conf", Err: syscall.EROFS}), 1},
		{fmt.Errorf("stop: %w", dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}), 77},
		{fmt.Errorf("stop: %w", &dbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit"}), 4},
		{fmt.Errorf("%w: x", errNoBus), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t)
	path := h.writeConfig("veth1", eth0Config)
	h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled"}}
	h.mustRun(0, "remove", "veth1")
	want := []string{"Stop vethd@veth1.service", "Disable vethd@veth1.service", "DaemonReload"}
	if got := h.units.mutating(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s not removed: %v", path, err)
	}
	if !strings.Contains(h.stdout.String(), `Removed "/etc/systemd/system/multi-user.target.wants/vethd@veth1.service".`) {
		t.Errorf("stdout: %s", h.stdout.String())
	}
}

func TestRemoveKeepConfigFailed(t *testing.T) {
	h := newHarness(t)
	path := h.writeConfig("veth1", eth0Config)
	h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed", UnitFileState: "enabled"}}
	h.mustRun(0, "remove", "veth1", "--keep-config")
	want := []string{"ResetFailed vethd@veth1.service", "Disable vethd@veth1.service", "DaemonReload"}
	if got := h.units.mutating(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("--keep-config: %v", err)
	}
}

func TestRemoveUnknown(t *testing.T) {
	h := newHarness(t)
	h.mustRun(4, "remove", "veth9")
	if !strings.Contains(h.stderr.String(), "no such bridge veth9") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
	if calls := h.units.mutating(); len(calls) != 0 {
		t.Errorf("calls %q", calls)
	}
}

// TestRemoveAllMode: with vethd.service active, remove reloads it and
// waits until the bridge has left the bus.
func TestRemoveAllMode(t *testing.T) {
	allActive := unitStatus{Name: "vethd.service", LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled"}
	t.Run("leaves", func(t *testing.T) {
		h := newHarness(t)
		h.writeConfig("veth1", eth0Config)
		h.units.loaded = []unitStatus{allActive}
		h.bridges.set("veth1", running("veth1", "eth0", "22:43:60:c3:5b:4c"))
		h.units.onCall = func(call string) {
			if call == "ReloadUnit vethd.service" {
				h.bridges.set("veth1", nil)
			}
		}
		h.mustRun(0, "remove", "veth1")
		if got := h.units.mutating(); !slices.Equal(got, []string{"DaemonReload", "ReloadUnit vethd.service"}) {
			t.Errorf("calls %q", got)
		}
		if !strings.Contains(h.stdout.String(), "Reloaded vethd.service: it stopped veth1.") {
			t.Errorf("stdout %q", h.stdout.String())
		}
	})
	t.Run("stays", func(t *testing.T) {
		h := newHarness(t)
		h.writeConfig("veth1", eth0Config)
		h.units.loaded = []unitStatus{allActive}
		h.bridges.set("veth1", running("veth1", "eth0", "22:43:60:c3:5b:4c"))
		h.mustRun(1, "remove", "veth1")
		if !strings.Contains(h.stderr.String(), "veth1 is still on the bus 1min 30s after the reload of vethd.service") {
			t.Errorf("stderr %q", h.stderr.String())
		}
	})
}

// TestRemoveNoBlock: --no-block queues the stop job and does not wait.
func TestRemoveNoBlock(t *testing.T) {
	h := newHarness(t)
	h.writeConfig("veth1", eth0Config)
	h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled"}}
	h.units.result = map[string]string{"Stop vethd@veth1.service": "hang"}
	h.mustRun(0, "remove", "veth1", "--no-block")
	want := []string{"Stop vethd@veth1.service --no-block", "Disable vethd@veth1.service", "DaemonReload"}
	if got := h.units.mutating(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestRemoveStopFails(t *testing.T) {
	h := newHarness(t)
	h.writeConfig("veth1", eth0Config)
	h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active"}}
	h.units.result = map[string]string{"Stop vethd@veth1.service": "timeout"}
	h.mustRun(1, "remove", "veth1")
	if !strings.Contains(h.stderr.String(), "job result: timeout") {
		t.Errorf("stderr: %q", h.stderr.String())
	}
}

func TestReload(t *testing.T) {
	t.Run("unit, on the bus", func(t *testing.T) {
		// The bus says whether vethd applied the file; systemd's
		// reload job (kill -HUP) does not.
		h := newHarness(t)
		h.writeConfig("veth1", eth0Config)
		h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active"}}
		h.bridges.bridges["veth1"] = running("veth1", "eth0", "22:43:60:c3:5b:4c")
		h.mustRun(0, "reload", "veth1")
		if got := h.units.mutating(); len(got) != 0 {
			t.Errorf("systemd calls %q", got)
		}
		if !h.bridges.called("Reload veth1") || h.stdout.String() != "Reloaded veth1: vethd applied its configuration.\n" {
			t.Errorf("bus calls %q, stdout %q", h.bridges.calls, h.stdout.String())
		}
	})
	t.Run("unit, not on the bus", func(t *testing.T) {
		h := newHarness(t)
		h.writeConfig("veth1", eth0Config)
		h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active"}}
		h.mustRun(0, "reload", "veth1")
		if got := h.units.mutating(); !slices.Equal(got, []string{"ReloadUnit vethd@veth1.service"}) {
			t.Errorf("calls %q", got)
		}
		if !strings.Contains(h.stdout.String(), "Reloaded vethd@veth1.service, not confirmed: veth1 is not on the bus") {
			t.Errorf("stdout %q", h.stdout.String())
		}
	})
	t.Run("unit, not on the bus, timeout", func(t *testing.T) {
		h := newHarness(t)
		h.writeConfig("veth1", eth0Config)
		h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active"}}
		h.units.result = map[string]string{"ReloadUnit vethd@veth1.service": "hang"}
		h.mustRun(1, "reload", "veth1", "--timeout", "0.25")
		if !strings.Contains(h.stderr.String(), "the reload job of vethd@veth1.service did not end within 250ms (--timeout)") {
			t.Errorf("stderr %q", h.stderr.String())
		}
	})
	t.Run("bad file", func(t *testing.T) {
		h := newHarness(t)
		h.writeConfig("veth1", "[Bridge]\nParent=eth0\nCarrier=off\n")
		h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active"}}
		h.mustRun(1, "reload", "veth1")
		if len(h.units.mutating()) != 0 || !strings.Contains(h.stderr.String(), "veth1.conf:3: Carrier=") {
			t.Errorf("calls %q, stderr %q", h.units.mutating(), h.stderr.String())
		}
	})
	t.Run("bus", func(t *testing.T) {
		h := newHarness(t)
		h.bridges.bridges["veth1"] = running("veth1", "eth0", "22:43:60:c3:5b:4c")
		h.mustRun(0, "reload", "veth1")
		if !slices.Contains(h.bridges.calls, "Reload veth1") || len(h.units.mutating()) != 0 {
			t.Errorf("bus calls %q, systemd calls %q", h.bridges.calls, h.units.mutating())
		}
	})
	t.Run("reload failed", func(t *testing.T) {
		h := newHarness(t)
		h.units.loaded = []unitStatus{{Name: "vethd@veth1.service", LoadState: "loaded", ActiveState: "active"}}
		h.bridges.bridges["veth1"] = running("veth1", "eth0", "22:43:60:c3:5b:4c")
		h.bridges.errs = map[string]error{"Reload veth1": fmt.Errorf("reload veth1: %w: no parent", dbusapi.ErrReloadFailed)}
		h.mustRun(1, "reload", "veth1")
		if got := h.stderr.String(); got != "vethctl: reload veth1: reload failed: no parent\n" {
			t.Errorf("stderr %q", got)
		}
		if got := h.units.mutating(); len(got) != 0 {
			t.Errorf("systemd calls %q", got)
		}
	})
	t.Run("access denied", func(t *testing.T) {
		h := newHarness(t)
		h.bridges.bridges["veth1"] = running("veth1", "eth0", "22:43:60:c3:5b:4c")
		h.bridges.errs = map[string]error{"Reload veth1": fmt.Errorf("reload veth1: %w", dbusapi.ErrAccessDenied)}
		h.mustRun(77, "reload", "veth1")
	})
	t.Run("unknown", func(t *testing.T) {
		h := newHarness(t)
		h.mustRun(4, "reload", "veth1")
	})
}

func TestReset(t *testing.T) {
	h := newHarness(t)
	h.bridges.bridges["veth1"] = running("veth1", "eth0", "22:43:60:c3:5b:4c")
	h.mustRun(0, "reset", "veth1")
	if !slices.Contains(h.bridges.calls, "ResetCounters veth1") {
		t.Errorf("calls %q", h.bridges.calls)
	}
	h.mustRun(4, "reset", "veth2")

	h.bridges.errs = map[string]error{"ResetCounters veth1": fmt.Errorf("reset counters of veth1: %w", dbusapi.ErrAccessDenied)}
	h.mustRun(77, "reset", "veth1")
	if got, want := h.stderr.String(), "vethctl: reset counters of veth1: access denied (run vethctl as root, e.g. with sudo)\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

func TestMAC(t *testing.T) {
	h := newHarness(t)
	h.mustRun(0, "mac", "veth1")
	if got := h.stdout.String(); got != "22:43:60:c3:5b:4c\n" {
		t.Errorf("mac veth1: %q", got)
	}
	h.mustRun(0, "--json", "mac", "veth1")
	var m map[string]string
	if err := json.Unmarshal(h.stdout.Bytes(), &m); err != nil || len(m) != 2 || m["name"] != "veth1" || m["mac"] != "22:43:60:c3:5b:4c" {
		t.Errorf("mac --json: %s (%v)", h.stdout.String(), err)
	}
	// No bus needed.
	h.busErr = errNoBus
	h.mustRun(0, "mac", "veth1")

	h.writeConfig("veth1", "[Bridge]\nParent=eth0\nMACAddress=random\n")
	h.mustRun(0, "mac", "veth1")
	if !strings.Contains(h.stderr.String(), "MACAddress=random") {
		t.Errorf("no note about the file: %q", h.stderr.String())
	}

	h.mustRun(2, "mac", "a/b")
	h.mustRun(2, "mac")
	h.midFile = filepath.Join(t.TempDir(), "missing")
	h.mustRun(1, "mac", "veth1")
	// The hint is mac's, not add's (--mac random).
	if got := h.stderr.String(); strings.Contains(got, "--mac ") || !strings.Contains(got, "--machine-id-file") ||
		!strings.Contains(got, "no such file or directory") {
		t.Errorf("stderr %q", got)
	}
}
