package bridgetest

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vethd/vethd/pkg/bridge"
	"golang.org/x/sys/unix"
)

// PipeDepth is how many frames each channel of a fake TAP's or socket's
// Pipe holds.
const PipeDepth = 64

// subscriptionDepth is how many events a subscription holds before it is
// lost, as a netlink socket whose buffer overran.
const subscriptionDepth = 256

// Net is a fake of the kernel's side of a bridge, for bridge.Config.Links
// and bridge.Config.Opener: a link table (bridge.LinkControl) whose TAPs
// and parent sockets (bridge.Opener) are Pipes. Every change to the table,
// made by the bridge or by the test (Add, Remove, Rename, SetCarrier, …),
// is sent to every subscription as the kernel would, unless it happens
// inside Quiet; so is every LinkSetInetConf, changed or not, as the kernel
// does. Each link also has IPv4 settings (all 0 when it is added, as with
// the kernel's defaults) and addresses (SetAddrs). Every call of the bridge's (LinkControl, Opener, and the
// TAPs' SetCarrier and Dup) is recorded (Calls), and can be made to fail
// (Fail). The zero Net is not usable: call NewNet. All methods may be called
// from any goroutine.
type Net struct {
	mu        sync.Mutex
	links     map[int]bridge.Link
	inet      map[int]bridge.InetConf // the links' IPv4 settings (missing: 0)
	addrs     map[int][]netip.Addr    // the links' addresses
	taps      map[int]*tapIface       // the TAP interfaces, by ifindex
	lastIndex int
	subs      []*subscription // live subscriptions
	quiet     int             // >0: inside Quiet, no events
	calls     []string
	fails     map[string]error
	sockets   []*Socket // every socket opened, oldest first

	// Other namespaces: links moved or created there (by ifindex, which
	// the fake keeps unique across namespaces), and the namespaces by the
	// inode of the file that stands for each (AddNamespace).
	away      map[int]awayLink
	nsByIno   map[uint64]int // inode → nsid
	nsAlive   map[int]bool   // nsid → not destroyed
	nsPath    map[int]string // nsid → the file that stands for it
	lastNsid  int
	peerSocks map[int]*Socket // the socket on each veth peer, by the peer's ifindex
	claims    map[string]bool // the veth pairs claimed (ClaimVeth), by the NIC's name
}

// awayLink is a link in another namespace.
type awayLink struct {
	link bridge.Link
	nsid int
}

var (
	_ bridge.LinkControl = (*Net)(nil)
	_ bridge.Opener      = (*Net)(nil)
)

// tapIface is a TAP interface in a Net. A memfd stands for its tun file
// description: every descriptor of it (Dup's, AddTAP's) has the memfd's
// inode, by which AdoptTAP finds the interface again.
type tapIface struct {
	ino  uint64
	held bool // a descriptor other than the device's exists: closing the device leaves the interface
	dev  *TAP // the device open on it, or nil
}

// NewNet returns an empty link table. Ifindex 1 is taken (lo, as in a
// fresh namespace).
func NewNet() *Net {
	return &Net{
		links:     map[int]bridge.Link{1: {Index: 1, Name: "lo", MTU: 65536, Up: true, LowerUp: true, EncapType: "loopback"}},
		inet:      map[int]bridge.InetConf{},
		addrs:     map[int][]netip.Addr{},
		taps:      map[int]*tapIface{},
		away:      map[int]awayLink{},
		nsByIno:   map[uint64]int{},
		nsAlive:   map[int]bool{},
		nsPath:    map[int]string{},
		peerSocks: map[int]*Socket{},
		lastIndex: 1,
		fails:     map[string]error{},
	}
}

// call records a call of op and returns the error Fail set for op. n.mu is held.
func (n *Net) call(op string, args ...any) error {
	s := op
	for _, a := range args {
		s += " " + fmt.Sprint(a)
	}
	n.calls = append(n.calls, s)
	return n.fails[op]
}

// Fail makes every later call of op (a method name: "LinkSetMTU",
// "OpenParentSocket", "SetCarrier", …) fail with err; a nil err ends that.
func (n *Net) Fail(op string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		delete(n.fails, op)
	} else {
		n.fails[op] = err
	}
}

