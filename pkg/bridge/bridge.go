// Package bridge is vethd's data path: a TAP interface with its own MAC,
// an AF_PACKET socket on the parent NIC behind a kernel filter, the relay
// between them, and the netlink link control that keeps the TAP's MTU and
// carrier in step with the parent. It knows nothing of D-Bus or systemd.
package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// State is where a bridge is in its life:
//
//	starting ──► running ◄──────► degraded        (parent carrier lost / back)
//	                │   ▲              │
//	  parent removed│   │parent named  │parent removed
//	                ▼   │Parent appears▼
//	            waiting-parent ◄───────┘
//
//	any state ──Close──► stopping
type State string

const (
	StateStarting      State = "starting"
	StateWaitingParent State = "waiting-parent"
	StateRunning       State = "running"
	StateDegraded      State = "degraded"
	StateStopping      State = "stopping"
)

// ErrNoParent is returned by Start when the parent does not exist (and
// Config.WaitParent is not set).
var ErrNoParent = errors.New("no such parent interface")

// Config is what a bridge is built from.
type Config struct {
	// Name is the virtual interface's name (veth0, veth1, …).
	Name string
	// Parent is the name of the NIC whose wire is shared.
	Parent string
	// MAC is the virtual interface's address. It may be nil only when
	// TAP is set: the adopted interface then keeps its address.
	MAC net.HardwareAddr
	// MTU, if not zero, is used instead of following the parent's MTU.
	MTU int
	// CarrierOn keeps the virtual interface's carrier on whatever the
	// parent's (Carrier=on); otherwise it follows the parent's.
	CarrierOn bool
	// WaitParent makes a missing parent a state (waiting-parent) instead of
	// an error: the bridge attaches when a link of that name appears.
	WaitParent bool
	// TAP, if not nil, is an open TAP descriptor to adopt instead of
	// creating the interface, such as the one systemd's fd store hands
	// back after a restart: the interface keeps its ifindex and addresses.
	// Start owns it from then on (it is closed on error).
	TAP *os.File
	// Netlink is the handle for link control; nil means a NETLINK_ROUTE
	// handle made (and closed) by the bridge. The TAP, the parent socket
	// and the link subscription always live in the calling process's
	// network namespace, so a handle given here must be for it too.
	Netlink *netlink.Handle
	// Log receives the bridge's events; nil discards them.
	Log *slog.Logger
	// OnChange, if not nil, is called (from the bridge's own goroutine)
	// after a state-like property changed.
	OnChange func()
}

// Status is a snapshot of a bridge's state-like properties.
type Status struct {
	Name          string
	Parent        string
	IfIndex       int
	ParentIfIndex int
	MAC           net.HardwareAddr
	MTU           int
	State         State
	Carrier       bool
	ParentCarrier bool
	// Promiscuity is the parent's promiscuity count (IFLA_PROMISCUITY) as
	// last seen: the kernel raises it by itself for a NIC without a unicast
	// filter while vethd is attached.
	Promiscuity int
	Offloads    []string
	StartedAt   time.Time
	LastError   string
}

// Bridge is one virtual interface and its relay.
type Bridge struct {
	cfg       Config
	h         *netlink.Handle
	ownHandle bool // h was made by Start, and is closed by Close
	log       *slog.Logger
	tap       *TAP
	relay     *Relay
	counters  Counters

	mu     sync.Mutex // guards st and sock
	st     Status
	sock   *ParentSocket
	closed bool

	reqs      chan func() // work for routineWatchLinks (Reconfigure, Health)
	done      chan struct{}
	watchDone chan struct{}
	closeOnce sync.Once
	fatal     chan error
}

