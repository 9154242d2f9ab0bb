package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/sdnotify"
	"github.com/vethd/vethd/internal/sdnotify/sdnotifytest"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/macaddr"
	"golang.org/x/sys/unix"
)

// persistentMAC is the address the persistent policy gives name on the
// harness's machine.
func (h *harness) persistentMAC(name string) net.HardwareAddr {
	h.t.Helper()
	mac, err := macaddr.Policy{Kind: macaddr.Persistent}.Resolve(name, h.mid)
	if err != nil {
		h.t.Fatal(err)
	}
	return mac
}

// attachedLine is the log line of a fake bridge's start.
func attachedLine(b *fakeBridge) string {
	st := b.Status()
	return fmt.Sprintf("vethd: Attached %s into %s mac=%s mtu=%d carrier=on parent_promiscuity=0 offloads=csum,tso4", st.Name, st.Parent, st.MAC, st.MTU)
}

// fdMessages returns the fd store messages (FDSTORE=1, FDSTOREREMOVE=1) of msgs.
func fdMessages(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		f := sdnotifytest.Parse(m)
		if f["FDSTORE"] == "1" || f["FDSTOREREMOVE"] == "1" {
			out = append(out, m)
		}
	}
	return out
}

// TestAdoptFromFDStore: a restart with the TAP in the fd store adopts it
// (a copy, with no MAC for the random policy: the interface keeps its
// address), leaves the store as it is — neither removed nor stored again:
// systemd checks FileDescriptorStoreMax= before duplicates, so a store
// again into vethd@.service's full store of 1 logs "Cannot store more
// fds" — and closes the daemon's own copy.
func TestAdoptFromFDStore(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nMACAddress=random\n")
	stored := memfd(t, "tap")
	want := ino(t, stored)
	// As systemd does, the store holds the descriptor it passes.
	if err := sdnotify.New().StoreFD("tap", int(stored.Fd())); err != nil {
		t.Fatal(err)
	}
	h.sd.WaitFor(t, 0, 5*time.Second, "FDSTORE=1", "FDNAME=tap")
	cfg := h.config(ModeInstance)
	cfg.StoredFDs = map[string]*os.File{"tap": stored}
	h.run(cfg)

	b := h.start.nextStarted(t)
	if b.cfg.TAP == nil || ino(t, b.cfg.TAP) != want {
		t.Fatalf("start was not given the stored TAP: %v", b.cfg.TAP)
	}
	if b.cfg.MAC != nil {
		t.Errorf("adopting with the random policy passed MAC %v, want nil (keep the address)", b.cfg.MAC)
	}
	if b.cfg.TAP == stored {
		t.Error("start was given the stored file itself, not a copy")
	}
	ready := h.ready(0)
	msgs := h.sd.Messages()
	if got := fdMessages(msgs[1:ready]); len(got) != 0 {
		t.Errorf("fd store messages before READY=1: %q, want none (the store holds the adopted TAP already)", got)
	}
	if st := h.sd.Stored("tap"); len(st) != 1 || ino(t, st[0]) != want {
		t.Errorf("fd store holds %v, want the adopted TAP", st)
	}
	if !isClosed(stored) {
		t.Error("the daemon kept its copy of the adopted descriptor open")
	}
	h.mustLine(fmt.Sprintf("vethd: Adopted veth1 from systemd's fd store ifindex=%d mac=%s", b.Status().IfIndex, keptMAC))
	h.mustLine(attachedLine(b))
	if st := sdnotifytest.Parse(msgs[ready])["STATUS"]; st != "veth1 running on eth0, mac 02:00:00:00:00:aa; rx 0 packets (0 B), tx 0 packets (0 B)" {
		t.Errorf("STATUS with READY=1 is %q", st)
	}

	n := len(h.sd.Messages())
	if err := h.stop(); err != nil {
		t.Fatalf("Run after SIGTERM: %v", err)
	}
	h.sd.WaitFor(t, n, 5*time.Second, "STOPPING=1", "STATUS=Stopping")
	if !b.isClosed() {
		t.Error("the bridge was not closed at stop")
	}
	h.log.WaitLine(t, "vethd: Stopping on terminated")
	h.log.WaitLine(t, "vethd: Detached veth1 from eth0 rx_packets=0 rx_bytes=0 rx_coalesced=0 rx_split=0 tx_packets=0 tx_bytes=0 tx_split=0 dropped=0 errors=0 took=")
}