// Calls returns the calls recorded so far, oldest first, each as the
// method's name and its arguments separated by spaces
// ("LinkSetMTU 2 1400"), those whose names start with one of prefixes
// only if any are given.
func (n *Net) Calls(prefixes ...string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var cs []string
	for _, c := range n.calls {
		if len(prefixes) == 0 {
			cs = append(cs, c)
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(c, p) {
				cs = append(cs, c)
				break
			}
		}
	}
	return cs
}

// emit sends ev to every subscription (unless quiet); a subscription whose
// queue is full is lost. n.mu is held.
func (n *Net) emit(ev bridge.LinkEvent) {
	if n.quiet > 0 {
		return
	}
	live := n.subs[:0]
	for _, s := range n.subs {
		if s.send(ev) {
			live = append(live, s)
		}
	}
	clear(n.subs[len(live):])
	n.subs = live
}

// Emit sends ev to every subscription, as if the kernel had (even inside
// Quiet), whether or not it describes the table.
func (n *Net) Emit(ev bridge.LinkEvent) {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.quiet
	n.quiet = 0
	n.emit(ev)
	n.quiet = q
}

// Quiet runs f with events off: the changes f makes (and any the bridge
// makes meanwhile) are not sent, as if the notifications had been lost.
func (n *Net) Quiet(f func()) {
	n.mu.Lock()
	n.quiet++
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.quiet--
		n.mu.Unlock()
	}()
	f()
}

// DropSubscriptions ends every subscription as a lost one (its Events
// channel closes), as when a netlink socket's buffer overruns.
func (n *Net) DropSubscriptions() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.subs {
		s.Close()
	}
	clear(n.subs)
	n.subs = n.subs[:0]
}

// Subscriptions returns how many subscriptions are live (neither lost nor
// closed).
func (n *Net) Subscriptions() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	live := 0
	for _, s := range n.subs {
		if s.live() {
			live++
		}
	}
	return live
}

// Add adds link l (ifindex: l.Index, or the next free one if 0) and
// returns it as added. It panics if the name or index is taken. An empty
// EncapType is added as "ether" (set "loopback", "none", … to model a
// parent that is not an Ethernet device).
func (n *Net) Add(l bridge.Link) bridge.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.add(l)
}

// add is Add with n.mu held.
func (n *Net) add(l bridge.Link) bridge.Link {
	if _, ok := n.byName(l.Name); ok {
		panic("bridgetest: a link named " + l.Name + " exists")
	}
	if l.Index == 0 {
		l.Index = n.nextIndex()
	} else if _, ok := n.links[l.Index]; ok {
		panic(fmt.Sprintf("bridgetest: a link with index %d exists", l.Index))
	}
	l.HardwareAddr = append(net.HardwareAddr(nil), l.HardwareAddr...)
	if l.EncapType == "" {
		l.EncapType = "ether" // as the kernel reports a NIC, a TAP or a veth end
	}
	if l.PeerIndex == 0 {
		l.PeerNetnsID = bridge.OwnNetns
	}
	n.links[l.Index] = l
	n.emit(bridge.LinkEvent{Link: l})
	return l
}

// nextIndex returns the next free ifindex. n.mu is held.
func (n *Net) nextIndex() int {
	for {
		n.lastIndex++
		_, here := n.links[n.lastIndex]
		if _, there := n.away[n.lastIndex]; !here && !there {
			return n.lastIndex
		}
	}
}

// AddTAP adds l as a TAP interface that some other process keeps open (as
// systemd's fd store does), and returns a descriptor of it that AdoptTAP
// (and so bridge.Config.TAP) accepts; the caller owns it.
func (n *Net) AddTAP(l bridge.Link) (bridge.Link, *os.File) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l = n.add(l)
	f, ino := newMemfd(l.Name)
	n.taps[l.Index] = &tapIface{ino: ino, held: true}
	return l, f
}