// Start creates the TAP (or adopts Config.TAP), sets its MAC, MTU and
// carrier, brings it up, opens the parent socket and starts relaying. It
// returns ErrNoParent if the parent does not exist (unless WaitParent),
// ErrNameInUse if the name is taken, ErrNotTAP for a TAP to adopt that is
// no longer one, and an error wrapping ifname.ErrInvalid for a bad name. On error nothing is
// left behind (an adopted TAP is closed: the interface goes once no other
// process holds it).
func Start(cfg Config) (_ *Bridge, err error) {
	if cfg.TAP != nil {
		defer func() {
			if err != nil && cfg.TAP != nil {
				cfg.TAP.Close()
			}
		}()
	}
	if err := ifname.Validate(cfg.Name); err != nil {
		return nil, err
	}
	if err := ifname.Validate(cfg.Parent); err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	if len(cfg.MAC) != 6 && !(cfg.MAC == nil && cfg.TAP != nil) {
		return nil, fmt.Errorf("%s: want a 6-byte MAC address", cfg.Name)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{
		cfg: cfg, h: cfg.Netlink, log: cfg.Log,
		reqs: make(chan func()),
		done: make(chan struct{}), watchDone: make(chan struct{}),
		fatal: make(chan error, 1),
	}
	b.st = Status{Name: cfg.Name, Parent: cfg.Parent, MAC: cfg.MAC, State: StateStarting}

	// On error, undo what was done, last first.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if b.h == nil {
		if b.h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		b.ownHandle = true
		undo = append(undo, b.h.Close)
	}

	// Subscribe before looking at the parent, so no change of the parent
	// between that look and the relay running goes unseen.
	updates := make(chan netlink.LinkUpdate, 64)
	subDone := make(chan struct{})
	if err = b.subscribe(updates, subDone); err != nil {
		return nil, err
	}
	undo = append(undo, func() { close(subDone) })

	parent, err := linkByName(b.h, cfg.Parent)
	if err != nil {
		switch {
		case !isNotFound(err):
			return nil, fmt.Errorf("find parent %s: %w", cfg.Parent, err)
		case !cfg.WaitParent:
			return nil, fmt.Errorf("parent %s: %w", cfg.Parent, ErrNoParent)
		}
		parent = nil
	}

	var tap *TAP
	var link netlink.Link
	if cfg.TAP != nil {
		f := cfg.TAP
		cfg.TAP, b.cfg.TAP = nil, nil // AdoptTAP owns it now
		if tap, err = AdoptTAP(f); err != nil {
			return nil, err
		}
		b.tap = tap
		undo = append(undo, func() { tap.Close() })
		if link, err = b.adoptLink(tap, parent); err != nil {
			return nil, err
		}
	} else {
		if _, lerr := linkByName(b.h, cfg.Name); lerr == nil {
			return nil, fmt.Errorf("create TAP %s: %w", cfg.Name, ErrNameInUse)
		}
		if tap, err = OpenTAP(cfg.Name); err != nil {
			return nil, err
		}
		b.tap = tap
		undo = append(undo, func() { tap.Close() })
		mtu := cfg.MTU
		if mtu == 0 && parent != nil {
			mtu = parent.Attrs().MTU
		}
		// Carrier off while the link comes up; attach turns it on if the
		// parent has one. The off→on change is what makes the kernel
		// report the TAP's operstate as UP rather than UNKNOWN.
		if err = tap.SetCarrier(false); err != nil {
			return nil, err
		}
		if link, err = setupTAPLink(b.h, cfg.Name, cfg.MAC, mtu); err != nil {
			return nil, err
		}
	}
	la := link.Attrs()
	b.cfg.MAC = la.HardwareAddr
	b.relay = NewRelay(tap, la.HardwareAddr, &b.counters, b.onRelayError)
	undo = append(undo, b.relay.Close)
	b.st.IfIndex = la.Index
	b.st.MAC = la.HardwareAddr
	b.st.MTU = la.MTU
	b.st.Offloads = tap.Offloads
	b.st.StartedAt = time.Now()
	if parent != nil {
		if err = b.attach(parent); err != nil {
			return nil, err
		}
	} else {
		b.detach()
		b.log.Warn(fmt.Sprintf("Parent %s does not exist; %s has no carrier until it appears", cfg.Parent, cfg.Name))
	}
	go b.routineWatchLinks(updates, subDone)
	return b, nil
}

