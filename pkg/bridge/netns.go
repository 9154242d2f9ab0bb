package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Namespaces. The virtual interface may leave the bridge's namespace (`ip
// link set veth1 netns X`, systemd-nspawn --network-interface=) and keep
// relaying: a TAP's descriptor works wherever its interface is, and a veth
// pair's peer stays here. The bridge tells a move from a deletion by the
// IFLA_NEW_NETNSID of the RTM_DELLINK (LinkEvent.Moved), looks at the
// interface there through its namespace's id (RTM_GETLINK with
// IFLA_TARGET_NETNSID, no setns): its MAC address is polled once a second
// and followed, its carrier stays the bridge's (the TAP's
// TUNSETCARRIER, the peer's up/down). Its MTU, up/down, ARP settings and
// address announcements are left to the other namespace: RTM_SETLINK
// cannot reach a link there (it reads IFLA_TARGET_NETNSID as "move"). When that namespace is destroyed the kernel
// deletes the interface (a veth pair whole); the bridge creates it again
// at home. All of this runs on routineWatchLinks.

// nsLabel is Status.Namespace for the namespace with id nsid.
func (b *Bridge) nsLabel(nsid int) string {
	switch {
	case nsid == OwnNetns:
		return ""
	case nsid == b.homeNetns:
		return b.cfg.Namespace
	}
	return fmt.Sprintf("netnsid %d", nsid)
}

// devMoved follows the interface into the namespace with id nsid, where
// its ifindex is index (0: unknown, kept).
func (b *Bridge) devMoved(nsid, index int) {
	st := b.Status()
	if nsid == b.devNetns && (index == 0 || index == st.IfIndex) {
		return
	}
	// Logged before the status says so: who sees the one sees the other.
	b.log.Info(fmt.Sprintf("%s moved to network namespace netnsid=%d; still relaying", b.name, nsid))
	b.devNetns = nsid
	b.state.Lock()
	if index != 0 {
		b.state.st.IfIndex = index
	}
	b.state.st.Namespace = b.nsLabel(nsid)
	b.state.Unlock()
	b.changed()
	b.pollAway()
}

// isOurs reports whether l, a link that appeared here while the interface
// is away, is the interface come back.
func (b *Bridge) isOurs(l Link) bool {
	if b.kind == KindVeth {
		return l.Kind == "veth" && l.PeerIndex == b.peer.Index && l.PeerNetnsID == OwnNetns
	}
	h, ok := b.dev().(interface{ InOwnNetns() bool })
	return ok && l.Kind == "tun" && h.InOwnNetns()
}

// devBack takes up the interface, l, moved back into the bridge's namespace.
func (b *Bridge) devBack(l Link) {
	b.log.Info(fmt.Sprintf("%s is back in vethd's network namespace ifindex=%d", b.name, l.Index))
	b.devNetns = OwnNetns
	b.state.Lock()
	b.state.st.IfIndex = l.Index
	b.state.st.Namespace = ""
	b.state.Unlock()
	b.state.Lock()
	b.state.st.MTU = l.MTU
	b.state.Unlock()
	if !l.Up {
		// A move leaves a link down; here it is up, as vethd made it.
		if err := b.links.LinkSetUp(l.Index); err != nil {
			b.setError(fmt.Errorf("set %s up: %w", b.name, err))
		}
	}
	b.isolateARP(nil, true)
	b.tapChanged(l)
	if b.cfg.MTU != 0 {
		b.setMTU(b.cfg.MTU)
	} else {
		b.followMTU(b.parentMTU())
	}
	b.changed()
}

// peerChanged follows a notification of the veth kind's peer: deleted, it
// took the interface with it; its other end's namespace (IFLA_LINK_NETNSID)
// says where the interface is now.
func (b *Bridge) peerChanged(ev LinkEvent) {
	if ev.Deleted {
		if b.devNetns == OwnNetns {
			b.tapGone()
		} else {
			b.devLost()
		}
		return
	}
	p := ev.Link
	if p.PeerIndex == 0 || p.PeerNetnsID == b.devNetns {
		return
	}
	if p.PeerNetnsID == OwnNetns {
		if l, err := b.links.LinkByIndex(p.PeerIndex); err == nil {
			b.devBack(l)
		}
		return
	}
	b.devMoved(p.PeerNetnsID, p.PeerIndex)
}

