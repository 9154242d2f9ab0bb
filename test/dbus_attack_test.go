package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// The attack runs as nobody in a copy of this test binary:
// TestHelperDBusAttacker, with the bus address in envAttackBus, makes the
// hostile calls and prints attackMarker and an attackReport as JSON.
const (
	envAttackBus = "VETHD_IT_ATTACK_BUS"
	attackMarker = "ATTACK-REPORT "
	attackUID    = 65534
	// attackConns × attackCalls Gets with a bigArg-byte name is the
	// repro of issue 9 item 1.
	attackConns = 16
	attackCalls = 2
	// rssLimit is what vethd's peak RSS (VmHWM) must stay under.
	rssLimit = 64 << 20
	// maxErrorText is the longest error message a hostile call may get
	// back: errors quote at most a short prefix of what the caller sent.
	maxErrorText = 256
)

// bigArg is the size of the oversize names and arguments: 8 MiB in CI
// (the bus daemon passes the 16 × 2 of them at ~30 MB/s: 30 MiB took the
// test to a minute; 8 MiB ones still grew the old vethd far past rssLimit),
// or VETHD_IT_ATTACK_MIB MiB — 30 for the repro; less than the
// system bus's 32 MiB message limit, so the bus passes them on.
var bigArg = func() int {
	if v, err := strconv.Atoi(os.Getenv("VETHD_IT_ATTACK_MIB")); err == nil && v > 0 && v < 32 {
		return v << 20
	}
	return 8 << 20
}()

// attackReport is what the attacker saw: per kind of call, how many
// replies of each D-Bus error name ("" success, "timeout", "other: …"),
// and the longest error message.
type attackReport struct {
	UID       uint32
	Replies   map[string]map[string]int
	LongestOf map[string]int
	Calls     int
	cpu       time.Duration // the attacker's CPU time (runAttacker)
}

// TestHelperDBusAttacker is the attacker; it does nothing unless run by
// TestDBusAttack.
func TestHelperDBusAttacker(t *testing.T) {
	addr := os.Getenv(envAttackBus)
	if addr == "" {
		return
	}
	rep := attackReport{Replies: map[string]map[string]int{}, LongestOf: map[string]int{}}
	var mu sync.Mutex
	record := func(kind string, err error) {
		mu.Lock()
		defer mu.Unlock()
		rep.Calls++
		name, text := "", ""
		var de dbus.Error
		switch {
		case err == nil:
		case errors.As(err, &de):
			name = de.Name
			if len(de.Body) > 0 {
				text, _ = de.Body[0].(string)
			}
		case errors.Is(err, context.DeadlineExceeded):
			name = "timeout"
		default:
			name = "other"
			text = err.Error()
		}
		if rep.Replies[kind] == nil {
			rep.Replies[kind] = map[string]int{}
		}
		rep.Replies[kind][name]++
		if !strings.HasPrefix(text, "Rejected") { // the bus daemon's refusals, not vethd's
			rep.LongestOf[kind] = max(rep.LongestOf[kind], len(text))
		}
	}

	conns := make([]*dbus.Conn, attackConns)
	for i := range conns {
		c, err := dbus.Connect(addr)
		if err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		defer c.Close()
		conns[i] = c
	}
	if err := conns[0].BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, conns[0].Names()[0]).Store(&rep.UID); err != nil {
		t.Fatal(err)
	}
	dest := dbusapi.BusName("veth1")
	var owner string
	if err := conns[0].BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, dest).Store(&owner); err != nil {
		t.Fatalf("owner of %s: %v", dest, err)
	}
	big := strings.Repeat("a", bigArg)
	big2 := big[:2<<20] // for the other kinds of call
	path := dbusapi.ObjectPath("veth1")
	const props = "org.freedesktop.DBus.Properties"

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	call := func(kind string, c *dbus.Conn, p dbus.ObjectPath, method string, args ...any) {
		wg.Go(func() {
			record(kind, c.Object(dest, p).CallWithContext(ctx, method, 0, args...).Err)
		})
	}
	// The repro: 16 connections × 2 Gets with a bigArg-byte property name.
	for _, c := range conns {
		for range attackCalls {
			call("Get-big-name", c, path, props+".Get", dbusapi.Interface, big)
		}
	}
	// Every other method nobody may call, with oversize input where it
	// takes some, and a path or an argument it does not take.
	call("GetAll-big-iface", conns[1], path, props+".GetAll", big2)
	call("Get-big-iface", conns[2], path, props+".Get", big2, "State")
	call("Introspect-big-arg", conns[3], path, "org.freedesktop.DBus.Introspectable.Introspect", big2)
	call("Introspect-big-path", conns[4], dbus.ObjectPath("/"+big2), "org.freedesktop.DBus.Introspectable.Introspect")
	call("Ping-big-path", conns[5], dbus.ObjectPath("/"+big2), "org.freedesktop.DBus.Peer.Ping")
	call("Ping-big-arg", conns[6], path, "org.freedesktop.DBus.Peer.Ping", big2)
	// No reply expected: nothing to wait for.
	conns[7].Object(dest, path).Go(props+".Get", dbus.FlagNoReplyExpected, nil, dbusapi.Interface, big2)
	// A signal sent to vethd's connection alone: the system bus lets
	// anyone send signals anywhere.
	sig := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath:        dbus.MakeVariant(path),
		dbus.FieldInterface:   dbus.MakeVariant("org.example.Attack"),
		dbus.FieldMember:      dbus.MakeVariant("Big"),
		dbus.FieldDestination: dbus.MakeVariant(owner),
		dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(big2)),
	}, Body: []any{big2}}
	conns[8].Send(sig, nil)
	// Many small calls at once: 1,000 Gets with a 4 KiB name. (The bound on
	// calls in flight is tested root-free in pkg/dbusapi with more; here,
	// beside the e2e tests that CI runs at the same time on 2 cores, 4,000
	// of each took vethd past the callers' 90 s.)
	name4k := strings.Repeat("b", 4<<10)
	for i := range 1000 {
		c := conns[9+i%(attackConns-9)]
		call("Get-4k-name", c, path, props+".Get", dbusapi.Interface, name4k)
	}
	// And small calls with big replies.
	for i := range 1000 {
		c := conns[i%attackConns]
		call("Introspect", c, path, "org.freedesktop.DBus.Introspectable.Introspect")
		call("GetAll", c, path, props+".GetAll", dbusapi.Interface)
	}
	wg.Wait()

	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s%s\n", attackMarker, out)
}