// adoptLink brings an adopted TAP's link in line with the configuration:
// MAC (unless nil), MTU and up, changing only what differs, so that its
// addresses and any DHCP lease stay. A renamed interface keeps its name.
//
// Equivalent to: `ip link set $name address $mac mtu $mtu up`.
func (b *Bridge) adoptLink(tap *TAP, parent netlink.Link) (netlink.Link, error) {
	name := tap.Name()
	if name != b.cfg.Name {
		b.log.Warn(fmt.Sprintf("Adopted interface is named %s, not %s (renamed by someone); keeping it", name, b.cfg.Name))
	}
	l, err := linkByName(b.h, name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	a := l.Attrs()
	if b.cfg.MAC != nil && !bytesEqual(a.HardwareAddr, b.cfg.MAC) {
		// A TAP takes a new address while up (IFF_LIVE_ADDR_CHANGE).
		if err := b.h.LinkSetHardwareAddr(l, b.cfg.MAC); err != nil {
			return nil, fmt.Errorf("set %s mac %s: %w", name, b.cfg.MAC, err)
		}
	}
	mtu := b.cfg.MTU
	if mtu == 0 && parent != nil {
		mtu = parent.Attrs().MTU
	}
	if mtu != 0 && mtu != a.MTU {
		// Not fatal, as for a running bridge: the interface is there and
		// relays; LastError says why its MTU is not the one wanted.
		if err := b.h.LinkSetMTU(l, mtu); err != nil {
			b.st.LastError = fmt.Sprintf("set %s mtu %d: %v", name, mtu, err)
			b.log.Error(b.st.LastError)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := b.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return linkByIndex(b.h, a.Index)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// subscribe starts receiving link notifications on ch until done closes.
//
// Equivalent to: `ip monitor link`.
func (b *Bridge) subscribe(ch chan netlink.LinkUpdate, done chan struct{}) error {
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		// Called for errors the subscription survives, and for the one
		// that ends it (then the channel closes: see routineWatchLinks).
		ErrorCallback: func(err error) {
			select {
			case <-done:
			default:
				b.log.Debug("link notification error", "err", err)
			}
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	return nil
}

// attach opens the parent socket on parent and hands it to the relay.
func (b *Bridge) attach(parent netlink.Link) error {
	pa := parent.Attrs()
	sock, err := OpenParentSocket(pa.Index, pa.Name, b.cfg.MAC)
	if err != nil {
		return err
	}
	b.relay.SetParent(sock)
	carrier := linkCarrier(pa)
	if err := b.tap.SetCarrier(b.tapCarrier(carrier)); err != nil {
		b.log.Warn("cannot set carrier", "err", err)
	}
	// Read the promiscuity after joining: it shows the kernel's reaction.
	promisc := pa.Promisc
	if l, err := linkByIndex(b.h, pa.Index); err == nil {
		promisc = l.Attrs().Promisc
	}
	b.mu.Lock()
	b.sock = sock
	b.st.Parent = pa.Name
	b.st.ParentIfIndex = pa.Index
	b.st.ParentCarrier = carrier
	b.st.Carrier = b.tapCarrier(carrier)
	b.st.Promiscuity = promisc
	b.st.State = stateFor(carrier)
	b.mu.Unlock()
	b.followMTU(pa.MTU)
	return nil
}

// detach closes the parent socket and turns the carrier off: the parent is gone.
func (b *Bridge) detach() {
	b.relay.SetParent(nil)
	if err := b.tap.SetCarrier(b.tapCarrier(false)); err != nil {
		b.log.Warn("cannot set carrier", "err", err)
	}
	b.mu.Lock()
	b.sock = nil
	b.st.ParentIfIndex = 0
	b.st.ParentCarrier = false
	b.st.Promiscuity = 0
	b.st.Carrier = b.tapCarrier(false)
	b.st.State = StateWaitingParent
	b.mu.Unlock()
}

// tapCarrier is the carrier the TAP should have when the parent's is
// parentCarrier.
func (b *Bridge) tapCarrier(parentCarrier bool) bool { return parentCarrier || b.cfg.CarrierOn }

func stateFor(carrier bool) State {
	if carrier {
		return StateRunning
	}
	return StateDegraded
}

// followMTU sets the TAP's MTU to the parent's, unless an MTU is configured.
//
// Equivalent to: `ip link set $name mtu $mtu`.
func (b *Bridge) followMTU(mtu int) {
	if b.cfg.MTU != 0 {
		return
	}
	b.setMTU(mtu)
}

// setMTU sets the TAP's MTU, if it differs.
//
// Equivalent to: `ip link set $name mtu $mtu`.
func (b *Bridge) setMTU(mtu int) {
	if mtu <= 0 {
		return
	}
	b.mu.Lock()
	same := b.st.MTU == mtu
	b.mu.Unlock()
	if same {
		return
	}
	// By index: the TAP may have been renamed.
	l, err := linkByIndex(b.h, b.st.IfIndex)
	if err == nil {
		err = b.h.LinkSetMTU(l, mtu)
	}
	if err != nil {
		b.setError(fmt.Errorf("set %s mtu %d: %w", b.cfg.Name, mtu, err))
		return
	}
	if b.cfg.MTU != 0 {
		b.log.Info(fmt.Sprintf("MTU of %s set", b.cfg.Name), "mtu", mtu)
	} else {
		b.log.Info(fmt.Sprintf("MTU of %s follows %s", b.cfg.Name, b.st.Parent), "mtu", mtu)
	}
	b.mu.Lock()
	b.st.MTU = mtu
	b.mu.Unlock()
}

// routineWatchLinks follows the parent (by ifindex) and the TAP through
// link notifications, and polls the socket's queue drops once a second.
func (b *Bridge) routineWatchLinks(updates chan netlink.LinkUpdate, subDone chan struct{}) {
	defer close(b.watchDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-b.done:
			close(subDone)
			return
		case f := <-b.reqs:
			f()
		case <-tick.C:
			b.mu.Lock()
			sock := b.sock
			b.mu.Unlock()
			if sock != nil {
				if n := sock.Dropped(); n > 0 {
					b.counters.RxDrops[DropQueueFull].Add(n)
				}
			}
		case u, ok := <-updates:
			if !ok {
				// The subscription broke (e.g. its buffer overran): take a
				// new one, then look at the parent afresh.
				b.log.Warn("link notifications lost; resubscribing")
				close(subDone)
				updates = make(chan netlink.LinkUpdate, 64)
				subDone = make(chan struct{})
				for b.subscribe(updates, subDone) != nil {
					select {
					case <-b.done:
						close(subDone)
						return
					case <-time.After(time.Second):
					}
				}
				b.resync()
				continue
			}
			b.handleUpdate(u)
		}
	}
}

// handleUpdate applies one link notification.
func (b *Bridge) handleUpdate(u netlink.LinkUpdate) {
	a := u.Attrs()
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	switch {
	case a.Index == st.IfIndex && u.Header.Type == unix.RTM_DELLINK:
		b.fail(fmt.Errorf("%s was deleted by someone else", b.cfg.Name))
	case st.State == StateWaitingParent && u.Header.Type == unix.RTM_NEWLINK && a.Name == b.cfg.Parent && a.Index != st.IfIndex:
		// (Not the TAP itself renamed to the parent's name: that would loop.)
		if err := b.attach(u.Link); err != nil {
			b.setError(fmt.Errorf("attach to %s: %w", a.Name, err))
			return
		}
		b.log.Info(fmt.Sprintf("Attached %s into %s again", b.cfg.Name, a.Name), "parent_ifindex", a.Index)
		b.changed()
	case a.Index == st.ParentIfIndex && st.ParentIfIndex != 0 && u.Header.Type == unix.RTM_DELLINK:
		b.detach()
		b.log.Warn(fmt.Sprintf("Parent %s removed; %s has no carrier until a link named %s appears", st.Parent, b.cfg.Name, b.cfg.Parent))
		b.changed()
		// The new parent may already exist (removed and re-created at once).
		if l, err := linkByName(b.h, b.cfg.Parent); err == nil {
			b.handleUpdate(netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}, Link: l})
		}
	case a.Index == st.ParentIfIndex && st.ParentIfIndex != 0:
		b.parentChanged(a)
	}
}

// parentChanged follows a change of the tracked parent: name, carrier, MTU.
func (b *Bridge) parentChanged(a *netlink.LinkAttrs) {
	carrier := linkCarrier(a)
	b.mu.Lock()
	old := b.st
	b.st.Parent = a.Name
	b.st.ParentCarrier = carrier
	b.st.Carrier = b.tapCarrier(carrier)
	b.st.Promiscuity = a.Promisc
	b.st.State = stateFor(carrier)
	b.mu.Unlock()
	if a.Name != old.Parent {
		b.log.Info(fmt.Sprintf("Parent %s renamed to %s; still attached", old.Parent, a.Name))
	}
	if carrier != old.ParentCarrier {
		if err := b.tap.SetCarrier(b.tapCarrier(carrier)); err != nil {
			b.setError(err)
		}
		if carrier {
			b.log.Info(fmt.Sprintf("Parent %s has carrier; %s is up", a.Name, b.cfg.Name))
		} else {
			b.log.Warn(fmt.Sprintf("Parent %s lost carrier; %s has no carrier", a.Name, b.cfg.Name))
		}
	}
	b.followMTU(a.MTU)
	if a.Name != old.Parent || carrier != old.ParentCarrier || a.MTU != old.MTU || a.Promisc != old.Promiscuity {
		b.changed()
	}
}

// resync looks at the parent again after notifications may have been lost.
func (b *Bridge) resync() {
	b.mu.Lock()
	idx := b.st.ParentIfIndex
	b.mu.Unlock()
	if idx != 0 {
		l, err := linkByIndex(b.h, idx)
		if err == nil {
			b.parentChanged(l.Attrs())
			return
		}
		b.handleUpdate(netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_DELLINK}, Link: &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx}}})
		return
	}
	if l, err := linkByName(b.h, b.cfg.Parent); err == nil {
		b.handleUpdate(netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}, Link: l})
	}
}