// TestFreshTAPStored: without a stored TAP, the new one replaces any
// older entry (FDSTOREREMOVE=1, then FDSTORE=1), all before READY=1.
func TestFreshTAPStored(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.run(h.config(ModeInstance))
	b := h.start.nextStarted(t)
	if b.cfg.TAP != nil || !slices.Equal(b.cfg.MAC, h.persistentMAC("veth1")) || !b.cfg.WaitParent {
		t.Errorf("started with %+v, want a new TAP with the persistent MAC, waiting for the parent", b.cfg)
	}
	ready := h.ready(0)
	if got, want := h.sd.Messages()[:ready], []string{"FDSTOREREMOVE=1\nFDNAME=tap", "FDSTORE=1\nFDNAME=tap"}; !slices.Equal(got, want) {
		t.Errorf("messages before READY=1: %q, want %q", got, want)
	}
	if st := h.sd.Stored("tap"); len(st) != 1 || ino(t, st[0]) != ino(t, b.tap) {
		t.Errorf("fd store holds %v, want the bridge's TAP", st)
	}
	if h.log.count("Adopted") != 0 {
		t.Error("Adopted logged for a new TAP")
	}
}

// TestNoFDStore: with FileDescriptorStoreMax=0 ($FDSTORE=0) nothing is
// stored and vethd warns that a restart re-creates the interface.
func TestNoFDStore(t *testing.T) {
	h := newHarness(t)
	t.Setenv("FDSTORE", "0")
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.run(h.config(ModeInstance))
	ready := h.ready(0)
	if got := fdMessages(h.sd.Messages()[:ready]); len(got) != 0 {
		t.Errorf("fd store messages %q with FDSTORE=0", got)
	}
	h.mustLine("vethd: warn: systemd keeps no descriptors for this service (FileDescriptorStoreMax=0): a restart will re-create veth1")
}

// TestAdoptNotTAP: a stored descriptor that is no longer a TAP is closed
// and dropped from the store (FDSTOREREMOVE=1) and the interface created
// afresh, with the configured MAC.
func TestAdoptNotTAP(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	stored := memfd(t, "tap")
	h.start.setHook(func(cfg bridge.Config) error {
		if cfg.TAP != nil {
			return fmt.Errorf("adopt TAP from tap: %w (%w)", bridge.ErrNotTAP, unix.EBADFD)
		}
		return nil
	})
	cfg := h.config(ModeInstance)
	cfg.StoredFDs = map[string]*os.File{"tap": stored}
	h.run(cfg)

	if c := h.start.nextCall(t); c.TAP == nil {
		t.Fatal("the stored descriptor was not tried")
	}
	b := h.start.nextStarted(t)
	if b.cfg.TAP != nil || !slices.Equal(b.cfg.MAC, h.persistentMAC("veth1")) {
		t.Errorf("second start with TAP %v MAC %v, want a new TAP with the persistent MAC", b.cfg.TAP, b.cfg.MAC)
	}
	ready := h.ready(0)
	want := []string{"FDSTOREREMOVE=1\nFDNAME=tap", "FDSTOREREMOVE=1\nFDNAME=tap", "FDSTORE=1\nFDNAME=tap"}
	if got := fdMessages(h.sd.Messages()[:ready]); !slices.Equal(got, want) {
		t.Errorf("fd store messages before READY=1: %q, want %q", got, want)
	}
	if st := h.sd.Stored("tap"); len(st) != 1 || ino(t, st[0]) != ino(t, b.tap) {
		t.Errorf("fd store holds %v, want the new TAP only", st)
	}
	if !isClosed(stored) {
		t.Error("the dead descriptor was not closed")
	}
	h.mustLine("vethd: warn: The stored descriptor of veth1 is no longer a TAP interface (adopt TAP from tap: not a TAP interface with vnet headers (file descriptor in bad state)); creating veth1 afresh")
}

