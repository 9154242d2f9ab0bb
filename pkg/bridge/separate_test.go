package bridge_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
	"golang.org/x/sys/unix"
)

// A separate NIC, over bridgetest's fake kernel: ARP isolation (the
// parent's and the TAP's arp_ignore and arp_announce) and following a MAC
// address that someone else sets on the TAP.

var (
	lcAddr4 = netip.MustParseAddr("198.18.0.11")
	lcAddr6 = netip.MustParseAddr("2001:db8::11")
	// lcIsolated is what ARP isolation gives a link whose values were 0.
	lcIsolated = bridge.InetConf{bridge.DevConfARPIgnore: 1, bridge.DevConfARPAnnounce: 2}
)

// isolatedConfig is the harness's config with ARP isolation on.
func (h *lcHarness) isolatedConfig() bridge.Config {
	cfg := h.config()
	cfg.ARPIsolation = true
	return cfg
}

// lcSetInetConf is how the fake records the set that isolates a link whose
// values were 0.
func lcSetInetConf(index int) string {
	return fmt.Sprintf("LinkSetInetConf %d arp_announce=2 arp_ignore=1", index)
}

// lcAnnounced decodes an announcement the bridge sent (a vnet header, then
// a gratuitous ARP request or an unsolicited neighbour advertisement) and
// returns the address it announces and the MAC it announces it at, failing
// the test if the frame is neither.
func lcAnnounced(t *testing.T, f []byte) (netip.Addr, net.HardwareAddr) {
	t.Helper()
	if len(f) < bridge.VnetHdrLen+14 || !bytes.Equal(f[:bridge.VnetHdrLen], make([]byte, bridge.VnetHdrLen)) {
		t.Fatalf("not a frame with a zero vnet header: %x", f)
	}
	e := f[bridge.VnetHdrLen:]
	dst, src := net.HardwareAddr(e[0:6]), net.HardwareAddr(e[6:12])
	switch binary.BigEndian.Uint16(e[12:]) {
	case 0x0806:
		a := e[14:]
		if len(a) != 28 || !bytes.Equal(dst, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) ||
			binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != 0x0800 || a[4] != 6 || a[5] != 4 ||
			binary.BigEndian.Uint16(a[6:]) != 1 || !bytes.Equal(a[8:14], src) || !bytes.Equal(a[18:24], make([]byte, 6)) ||
			!bytes.Equal(a[14:18], a[24:28]) {
			t.Fatalf("not a gratuitous ARP request from %s: %x", src, e)
		}
		return netip.AddrFrom4([4]byte(a[14:18])), src
	case 0x86dd:
		ip := e[14:]
		if len(ip) != 40+32 || ip[0]>>4 != 6 || binary.BigEndian.Uint16(ip[4:]) != 32 || ip[6] != 58 || ip[7] != 255 ||
			!bytes.Equal(dst, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}) ||
			netip.AddrFrom16([16]byte(ip[24:40])) != netip.MustParseAddr("ff02::1") {
			t.Fatalf("not an IPv6 packet to all nodes: %x", e)
		}
		na := ip[40:]
		if na[0] != 136 || na[1] != 0 || na[4] != 0x20 || !bytes.Equal(na[8:24], ip[8:24]) ||
			na[24] != 2 || na[25] != 1 || !bytes.Equal(na[26:32], src) {
			t.Fatalf("not an unsolicited neighbour advertisement (override) from %s for its source: %x", src, na)
		}
		return netip.AddrFrom16([16]byte(na[8:24])), src
	}
	t.Fatalf("neither ARP nor IPv6: %x", e)
	return netip.Addr{}, nil
}