func (b *Bridge) onRelayError(dir string, err error) {
	b.setError(fmt.Errorf("%s %s: %w", b.cfg.Name, dir, err))
}

func (b *Bridge) setError(err error) {
	b.log.Error(err.Error())
	b.mu.Lock()
	b.st.LastError = err.Error()
	b.mu.Unlock()
	b.changed()
}

func (b *Bridge) changed() {
	if b.cfg.OnChange != nil {
		b.cfg.OnChange()
	}
}

// fail ends the bridge with err: Wait returns it (and the caller logs it).
func (b *Bridge) fail(err error) {
	b.mu.Lock()
	b.st.LastError = err.Error()
	b.mu.Unlock()
	b.changed()
	select {
	case b.fatal <- err:
	default:
	}
}

// Wait blocks until the bridge fails (and returns why) or is closed (nil).
func (b *Bridge) Wait() error {
	select {
	case err := <-b.fatal:
		return err
	case <-b.done:
		return nil
	}
}

// Close stops the relay and removes the TAP. It is idempotent and returns
// once both relay goroutines have ended.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.st.State = StateStopping
		b.closed = true
		b.mu.Unlock()
		close(b.done)
		<-b.watchDone
		b.mu.Lock()
		sock := b.sock
		b.mu.Unlock()
		if sock != nil {
			b.counters.RxDrops[DropQueueFull].Add(sock.Dropped())
		}
		b.relay.Close()
		if b.ownHandle {
			b.h.Close()
		}
	})
	return nil
}

