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
	"sync"
	"time"

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

// ErrNoParent is returned by Start when the parent does not exist.
var ErrNoParent = errors.New("no such parent interface")

// Config is what a bridge is built from.
type Config struct {
	// Name is the virtual interface's name (veth0, veth1, …).
	Name string
	// Parent is the name of the NIC whose wire is shared.
	Parent string
	// MAC is the virtual interface's address.
	MAC net.HardwareAddr
	// MTU, if not zero, is used instead of following the parent's MTU.
	MTU int
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

	done      chan struct{}
	watchDone chan struct{}
	closeOnce sync.Once
	fatal     chan error
}

// Start creates the TAP, sets its MAC, MTU and carrier, brings it up, opens
// the parent socket and starts relaying. It returns ErrNoParent if the
// parent does not exist, ErrNameInUse if the name is taken and
// ErrInvalidName for a bad name. On error nothing is left behind.
func Start(cfg Config) (_ *Bridge, err error) {
	if err := ValidateName(cfg.Name); err != nil {
		return nil, err
	}
	if err := ValidateName(cfg.Parent); err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("%s: want a 6-byte MAC address", cfg.Name)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{
		cfg: cfg, h: cfg.Netlink, log: cfg.Log,
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
		if isNotFound(err) {
			return nil, fmt.Errorf("parent %s: %w", cfg.Parent, ErrNoParent)
		}
		return nil, fmt.Errorf("find parent %s: %w", cfg.Parent, err)
	}
	if _, lerr := linkByName(b.h, cfg.Name); lerr == nil {
		return nil, fmt.Errorf("create TAP %s: %w", cfg.Name, ErrNameInUse)
	}

	tap, err := OpenTAP(cfg.Name)
	if err != nil {
		return nil, err
	}
	b.tap = tap
	undo = append(undo, func() { tap.Close() })
	pa := parent.Attrs()
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = pa.MTU
	}
	// Carrier off while the link comes up; attach turns it on if the
	// parent has one. The off→on change is what makes the kernel report
	// the TAP's operstate as UP rather than UNKNOWN.
	if err = tap.SetCarrier(false); err != nil {
		return nil, err
	}
	link, err := setupTAPLink(b.h, cfg.Name, cfg.MAC, mtu)
	if err != nil {
		return nil, err
	}
	b.relay = NewRelay(tap, cfg.MAC, &b.counters, b.onRelayError)
	undo = append(undo, b.relay.Close)
	b.st.IfIndex = link.Attrs().Index
	b.st.MTU = mtu
	b.st.Offloads = tap.Offloads
	b.st.StartedAt = time.Now()
	if err = b.attach(parent); err != nil {
		return nil, err
	}
	go b.routineWatchLinks(updates, subDone)
	return b, nil
}

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
	if err := b.tap.SetCarrier(carrier); err != nil {
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
	b.st.Carrier = carrier
	b.st.Promiscuity = promisc
	b.st.State = stateFor(carrier)
	b.mu.Unlock()
	b.followMTU(pa.MTU)
	return nil
}

// detach closes the parent socket and turns the carrier off: the parent is gone.
func (b *Bridge) detach() {
	b.relay.SetParent(nil)
	if err := b.tap.SetCarrier(false); err != nil {
		b.log.Warn("cannot set carrier", "err", err)
	}
	b.mu.Lock()
	b.sock = nil
	b.st.ParentIfIndex = 0
	b.st.ParentCarrier = false
	b.st.Carrier = false
	b.st.State = StateWaitingParent
	b.mu.Unlock()
}

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
	if b.cfg.MTU != 0 || mtu <= 0 {
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
	b.log.Info(fmt.Sprintf("MTU of %s follows %s", b.cfg.Name, b.st.Parent), "mtu", mtu)
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
	b.st.Carrier = carrier
	b.st.Promiscuity = a.Promisc
	b.st.State = stateFor(carrier)
	b.mu.Unlock()
	if a.Name != old.Parent {
		b.log.Info(fmt.Sprintf("Parent %s renamed to %s; still attached", old.Parent, a.Name))
	}
	if carrier != old.ParentCarrier {
		if err := b.tap.SetCarrier(carrier); err != nil {
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

// Status returns a snapshot of the bridge's state.
func (b *Bridge) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

// Counters returns the live counters.
func (b *Bridge) Counters() *Counters { return &b.counters }