// newMemfd returns a new memfd (standing for a tun file description) and
// its inode.
func newMemfd(name string) (*os.File, uint64) {
	fd, err := unix.MemfdCreate("bridgetest-tap-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		panic(fmt.Sprintf("bridgetest: memfd_create: %v", err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		panic(fmt.Sprintf("bridgetest: fstat memfd: %v", err))
	}
	return os.NewFile(uintptr(fd), name), st.Ino
}

// Remove deletes link index, as `ip link del` would. A TAP open on it
// breaks: its reads and writes fail with EBADFD.
func (n *Net) Remove(index int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.remove(index)
}

// remove is Remove with n.mu held.
func (n *Net) remove(index int) {
	if a, ok := n.away[index]; ok {
		delete(n.away, index)
		n.dropTAP(index, a.link.Name)
		n.removePeerOf(a.link)
		return
	}
	l, ok := n.links[index]
	if !ok {
		panic(fmt.Sprintf("bridgetest: no link with index %d", index))
	}
	delete(n.links, index)
	defer n.removePeerOf(l)
	delete(n.inet, index)
	delete(n.addrs, index)
	n.dropTAP(index, l.Name)
	n.emit(bridge.LinkEvent{Link: l, Deleted: true, NewNetnsID: -1})
}

// dropTAP forgets the TAP interface index (named name), if it is one: a
// device open on it breaks with EBADFD. n.mu is held.
func (n *Net) dropTAP(index int, name string) {
	if t := n.taps[index]; t != nil {
		delete(n.taps, index)
		if t.dev != nil {
			t.dev.Break(fmt.Errorf("%s: %w", name, unix.EBADFD))
		}
	}
}

// removePeerOf removes the other end of l, a veth end that is gone, if it
// is still there. n.mu is held.
func (n *Net) removePeerOf(l bridge.Link) {
	if l.Kind != "veth" || l.PeerIndex == 0 {
		return
	}
	if _, ok := n.links[l.PeerIndex]; ok {
		n.remove(l.PeerIndex)
	} else if _, ok := n.away[l.PeerIndex]; ok {
		n.remove(l.PeerIndex)
	}
}

// modify changes link index with f and sends the change, if any. It
// returns an error wrapping ENODEV if there is no such link.
func (n *Net) modify(index int, f func(*bridge.Link)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.modifyLocked(index, f)
}

func (n *Net) modifyLocked(index int, f func(*bridge.Link)) error {
	l, ok := n.links[index]
	if !ok {
		return fmt.Errorf("link %d: %w", index, unix.ENODEV)
	}
	old := l
	old.HardwareAddr = append(net.HardwareAddr(nil), l.HardwareAddr...)
	f(&l)
	if l.Kind == "veth" && l.Up != old.Up {
		// The other end has a carrier while this one is up.
		if a, ok := n.away[l.PeerIndex]; ok {
			a.link.LowerUp = l.Up
			n.away[l.PeerIndex] = a
		} else if _, ok := n.links[l.PeerIndex]; ok {
			defer n.modifyLocked(l.PeerIndex, func(p *bridge.Link) { p.LowerUp = l.Up })
		}
	}
	if l.Name != old.Name || l.MTU != old.MTU || string(l.HardwareAddr) != string(old.HardwareAddr) ||
		l.Up != old.Up || l.LowerUp != old.LowerUp || l.Promiscuity != old.Promiscuity {
		n.links[index] = l
		n.emit(bridge.LinkEvent{Link: l})
	}
	return nil
}

// mustModify is modify for the test's own changes: a missing link panics.
func (n *Net) mustModify(index int, f func(*bridge.Link)) {
	if err := n.modify(index, f); err != nil {
		panic("bridgetest: " + err.Error())
	}
}

// Rename renames link index, as `ip link set $link name $name` would.
func (n *Net) Rename(index int, name string) {
	n.mustModify(index, func(l *bridge.Link) { l.Name = name })
}

// SetCarrier turns link index's carrier (IFF_LOWER_UP) on or off, as the
// far end of its cable would.
func (n *Net) SetCarrier(index int, on bool) {
	n.mustModify(index, func(l *bridge.Link) { l.LowerUp = on })
}

