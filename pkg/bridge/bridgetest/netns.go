package bridgetest

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/vethd/vethd/pkg/bridge"
	"golang.org/x/sys/unix"
)

// Other namespaces and veth pairs in a Net. A namespace is a file
// (AddNamespace) that stands for the namespace file a bridge opens
// (Config.Namespace), known by its inode; links in it are out of the
// table's sight (no notifications, LinkByName and LinkByIndex do not find
// them) but reachable by the namespace's id, as IFLA_TARGET_NETNSID
// reaches them (LinkByIndexAt, …). Links keep their ifindex when they move.

// AddNamespace creates a file at path standing for a new namespace and
// returns the id the table's namespace has for it.
func (n *Net) AddNamespace(path string) int {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		panic("bridgetest: " + err.Error())
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		panic("bridgetest: " + err.Error())
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		panic("bridgetest: " + err.Error())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lastNsid++
	n.nsByIno[st.Ino] = n.lastNsid
	n.nsAlive[n.lastNsid] = true
	n.nsPath[n.lastNsid] = path
	return n.lastNsid
}

// Move moves link index into the namespace nsid, as `ip link set $link
// netns $ns` would: an RTM_DELLINK with its IFLA_NEW_NETNSID is sent. A
// veth end's other end here learns its new IFLA_LINK_NETNSID, silently.
func (n *Net) Move(index, nsid int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.move(index, nsid)
}

// move is Move with n.mu held.
func (n *Net) move(index, nsid int) {
	l, ok := n.links[index]
	if !ok {
		panic(fmt.Sprintf("bridgetest: no link with index %d here", index))
	}
	if !n.nsAlive[nsid] {
		panic(fmt.Sprintf("bridgetest: no namespace %d", nsid))
	}
	delete(n.links, index)
	n.setPeerNetns(l, nsid)
	n.away[index] = awayLink{link: l, nsid: nsid}
	n.emit(bridge.LinkEvent{Link: l, Deleted: true, NewNetnsID: nsid, NewIndex: index})
}

// setPeerNetns records that l's other end (if l is a veth end) now sees l
// in namespace nsid. n.mu is held.
func (n *Net) setPeerNetns(l bridge.Link, nsid int) {
	if l.Kind != "veth" {
		return
	}
	if p, ok := n.links[l.PeerIndex]; ok {
		p.PeerNetnsID = nsid
		n.links[l.PeerIndex] = p
	}
}

// MoveBack moves link index from its namespace back into the table's, as
// `ip -n $ns link set $link netns 1` would: an RTM_NEWLINK is sent.
func (n *Net) MoveBack(index int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.away[index]
	if !ok {
		panic(fmt.Sprintf("bridgetest: no link with index %d away", index))
	}
	delete(n.away, index)
	n.setPeerNetns(a.link, bridge.OwnNetns)
	n.links[index] = a.link
	n.emit(bridge.LinkEvent{Link: a.link, NewNetnsID: -1})
}

// SetAwayHardwareAddr sets the MAC address of link index in another
// namespace (no notification reaches the table's).
func (n *Net) SetAwayHardwareAddr(index int, mac net.HardwareAddr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.away[index]
	if !ok {
		panic(fmt.Sprintf("bridgetest: no link with index %d away", index))
	}
	a.link.HardwareAddr = append(net.HardwareAddr(nil), mac...)
	n.away[index] = a
}

// LookupAway returns link index in another namespace, and that namespace's id.
func (n *Net) LookupAway(index int) (bridge.Link, int, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.away[index]
	return a.link, a.nsid, ok
}

// DestroyNamespace destroys namespace nsid, as the kernel does when its
// last user goes: the namespace's id stops resolving, then its links are
// deleted — a TAP's device breaks (EBADFD), a veth end takes its other
// end here with it (RTM_DELLINK).
func (n *Net) DestroyNamespace(nsid int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.nsAlive, nsid)
	for index, a := range n.away {
		if a.nsid == nsid {
			n.remove(index)
		}
	}
}

// away link lookup for the *At methods. n.mu is held.
func (n *Net) at(nsid, index int) (bridge.Link, error) {
	if nsid == bridge.OwnNetns {
		l, ok := n.links[index]
		if !ok {
			return bridge.Link{}, fmt.Errorf("link %d: %w", index, bridge.ErrLinkNotFound)
		}
		return l, nil
	}
	if !n.nsAlive[nsid] {
		return bridge.Link{}, fmt.Errorf("netnsid %d: %w", nsid, unix.EINVAL)
	}
	a, ok := n.away[index]
	if !ok || a.nsid != nsid {
		return bridge.Link{}, fmt.Errorf("link %d in netnsid %d: %w", index, nsid, bridge.ErrLinkNotFound)
	}
	return a.link, nil
}