// TestFailedAdoptionRetried (--all): an adoption that fails for another
// reason puts the stored descriptor back; the supervisor's next attempt
// adopts it.
func TestFailedAdoptionRetried(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	stored := memfd(t, "tap-veth1")
	want := ino(t, stored)
	var tried []uint64 // the TAPs the attempts were given; only veth1's supervisor goroutine calls the hook
	h.start.setHook(func(cfg bridge.Config) error {
		if cfg.TAP != nil {
			tried = append(tried, ino(t, cfg.TAP))
		}
		if len(tried) == 1 {
			return fmt.Errorf("set veth1 mac: %w", unix.EBUSY)
		}
		return nil
	})
	cfg := h.config(ModeAll)
	cfg.StoredFDs = map[string]*os.File{"tap-veth1": stored}
	h.run(cfg)

	b := h.start.nextStarted(t)
	if !slices.Equal(tried, []uint64{want, want}) {
		t.Fatalf("attempts were given TAPs %v, want the stored one (%d) twice", tried, want)
	}
	if !slices.Equal(b.cfg.MAC, h.persistentMAC("veth1")) {
		t.Errorf("adopted with MAC %v, want the persistent one", b.cfg.MAC)
	}
	h.log.WaitLine(t, "vethd: Adopted veth1 from systemd's fd store")
	h.mustLine(`vethd: error: Bridge veth1 failed; restarting it err="set veth1 mac: device or resource busy" in=1ms`)
	h.ready(0)
	if got := fdMessages(h.sd.Messages()); len(got) != 0 {
		t.Errorf("fd store messages %q: the adopted TAP's entry was removed or stored again", got)
	}
	in := h.instance("veth1")
	waitFor(t, "LastError cleared", func() bool { return in.status().LastError == "" })
}

// TestFailedAdoptionInstance: in instance mode a failed adoption ends
// vethd (systemd restarts it; the store keeps the TAP).
func TestFailedAdoptionInstance(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.start.setHook(func(bridge.Config) error { return fmt.Errorf("set veth1 mac: %w", unix.EPERM) })
	cfg := h.config(ModeInstance)
	cfg.StoredFDs = map[string]*os.File{"tap": memfd(t, "tap")}
	h.run(cfg)
	err := h.wait()
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindPermission {
		t.Fatalf("Run = %v, want a KindPermission *Error", err)
	}
	h.mustLine("vethd: error: set veth1 mac: operation not permitted: vethd needs CAP_NET_ADMIN and CAP_NET_RAW; run it as root")
	if h.sd.Find(0, "READY=1") >= 0 {
		t.Error("READY=1 sent although the bridge did not start")
	}
}

// TestDropUnusedFDs: stored descriptors of bridges no longer configured
// are closed and dropped from the store before READY=1.
func TestDropUnusedFDs(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	f1, f9 := memfd(t, "tap-veth1"), memfd(t, "tap-veth9")
	cfg := h.config(ModeAll)
	cfg.StoredFDs = map[string]*os.File{"tap-veth1": f1, "tap-veth9": f9}
	h.run(cfg)
	ready := h.ready(0)
	if i := h.sd.Find(0, "FDSTOREREMOVE=1", "FDNAME=tap-veth9"); i < 0 || i > ready {
		t.Errorf("FDSTOREREMOVE of tap-veth9 at %d, want before READY=1 at %d", i, ready)
	}
	if !isClosed(f9) {
		t.Error("the unused descriptor was not closed")
	}
	if b := h.start.bridges("veth1"); len(b) != 1 || !b[0].adopted {
		t.Error("veth1 did not adopt its stored TAP")
	}
	h.mustLine("vethd: Dropping stored descriptor tap-veth9: no such bridge is configured")
	if h.sd.Find(0, "FDSTOREREMOVE=1", "FDNAME=tap-veth1") >= 0 {
		t.Error("veth1's entry was dropped")
	}
}