// TestDBusAttack is issue 9 item 1: a local user without privileges makes
// oversize and many calls to a bridge on a bus configured like the system
// bus with vethd's policy (16 connections × 2 Gets with a 30 MiB property
// name grew vethd to 1 GB). vethd's peak RSS stays under 64 MiB, every
// hostile call gets a short error, the bridge relays throughout at its
// rate, and its object still answers.
func TestDBusAttack(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	bus, _, p := startOnBus(t, l, "[Bridge]\nParent=eth0\n")
	c := dbusapi.NewClient(bus.Conn(t))
	waitFor(t, 5*time.Second, "veth1 running on the bus", func() (bool, string) {
		st, _, err := c.Get(context.Background(), "veth1")
		return err == nil && st.State == "running", fmt.Sprint(st.State, err)
	})
	hostAddr := l.SetStatic(t, "veth1", 50)
	l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
	idle := procStatus(t, p.Pid(), "VmRSS")

	const size = 256 << 20
	rate := func(what string, port uint16) float64 {
		start := time.Now()
		transfer(t, what, "tcp4", l.Host, l.LANNS, netip.AddrPortFrom(l.Router4, port), hostAddr, size, uint64(port))
		return float64(size) * 8 / time.Since(start).Seconds() / 1e9
	}
	before := rate("before the attack", 5301)
	// Peak RSS from here on: the attack's (writing 5 resets VmHWM).
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Pid()), []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
	loaded := procStatus(t, p.Pid(), "VmRSS")

	// The attack, with the data path under load: transfers until the
	// attacker is done. (The bus daemon passes its 1 GB in about 30 s.)
	cpu0, busCPU0 := procCPU(t, p.Pid()), busDaemonCPU(t, l.Dir)
	start := time.Now()
	reportc := make(chan attackReport, 1)
	go func() { reportc <- runAttacker(t, l.Dir, bus.Addr) }()
	var during []float64
	var rep attackReport
	for port := uint16(5302); ; port++ {
		during = append(during, rate("during the attack", port))
		select {
		case rep = <-reportc:
		default:
			continue
		}
		break
	}
	attackTime := time.Since(start)
	cpu := procCPU(t, p.Pid()) - cpu0
	hwm := procStatus(t, p.Pid(), "VmHWM")
	after := procStatus(t, p.Pid(), "VmRSS")
	t.Logf("vethd RSS idle %.1f MiB, after a transfer %.1f MiB, peak during the attack %.1f MiB, after it %.1f MiB",
		mib(idle), mib(loaded), mib(hwm), mib(after))
	t.Logf("%d hostile calls and %d transfers of %d MiB in %v: CPU used by vethd %v, the attacker %v, the bus daemon %v",
		rep.Calls, len(during), size>>20, attackTime.Round(time.Millisecond), cpu, rep.cpu, busDaemonCPU(t, l.Dir)-busCPU0)
	t.Logf("TCP host→LAN before the attack %.2f Gbit/s, during it %.2f Gbit/s", before, during)
	t.Logf("vethd: %s", procThreadsFDs(t, p.Pid()))
	t.Logf("replies: %v; longest error texts from vethd: %v", rep.Replies, rep.LongestOf)

	if rep.UID != attackUID {
		t.Fatalf("attacker ran as uid %d, want %d", rep.UID, attackUID)
	}
	if hwm > rssLimit {
		t.Errorf("vethd's peak RSS %.1f MiB, want ≤ %.0f MiB", mib(hwm), mib(rssLimit))
	}
	for kind, replies := range rep.Replies {
		if n := replies["timeout"] + replies["other"]; n != 0 {
			t.Errorf("%s: %d calls got no error reply (%v)", kind, n, replies)
		}
		if n := rep.LongestOf[kind]; n > maxErrorText {
			t.Errorf("%s: an error text of %d bytes; want ≤ %d", kind, n, maxErrorText)
		}
	}
	if n := rep.Replies["Get-big-name"]; n[""] != 0 || n["timeout"] != 0 {
		t.Errorf("Get with a %d-byte name: %v", bigArg, n)
	}
	// The bridge relayed all along, at its rate but for the CPU that the
	// bus daemon takes (it passes the 1 GB 2 KiB at a time) from the two
	// that the VMs of CI have.
	var mean float64
	for _, r := range during {
		mean += r / float64(len(during))
	}
	if mean < before/2 {
		t.Errorf("TCP through veth1 fell from %.2f to %.2f Gbit/s on average during the attack", before, mean)
	}
	if st, _, err := c.Get(context.Background(), "veth1"); err != nil || st.State != "running" {
		t.Errorf("after the attack: %+v %v", st, err)
	}
	if !p.Running() {
		t.Fatal("vethd exited")
	}
}