// pollAway looks at the interface in its other namespace, where no
// notifications of it reach the bridge: where a veth pair's other end is
// now, and the interface's MAC address (followed) and MTU.
func (b *Bridge) pollAway() {
	if b.peer.Index != 0 {
		if p, err := b.links.LinkByIndex(b.peer.Index); err == nil && p.PeerIndex != 0 && p.PeerNetnsID != b.devNetns {
			b.peerChanged(LinkEvent{Link: p, NewNetnsID: -1})
			if b.devNetns == OwnNetns {
				return
			}
		}
	}
	st := b.Status()
	l, err := b.links.LinkByIndexAt(b.devNetns, st.IfIndex)
	if err != nil {
		return // gone: the peer's deletion or the TAP's descriptor says so
	}
	if l.MTU != st.MTU {
		b.state.Lock()
		b.state.st.MTU = l.MTU
		b.state.Unlock()
		b.followMTU(b.parentMTU())
		b.changed()
	}
	if len(l.HardwareAddr) == 6 && !bytes.Equal(l.HardwareAddr, b.cfg.MAC) {
		b.followMAC(l.HardwareAddr)
	}
}

// parentMTU returns the parent's MTU, 0 if there is no parent.
func (b *Bridge) parentMTU() int {
	st := b.Status()
	if st.ParentIfIndex == 0 {
		return 0
	}
	l, err := b.links.LinkByIndex(st.ParentIfIndex)
	if err != nil {
		return 0
	}
	return l.MTU
}

// devLost deals with the interface gone from its other namespace: with the
// namespace (whose id no longer resolves), it is created again at home;
// deleted by someone in there, the bridge ends as for a deletion here.
func (b *Bridge) devLost() {
	st := b.Status()
	_, err := b.links.LinkByIndexAt(b.devNetns, st.IfIndex)
	if err == nil || errors.Is(err, ErrLinkNotFound) {
		b.fail(fmt.Errorf("%s was deleted by someone else in network namespace netnsid=%d", b.name, b.devNetns))
		return
	}
	b.log.Warn(fmt.Sprintf("network namespace of %s was destroyed; re-creating %s", b.name, b.name))
	if err := b.recreate(); err != nil {
		b.fail(fmt.Errorf("re-create %s: %w", b.name, err))
	}
}

// recreate creates the interface again where the bridge creates it, with
// the MAC address it had, and attaches it to the parent if there is one.
func (b *Bridge) recreate() error {
	old := b.cur.Load()
	if b.cfg.Namespace != "" {
		f, err := b.openNamespace()
		if errors.Is(err, os.ErrNotExist) {
			b.waitNamespace(old)
			return nil
		}
		if err != nil {
			return err
		}
		b.nsFile = f
		defer func() { f.Close(); b.nsFile = nil }()
	}
	old.relay.Close() // its device and parent socket
	b.state.Lock()
	b.state.sock = nil
	b.state.Unlock()
	b.devNetns = b.homeNetns
	var parent *Link
	if l, err := b.links.LinkByName(b.cfg.Parent); err == nil {
		parent = &l
	}
	var dev Device
	var link Link
	var err error
	if b.kind == KindVeth {
		b.peer = Link{}
		dev, link, _, err = b.openVeth(b.cfg, parent)
	} else {
		dev, link, err = b.createTAP(b.cfg, parent)
	}
	if err != nil {
		return err
	}
	relay := NewRelay(dev, link.HardwareAddr, &b.counters, b.onRelayError)
	b.cur.Store(&devRelay{dev: dev, relay: relay})
	b.devGone = relay.DeviceGone()
	b.cfg.MAC = link.HardwareAddr
	b.state.Lock()
	b.state.st.IfIndex = link.Index
	b.state.st.MAC = link.HardwareAddr
	b.state.st.MTU = link.MTU
	b.state.st.Namespace = b.nsLabel(b.homeNetns)
	b.state.st.Offloads = dev.Offloads()
	b.state.Unlock()
	if parent != nil {
		if err := b.attach(*parent, isolateTAP); err != nil {
			b.setError(fmt.Errorf("attach to %s: %w", parent.Name, err))
		}
	} else {
		b.isolateARP(nil, true)
		b.detach()
	}
	b.log.Info(fmt.Sprintf("Re-created %s ifindex=%d", b.name, link.Index))
	b.changed()
	return nil
}

