package bridge_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/bridge/bridgetest"
)

// Both kinds of virtual NIC over the fake: what holds for a TAP holds for
// a veth pair (whose carrier is its peer's up/down), and the namespace
// transitions (moved, moved back, namespace destroyed) for each.

var lcKinds = []bridge.Kind{bridge.KindTAP, bridge.KindVeth}

// kindConfig is config() for kind.
func (h *lcHarness) kindConfig(kind bridge.Kind) bridge.Config {
	cfg := h.config()
	cfg.Kind = kind
	return cfg
}

// lcFlow sends a frame each way between the NIC's device dev and the
// parent socket sock, from src.
func lcFlow(t *testing.T, dev *bridgetest.Pipe, sock *bridgetest.Socket, src []byte) {
	t.Helper()
	out := lcFrame(lcPeer, src, "from the host")
	dev.In <- out
	if got := lcRecv(t, sock.Out, "from the NIC on the wire"); !bytes.Equal(got, out) {
		t.Fatalf("on the wire: %x, want %x", got, out)
	}
	in := lcFrame(src, lcPeer, "from the wire")
	sock.In <- in
	if got := lcRecv(t, dev.Out, "from the wire on the NIC"); !bytes.Equal(got, in) {
		t.Fatalf("on the NIC: %x, want %x", got, in)
	}
}

// nicCarrier is the NIC's carrier as the fake has it, wherever it is.
func (h *lcHarness) nicCarrier(index int) bool {
	if l, ok := h.n.LookupIndex(index); ok {
		return l.LowerUp
	}
	l, _, _ := h.n.LookupAway(index)
	return l.LowerUp
}

func TestKindsStartAndCarrier(t *testing.T) {
	for _, kind := range lcKinds {
		t.Run(string(kind), func(t *testing.T) {
			h := newLCHarness(t)
			b := h.start(h.kindConfig(kind))
			st := b.Status()
			nic := h.tapLink()
			if st.Kind != kind || st.State != bridge.StateRunning || st.IfIndex != nic.Index || !st.Carrier ||
				!bytes.Equal(nic.HardwareAddr, lcMAC1) || nic.MTU != 1400 || !nic.Up || !nic.LowerUp || len(st.Offloads) == 0 {
				t.Fatalf("status %+v, link %+v", st, nic)
			}
			if kind == bridge.KindVeth {
				p, ok := h.n.Lookup("vd-veth0")
				if !ok || p.Kind != "veth" || p.Alias != "vethd peer of veth0" || p.MTU != 65535 || !p.Up || p.PeerIndex != nic.Index {
					t.Fatalf("peer %+v", p)
				}
				if _, err := b.TAPFd(); !errors.Is(err, errors.ErrUnsupported) {
					t.Errorf("TAPFd: %v, want ErrUnsupported", err)
				}
			}
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)

			h.n.SetCarrier(h.parent.Index, false)
			h.waitState(bridge.StateDegraded)
			lcWaitFor(t, "no carrier on the NIC", func() bool { return !h.nicCarrier(nic.Index) })
			h.n.SetCarrier(h.parent.Index, true)
			h.waitState(bridge.StateRunning)
			lcWaitFor(t, "a carrier on the NIC", func() bool { return h.nicCarrier(nic.Index) })
			h.n.SetMTU(h.parent.Index, 1300)
			h.wait("MTU 1300", func(st bridge.Status) bool { return st.MTU == 1300 })
			if l := h.tapLink(); l.MTU != 1300 {
				t.Errorf("NIC MTU %d, want 1300", l.MTU)
			}
			h.n.SetHardwareAddr(nic.Index, lcMAC2)
			h.wait("MAC followed", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC2)
		})
	}
}

func TestVethCloseDeletesPair(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.kindConfig(bridge.KindVeth))
	dev := h.n.Device("veth0")
	b.Close()
	if !dev.Closed() {
		t.Error("peer socket left open")
	}
	for _, name := range []string{"veth0", "vd-veth0"} {
		if _, ok := h.n.Lookup(name); ok {
			t.Errorf("%s outlived Close", name)
		}
	}
}

