// Package dbustest starts private D-Bus daemons for tests, configured like
// the system bus.
package dbustest

import (
	"bufio"
	"encoding/xml"
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

// Bus is a private dbus-daemon listening on a Unix socket.
type Bus struct {
	Addr   string // the address to dial, as dbus-daemon printed it
	Socket string // path of the listening socket
	Dir    string // directory of the socket, the config (bus.conf) and the daemon's stderr (bus.log)

	stop func()
}

// Stop kills the daemon and waits for it (a bus that goes away under its
// clients). It is also done at cleanup; calling it twice is harmless.
func (b *Bus) Stop() { b.stop() }

// Start starts dbus-daemon configured like the system bus
// (/usr/share/dbus-1/system.conf, without service activation, the user
// switch and logging) including the given policy files (absolute paths),
// on a socket in a new t.TempDir(). The daemon is killed and waited for at
// cleanup, and killed also if the test binary dies first. Start skips the
// test if dbus-daemon is not installed, but fails it when CI=true.
func Start(t testing.TB, policies ...string) *Bus {
	t.Helper()
	return StartIn(t, t.TempDir(), policies...)
}

// StartIn is Start with the socket and files in dir, which must exist.
func StartIn(t testing.TB, dir string, policies ...string) *Bus {
	t.Helper()
	var includes strings.Builder
	for _, p := range policies {
		if !filepath.IsAbs(p) {
			t.Fatalf("dbustest: policy %s: not an absolute path", p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("dbustest: policy: %v", err)
		}
		includes.WriteString("  <include>" + xmlEscape(p) + "</include>\n")
	}
	return start(t, dir, systemPolicy+includes.String())
}

// StartOpen starts a bus on which anyone may own any name and send
// anything, on a socket in a new t.TempDir(); otherwise as Start.
func StartOpen(t testing.TB) *Bus {
	t.Helper()
	return start(t, t.TempDir(), openPolicy)
}

// Conn returns a connection to the bus, authenticated and registered
// (Hello), closed at cleanup.
func (b *Bus) Conn(t testing.TB) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Addr)
	if err != nil {
		t.Fatalf("dbustest: connect to %s: %v", b.Addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// PolicyFile returns the absolute path of vethd's bus policy,
// dist/dbus/io.github.vethd.Bridge1.conf in the module found by walking up
// from the working directory to go.mod.
func PolicyFile(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("dbustest: no go.mod above the working directory")
		}
		dir = up
	}
	p := filepath.Join(dir, "dist", "dbus", "io.github.vethd.Bridge1.conf")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("dbustest: policy file: %v", err)
	}
	return p
}

// systemPolicy is the default policy of /usr/share/dbus-1/system.conf.
const systemPolicy = `  <policy context="default">
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
`

// openPolicy lets anyone own any name and send anything.
const openPolicy = `  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
`

// start writes a config with policy (<policy> and <include> elements) to
// dir and starts dbus-daemon with it.
func start(t testing.TB, dir, policy string) *Bus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, cannot skip: dbus-daemon not installed: %v", err)
		}
		t.Skipf("dbus-daemon not installed: %v", err)
	}
	b := &Bus{Socket: filepath.Join(dir, "bus.socket"), Dir: dir}
	cfg := filepath.Join(dir, "bus.conf")
	conf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=` + xmlEscape(b.Socket) + `</listen>
  <auth>EXTERNAL</auth>
` + policy + `</busconfig>
`
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "bus.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close() // the daemon has its own copy
	stderr := func() string { s, _ := os.ReadFile(logPath); return string(s) }

	cmd := exec.Command(daemon, "--nofork", "--print-address", "--config-file="+cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// dbus-daemon would send its own READY=1 to a test's fake systemd.
	cmd.Env = withoutEnv(os.Environ(), "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID")
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbustest: start dbus-daemon: %v", err)
	}
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("dbus-daemon stderr:\n%s", stderr())
		}
	})

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case b.Addr = <-line:
		if b.Addr == "" {
			t.Fatalf("dbustest: dbus-daemon printed no address; stderr:\n%s", stderr())
		}
		return b
	case <-time.After(10 * time.Second):
		t.Fatalf("dbustest: dbus-daemon did not start; stderr:\n%s", stderr())
	}
	return nil
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// withoutEnv returns env without the variables named.
func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
