package dbusapi

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// policyFile is our bus policy, relative to this package's directory.
const policyFile = "../../dist/dbus/io.github.vethd.Bridge1.conf"

// skip skips the test, or fails it when CI=true: CI must run every test.
func skip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, cannot skip: "+format, args...)
	}
	t.Skipf(format, args...)
}

// testBus is a private dbus-daemon listening on a socket in dir.
type testBus struct {
	addr string
	dir  string
}

// systemBusConfig is a bus configured like the system bus
// (/usr/share/dbus-1/system.conf, without the service launching, the
// user switch and the logging) that includes our policy file.
func systemBusConfig(socket, policy string) string {
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=` + xmlEscape(socket) + `</listen>
  <auth>EXTERNAL</auth>

  <policy context="default">
    <allow user="*"/>

    <deny own="*"/>
    <deny send_type="method_call"/>

    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>

    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>

    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus" />
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>

  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>

  <include>` + xmlEscape(policy) + `</include>
</busconfig>
`
}

// openBusConfig is a bus on which anyone may own any name and send
// anything.
func openBusConfig(socket string) string {
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=` + xmlEscape(socket) + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// startSystemBus starts a private bus configured like the system bus with
// our policy file.
func startSystemBus(t *testing.T) *testBus {
	t.Helper()
	policy, err := filepath.Abs(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(policy); err != nil {
		t.Fatalf("policy file: %v", err)
	}
	return startBus(t, func(socket string) string { return systemBusConfig(socket, policy) })
}

// startObjectBus starts the bus for the tests of the object itself: as
// root, one configured like the system bus with our policy; otherwise,
// where that policy would refuse us the bus names, one without
// restrictions.
func startObjectBus(t *testing.T) *testBus {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Logf("not root: using a bus without policy instead of %s", policyFile)
		return startOpenBus(t)
	}
	return startSystemBus(t)
}

// startOpenBus starts a private bus without any restriction.
func startOpenBus(t *testing.T) *testBus {
	t.Helper()
	return startBus(t, openBusConfig)
}

// startBus starts dbus-daemon with the configuration config(socket)
// and stops it when the test ends. It is killed also if the test binary
// dies first.
func startBus(t *testing.T, config func(socket string) string) *testBus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		skip(t, "dbus-daemon not installed: %v", err)
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "bus")
	cfg := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(cfg, []byte(config(socket)), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(daemon, "--nofork", "--print-address", "--config-file="+cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			t.Fatalf("dbus-daemon printed no address; stderr:\n%s", stderr.String())
		}
		return &testBus{addr: addr, dir: dir}
	case <-time.After(10 * time.Second):
		t.Fatalf("dbus-daemon did not start; stderr:\n%s", stderr.String())
	}
	return nil
}

// connect opens a connection to the bus, closed when the test ends.
func connect(t *testing.T, bus *testBus) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(bus.addr)
	if err != nil {
		t.Fatalf("connect to %s: %v", bus.addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// export exports b on conn, closed when the test ends.
func export(t *testing.T, conn *dbus.Conn, b Bridge) *Server {
	t.Helper()
	s, err := Export(conn, b)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fakeBridge is a Bridge whose state the test sets and whose method calls
// it counts.
type fakeBridge struct {
	mu        sync.Mutex
	status    Status
	counters  Counters
	reloadErr error // returned by Reload, and shown as LastError
	reloads   int
	resets    int
	describes int
}

func newFakeBridge(name string) *fakeBridge {
	return &fakeBridge{
		status: Status{
			Name:          name,
			Parent:        "eth0",
			IfIndex:       7,
			ParentIfIndex: 2,
			MACAddress:    "02:5e:00:12:34:56",
			MACPolicy:     "persistent",
			MTU:           1500,
			State:         "running",
			Carrier:       false,
			ParentCarrier: true,
			Promiscuous:   true,
			Offloads:      []string{"tso", "gro"},
			StartedUsec:   1_700_000_000_123_456,
			LastError:     "",
		},
		counters: Counters{
			RxPackets:   10,
			RxBytes:     1000,
			RxCoalesced: 3,
			TxPackets:   20,
			TxBytes:     2000,
			Errors:      1,
			RxDrops:     map[string]uint64{"runt": 2, "spoof": 5},
			TxDrops:     map[string]uint64{"queue-full": 4},
		},
	}
}

func (f *fakeBridge) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	st.Offloads = append([]string(nil), f.status.Offloads...)
	return st
}

func (f *fakeBridge) Counters() Counters {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.counters
	c.RxDrops = maps.Clone(f.counters.RxDrops)
	c.TxDrops = maps.Clone(f.counters.TxDrops)
	return c
}

func (f *fakeBridge) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	if f.reloadErr != nil {
		f.status.LastError = f.reloadErr.Error()
		return fmt.Errorf("reload %s: %w", f.status.Name, f.reloadErr)
	}
	f.status.LastError = ""
	return nil
}

func (f *fakeBridge) ResetCounters() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
	f.counters = Counters{}
}

func (f *fakeBridge) Describe() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	return fmt.Sprintf(`{"name":%q}`, f.status.Name)
}

// setStatus changes the fake's status with fn.
func (f *fakeBridge) setStatus(fn func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

// setCounters changes the fake's counters with fn.
func (f *fakeBridge) setCounters(fn func(*Counters)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.counters)
}

// calls returns how often Reload, ResetCounters and Describe were called.
func (f *fakeBridge) calls() (reloads, resets, describes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads, f.resets, f.describes
}

// dbusErrorName returns the D-Bus error name in err's chain, or "".
func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	return ""
}