// SetUp sets link index administratively up or down (IFF_UP), as `ip link
// set $link up|down` would.
func (n *Net) SetUp(index int, up bool) {
	n.mustModify(index, func(l *bridge.Link) { l.Up = up })
}

// SetMTU sets link index's MTU, as `ip link set $link mtu $mtu` would.
func (n *Net) SetMTU(index, mtu int) {
	n.mustModify(index, func(l *bridge.Link) { l.MTU = mtu })
}

// SetHardwareAddr sets link index's MAC address, as `ip link set $link
// address $mac` would (by someone other than the bridge: the call is not
// recorded).
func (n *Net) SetHardwareAddr(index int, mac net.HardwareAddr) {
	n.mustModify(index, func(l *bridge.Link) { l.HardwareAddr = append(net.HardwareAddr(nil), mac...) })
}

// SetInetConf sets some of link index's IPv4 settings, as a write to
// /proc/sys/net/ipv4/conf/IF/ would: no notification is sent.
func (n *Net) SetInetConf(index int, conf bridge.InetConf) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.links[index]; !ok {
		panic(fmt.Sprintf("bridgetest: no link with index %d", index))
	}
	n.setInet(index, conf)
}

// setInet merges conf into link index's settings. n.mu is held.
func (n *Net) setInet(index int, conf bridge.InetConf) {
	if n.inet[index] == nil {
		n.inet[index] = bridge.InetConf{}
	}
	maps.Copy(n.inet[index], conf)
}

// InetConf returns a copy of link index's IPv4 settings that are not 0.
func (n *Net) InetConf(index int) bridge.InetConf {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := bridge.InetConf{}
	for id, v := range n.inet[index] {
		if v != 0 {
			c[id] = v
		}
	}
	return c
}

// SetAddrs gives link index the addresses addrs (in place of those it had),
// as `ip address add` would; no notification is sent (the bridge does not
// follow addresses).
func (n *Net) SetAddrs(index int, addrs ...netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.links[index]; !ok {
		panic(fmt.Sprintf("bridgetest: no link with index %d", index))
	}
	n.addrs[index] = slices.Clone(addrs)
}

// SetPromiscuity sets link index's promiscuity count.
func (n *Net) SetPromiscuity(index, count int) {
	n.mustModify(index, func(l *bridge.Link) { l.Promiscuity = count })
}

// Lookup returns the link named name, without recording a call.
func (n *Net) Lookup(name string) (bridge.Link, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byName(name)
}

// LookupIndex returns link index, without recording a call.
func (n *Net) LookupIndex(index int) (bridge.Link, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.links[index]
	return l, ok
}

func (n *Net) byName(name string) (bridge.Link, bool) {
	for _, l := range n.links {
		if l.Name == name {
			return l, true
		}
	}
	return bridge.Link{}, false
}

// TAP returns the TAP device open on the interface named name, or nil.
func (n *Net) TAP(name string) *TAP {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.byName(name)
	if !ok || n.taps[l.Index] == nil {
		return nil
	}
	return n.taps[l.Index].dev
}

// Sockets returns every parent socket opened so far, oldest first.
func (n *Net) Sockets() []*Socket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Socket(nil), n.sockets...)
}

// Socket returns the parent socket opened last, or nil.
func (n *Net) Socket() *Socket {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.sockets) == 0 {
		return nil
	}
	return n.sockets[len(n.sockets)-1]
}

// LinkByName looks link name up. See bridge.LinkControl.
func (n *Net) LinkByName(name string) (bridge.Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkByName", name); err != nil {
		return bridge.Link{}, err
	}
	l, ok := n.byName(name)
	if !ok {
		return bridge.Link{}, fmt.Errorf("link %s: %w", name, bridge.ErrLinkNotFound)
	}
	return l, nil
}

// LinkByIndex looks link index up. See bridge.LinkControl.
func (n *Net) LinkByIndex(index int) (bridge.Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkByIndex", index); err != nil {
		return bridge.Link{}, err
	}
	l, ok := n.links[index]
	if !ok {
		return bridge.Link{}, fmt.Errorf("link %d: %w", index, bridge.ErrLinkNotFound)
	}
	return l, nil
}