// The interface's link wherever it is (b.devNetns): in the bridge's own
// namespace by the plain calls, elsewhere through the namespace's id.

func (b *Bridge) linkByIndex(index int) (Link, error) {
	if b.devNetns == OwnNetns {
		return b.links.LinkByIndex(index)
	}
	return b.links.LinkByIndexAt(b.devNetns, index)
}

func (b *Bridge) linkNamed(name string) (Link, error) {
	if b.devNetns == OwnNetns {
		return b.links.LinkByName(name)
	}
	return b.links.LinkByNameAt(b.devNetns, name)
}

// errAway is the error of a change to the interface while it is in another
// namespace, where netlink cannot reach it without entering (setns).
func (b *Bridge) errAway() error {
	return fmt.Errorf("%s is in another network namespace (%s): vethd leaves it as it is there", b.name, b.nsLabel(b.devNetns))
}

func (b *Bridge) linkSetMTU(index, mtu int) error {
	if b.devNetns != OwnNetns {
		return b.errAway()
	}
	return b.links.LinkSetMTU(index, mtu)
}

func (b *Bridge) linkSetUp(index int) error {
	if b.devNetns != OwnNetns {
		return b.errAway()
	}
	return b.links.LinkSetUp(index)
}

// openNamespace opens Config.Namespace and makes it the interface's home
// (b.homeNetns, b.devNetns: its id). The error wraps os.ErrNotExist if
// there is no such namespace (yet). The caller closes the file once the
// interface is created: a namespace vethd held open would never be
// destroyed.
func (b *Bridge) openNamespace() (*os.File, error) {
	f, err := os.Open(b.cfg.Namespace)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", b.cfg.Namespace, err)
	}
	id, err := b.links.NamespaceID(f)
	if errors.Is(err, unix.EINVAL) {
		// A file that is not a namespace: `ip netns del` unmounts the
		// namespace before it unlinks the file, so one that was just
		// destroyed can look like this for a moment; waited for as one
		// that does not exist.
		f.Close()
		return nil, fmt.Errorf("network namespace %s: not a network namespace (being deleted?): %w", b.cfg.Namespace, os.ErrNotExist)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	b.homeNetns, b.devNetns = id, id
	return f, nil
}

// waitNamespace makes the bridge wait for Config.Namespace (which does not
// exist): old, the relay of an interface that is gone, is closed; a relay
// over a nullDevice stands in, detached from the parent.
func (b *Bridge) waitNamespace(old *devRelay) {
	if old != nil {
		old.relay.Close()
	}
	dev := newNullDevice(b.name)
	b.cur.Store(&devRelay{dev: dev, relay: NewRelay(dev, b.cfg.MAC, &b.counters, b.onRelayError)})
	b.devGone = nil
	b.peer = Link{}
	b.homeNetns, b.devNetns = OwnNetns, OwnNetns
	b.state.Lock()
	b.state.sock = nil
	b.state.st.IfIndex = 0
	b.state.st.ParentIfIndex = 0
	b.state.st.Carrier, b.state.st.ParentCarrier = false, false
	b.state.st.Namespace = b.cfg.Namespace
	b.state.st.State = StateWaitingNamespace
	b.state.Unlock()
	b.log.Warn(fmt.Sprintf("Network namespace %s does not exist; %s is created in it when it appears", b.cfg.Namespace, b.name))
	b.changed()
}