// ErrClosed is returned by Reconfigure and Health once the bridge is closed.
var ErrClosed = errors.New("bridge closed")

// watcherTimeout bounds how long Reconfigure and Health wait for the link
// watcher: a watcher that does not answer in this time is stuck.
const watcherTimeout = 5 * time.Second

// do runs f on the link watcher's goroutine (which owns the parent
// binding and b.cfg) and returns its error.
func (b *Bridge) do(f func() error) error {
	errc := make(chan error, 1)
	timeout := time.NewTimer(watcherTimeout)
	defer timeout.Stop()
	select {
	case b.reqs <- func() { errc <- f() }:
	case <-b.done:
		return ErrClosed
	case <-timeout.C:
		return errors.New("the link watcher is not responding")
	}
	select {
	case err := <-errc:
		return err
	case <-b.done:
		return ErrClosed
	}
}

// Health reports whether the bridge is alive: both relay readers running
// and the link watcher answering within watcherTimeout. It is what the
// service's watchdog pings are made of.
func (b *Bridge) Health() error {
	if err := b.relay.Healthy(); err != nil {
		return fmt.Errorf("%s: %w", b.cfg.Name, err)
	}
	if err := b.do(func() error { return nil }); err != nil {
		return fmt.Errorf("%s: %w", b.cfg.Name, err)
	}
	return nil
}