// LinkSetHardwareAddr sets link index's MAC. See bridge.LinkControl.
func (n *Net) LinkSetHardwareAddr(index int, mac net.HardwareAddr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkSetHardwareAddr", index, mac); err != nil {
		return err
	}
	return n.modifyLocked(index, func(l *bridge.Link) { l.HardwareAddr = append(net.HardwareAddr(nil), mac...) })
}

// LinkSetMTU sets link index's MTU. See bridge.LinkControl.
func (n *Net) LinkSetMTU(index, mtu int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkSetMTU", index, mtu); err != nil {
		return err
	}
	return n.modifyLocked(index, func(l *bridge.Link) { l.MTU = mtu })
}

// LinkSetUp brings link index up. See bridge.LinkControl.
func (n *Net) LinkSetUp(index int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkSetUp", index); err != nil {
		return err
	}
	return n.modifyLocked(index, func(l *bridge.Link) { l.Up = true })
}

// LinkInetConf returns a copy of link index's IPv4 settings. See
// bridge.LinkControl.
func (n *Net) LinkInetConf(index int) (bridge.InetConf, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkInetConf", index); err != nil {
		return nil, err
	}
	if _, ok := n.links[index]; !ok {
		return nil, fmt.Errorf("link %d: %w", index, bridge.ErrLinkNotFound)
	}
	return maps.Clone(n.inet[index]), nil
}

// LinkSetInetConf sets some of link index's IPv4 settings and, as the
// kernel does, notifies the link as changed whether or not any value
// changed. It is recorded as "LinkSetInetConf INDEX NAME=VALUE …", the
// settings in id order. See bridge.LinkControl.
func (n *Net) LinkSetInetConf(index int, conf bridge.InetConf) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := slices.Sorted(maps.Keys(conf))
	args := []any{index}
	for _, id := range ids {
		args = append(args, fmt.Sprintf("%s=%d", id, conf[id]))
	}
	if err := n.call("LinkSetInetConf", args...); err != nil {
		return err
	}
	l, ok := n.links[index]
	if !ok {
		return fmt.Errorf("link %d: %w", index, unix.ENODEV)
	}
	n.setInet(index, conf)
	n.emit(bridge.LinkEvent{Link: l})
	return nil
}

// LinkAddrs returns link index's addresses (SetAddrs). See
// bridge.LinkControl.
func (n *Net) LinkAddrs(index int) ([]netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkAddrs", index); err != nil {
		return nil, err
	}
	if _, ok := n.links[index]; !ok {
		return nil, fmt.Errorf("link %d: %w", index, bridge.ErrLinkNotFound)
	}
	return slices.Clone(n.addrs[index]), nil
}

// LinkSubscribe starts a subscription. See bridge.LinkControl.
func (n *Net) LinkSubscribe() (bridge.LinkSubscription, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("LinkSubscribe"); err != nil {
		return nil, err
	}
	s := &subscription{events: make(chan bridge.LinkEvent, subscriptionDepth)}
	n.subs = append(n.subs, s)
	return s, nil
}

// Close is recorded and does nothing else. See bridge.LinkControl.
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.call("Close")
}

// CreateTAP creates a TAP interface name, down, with a carrier, MTU 1500
// and a MAC of the form 02:bb:00:00:xx:yy (the ifindex). Closing the
// device removes it unless Dup was called. See bridge.Opener.
func (n *Net) CreateTAP(name string) (bridge.Device, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("CreateTAP", name); err != nil {
		return nil, err
	}
	if _, ok := n.byName(name); ok {
		return nil, fmt.Errorf("create TAP %s: %w", name, bridge.ErrNameInUse)
	}
	index := n.nextIndex()
	mac := net.HardwareAddr{0x02, 0xbb, 0, 0, byte(index >> 8), byte(index)}
	l := n.add(bridge.Link{Index: index, Name: name, MTU: 1500, HardwareAddr: mac, LowerUp: true, Kind: "tun", PeerNetnsID: bridge.OwnNetns})
	f, ino := newMemfd(name)
	t := &tapIface{ino: ino}
	n.taps[l.Index] = t
	t.dev = n.newTAP(l, t, f)
	return frameTAP{Device: t.dev, tap: t.dev}, nil
}