// TestReload: SIGHUP and D-Bus Reload apply a new file in place; a bad
// file or a refused change keeps the running configuration and sets
// LastError; a random MAC is not drawn again.
func TestReload(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nMACAddress=random\n")
	h.run(h.config(ModeInstance))
	b := h.start.nextStarted(t)
	if b.cfg.MAC == nil {
		t.Fatal("first start with the random policy drew no MAC")
	}
	h.ready(0)
	in := h.instance("veth1")
	bus := h.d.busBridge(in)
	file := filepath.Join(h.dir, "veth1.conf")

	// A working reload: RELOADING=1 … READY=1.
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nMACAddress=random\nMTU=1400\n")
	n := len(h.sd.Messages())
	h.sigs <- syscall.SIGHUP
	r := h.sd.WaitFor(t, n, 5*time.Second, "RELOADING=1")
	if _, ok := sdnotifytest.Parse(h.sd.Messages()[r])["MONOTONIC_USEC"]; !ok {
		t.Error("RELOADING=1 without MONOTONIC_USEC")
	}
	h.ready(r)
	rc := b.reconfigs()
	if len(rc) != 1 || rc[0].MTU != 1400 || rc[0].MAC != nil || rc[0].Name != "veth1" || !rc[0].WaitParent {
		t.Fatalf("reconfigured with %+v, want MTU 1400 and no new MAC", rc)
	}
	h.mustLine("vethd: Reloaded veth1 from " + file)

	// A bad file: the running configuration stays, LastError says why.
	h.writeConf("veth1", "[Bridge]\nParent=eth0\nMTU=huge\n")
	n = len(h.sd.Messages())
	h.sigs <- syscall.SIGHUP
	h.ready(h.sd.WaitFor(t, n, 5*time.Second, "RELOADING=1"))
	line := h.log.WaitLine(t, "Reload failed")
	if !strings.HasPrefix(line, "vethd: error: Reload failed; keeping the running configuration: "+file+":3: MTU=") {
		t.Errorf("log %q", line)
	}
	if st := in.status(); !strings.HasPrefix(st.LastError, "reload: "+file+":3: MTU=") || st.MTU != 1400 {
		t.Errorf("after a failed reload: LastError %q, MTU %d", st.LastError, st.MTU)
	}
	if len(b.reconfigs()) != 1 {
		t.Error("a bad file reached the bridge")
	}
	// Through D-Bus: the error is the file's.
	if err := bus.Reload(); err == nil || !strings.HasPrefix(err.Error(), file+":3: MTU=") {
		t.Errorf("D-Bus Reload of a bad file: %v", err)
	}
	if line := h.log.WaitLine(t, "over D-Bus failed"); !strings.HasPrefix(line, "vethd: error: Reload of veth1 over D-Bus failed; keeping the running configuration: "+file+":3: MTU=") {
		t.Errorf("log %q", line)
	}

	// A change the bridge refuses: the old spec stays.
	h.writeConf("veth1", "[Bridge]\nParent=eth1\n")
	b.set(func(b *fakeBridge) { b.reconfigErr = errors.New("parent: boom") })
	if err := bus.Reload(); err == nil || err.Error() != "reload: parent: boom" {
		t.Errorf("D-Bus Reload refused by the bridge: %v", err)
	}
	var doc struct {
		Version string
		Config  struct {
			Parent     string
			MTU        string
			MACAddress string `json:"mac_address"`
		}
		Status struct {
			LastError string `json:"last_error"`
		}
	}
	if err := json.Unmarshal([]byte(bus.Describe()), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != "test" || doc.Config.Parent != "eth0" || doc.Config.MTU != "1400" || doc.Config.MACAddress != "random" || doc.Status.LastError != "reload: parent: boom" {
		t.Errorf("Describe after a refused reload: %+v", doc)
	}

	// And then accepted: LastError cleared, the new spec in force (the
	// policy changed from random, so the MAC is set).
	b.set(func(b *fakeBridge) { b.reconfigErr = nil })
	if err := bus.Reload(); err != nil {
		t.Fatal(err)
	}
	rc = b.reconfigs()
	if len(rc) != 2 || rc[1].Parent != "eth1" || !slices.Equal(rc[1].MAC, h.persistentMAC("veth1")) {
		t.Errorf("reconfigured with %+v", rc)
	}
	if st := in.status(); st.LastError != "" || st.Parent != "eth1" || st.MACPolicy != "persistent" {
		t.Errorf("after a good reload: %+v", st)
	}
}

// TestSeedReload: with the seed flags there is no file to re-read.
func TestSeedReload(t *testing.T) {
	h := newHarness(t)
	h.run(h.config(ModeSeed))
	b := h.start.nextStarted(t)
	if b.cfg.WaitParent || b.cfg.Name != "veth1" || b.cfg.Parent != "eth0" {
		t.Errorf("seed bridge started with %+v", b.cfg)
	}
	n := h.ready(0)
	h.sigs <- syscall.SIGHUP
	h.ready(h.sd.WaitFor(t, n, 5*time.Second, "RELOADING=1"))
	h.mustLine("vethd: Reload: nothing to re-read (started from the command line, not a configuration file)")
	err := h.d.busBridge(h.instance("veth1")).Reload()
	if err == nil || !strings.Contains(err.Error(), "no configuration file") {
		t.Errorf("D-Bus Reload in seed mode: %v", err)
	}
}

// TestReloadAll (--all): SIGHUP stops a bridge whose file went (its fd
// store entry dropped), starts one whose file came, reloads the others
// and skips a bad new file.
func TestReloadAll(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.writeConf("veth2", "[Bridge]\nParent=eth0\n")
	h.run(h.config(ModeAll))
	ready := h.ready(0)
	if st := sdnotifytest.Parse(h.sd.Messages()[ready])["STATUS"]; st != "2 bridges: veth1 running, veth2 running; rx 0 packets, tx 0 packets" {
		t.Errorf("STATUS = %q", st)
	}
	v1, v2 := h.start.bridges("veth1")[0], h.start.bridges("veth2")[0]

	os.Remove(filepath.Join(h.dir, "veth2.conf"))
	h.writeConf("veth3", "[Bridge]\nParent=eth0\n")
	h.writeConf("veth4", "[Bridge]\nParent=eth0\nMTU=huge\n")
	n := len(h.sd.Messages())
	h.sigs <- syscall.SIGHUP
	r := h.sd.WaitFor(t, n, 5*time.Second, "RELOADING=1")
	rm := h.sd.WaitFor(t, r, 5*time.Second, "FDSTOREREMOVE=1", "FDNAME=tap-veth2")
	h.ready(rm)
	if !v2.isClosed() {
		t.Error("veth2 was not stopped")
	}
	if v1.isClosed() || len(v1.reconfigs()) != 1 {
		t.Errorf("veth1: closed %v, reconfigured %d times; want it running, reloaded once", v1.isClosed(), len(v1.reconfigs()))
	}
	h.log.WaitLine(t, "vethd: Reload: veth2 is no longer configured; removing it")
	h.log.WaitLine(t, "vethd: Reload: starting new bridge veth3")
	h.log.WaitLine(t, "vethd: error: Reload: not starting veth4: "+filepath.Join(h.dir, "veth4.conf")+":3: MTU=")
	h.start.waitStarts(t, "veth3", 1)
	h.sd.WaitFor(t, rm, 5*time.Second, "FDSTORE=1", "FDNAME=tap-veth3")
	var names []string
	h.d.call(func() error {
		for _, in := range h.d.list() {
			names = append(names, in.name)
		}
		return nil
	})
	if !slices.Equal(names, []string{"veth1", "veth3"}) {
		t.Errorf("instances %v after the reload, want veth1 veth3", names)
	}

	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"veth1", "veth3"} {
		if b := h.start.bridges(name); len(b) != 1 || !b[0].isClosed() {
			t.Errorf("%s not closed at stop", name)
		}
	}
}