func TestARPIsolation(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.isolatedConfig())
	tapIndex := b.Status().IfIndex
	for _, index := range []int{h.parent.Index, tapIndex} {
		if c := h.n.InetConf(index); fmt.Sprint(c) != fmt.Sprint(lcIsolated) {
			t.Errorf("link %d has %v, want %v", index, c, lcIsolated)
		}
	}
	calls := h.n.Calls()
	lcBefore(t, calls, lcSetInetConf(h.parent.Index), fmt.Sprintf("OpenParentSocket %d eth0 %s", h.parent.Index, lcMAC1))
	lcBefore(t, calls, lcSetInetConf(tapIndex), "SetCarrier veth0 true")
	// Each set makes the kernel (and the fake) notify the link as changed;
	// the bridge must not answer that with another set.
	h.sync(h.parent.Index)
	want := []string{lcSetInetConf(h.parent.Index), lcSetInetConf(tapIndex)}
	if c := h.n.Calls("LinkSetInetConf"); !slices.Equal(c, want) {
		t.Errorf("calls %q, want %q", c, want)
	}
	if got, want := h.log.String(), "INFO ARP isolation on eth0 and veth0: arp_ignore=1 arp_announce=2\n"; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	lcCheckFlow(t, h.n.TAP("veth0").Pipe, h.n.Socket(), lcMAC1)
}

func TestARPIsolationOff(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	h.sync(h.parent.Index)
	if c := h.n.Calls("LinkInetConf", "LinkSetInetConf"); len(c) != 0 {
		t.Errorf("calls %q", c)
	}
	for _, index := range []int{h.parent.Index, b.Status().IfIndex} {
		if c := h.n.InetConf(index); len(c) != 0 {
			t.Errorf("link %d has %v, want nothing set", index, c)
		}
	}
	if got := h.log.String(); got != "" {
		t.Errorf("log %q", got)
	}
}

// TestARPIsolationOnlyRaises: values at or above what isolation needs are
// left alone, and only what is lower is set.
func TestARPIsolationOnlyRaises(t *testing.T) {
	h := newLCHarness(t)
	h.n.SetInetConf(h.parent.Index, bridge.InetConf{bridge.DevConfARPIgnore: 2, bridge.DevConfARPAnnounce: 2})
	b := h.start(h.isolatedConfig())
	tapIndex := b.Status().IfIndex
	if c := h.n.Calls("LinkSetInetConf"); !slices.Equal(c, []string{lcSetInetConf(tapIndex)}) {
		t.Errorf("calls %q", c)
	}
	if c := h.n.InetConf(h.parent.Index); c[bridge.DevConfARPIgnore] != 2 || c[bridge.DevConfARPAnnounce] != 2 {
		t.Errorf("parent has %v", c)
	}
	want := "INFO ARP isolation on eth0 (arp_ignore=2 arp_announce=2) and veth0 (arp_ignore=1 arp_announce=2)\n"
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}

	// Half set: only the other one is.
	h2 := newLCHarness(t)
	h2.n.SetInetConf(h2.parent.Index, bridge.InetConf{bridge.DevConfARPAnnounce: 2})
	h2.start(h2.isolatedConfig())
	if c := h2.n.Calls(fmt.Sprintf("LinkSetInetConf %d", h2.parent.Index)); !slices.Equal(c, []string{fmt.Sprintf("LinkSetInetConf %d arp_ignore=1", h2.parent.Index)}) {
		t.Errorf("calls %q", c)
	}
}

// TestARPIsolationParentRecreated: a new parent (the same name, a new
// link) is isolated when the bridge attaches to it; the TAP is not set
// again.
func TestARPIsolationParentRecreated(t *testing.T) { lcBothKinds(t, testARPIsolationParentRecreated) }

func testARPIsolationParentRecreated(t *testing.T, h *lcHarness) {
	b := h.start(h.isolatedConfig())
	tapIndex := b.Status().IfIndex
	h.n.Remove(h.parent.Index)
	h.waitState(bridge.StateWaitingParent)
	p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	h.waitState(bridge.StateRunning)
	h.sync(p.Index)
	if c := h.n.InetConf(p.Index); fmt.Sprint(c) != fmt.Sprint(lcIsolated) {
		t.Errorf("the new parent has %v", c)
	}
	want := []string{lcSetInetConf(h.parent.Index), lcSetInetConf(tapIndex), lcSetInetConf(p.Index)}
	if c := h.n.Calls("LinkSetInetConf"); !slices.Equal(c, want) {
		t.Errorf("calls %q, want %q", c, want)
	}
	lcBefore(t, h.n.Calls(), lcSetInetConf(p.Index), fmt.Sprintf("OpenParentSocket %d eth0 %s", p.Index, lcMAC1))
	if !strings.Contains(h.log.String(), "INFO ARP isolation on eth0: arp_ignore=1 arp_announce=2\n") {
		t.Errorf("log %q", h.log)
	}
}