// AdoptTAP takes over f, a descriptor of a TAP interface of this Net (from
// AddTAP, or a TAP's Dup), and closes it. See bridge.Opener.
func (n *Net) AdoptTAP(f *os.File) (bridge.Device, error) {
	defer f.Close()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("AdoptTAP", f.Name()); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("adopt TAP from %s: %w (%w)", f.Name(), bridge.ErrNotTAP, err)
	}
	for index, t := range n.taps {
		if t.ino != st.Ino {
			continue
		}
		// A copy of the descriptor, as AdoptTAP's F_DUPFD_CLOEXEC.
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return nil, fmt.Errorf("adopt TAP %s: %w", f.Name(), err)
		}
		l, ok := n.links[index]
		if !ok {
			l = n.away[index].link // (moved to another namespace)
		}
		t.dev = n.newTAP(l, t, os.NewFile(uintptr(fd), l.Name))
		return frameTAP{Device: t.dev, tap: t.dev}, nil
	}
	return nil, fmt.Errorf("adopt TAP from %s: %w", f.Name(), bridge.ErrNotTAP)
}

// newTAP returns a device for link l, the interface t, over f (a memfd of
// t's). n.mu is held.
func (n *Net) newTAP(l bridge.Link, t *tapIface, f *os.File) *TAP {
	dev := &TAP{Pipe: NewPipe(PipeDepth), name: l.Name, file: f, carrier: l.LowerUp}
	dev.setCarrier = func(on bool) error {
		n.mu.Lock()
		defer n.mu.Unlock()
		if err := n.call("SetCarrier", dev.name, on); err != nil {
			return err
		}
		return n.modifyAnywhere(l.Index, func(ml *bridge.Link) { ml.LowerUp = on })
	}
	dev.here = func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		_, ok := n.links[l.Index]
		return ok
	}
	dev.netnsFile = func() (*os.File, error) {
		n.mu.Lock()
		a, ok := n.away[l.Index]
		path := n.nsPath[a.nsid]
		n.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("%s is not in another namespace", l.Name)
		}
		return os.Open(path)
	}
	dev.dup = func() error {
		n.mu.Lock()
		defer n.mu.Unlock()
		if err := n.call("Dup", dev.name); err != nil {
			return err
		}
		t.held = true
		return nil
	}
	dev.onClose = func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if t.dev == dev {
			t.dev = nil
		}
		if !t.held && n.taps[l.Index] == t {
			n.remove(l.Index)
		}
	}
	return dev
}

// OpenParentSocket opens a Socket on link ifindex, which must exist. See
// bridge.Opener.
func (n *Net) OpenParentSocket(ifindex int, name string, mac net.HardwareAddr) (bridge.ParentIO, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.call("OpenParentSocket", ifindex, name, mac); err != nil {
		return nil, err
	}
	if _, ok := n.links[ifindex]; !ok {
		return nil, fmt.Errorf("bind packet socket on %s: %w", name, unix.ENODEV)
	}
	s := &Socket{Pipe: NewPipe(PipeDepth), Ifindex: ifindex, Name: name, MAC: append(net.HardwareAddr(nil), mac...)}
	n.sockets = append(n.sockets, s)
	return s, nil
}

// TAP is a fake TAP device (a bridge.Device) on an interface of a Net:
// the frames the bridge writes to it come out of Out, and frames sent on In
// are what the host sends on the interface. Its carrier is the link's
// IFF_LOWER_UP.
type TAP struct {
	*Pipe
	name string
	file *os.File // a memfd of the interface's, which Dup copies

	// Closures into the Net, which hold its lock.
	setCarrier func(on bool) error      // records, may fail, sets IFF_LOWER_UP
	dup        func() error             // records, may fail, marks the interface held
	onClose    func()                   // removes the interface unless held
	here       func() bool              // the interface is in the Net's namespace
	netnsFile  func() (*os.File, error) // opens the file of the namespace it is in

	mu        sync.Mutex
	carrier   bool
	closeOnce sync.Once
}