// runAttacker runs TestHelperDBusAttacker as nobody against the bus at
// addr and returns its report. dir holds the bus socket; it and its
// parent are opened to nobody, and the binary is copied into it.
func runAttacker(t *testing.T, dir, addr string) attackReport {
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Error(err)
			return attackReport{}
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Error(err)
		return attackReport{}
	}
	bin := filepath.Join(dir, "attacker.test")
	if err := copyExecutable(bin, self); err != nil {
		t.Error(err)
		return attackReport{}
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperDBusAttacker$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = []string{envAttackBus + "=" + addr, "PATH=/usr/bin:/bin", "VETHD_IT_ATTACK_MIB=" + strconv.Itoa(bigArg>>20)}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: attackUID, Gid: attackUID, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	var stderr, stdout bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return attackReport{}
	}
	// A local user's processes get no more CPU than the system's
	// services (user.slice and system.slice weigh the same): the
	// attacker runs at the lowest priority, so that the 2 CPUs of CI
	// measure vethd, not the attacker's encoding of 1 GB.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 19)
	err = cmd.Wait()
	out := stdout.Bytes()
	if err != nil {
		t.Errorf("attacker: %v\n%s\n%s", err, out, stderr.String())
		return attackReport{}
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if js, ok := strings.CutPrefix(sc.Text(), attackMarker); ok {
			var rep attackReport
			if err := json.Unmarshal([]byte(js), &rep); err != nil {
				t.Errorf("attack report %q: %v", js, err)
			}
			rep.cpu = cpu
			return rep
		}
	}
	t.Errorf("attacker printed no report:\n%s", out)
	return attackReport{}
}

func copyExecutable(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// procStatus returns the field (VmRSS, VmHWM, …) of /proc/PID/status, in
// bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", field, v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// procCPU returns the user and system CPU time pid has used.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// busDaemonCPU returns the CPU time used by the dbus-daemon whose
// configuration is in dir (dbustest.StartIn).
func busDaemonCPU(t *testing.T, dir string) time.Duration {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c := cmdline(pid); strings.Contains(c, "dbus-daemon") && strings.Contains(c, dir) {
			return procCPU(t, pid)
		}
	}
	return 0
}

// procThreadsFDs says how many threads and descriptors pid has.
func procThreadsFDs(t *testing.T, pid int) string {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return fmt.Sprintf("%d threads, %d fds", procStatus(t, pid, "Threads")>>10, len(fds))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