// TestARPIsolationWaitingParent: the TAP is isolated at start, the parent
// when it appears.
func TestARPIsolationWaitingParent(t *testing.T) {
	h := newLCHarness(t)
	h.n.Remove(h.parent.Index)
	cfg := h.isolatedConfig()
	cfg.WaitParent = true
	b := h.start(cfg)
	tapIndex := b.Status().IfIndex
	if c := h.n.Calls("LinkSetInetConf"); !slices.Equal(c, []string{lcSetInetConf(tapIndex)}) {
		t.Errorf("calls %q", c)
	}
	p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	h.sync(p.Index)
	if c := h.n.Calls("LinkSetInetConf"); !slices.Equal(c, []string{lcSetInetConf(tapIndex), lcSetInetConf(p.Index)}) {
		t.Errorf("calls %q", c)
	}
	want := "INFO ARP isolation on veth0: arp_ignore=1 arp_announce=2\n" +
		"WARN Parent eth0 does not exist; veth0 has no carrier until it appears\n" +
		"INFO ARP isolation on eth0: arp_ignore=1 arp_announce=2\n" +
		"INFO MTU of veth0 follows eth0 mtu=1400\n" +
		fmt.Sprintf("INFO Attached veth0 into eth0 again parent_ifindex=%d\n", p.Index)
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

// TestARPIsolationRestart: after a restart (adoption) both links have the
// values already: nothing is set again, and the log says what they have.
func TestARPIsolationRestart(t *testing.T) {
	h := newLCHarness(t)
	b1 := h.start(h.isolatedConfig())
	fd, err := b1.TAPFd()
	if err != nil {
		t.Fatal(err)
	}
	b1.Close()
	n := len(h.n.Calls("LinkSetInetConf"))
	cfg := h.isolatedConfig()
	cfg.TAP = os.NewFile(uintptr(fd), "tap")
	b2 := h.start(cfg)
	h.sync(h.parent.Index)
	if c := h.n.Calls("LinkSetInetConf"); len(c) != n {
		t.Errorf("calls %q after the restart, want none after the first %d", c, n)
	}
	if c := h.n.Calls(fmt.Sprintf("LinkInetConf %d", b2.Status().IfIndex)); len(c) != 2 {
		t.Errorf("the TAP's settings were read %d times, want once per start", len(c))
	}
	if got := strings.Count(h.log.String(), "INFO ARP isolation on eth0 and veth0: arp_ignore=1 arp_announce=2\n"); got != 2 {
		t.Errorf("log %q", h.log)
	}
}

// TestARPIsolationFails: isolation that cannot be set is an error of the
// bridge's, which relays all the same.
func TestARPIsolationFails(t *testing.T) {
	h := newLCHarness(t)
	h.n.Fail("LinkSetInetConf", unix.EAFNOSUPPORT)
	b := h.start(h.isolatedConfig())
	st := b.Status()
	want := "set ARP isolation on veth0: " + unix.EAFNOSUPPORT.Error()
	if st.State != bridge.StateRunning || st.LastError != want {
		t.Errorf("status %+v, want running with LastError %q", st, want)
	}
	if !strings.Contains(h.log.String(), "ERROR set ARP isolation on eth0: ") {
		t.Errorf("log %q", h.log)
	}
	lcCheckFlow(t, h.n.TAP("veth0").Pipe, h.n.Socket(), lcMAC1)
}

// TestReconfigureARPIsolation: turned on, it is set on both links at once;
// turned off, nothing is lowered; with a new parent, the new parent is set.
func TestReconfigureARPIsolation(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	tapIndex := b.Status().IfIndex
	if err := b.Reconfigure(h.isolatedConfig()); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	want := []string{lcSetInetConf(h.parent.Index), lcSetInetConf(tapIndex)}
	if c := h.n.Calls("LinkSetInetConf"); !slices.Equal(c, want) {
		t.Errorf("calls %q, want %q", c, want)
	}
	if len(h.n.Sockets()) != 1 {
		t.Error("the socket was re-opened")
	}
	if err := b.Reconfigure(h.config()); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if c := h.n.InetConf(h.parent.Index); fmt.Sprint(c) != fmt.Sprint(lcIsolated) {
		t.Errorf("turning isolation off changed the parent's settings to %v", c)
	}
	// Off: a new parent is left as it is.
	eth1 := h.n.Add(bridge.Link{Name: "eth1", MTU: 1500, Up: true, LowerUp: true})
	cfg := h.config()
	cfg.Parent = "eth1"
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if c := h.n.InetConf(eth1.Index); len(c) != 0 {
		t.Errorf("eth1 has %v with isolation off", c)
	}
	// On: a new parent is set.
	eth2 := h.n.Add(bridge.Link{Name: "eth2", MTU: 1500, Up: true, LowerUp: true})
	cfg = h.isolatedConfig()
	cfg.Parent = "eth2"
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	want = append(want, lcSetInetConf(eth2.Index))
	if c := h.n.Calls("LinkSetInetConf"); !slices.Equal(c, want) {
		t.Errorf("calls %q, want %q (the TAP's values are there already)", c, want)
	}
	wantLog := "INFO ARP isolation on eth0 and veth0: arp_ignore=1 arp_announce=2\n" +
		"INFO ARP isolation of veth0 off; arp_ignore and arp_announce of eth0 and veth0 stay as they are\n" +
		"INFO Parent of veth0 changed from eth0 to eth1\n" +
		"INFO MTU of veth0 follows eth1 mtu=1500\n" +
		"INFO Attached veth0 into eth1 mac=" + lcMAC1.String() + "\n" +
		"INFO Parent of veth0 changed from eth1 to eth2\n" +
		"INFO ARP isolation on eth2 and veth0: arp_ignore=1 arp_announce=2\n" +
		"INFO Attached veth0 into eth2 mac=" + lcMAC1.String() + "\n"
	if got := h.log.String(); got != wantLog {
		t.Errorf("log\n%s\nwant\n%s", got, wantLog)
	}
}

func TestMACFollowed(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	tapIndex := b.Status().IfIndex
	h.n.SetAddrs(tapIndex, lcAddr4, lcAddr6)
	old := h.n.Socket()
	h.n.SetHardwareAddr(tapIndex, lcMAC2)
	st := h.wait("the new MAC", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
	if st.State != bridge.StateRunning || !st.Carrier || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
	sock := h.n.Socket()
	if sock == old || !old.Closed() || !bytes.Equal(sock.MAC, lcMAC2) || sock.Ifindex != h.parent.Index {
		t.Fatalf("old socket closed %v, new socket %+v", old.Closed(), sock)
	}
	// The addresses are announced at the new MAC first, on the new socket.
	for _, want := range []netip.Addr{lcAddr4, lcAddr6} {
		a, mac := lcAnnounced(t, lcRecv(t, sock.Out, "an announcement"))
		if a != want || !bytes.Equal(mac, lcMAC2) {
			t.Errorf("announced %s at %s, want %s at %s", a, mac, want, lcMAC2)
		}
	}
	tap := h.n.TAP("veth0")
	lcCheckFlow(t, tap.Pipe, sock, lcMAC2)
	// The old address is a spoof now.
	tap.In <- lcFrame(lcPeer, lcMAC1, "old")
	tap.In <- lcFrame(lcPeer, lcMAC2, "new")
	if got := lcRecv(t, sock.Out, "after the spoofed one"); !bytes.Equal(got, lcFrame(lcPeer, lcMAC2, "new")) {
		t.Errorf("on the wire: %x", got)
	}
	// The link did not go away: the carrier stayed on.
	if c := h.n.Calls("SetCarrier"); !slices.Equal(c, []string{"SetCarrier veth0 false", "SetCarrier veth0 true"}) {
		t.Errorf("calls %q", c)
	}
	if c := h.n.Calls("LinkSetHardwareAddr"); len(c) != 1 {
		t.Errorf("calls %q: the bridge set a MAC", c)
	}
	want := fmt.Sprintf("INFO MAC address of veth0 changed by someone else; following it mac=%s old_mac=%s\n", lcMAC2, lcMAC1) +
		"INFO Announced the addresses of veth0 at its MAC address on eth0 addresses=198.18.0.11,2001:db8::11\n"
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

// TestMACFollowedStaleNotification: a notification with another MAC than
// the link has now (older than the bridge's own change) changes nothing.
func TestMACFollowedStaleNotification(t *testing.T) { lcBothKinds(t, testMACFollowedStaleNotification) }

func testMACFollowedStaleNotification(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	l := h.tapLink()
	l.HardwareAddr = lcMAC2
	h.n.Emit(bridge.LinkEvent{Link: l})
	h.sync(h.parent.Index)
	// And after a Reconfigure to lcMAC2, one still saying lcMAC1.
	cfg := h.config()
	cfg.MAC = lcMAC2
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	l.HardwareAddr = lcMAC1
	h.n.Emit(bridge.LinkEvent{Link: l})
	h.sync(h.parent.Index)
	if st := b.Status(); !bytes.Equal(st.MAC, lcMAC2) || len(h.n.Sockets()) != 2 {
		t.Errorf("status %+v, %d sockets", st, len(h.n.Sockets()))
	}
	if strings.Contains(h.log.String(), "someone else") {
		t.Errorf("log %q", h.log)
	}
}

// TestMACFollowRefused: a multicast or all-zero address is not followed,
// and each is logged once.
func TestMACFollowRefused(t *testing.T) { lcBothKinds(t, testMACFollowRefused) }

func testMACFollowRefused(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	tapIndex := b.Status().IfIndex
	multicast := net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	h.n.SetHardwareAddr(tapIndex, multicast)
	h.n.Emit(bridge.LinkEvent{Link: h.tapLink()}) // again
	h.sync(h.parent.Index)
	h.n.SetHardwareAddr(tapIndex, make(net.HardwareAddr, 6))
	h.sync(h.parent.Index)
	if st := b.Status(); !bytes.Equal(st.MAC, lcMAC1) || len(h.n.Sockets()) != 1 {
		t.Errorf("status %+v, %d sockets", st, len(h.n.Sockets()))
	}
	want := fmt.Sprintf("WARN MAC address of veth0 changed by someone else to %s, a multicast address: not following it; frames are relayed for %s\n", multicast, lcMAC1) +
		fmt.Sprintf("WARN MAC address of veth0 changed by someone else to 00:00:00:00:00:00, the all-zero address: not following it; frames are relayed for %s\n", lcMAC1)
	if got := h.log.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	// A good one is followed.
	h.n.SetHardwareAddr(tapIndex, lcMAC2)
	h.wait("the new MAC", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
}

// TestMACFollowedWaitingParent: without a parent there is no socket to
// re-open; the parent, when it appears, is attached for the new MAC.
func TestMACFollowedWaitingParent(t *testing.T) { lcBothKinds(t, testMACFollowedWaitingParent) }

func testMACFollowedWaitingParent(t *testing.T, h *lcHarness) {
	h.n.Remove(h.parent.Index)
	cfg := h.config()
	cfg.WaitParent = true
	b := h.start(cfg)
	h.n.SetHardwareAddr(b.Status().IfIndex, lcMAC2)
	h.wait("the new MAC", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
	if n := len(h.n.Sockets()); n != 0 {
		t.Errorf("%d sockets without a parent", n)
	}
	p := h.n.Add(bridge.Link{Name: "eth0", MTU: 1400, Up: true, LowerUp: true})
	h.wait("the parent", func(st bridge.Status) bool { return st.ParentIfIndex == p.Index })
	sock := h.n.Socket()
	if !bytes.Equal(sock.MAC, lcMAC2) {
		t.Errorf("socket for %s", sock.MAC)
	}
	lcCheckFlow(t, h.nic().Pipe, sock, lcMAC2)
}

// TestMACFollowedAfterLostNotifications: a change whose notification was
// lost is found by the resync.
func TestMACFollowedAfterLostNotifications(t *testing.T) {
	lcBothKinds(t, testMACFollowedAfterLostNotifications)
}

func testMACFollowedAfterLostNotifications(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	h.n.Quiet(func() { h.n.SetHardwareAddr(b.Status().IfIndex, lcMAC2) })
	h.n.DropSubscriptions()
	h.wait("the new MAC", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
	lcCheckFlow(t, h.nic().Pipe, h.n.Socket(), lcMAC2)
}

// TestMACFollowSocketFails: the new socket cannot be opened: LastError
// says so, the old one stays, and the host can send from the new MAC.
func TestMACFollowSocketFails(t *testing.T) { lcBothKinds(t, testMACFollowSocketFails) }

func testMACFollowSocketFails(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	old := h.n.Socket()
	h.n.Fail("OpenParentSocket", unix.EMFILE)
	h.n.SetHardwareAddr(b.Status().IfIndex, lcMAC2)
	st := h.wait("the new MAC", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
	want := fmt.Sprintf("follow the MAC address of veth0 to %s: %s", lcMAC2, unix.EMFILE)
	if st.LastError != want || st.State != bridge.StateRunning {
		t.Errorf("status %+v, want LastError %q", st, want)
	}
	if old.Closed() || h.n.Socket() != old {
		t.Error("the old socket was closed")
	}
	f := lcFrame(lcPeer, lcMAC2, "from the new MAC")
	h.nic().In <- f
	if got := lcRecv(t, old.Out, "from the new MAC"); !bytes.Equal(got, f) {
		t.Errorf("on the wire: %x", got)
	}
}

// TestRestartKeepsFollowedMAC: a restart (adoption) keeps the MAC address
// someone set, though the configuration says another; Reconfigure sets
// the configured one.
func TestRestartKeepsFollowedMAC(t *testing.T) {
	h := newLCHarness(t)
	b1 := h.start(h.config())
	index := b1.Status().IfIndex
	h.n.SetHardwareAddr(index, lcMAC2)
	h.wait("the new MAC", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
	fd, err := b1.TAPFd()
	if err != nil {
		t.Fatal(err)
	}
	b1.Close()
	cfg := h.config() // MAC: lcMAC1
	cfg.TAP = os.NewFile(uintptr(fd), "tap")
	b2 := h.start(cfg)
	if st := b2.Status(); st.IfIndex != index || !bytes.Equal(st.MAC, lcMAC2) || !bytes.Equal(h.n.Socket().MAC, lcMAC2) {
		t.Errorf("status %+v, socket %+v", st, h.n.Socket())
	}
	if c := h.n.Calls("LinkSetHardwareAddr"); len(c) != 1 { // Start's of b1
		t.Errorf("calls %q", c)
	}
	lcCheckFlow(t, h.n.TAP("veth0").Pipe, h.n.Socket(), lcMAC2)
	if err := b2.Reconfigure(h.config()); err != nil {
		t.Fatal(err)
	}
	if st := b2.Status(); !bytes.Equal(st.MAC, lcMAC1) || !bytes.Equal(h.tapLink().HardwareAddr, lcMAC1) {
		t.Errorf("after Reconfigure: status %+v", st)
	}
}

// TestReconfigureMACAnnounces: a new MAC from the configuration is
// announced too, on the new socket before the relay uses it.
func TestReconfigureMACAnnounces(t *testing.T) { lcBothKinds(t, testReconfigureMACAnnounces) }

func testReconfigureMACAnnounces(t *testing.T, h *lcHarness) {
	b := h.start(h.config())
	h.n.SetAddrs(b.Status().IfIndex, lcAddr4)
	cfg := h.config()
	cfg.MAC = lcMAC2
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	sock := h.n.Socket()
	if a, mac := lcAnnounced(t, lcRecv(t, sock.Out, "an announcement")); a != lcAddr4 || !bytes.Equal(mac, lcMAC2) {
		t.Errorf("announced %s at %s", a, mac)
	}
	lcCheckFlow(t, h.nic().Pipe, sock, lcMAC2)
}