// Reconfigure applies a new configuration without removing the TAP:
// Parent, MAC, MTU, CarrierOn and WaitParent may change; Name may not, and
// TAP, Netlink, Log and OnChange are ignored. A new parent or MAC closes
// the parent socket and opens a new one (a missing new parent is waited
// for); MTU and carrier are set in place.
func (b *Bridge) Reconfigure(nc Config) error {
	if nc.Name != b.cfg.Name {
		return fmt.Errorf("%s: the name cannot change (to %q) without re-creating the interface", b.cfg.Name, nc.Name)
	}
	if err := ifname.Validate(nc.Parent); err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	if nc.MAC != nil && len(nc.MAC) != 6 {
		return fmt.Errorf("%s: want a 6-byte MAC address", nc.Name)
	}
	return b.do(func() error { return b.reconfigure(nc) })
}

// reconfigure is Reconfigure on the link watcher's goroutine. When it
// returns an error nothing was changed; a new parent that cannot be
// attached to is not an error but a state (waiting-parent, LastError set),
// retried when a link of its name appears.
func (b *Bridge) reconfigure(nc Config) error {
	defer b.changed()
	st := b.Status()
	macChanged := nc.MAC != nil && !bytesEqual(nc.MAC, b.cfg.MAC)
	parentChanged := nc.Parent != b.cfg.Parent
	// The one step that can fail goes first, before anything is changed.
	if macChanged {
		l, err := linkByIndex(b.h, st.IfIndex)
		if err == nil {
			err = b.h.LinkSetHardwareAddr(l, nc.MAC)
		}
		if err != nil {
			return fmt.Errorf("set %s mac %s: %w", b.cfg.Name, nc.MAC, err)
		}
		mac := append(net.HardwareAddr(nil), nc.MAC...)
		b.cfg.MAC = mac
		b.relay.SetMAC(mac)
		b.mu.Lock()
		b.st.MAC = mac
		b.mu.Unlock()
		b.log.Info(fmt.Sprintf("MAC address of %s changed", b.cfg.Name), "mac", mac)
	}
	b.cfg.MTU, b.cfg.CarrierOn, b.cfg.WaitParent = nc.MTU, nc.CarrierOn, nc.WaitParent
	if parentChanged {
		b.log.Info(fmt.Sprintf("Parent of %s changed from %s to %s", b.cfg.Name, b.cfg.Parent, nc.Parent))
		b.cfg.Parent = nc.Parent
		b.mu.Lock()
		b.st.Parent = nc.Parent
		b.mu.Unlock()
	}
	if macChanged || parentChanged {
		if st.ParentIfIndex != 0 {
			b.detach()
		}
		if l, err := linkByName(b.h, b.cfg.Parent); err != nil {
			b.log.Warn(fmt.Sprintf("Parent %s does not exist; %s has no carrier until it appears", b.cfg.Parent, b.cfg.Name))
		} else if err := b.attach(l); err != nil {
			b.setError(fmt.Errorf("attach to %s: %w", b.cfg.Parent, err))
		} else {
			b.log.Info(fmt.Sprintf("Attached %s into %s", b.cfg.Name, b.cfg.Parent), "mac", b.cfg.MAC)
		}
		if b.cfg.MTU != 0 {
			b.setMTU(b.cfg.MTU)
		}
		return nil
	}
	carrier := b.tapCarrier(st.ParentCarrier)
	if carrier != st.Carrier {
		if err := b.tap.SetCarrier(carrier); err != nil {
			b.setError(err)
		} else {
			b.mu.Lock()
			b.st.Carrier = carrier
			b.mu.Unlock()
		}
	}
	mtu := b.cfg.MTU
	if mtu == 0 && st.ParentIfIndex != 0 {
		if l, err := linkByIndex(b.h, st.ParentIfIndex); err == nil {
			mtu = l.Attrs().MTU
		}
	}
	b.setMTU(mtu)
	return nil
}

// TAPFd returns a new descriptor for the TAP, for systemd's fd store; the
// caller closes it (unix.Close) once handed over.
func (b *Bridge) TAPFd() (int, error) { return b.tap.Dup() }

// Status returns a snapshot of the bridge's state.
func (b *Bridge) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

// Counters returns the live counters.
func (b *Bridge) Counters() *Counters { return &b.counters }