func TestVethReleaseAndAdopt(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.kindConfig(bridge.KindVeth))
	nic := h.tapLink()
	b.Release()
	p, ok := h.n.Lookup("vd-veth0")
	if l, ok2 := h.n.Lookup("veth0"); !ok || !ok2 || !p.Up || !l.LowerUp {
		t.Fatalf("after Release: peer %+v, NIC %+v", p, l)
	}
	// Someone set another MTU meanwhile; the next vethd brings it in line
	// and keeps the ifindex and the MAC.
	h.n.SetMTU(nic.Index, 1500)
	b2 := h.start(h.kindConfig(bridge.KindVeth))
	st := b2.Status()
	if st.IfIndex != nic.Index || !bytes.Equal(st.MAC, lcMAC1) || st.MTU != 1400 || st.State != bridge.StateRunning {
		t.Errorf("adopted: %+v", st)
	}
	if c := h.n.Calls("LinkAddVeth"); len(c) != 1 {
		t.Errorf("LinkAddVeth calls %q, want the first only", c)
	}
	if !strings.Contains(h.log.String(), "INFO Adopted veth0, a veth pair with vd-veth0 left by an earlier vethd ifindex=") {
		t.Errorf("log:\n%s", h.log)
	}
	lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
}

// TestVethClaimed: a second bridge for a name whose pair another bridge
// relays (two vethd started at once) is refused, before it adopts or
// deletes anything; the claim goes with Close and with Release, so the
// next vethd adopts the pair.
func TestVethClaimed(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.kindConfig(bridge.KindVeth))
	nic := h.tapLink()
	if !h.n.Claimed("veth0") {
		t.Fatal("a running veth bridge holds no claim")
	}
	if b2, err := bridge.Start(h.kindConfig(bridge.KindVeth)); !errors.Is(err, bridge.ErrNameInUse) {
		if b2 != nil {
			b2.Close()
		}
		t.Fatalf("second Start: %v, want ErrNameInUse", err)
	}
	if l, ok := h.n.Lookup("veth0"); !ok || l.Index != nic.Index {
		t.Fatalf("the refused Start changed the pair: %+v %v", l, ok)
	}
	if c := h.n.Calls("LinkAddVeth"); len(c) != 1 {
		t.Errorf("LinkAddVeth calls %q, want the first only", c)
	}
	lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
	b.Release()
	if h.n.Claimed("veth0") {
		t.Fatal("Release kept the claim")
	}
	b3 := h.start(h.kindConfig(bridge.KindVeth))
	if st := b3.Status(); st.IfIndex != nic.Index {
		t.Errorf("after Release: ifindex %d, want %d (adopted)", st.IfIndex, nic.Index)
	}
	b3.Close()
	if h.n.Claimed("veth0") {
		t.Error("Close kept the claim")
	}
	h.start(h.kindConfig(bridge.KindTAP)).Close() // a TAP takes none
	if h.n.Claimed("veth0") {
		t.Error("a TAP bridge claimed")
	}
}

func TestVethNameInUse(t *testing.T) {
	for _, taken := range []bridge.Link{
		{Name: "veth0"},
		{Name: "vd-veth0", Kind: "veth"}, // no alias: not ours
		{Name: "vd-veth0", Kind: "dummy", Alias: "vethd peer of veth0"},
	} {
		t.Run(taken.Name+"-"+taken.Kind, func(t *testing.T) {
			h := newLCHarness(t)
			h.n.Add(taken)
			if _, err := bridge.Start(h.kindConfig(bridge.KindVeth)); !errors.Is(err, bridge.ErrNameInUse) {
				t.Fatalf("Start: %v, want ErrNameInUse", err)
			}
			if _, ok := h.n.Lookup(map[string]string{"veth0": "vd-veth0", "vd-veth0": "veth0"}[taken.Name]); ok {
				t.Error("a failed Start left a link behind")
			}
		})
	}
}