// LinkByIndexAt looks link index up in namespace nsid. See bridge.LinkControl.
func (n *Net) LinkByIndexAt(nsid, index int) (bridge.Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkByIndexAt", nsid, index); err != nil {
		return bridge.Link{}, err
	}
	return n.at(nsid, index)
}

// LinkByNameAt looks link name up in namespace nsid. See bridge.LinkControl.
func (n *Net) LinkByNameAt(nsid int, name string) (bridge.Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkByNameAt", nsid, name); err != nil {
		return bridge.Link{}, err
	}
	if nsid == bridge.OwnNetns {
		if l, ok := n.byName(name); ok {
			return l, nil
		}
		return bridge.Link{}, fmt.Errorf("link %s: %w", name, bridge.ErrLinkNotFound)
	}
	if !n.nsAlive[nsid] {
		return bridge.Link{}, fmt.Errorf("netnsid %d: %w", nsid, unix.EINVAL)
	}
	for _, a := range n.away {
		if a.nsid == nsid && a.link.Name == name {
			return a.link, nil
		}
	}
	return bridge.Link{}, fmt.Errorf("link %s in netnsid %d: %w", name, nsid, bridge.ErrLinkNotFound)
}

// LinkSetDown brings link index down. See bridge.LinkControl.
func (n *Net) LinkSetDown(index int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkSetDown", index); err != nil {
		return err
	}
	return n.modifyLocked(index, func(l *bridge.Link) { l.Up = false })
}

// LinkDel deletes link index (a veth end with its other end). See
// bridge.LinkControl.
func (n *Net) LinkDel(index int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkDel", index); err != nil {
		return err
	}
	if _, ok := n.links[index]; !ok {
		return fmt.Errorf("link %d: %w", index, bridge.ErrLinkNotFound)
	}
	n.remove(index)
	return nil
}

// nsidOf returns the id of the namespace f stands for. n.mu is held.
func (n *Net) nsidOf(f *os.File) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	id, ok := n.nsByIno[st.Ino]
	if !ok || !n.nsAlive[id] {
		return 0, fmt.Errorf("%s: not a namespace: %w", f.Name(), unix.EINVAL)
	}
	return id, nil
}

// NamespaceID returns the id of the namespace f stands for. See
// bridge.LinkControl.
func (n *Net) NamespaceID(f *os.File) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("NamespaceID", f.Name()); err != nil {
		return 0, err
	}
	return n.nsidOf(f)
}

// LinkSetNamespace moves link index into the namespace f stands for, with
// MTU mtu (unless 0), up. It is recorded as "LinkSetNamespace INDEX FILE
// MTU". See bridge.LinkControl.
func (n *Net) LinkSetNamespace(index int, f *os.File, mtu int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkSetNamespace", index, f.Name(), mtu); err != nil {
		return err
	}
	id, err := n.nsidOf(f)
	if err != nil {
		return err
	}
	if _, ok := n.links[index]; !ok {
		return fmt.Errorf("link %d: %w", index, unix.ENODEV)
	}
	n.move(index, id)
	a := n.away[index]
	a.link.Up = true
	if mtu > 0 {
		a.link.MTU = mtu
	}
	n.away[index] = a
	return nil
}

// LinkAddVeth creates the veth pair v: the NIC up and without a carrier
// (in v.Namespace if set), the peer down with MTU 65535 and v.PeerAlias.
// It is recorded as "LinkAddVeth NAME PEER". See bridge.LinkControl.
func (n *Net) LinkAddVeth(v bridge.VethSpec) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkAddVeth", v.Name, v.Peer); err != nil {
		return err
	}
	nsid := bridge.OwnNetns
	if v.Namespace != nil {
		id, err := n.nsidOf(v.Namespace)
		if err != nil {
			return err
		}
		nsid = id
	}
	if _, ok := n.byName(v.Peer); ok {
		return fmt.Errorf("create veth pair %s/%s: %w", v.Name, v.Peer, bridge.ErrNameInUse)
	}
	if _, ok := n.byName(v.Name); ok && nsid == bridge.OwnNetns {
		return fmt.Errorf("create veth pair %s/%s: %w", v.Name, v.Peer, bridge.ErrNameInUse)
	}
	mtu := v.MTU
	if mtu == 0 {
		mtu = 1500
	}
	ni, pi := n.nextIndex(), 0
	nic := bridge.Link{Index: ni, Name: v.Name, MTU: mtu, HardwareAddr: append(net.HardwareAddr(nil), v.MAC...), Kind: "veth", Up: true, PeerNetnsID: bridge.OwnNetns}
	if nsid == bridge.OwnNetns {
		n.links[ni] = nic // reserved, for nextIndex
	} else {
		n.away[ni] = awayLink{link: nic, nsid: nsid}
	}
	pi = n.nextIndex()
	nic.PeerIndex = pi
	n.add(bridge.Link{Index: pi, Name: v.Peer, MTU: 65535, Kind: "veth", Alias: v.PeerAlias, PeerIndex: ni, PeerNetnsID: nsid,
		HardwareAddr: net.HardwareAddr{0x02, 0xcc, 0, 0, byte(pi >> 8), byte(pi)}})
	if nsid == bridge.OwnNetns {
		delete(n.links, ni)
		n.add(nic)
	} else {
		n.away[ni] = awayLink{link: nic, nsid: nsid}
	}
	return nil
}