// TestSupervisionRestarts (--all): a bridge that fails is started again
// while the other runs on untouched.
func TestSupervisionRestarts(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.writeConf("veth2", "[Bridge]\nParent=eth0\n")
	h.run(h.config(ModeAll))
	h.ready(0)
	v1, v2 := h.start.bridges("veth1")[0], h.start.bridges("veth2")[0]
	v2.Fail(errors.New("TAP veth2 deleted"))
	h.start.waitStarts(t, "veth2", 2)
	if !v2.isClosed() {
		t.Error("the failed bridge was not closed")
	}
	if v1.isClosed() || len(h.start.bridges("veth1")) != 1 {
		t.Error("veth1 was touched by veth2's failure")
	}
	h.log.WaitLine(t, "vethd: Detached veth2 from eth0 ")
	h.mustLine(`vethd: error: Bridge veth2 failed; restarting it err="TAP veth2 deleted" in=1ms`)
	if h.sd.Find(0, "STOPPING=1") >= 0 {
		t.Error("--all stopped on one bridge's failure")
	}
	in := h.instance("veth2")
	waitFor(t, "veth2 running again", func() bool { st := in.status(); return st.State == "running" && st.LastError == "" })
}

// TestFailureStops: in instance mode a failed bridge ends vethd with
// STOPPING=1 and a KindFailure error.
func TestFailureStops(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.run(h.config(ModeInstance))
	b := h.start.nextStarted(t)
	n := h.ready(0)
	b.Fail(errors.New("TAP veth1 deleted"))
	err := h.wait()
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindFailure {
		t.Fatalf("Run = %v, want a KindFailure *Error", err)
	}
	h.sd.WaitFor(t, n, 5*time.Second, "STOPPING=1")
	h.mustLine("vethd: error: Stopping: TAP veth1 deleted")
	if !b.isClosed() {
		t.Error("bridge not closed")
	}
}

