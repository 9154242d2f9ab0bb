package dbusapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// The non-root tests re-run this test binary as nobody: TestHelperNobody,
// with the bus address and the bridge name in these variables, makes the
// calls and prints one line: helperMarker and the results as JSON.
const (
	envHelperBus    = "VETHD_DBUSAPI_HELPER_BUS"
	envHelperBridge = "VETHD_DBUSAPI_HELPER_BRIDGE"
	helperMarker    = "HELPER-RESULTS "
	nobody          = 65534
)

// helperResult is the outcome of one call made by the helper.
type helperResult struct {
	Error   string // D-Bus error name, or "" on success
	Message string
}

func TestHelperNobody(t *testing.T) {
	addr := os.Getenv(envHelperBus)
	if addr == "" {
		return // not run as a helper
	}
	name := os.Getenv(envHelperBridge)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close()

	results := make(map[string]helperResult)
	record := func(op string, err error) {
		var r helperResult
		var de dbus.Error
		switch {
		case err == nil:
		case errors.As(err, &de):
			r = helperResult{Error: de.Name, Message: errorMessage(de)}
		case errors.Is(err, ErrAccessDenied):
			r = helperResult{Error: "ErrAccessDenied", Message: err.Error()}
		default:
			r = helperResult{Error: "other", Message: err.Error()}
		}
		results[op] = r
	}

	var uid uint32
	err = conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, conn.Names()[0]).Store(&uid)
	record("Whoami", err)
	results["Whoami"] = helperResult{Error: results["Whoami"].Error, Message: fmt.Sprint(uid)}

	obj := conn.Object(BusName(name), ObjectPath(name))
	var all map[string]dbus.Variant
	record("GetAll", obj.Call(ifaceProperties+".GetAll", 0, Interface).Store(&all))
	var v dbus.Variant
	record("Get", obj.Call(ifaceProperties+".Get", 0, Interface, "State").Store(&v))
	var xml string
	record("Introspect", obj.Call(ifaceIntrospect+".Introspect", 0).Store(&xml))
	record("Ping", obj.Call(ifacePeer+".Ping", 0).Err)
	record("Set", obj.Call(ifaceProperties+".Set", 0, Interface, "MTU", dbus.MakeVariant(uint32(9000))).Err)
	record("Reload", obj.Call(Interface+".Reload", 0).Err)
	record("ResetCounters", obj.Call(Interface+".ResetCounters", 0).Err)
	var doc string
	record("Describe", obj.Call(Interface+".Describe", 0).Store(&doc))

	client := NewClient(conn)
	_, _, err = client.Get(context.Background(), name)
	record("ClientGet", err)
	_, err = client.List(context.Background())
	record("ClientList", err)
	record("ClientReload", client.Reload(context.Background(), name))

	reply, err := conn.RequestName(BusName("nobodys"), dbus.NameFlagDoNotQueue)
	if err == nil && reply != dbus.RequestNameReplyPrimaryOwner {
		err = fmt.Errorf("RequestName: %v", reply)
	}
	record("Own", err)

	out, err := json.Marshal(results)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s%s\n", helperMarker, out)
}

// runAsNobody runs TestHelperNobody as uid/gid 65534 against bus and the
// bridge name, and returns its results.
func runAsNobody(t *testing.T, bus *dbustest.Bus, name string) map[string]helperResult {
	t.Helper()
	// nobody must reach the socket and run a copy of this binary: the
	// original lives in go test's private work directory.
	for _, dir := range []string{bus.Dir, filepath.Dir(bus.Dir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(bus.Dir, "dbusapi.test")
	if err := copyFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-test.run=^TestHelperNobody$", "-test.count=1")
	cmd.Dir = bus.Dir
	cmd.Env = []string{envHelperBus + "=" + bus.Addr, envHelperBridge + "=" + name, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper as nobody: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if js, ok := strings.CutPrefix(sc.Text(), helperMarker); ok {
			var results map[string]helperResult
			if err := json.Unmarshal([]byte(js), &results); err != nil {
				t.Fatalf("helper results %q: %v", js, err)
			}
			if who := results["Whoami"]; who.Error != "" || who.Message != fmt.Sprint(nobody) {
				t.Fatalf("helper did not run as uid %d: %+v", nobody, who)
			}
			return results
		}
	}
	t.Fatalf("helper printed no results:\n%s", out)
	return nil
}

func copyFile(dst, src string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// uidCheckMessage is in the errors of the daemon's own UID check.
const uidCheckMessage = "requires uid 0"

// TestPolicyNobody checks dist/dbus/io.github.vethd.Bridge1.conf on a bus
// configured like the system bus: nobody may read and introspect, and the
// bus refuses everything else before the daemon sees it.
func TestPolicyNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		skip(t, "needs root to run a client as uid %d", nobody)
	}
	bus := dbustest.Start(t, dbustest.PolicyFile(t))
	fake := newFakeBridge("veth1")
	export(t, bus.Conn(t), fake)

	results := runAsNobody(t, bus, "veth1")
	for _, op := range []string{"GetAll", "Get", "Introspect", "Ping", "ClientGet", "ClientList"} {
		if r := results[op]; r.Error != "" {
			t.Errorf("%s as nobody: %s: %s; want success", op, r.Error, r.Message)
		}
	}
	for _, op := range []string{"Set", "Reload", "ResetCounters", "Describe", "Own"} {
		r := results[op]
		if r.Error != errAccessDenied || strings.Contains(r.Message, uidCheckMessage) {
			t.Errorf("%s as nobody: %q: %s; want %s from the bus policy", op, r.Error, r.Message, errAccessDenied)
		}
	}
	if r := results["ClientReload"]; r.Error != "ErrAccessDenied" {
		t.Errorf("Client.Reload as nobody: %+v, want ErrAccessDenied", r)
	}
	if r, c, d := fake.calls(); r != 0 || c != 0 || d != 0 {
		t.Errorf("fake saw %d reloads, %d resets, %d describes from nobody; want none", r, c, d)
	}
	t.Logf("Reload as nobody: %s", results["Reload"].Message)
}

// TestUIDCheckNobody checks the daemon's own check: on a bus that lets
// anyone call anything, nobody's Reload and ResetCounters reach the daemon
// and are refused there.
func TestUIDCheckNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		skip(t, "needs root to run a client as uid %d", nobody)
	}
	bus := dbustest.StartOpen(t)
	fake := newFakeBridge("veth1")
	export(t, bus.Conn(t), fake)

	results := runAsNobody(t, bus, "veth1")
	for _, op := range []string{"Reload", "ResetCounters", "ClientReload"} {
		r := results[op]
		if r.Error != errAccessDenied && r.Error != "ErrAccessDenied" || !strings.Contains(r.Message, uidCheckMessage) && op != "ClientReload" {
			t.Errorf("%s as nobody: %q: %s; want %s from the UID check", op, r.Error, r.Message, errAccessDenied)
		}
	}
	if r := results["Set"]; r.Error != errPropertyReadOnly {
		t.Errorf("Set as nobody: %+v, want %s", r, errPropertyReadOnly)
	}
	for _, op := range []string{"GetAll", "Introspect", "Describe", "Own"} {
		if r := results[op]; r.Error != "" {
			t.Errorf("%s as nobody: %s: %s; want success", op, r.Error, r.Message)
		}
	}
	if r, c, _ := fake.calls(); r != 0 || c != 0 {
		t.Errorf("fake saw %d reloads, %d resets from nobody; want none", r, c)
	}
	t.Logf("Reload as nobody: %s", results["Reload"].Message)
}