func TestVethPeerWithoutNIC(t *testing.T) {
	h := newLCHarness(t)
	nic, _ := h.n.AddVeth(bridge.Link{Name: "veth0", MTU: 1400, HardwareAddr: lcMAC2}, "vd-veth0", "vethd peer of veth0")
	h.n.Rename(nic.Index, "renamed0") // NAME gone: its peer is an orphan
	b := h.start(h.kindConfig(bridge.KindVeth))
	st := b.Status()
	if st.IfIndex == nic.Index || !bytes.Equal(st.MAC, lcMAC1) || st.State != bridge.StateRunning {
		t.Errorf("status %+v", st)
	}
	if _, ok := h.n.Lookup("renamed0"); ok {
		t.Error("the old pair was not deleted")
	}
	if !strings.Contains(h.log.String(), "WARN Found vd-veth0, the peer of veth0, without veth0 at its other end; deleting the pair and creating it again") {
		t.Errorf("log:\n%s", h.log)
	}
}

func TestVethPeerDeleted(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.kindConfig(bridge.KindVeth))
	p, _ := h.n.Lookup("vd-veth0")
	h.n.Remove(p.Index) // takes veth0 with it
	select {
	case err := <-waitErr(b):
		if err == nil || err.Error() != "veth0 was deleted by someone else" {
			t.Errorf("Wait: %v", err)
		}
	case <-time.After(lcTimeout):
		t.Fatal("Wait did not return")
	}
}

func waitErr(b *bridge.Bridge) <-chan error {
	c := make(chan error, 1)
	go func() { c <- b.Wait() }()
	return c
}

func TestKindsMoved(t *testing.T) {
	for _, kind := range lcKinds {
		t.Run(string(kind), func(t *testing.T) {
			h := newLCHarness(t)
			b := h.start(h.kindConfig(kind))
			nic := h.tapLink()
			nsid := h.n.AddNamespace(filepath.Join(t.TempDir(), "ns"))
			h.n.Move(nic.Index, nsid)
			want := fmt.Sprintf("netnsid %d", nsid)
			h.wait("moved", func(st bridge.Status) bool { return st.Namespace == want })
			if !strings.Contains(h.log.String(), fmt.Sprintf("INFO veth0 moved to network namespace netnsid=%d; still relaying", nsid)) {
				t.Errorf("log:\n%s", h.log)
			}
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
			// Carrier and MTU control reach it there.
			h.n.SetCarrier(h.parent.Index, false)
			h.waitState(bridge.StateDegraded)
			lcWaitFor(t, "no carrier on the moved NIC", func() bool { return !h.nicCarrier(nic.Index) })
			h.n.SetCarrier(h.parent.Index, true)
			h.waitState(bridge.StateRunning)
			lcWaitFor(t, "a carrier on the moved NIC", func() bool { return h.nicCarrier(nic.Index) })
			// Its MTU is its namespace's there: not followed (netlink cannot
			// set it without entering), followed again once back.
			h.n.SetMTU(h.parent.Index, 1300)
			h.sync(h.parent.Index)
			if l, _, _ := h.n.LookupAway(nic.Index); l.MTU != 1400 {
				t.Errorf("moved NIC's MTU %d, want it left at 1400", l.MTU)
			}
			// A MAC set in there is followed (polled).
			h.n.SetAwayHardwareAddr(nic.Index, lcMAC2)
			h.wait("MAC followed", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC2)
			// Moved back: as before.
			h.n.MoveBack(nic.Index)
			h.wait("back", func(st bridge.Status) bool { return st.Namespace == "" })
			if !strings.Contains(h.log.String(), "is back in vethd's network namespace") {
				t.Errorf("log:\n%s", h.log)
			}
			h.n.SetHardwareAddr(nic.Index, lcMAC1)
			h.wait("MAC followed back", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC1) })
			h.wait("MTU 1300 once back", func(st bridge.Status) bool { return st.MTU == 1300 })
			if l := h.tapLink(); l.MTU != 1300 {
				t.Errorf("NIC MTU %d back home, want 1300", l.MTU)
			}
			if err := b.Health(); err != nil {
				t.Errorf("Health: %v", err)
			}
		})
	}
}