// ClaimVeth claims name's veth pair in this Net (an in-memory stand-in
// for the abstract socket). See bridge.Opener.
func (n *Net) ClaimVeth(name string) (io.Closer, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.fails["ClaimVeth"]; err != nil { // not recorded in Calls
		return nil, err
	}
	if n.claims == nil {
		n.claims = map[string]bool{}
	}
	if n.claims[name] {
		return nil, fmt.Errorf("veth pair %s: another vethd relays it: %w", name, bridge.ErrNameInUse)
	}
	n.claims[name] = true
	return closerFunc(func() error {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.claims, name)
		return nil
	}), nil
}

// Claimed reports whether name's veth pair is claimed (ClaimVeth).
func (n *Net) Claimed(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.claims[name]
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// OpenPeerSocket opens a Socket on link ifindex, a veth peer. See
// bridge.Opener.
func (n *Net) OpenPeerSocket(ifindex int, name string) (bridge.ParentIO, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("OpenPeerSocket", ifindex, name); err != nil {
		return nil, err
	}
	if l, ok := n.links[ifindex]; !ok || l.Kind != "veth" {
		return nil, fmt.Errorf("bind packet socket on %s: %w", name, unix.ENODEV)
	}
	s := &Socket{Pipe: NewPipe(PipeDepth), Ifindex: ifindex, Name: name}
	n.peerSocks[ifindex] = s
	return s, nil
}

// AddVeth adds a veth pair as an earlier vethd leaves it (Release): the
// NIC l (up, with a carrier) and its peer named peer with alias alias
// (up). It returns both as added.
func (n *Net) AddVeth(l bridge.Link, peer, alias string) (nic, p bridge.Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l.Kind, l.Up, l.LowerUp, l.PeerNetnsID = "veth", true, true, bridge.OwnNetns
	nic = n.add(l)
	p = n.add(bridge.Link{Name: peer, MTU: 65535, Kind: "veth", Alias: alias, Up: true, PeerIndex: nic.Index, PeerNetnsID: bridge.OwnNetns})
	nic.PeerIndex = p.Index
	n.links[nic.Index] = nic
	return nic, p
}

// Device returns the frame pipe of the virtual NIC named name (here or in
// another namespace): a TAP's device, or the socket on a veth pair's peer;
// nil if there is none.
func (n *Net) Device(name string) *Pipe {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.byName(name)
	if !ok {
		for _, a := range n.away {
			if a.link.Name == name {
				l, ok = a.link, true
			}
		}
	}
	if !ok {
		return nil
	}
	if t := n.taps[l.Index]; t != nil && t.dev != nil {
		return t.dev.Pipe
	}
	if s := n.peerSocks[l.PeerIndex]; s != nil && l.Kind == "veth" {
		return s.Pipe
	}
	return nil
}

// PeerSocket returns the socket last opened on the veth peer index, or nil.
func (n *Net) PeerSocket(index int) *Socket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peerSocks[index]
}

// modifyAnywhere is modifyLocked for link index wherever it is (a TAP's
// carrier is set through its descriptor). n.mu is held.
func (n *Net) modifyAnywhere(index int, f func(*bridge.Link)) error {
	if a, ok := n.away[index]; ok {
		f(&a.link)
		n.away[index] = a
		return nil
	}
	return n.modifyLocked(index, f)
}

// InOwnNetns reports whether the TAP's interface is in the Net's own
// namespace (the kernel's TAP asks its descriptor, TUNGETDEVNETNS).
func (t *TAP) InOwnNetns() bool { return t.here() }

// RemoveNamespace removes the file standing for namespace nsid (at path)
// and destroys the namespace, as `ip netns del` does when nothing else
// holds it.
func (n *Net) RemoveNamespace(path string, nsid int) {
	if err := os.Remove(path); err != nil {
		panic("bridgetest: " + err.Error())
	}
	n.DestroyNamespace(nsid)
}