// TestStartErrors: the first start's error is explained and classified.
func TestStartErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		kind Kind
		line string
	}{
		{fmt.Errorf("open eth0: %w", bridge.ErrNoParent), KindFailure,
			"vethd: error: open eth0: no such parent interface: there is no interface named eth0 (see 'ip link'; choose one with -e)"},
		{fmt.Errorf("create TAP veth1: %w", bridge.ErrNameInUse), KindFailure,
			"vethd: error: create TAP veth1: interface name already in use: an interface named veth1 exists already (another vethd? remove it, or choose another name: -v, or another NAME.conf)"},
		{fmt.Errorf("open /dev/net/tun: %w", unix.EACCES), KindPermission,
			"vethd: error: open /dev/net/tun: permission denied: vethd needs CAP_NET_ADMIN and CAP_NET_RAW; run it as root"},
		{errors.New("netlink: boom"), KindFailure, "vethd: error: netlink: boom"},
	} {
		h := newHarness(t)
		h.start.setHook(func(bridge.Config) error { return c.err })
		h.run(h.config(ModeSeed))
		err := h.wait()
		var e *Error
		if !errors.As(err, &e) || e.Kind != c.kind || !errors.Is(err, c.err) {
			t.Errorf("%v: Run = %#v, want kind %v", c.err, err, c.kind)
		}
		h.mustLine(c.line)
	}
}

// TestConfigErrors: an invalid configuration ends Run before any start.
func TestConfigErrors(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(ModeSeed)
	cfg.MAC = "01:00:5e:00:00:01"
	h.run(cfg)
	err := h.wait()
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindConfig {
		t.Fatalf("Run = %v, want a KindConfig *Error", err)
	}
	if l := h.log.Lines(); len(l) != 1 || !strings.HasPrefix(l[0], "vethd: error: -m: invalid MAC address 01:00:5e:00:00:01") {
		t.Errorf("log %q", l)
	}
	if len(h.start.calls) != 0 {
		t.Error("a bridge was started from an invalid configuration")
	}
}

// TestWatchdog: WATCHDOG=1 is sent only while every bridge is healthy; an
// unhealthy spell is logged once.
func TestWatchdog(t *testing.T) {
	h := newHarness(t)
	t.Setenv("WATCHDOG_USEC", "2000")
	t.Setenv("WATCHDOG_PID", "")
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.start.mu.Lock()
	h.start.healthErr = errors.New("veth1: the link watcher is not responding")
	h.start.mu.Unlock()
	h.run(h.config(ModeInstance))
	b := h.start.nextStarted(t)
	start := h.ready(0)
	// Two checks that found the error: the first one's loop iteration is
	// over when the second begins.
	for range 2 {
		select {
		case <-b.health:
		case <-time.After(5 * time.Second):
			t.Fatal("health not checked")
		}
	}
	// A marker, sent after those checks: what the daemon sent in them is
	// before it in the socket's queue.
	h.d.notify.Send("X_MARK=1")
	mark := h.sd.WaitFor(t, start, 5*time.Second, "X_MARK=1")
	if i := h.sd.Find(0, "WATCHDOG=1"); i >= 0 && i < mark {
		t.Fatalf("WATCHDOG=1 (message %d) while unhealthy", i)
	}
	b.set(func(b *fakeBridge) { b.healthErr = nil })
	h.sd.WaitFor(t, mark, 5*time.Second, "WATCHDOG=1")
	if n := h.log.count("Unhealthy"); n != 1 {
		t.Errorf("the same unhealthy state was logged %d times, want once", n)
	}
	h.mustLine("vethd: error: Unhealthy, not feeding the watchdog: veth1: the link watcher is not responding")
}