func TestKindsNamespaceDestroyed(t *testing.T) {
	for _, kind := range lcKinds {
		t.Run(string(kind), func(t *testing.T) {
			h := newLCHarness(t)
			b := h.start(h.kindConfig(kind))
			nic := h.tapLink()
			nsid := h.n.AddNamespace(filepath.Join(t.TempDir(), "ns"))
			h.n.Move(nic.Index, nsid)
			h.wait("moved", func(st bridge.Status) bool { return st.Namespace != "" })
			h.n.DestroyNamespace(nsid)
			st := h.wait("re-created", func(st bridge.Status) bool { return st.Namespace == "" && st.IfIndex != nic.Index })
			if !strings.Contains(h.log.String(), "WARN network namespace of veth0 was destroyed; re-creating veth0") {
				t.Errorf("log:\n%s", h.log)
			}
			lcWaitFor(t, "a carrier on the re-created NIC", func() bool { return h.nicCarrier(st.IfIndex) })
			l := h.tapLink()
			if l.Index != st.IfIndex || !bytes.Equal(l.HardwareAddr, lcMAC1) {
				t.Errorf("re-created link %+v, status %+v", l, st)
			}
			h.waitState(bridge.StateRunning)
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
			if err := b.Health(); err != nil {
				t.Errorf("Health: %v", err)
			}
		})
	}
}

func TestKindsConfigNamespace(t *testing.T) {
	for _, kind := range lcKinds {
		t.Run(string(kind), func(t *testing.T) {
			h := newLCHarness(t)
			path := filepath.Join(t.TempDir(), "netns", "ctr")
			nsid := h.n.AddNamespace(path)
			cfg := h.kindConfig(kind)
			cfg.Namespace = path
			b := h.start(cfg)
			st := b.Status()
			l, where, ok := h.n.LookupAway(st.IfIndex)
			if !ok || where != nsid || l.Name != "veth0" || !bytes.Equal(l.HardwareAddr, lcMAC1) || !l.Up || !l.LowerUp || l.MTU != 1400 {
				t.Fatalf("link %+v in %d (%v), status %+v", l, where, ok, st)
			}
			if _, here := h.n.Lookup("veth0"); here {
				t.Error("veth0 in the bridge's namespace")
			}
			if st.Namespace != path || st.State != bridge.StateRunning {
				t.Errorf("status %+v", st)
			}
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
			h.n.SetCarrier(h.parent.Index, false)
			h.waitState(bridge.StateDegraded)
			lcWaitFor(t, "no carrier on the NIC", func() bool { return !h.nicCarrier(st.IfIndex) })
			h.n.SetCarrier(h.parent.Index, true)
			h.waitState(bridge.StateRunning)
			lcWaitFor(t, "a carrier on the NIC", func() bool { return h.nicCarrier(st.IfIndex) })
			b.Close()
			if _, _, ok := h.n.LookupAway(st.IfIndex); ok {
				t.Error("veth0 outlived Close")
			}
		})
	}
}

func TestKindsWaitNamespace(t *testing.T) {
	for _, kind := range lcKinds {
		t.Run(string(kind), func(t *testing.T) {
			h := newLCHarness(t)
			path := filepath.Join(t.TempDir(), "netns", "ctr")
			cfg := h.kindConfig(kind)
			cfg.Namespace = path
			b := h.start(cfg)
			if st := b.Status(); st.State != bridge.StateWaitingNamespace || st.IfIndex != 0 || st.Namespace != path {
				t.Fatalf("status %+v", st)
			}
			if err := b.Health(); err != nil {
				t.Errorf("Health while waiting: %v", err)
			}
			if c := h.n.Calls("CreateTAP", "LinkAddVeth"); len(c) != 0 {
				t.Errorf("created while waiting: %q", c)
			}
			nsid := h.n.AddNamespace(path)
			st := h.waitState(bridge.StateRunning)
			if _, where, ok := h.n.LookupAway(st.IfIndex); !ok || where != nsid {
				t.Fatalf("not created in the namespace: status %+v", st)
			}
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
			// Destroyed (ip netns del): waiting again; back: created again.
			h.n.RemoveNamespace(path, nsid)
			h.waitState(bridge.StateWaitingNamespace)
			nsid = h.n.AddNamespace(path)
			st = h.waitState(bridge.StateRunning)
			if _, where, ok := h.n.LookupAway(st.IfIndex); !ok || where != nsid {
				t.Fatalf("not re-created in the namespace: status %+v", st)
			}
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
			log := h.log.String()
			for _, want := range []string{
				"WARN Network namespace " + path + " does not exist; veth0 is created in it when it appears",
				"INFO Network namespace " + path + " appeared; creating veth0 in it",
				"WARN network namespace of veth0 was destroyed; re-creating veth0",
			} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
		})
	}
}