// lookForNamespace creates the interface in Config.Namespace if it exists
// now (while waiting-namespace, once a second: one stat).
func (b *Bridge) lookForNamespace() {
	if _, err := os.Stat(b.cfg.Namespace); err != nil {
		return
	}
	// (A file that is not, or no longer, a namespace is still waited for.)
	f, err := b.openNamespace()
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if f != nil {
		f.Close()
	}
	b.log.Info(fmt.Sprintf("Network namespace %s appeared; creating %s in it", b.cfg.Namespace, b.name))
	if err := b.recreate(); err != nil {
		b.setError(fmt.Errorf("create %s in %s: %w", b.name, b.cfg.Namespace, err))
	}
}

// moveHome moves the fresh TAP l (down, its MAC and MTU set) into
// b.nsFile, its home, and brings it up there in the same request: the
// descriptor keeps working there.
//
// Equivalent to: `ip link set $name netns $ns up`.
func (b *Bridge) moveHome(l Link) (Link, error) {
	if err := b.links.LinkSetNamespace(l.Index, b.nsFile, 0); err != nil {
		return Link{}, fmt.Errorf("move %s to %s: %w", l.Name, b.cfg.Namespace, err)
	}
	nl, err := b.links.LinkByNameAt(b.homeNetns, l.Name)
	if err != nil {
		return Link{}, fmt.Errorf("find %s in %s: %w", l.Name, b.cfg.Namespace, err)
	}
	return nl, nil
}

// nullDevice stands in for the interface while there is none (waiting for
// its namespace): it reads nothing until closed and drops what is written.
type nullDevice struct {
	name   string
	closed chan struct{}
	once   sync.Once
}

var _ Device = (*nullDevice)(nil)

func newNullDevice(name string) *nullDevice {
	return &nullDevice{name: name, closed: make(chan struct{})}
}

// ReadFrame blocks until Close. See FrameIO.
func (d *nullDevice) ReadFrame([]byte) (int, error) { <-d.closed; return 0, net.ErrClosed }

// WriteFrame drops the frame. See FrameIO.
func (d *nullDevice) WriteFrame([]byte) error { return nil }

// Close ends ReadFrame. See FrameIO.
func (d *nullDevice) Close() error { d.once.Do(func() { close(d.closed) }); return nil }

// Name returns the interface's name. See Device.
func (d *nullDevice) Name() string { return d.name }

// SetCarrier does nothing: there is no interface. See Device.
func (d *nullDevice) SetCarrier(bool) error { return nil }

// Dup fails: there is no interface. See Device.
func (d *nullDevice) Dup() (int, error) {
	return -1, fmt.Errorf("%s does not exist (waiting for its namespace): %w", d.name, errors.ErrUnsupported)
}

// Offloads returns nothing. See Device.
func (d *nullDevice) Offloads() []string { return nil }

// findAwayTAP sets b.devNetns to where an adopted TAP is: OwnNetns for one
// here, else its namespace's id, which is b.homeNetns for one in
// Config.Namespace (created there by an earlier vethd) and another for one
// moved while vethd restarted. The TAP says where it is (TUNGETDEVNETNS).
func (b *Bridge) findAwayTAP(tap Device) error {
	h, ok := tap.(interface {
		InOwnNetns() bool
		NetnsFile() (*os.File, error)
	})
	if !ok {
		return nil
	}
	if h.InOwnNetns() {
		b.devNetns = OwnNetns
		return nil
	}
	f, err := h.NetnsFile()
	if err != nil {
		return fmt.Errorf("adopt %s: find its network namespace: %w", tap.Name(), err)
	}
	defer f.Close()
	id, err := b.links.NamespaceID(f)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", tap.Name(), err)
	}
	b.devNetns = id
	if id == b.homeNetns {
		b.log.Info(fmt.Sprintf("Adopted %s in its network namespace %s", tap.Name(), b.cfg.Namespace))
		return nil
	}
	b.log.Info(fmt.Sprintf("Adopted %s in network namespace netnsid=%d; still relaying", tap.Name(), id))
	return nil
}