var _ bridge.Device = (*TAP)(nil)

// Name returns the interface's name when the device was opened. See
// bridge.Device.
func (t *TAP) Name() string { return t.name }

// SetCarrier sets the interface's carrier. See bridge.Device.
func (t *TAP) SetCarrier(on bool) error {
	if err := t.setCarrier(on); err != nil {
		return fmt.Errorf("set %s carrier: %w", t.name, err)
	}
	t.mu.Lock()
	t.carrier = on
	t.mu.Unlock()
	return nil
}

// Carrier reports the carrier last set.
func (t *TAP) Carrier() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.carrier
}

// Dup returns a new descriptor for the interface, which Net.AdoptTAP
// accepts; from then on closing the device leaves the interface. See
// bridge.Device.
func (t *TAP) Dup() (int, error) {
	if err := t.dup(); err != nil {
		return -1, fmt.Errorf("dup %s fd: %w", t.name, err)
	}
	fd, err := unix.FcntlInt(t.file.Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return -1, fmt.Errorf("dup %s fd: %w", t.name, err)
	}
	return fd, nil
}

// Offloads returns what a kernel with USO accepts. See bridge.Device.
func (t *TAP) Offloads() []string {
	return []string{"csum", "tso4", "tso6", "tso-ecn", "uso4", "uso6"}
}

// Close closes the device; the interface goes with it unless Dup was
// called (or it came from AddTAP). See bridge.FrameIO.
func (t *TAP) Close() error {
	t.Pipe.Close()
	t.closeOnce.Do(func() {
		t.file.Close()
		t.onClose()
	})
	return nil
}

// Socket is a fake parent socket (a bridge.ParentIO and
// bridge.BatchReader): the frames the bridge sends out of the parent come
// out of Out, and frames sent on In are what the wire delivers through the
// filter. Its exported fields are OpenParentSocket's arguments.
type Socket struct {
	*Pipe
	Ifindex int
	Name    string
	MAC     net.HardwareAddr

	dropped atomic.Uint64
}

var (
	_ bridge.ParentIO    = (*Socket)(nil)
	_ bridge.BatchReader = (*Socket)(nil)
)

// AddDropped counts n frames as dropped by the kernel on a full queue.
func (s *Socket) AddDropped(n uint64) { s.dropped.Add(n) }

// Dropped returns and resets the count of AddDropped. See bridge.ParentIO.
func (s *Socket) Dropped() uint64 { return s.dropped.Swap(0) }

// subscription is a Net's bridge.LinkSubscription.
type subscription struct {
	mu     sync.Mutex
	events chan bridge.LinkEvent
	done   bool // events is closed
}

var _ bridge.LinkSubscription = (*subscription)(nil)

// send queues ev and reports whether the subscription is still live: a
// full queue loses it.
func (s *subscription) send(ev bridge.LinkEvent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	select {
	case s.events <- ev:
		return true
	default:
		s.done = true
		close(s.events)
		return false
	}
}

// live reports whether the subscription is neither lost nor closed.
func (s *subscription) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.done
}

// Events returns the events. See bridge.LinkSubscription.
func (s *subscription) Events() <-chan bridge.LinkEvent { return s.events }

// Close closes Events. See bridge.LinkSubscription.
func (s *subscription) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done = true
		close(s.events)
	}
}

// frameTAP is what the bridge gets of a TAP: only bridge.Device's methods
// (and InOwnNetns), not the Pipe's ReadBatch, so the relay reads it a frame
// at a time, as it does a kernel TAP.
type frameTAP struct {
	bridge.Device
	tap *TAP
}

// InOwnNetns reports whether the TAP's interface is in the Net's own namespace.
func (f frameTAP) InOwnNetns() bool { return f.tap.InOwnNetns() }

// NetnsFile opens the file standing for the namespace the TAP is in.
func (f frameTAP) NetnsFile() (*os.File, error) { return f.tap.netnsFile() }