// TestKindsRestartWhileMoved: vethd restarts while the NIC is in another
// namespace (a container): the next bridge adopts it there (the TAP from
// the fd store, the veth pair as released) and relays as before.
func TestKindsRestartWhileMoved(t *testing.T) {
	for _, kind := range lcKinds {
		t.Run(string(kind), func(t *testing.T) {
			h := newLCHarness(t)
			b := h.start(h.kindConfig(kind))
			nic := h.tapLink()
			nsid := h.n.AddNamespace(filepath.Join(t.TempDir(), "ns"))
			h.n.Move(nic.Index, nsid)
			h.wait("moved", func(st bridge.Status) bool { return st.Namespace != "" })
			cfg := h.kindConfig(kind)
			if kind == bridge.KindTAP {
				fd, err := b.TAPFd()
				if err != nil {
					t.Fatal(err)
				}
				cfg.TAP = os.NewFile(uintptr(fd), "tap")
				cfg.MAC = nil
				b.Close()
			} else {
				b.Release()
			}
			b2 := h.start(cfg)
			st := b2.Status()
			if st.Namespace != fmt.Sprintf("netnsid %d", nsid) || st.IfIndex != nic.Index || st.State != bridge.StateRunning {
				t.Fatalf("adopted: %+v", st)
			}
			if !strings.Contains(h.log.String(), fmt.Sprintf("network namespace netnsid=%d", nsid)) {
				t.Errorf("log:\n%s", h.log)
			}
			lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
			h.n.SetAwayHardwareAddr(nic.Index, lcMAC2)
			h.wait("MAC followed", func(st bridge.Status) bool { return bytes.Equal(st.MAC, lcMAC2) })
		})
	}
}

func TestReconfigureWaitingNamespace(t *testing.T) {
	h := newLCHarness(t)
	path := filepath.Join(t.TempDir(), "ns")
	cfg := h.kindConfig(bridge.KindVeth)
	cfg.Namespace = path
	b := h.start(cfg)
	cfg.MAC = lcMAC2
	if err := b.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if st := b.Status(); st.State != bridge.StateWaitingNamespace || !bytes.Equal(st.MAC, lcMAC2) || len(h.n.Sockets()) != 0 {
		t.Fatalf("status %+v, sockets %d", st, len(h.n.Sockets()))
	}
	nsid := h.n.AddNamespace(path)
	st := h.waitState(bridge.StateRunning)
	if l, where, _ := h.n.LookupAway(st.IfIndex); where != nsid || !bytes.Equal(l.HardwareAddr, lcMAC2) {
		t.Errorf("created %+v in %d", l, where)
	}
}

// lcBothKinds runs f as a subtest for each kind, each over a harness of
// its own whose config makes a bridge of that kind.
func lcBothKinds(t *testing.T, f func(*testing.T, *lcHarness)) {
	for _, kind := range lcKinds {
		t.Run(string(kind), func(t *testing.T) {
			h := newLCHarness(t)
			h.kind = kind
			f(t, h)
		})
	}
}

// lcNIC is the NIC's side of a bridge in the fake, whichever its kind:
// the frames (a TAP's device, a veth peer's socket) and its carrier.
type lcNIC struct {
	*bridgetest.Pipe
	carrier func() bool
}

// Carrier reports the NIC's carrier (a TAP's as last set, a veth end's:
// its peer up).
func (n lcNIC) Carrier() bool { return n.carrier() }

// nic returns the NIC veth0's side, or a zero lcNIC (Pipe nil) if there
// is none.
func (h *lcHarness) nic() lcNIC {
	if h.kind != bridge.KindVeth {
		tap := h.n.TAP("veth0")
		if tap == nil {
			return lcNIC{}
		}
		return lcNIC{Pipe: tap.Pipe, carrier: tap.Carrier}
	}
	dev := h.n.Device("veth0")
	if dev == nil {
		return lcNIC{}
	}
	return lcNIC{Pipe: dev, carrier: func() bool {
		l, ok := h.n.Lookup("veth0")
		return ok && l.LowerUp
	}}
}
