// Package bridge is vethd's data path: a virtual NIC with its own MAC (a
// TAP interface, or one end of a veth pair whose other end, the peer, the
// bridge relays: Kind), an AF_PACKET socket on the parent NIC behind a
// kernel filter, the relay between them, and the link control that keeps
// the NIC's MTU and carrier in step with the parent, also when the NIC is
// moved to another network namespace (see netns.go). It knows nothing of
// D-Bus or systemd. Where the code says "TAP" of the NIC's side of the
// relay, it means either kind's Device.
//
// A Bridge reaches the kernel through two small interfaces carried in its
// Config: LinkControl (netlink: lookups, MAC, MTU, up, IPv4 settings,
// addresses, veth pairs, namespace ids, link notifications) and Opener
// (the TAP, the peer's socket and the parent socket). Left nil they are the real ones; package bridgetest has fakes
// of both, over channel-backed frame I/O, so that a whole bridge's life can
// be tested without root.
package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vethd/vethd/internal/journal"
	"github.com/vethd/vethd/pkg/ifname"
)

// State is where a bridge is in its life:
//
//	starting ──► running ◄──────► degraded        (parent carrier lost / back)
//	                │   ▲              │
//	  parent removed│   │parent named  │parent removed
//	                ▼   │Parent appears▼
//	            waiting-parent ◄───────┘
//
//	starting ──► waiting-namespace ──► running/degraded/waiting-parent
//	              (Config.Namespace   (the namespace appeared: the
//	               does not exist)     interface is created in it)
//	running/degraded/waiting-parent ──► waiting-namespace
//	              (the interface's namespace was destroyed and
//	               Config.Namespace names none now)
//
//	any state ──Close──► stopping
type State string

const (
	StateStarting      State = "starting"
	StateWaitingParent State = "waiting-parent"
	// StateWaitingNamespace: Config.Namespace does not exist (yet); the
	// interface is created in it when it appears (the path is looked at
	// once a second while waiting).
	StateWaitingNamespace State = "waiting-namespace"
	StateRunning          State = "running"
	StateDegraded         State = "degraded"
	StateStopping         State = "stopping"
)

// ErrNoParent is returned by Start when the parent does not exist (and
// Config.WaitParent is not set).
var ErrNoParent = errors.New("no such parent interface")

// ErrParentNotEthernet is wrapped by the error of Start (and of attaching
// later) when the parent is not an Ethernet device (ARPHRD_ETHER): the
// loopback, a tun in L3 mode, wireguard, ipip, … carry no Ethernet frames
// to share.
var ErrParentNotEthernet = errors.New("not an Ethernet device")

// ErrParentMAC is wrapped by the error of Start (and of attaching later)
// when the virtual interface's MAC is the parent's own: the two would be
// one station on the wire.
var ErrParentMAC = errors.New("the virtual interface needs an address of its own")

// ErrMTUTooLarge is wrapped by the error of Start and Reconfigure for a
// Config.MTU above what the kind of interface takes (MaxMTU).
var ErrMTUTooLarge = errors.New("MTU too large")

// checkDataPath refuses a data path that is not DataPathRelay or
// DataPathKernel ("" is DataPathRelay), and DataPathKernel for a kind
// other than KindVeth.
func checkDataPath(name string, k Kind, dp DataPath) error {
	switch dp {
	case "", DataPathRelay:
		return nil
	case DataPathKernel:
		if k != KindVeth {
			return fmt.Errorf("%s: data path %s needs the veth kind (a TAP's frames pass through vethd)", name, dp)
		}
		return nil
	}
	return fmt.Errorf("%s: unknown data path %q (want %s or %s)", name, dp, DataPathRelay, DataPathKernel)
}

// DefaultDataPath returns the data path of a bridge of kind k whose
// Config.DataPath is "": DataPathKernel for the veth kind, DataPathRelay
// for a TAP.
func DefaultDataPath(k Kind) DataPath {
	if k == KindVeth {
		return DataPathKernel
	}
	return DataPathRelay
}

// dataPathOf returns the data path dp means for kind k ("" is k's
// default).
func dataPathOf(k Kind, dp DataPath) DataPath {
	if dp == "" {
		return DefaultDataPath(k)
	}
	return dp
}

// DataPath is how a bridge moves frames (Config.DataPath, Status.DataPath).
type DataPath string

const (
	// DataPathRelay: vethd's relay reads each frame from one side and
	// writes it to the other (both kinds).
	DataPathRelay DataPath = "relay"
	// DataPathKernel: for the veth kind, tc programs on the parent and on
	// the pair's peer move the frames inside the kernel; vethd loads them
	// and keeps them in step (MAC, storm limit) and reads their counters.
	DataPathKernel DataPath = "kernel"
)

// Kind is what the virtual interface is.
type Kind string

const (
	// KindTAP: a TAP interface whose descriptor vethd holds; it exists
	// while the descriptor is open (or kept in systemd's fd store).
	KindTAP Kind = "tap"
	// KindVeth: one end of a veth pair (the interface users see, an
	// Ethernet device to NetworkManager, udev and networkd); vethd relays
	// the other end, its peer, which stays in vethd's namespace.
	KindVeth Kind = "veth"
)

// The largest MTU of each kind: a TAP's is 65535 less its 14-byte Ethernet
// header (the tun driver's max_mtu, MAX_MTU - hard_header_len), a veth's
// the kernel's ETH_MAX_MTU. pkg/config's MaxMTUTAP and MaxMTUVeth say the
// same (TestMTULimitsAgree in internal/service keeps them in step).
const (
	MaxMTUTAP  = 65521
	MaxMTUVeth = 65535
)

// MaxMTU returns the largest MTU an interface of kind k takes ("" is
// KindTAP). A parent with a larger MTU is followed up to it (see
// Config.MTU).
func MaxMTU(k Kind) int {
	if k == KindVeth {
		return MaxMTUVeth
	}
	return MaxMTUTAP
}

// Config is what a bridge is built from.
type Config struct {
	// Name is the virtual interface's name (veth0, veth1, …).
	Name string
	// Kind is what the virtual interface is; "" means KindTAP.
	Kind Kind
	// Namespace, if not "", is the path of the network namespace
	// (/run/netns/NAME, /proc/PID/ns/net) in which the virtual interface
	// is created; "" means the caller's. A path that does not exist is
	// waited for (StateWaitingNamespace), looked at once a second; the
	// interface is created again there when that namespace is destroyed
	// and another appears. A TAP to adopt (TAP set) is adopted in
	// whichever namespace it is, this one or another.
	Namespace string
	// Parent is the name of the NIC whose wire is shared.
	Parent string
	// MAC is the virtual interface's address, given to a TAP that Start
	// creates. An adopted TAP (TAP set) keeps the address it has, which
	// may be one someone else set since (see "MAC changes" below): MAC,
	// if not nil, is only compared with it, and a difference logged.
	// Reconfigure sets MAC when it differs from the interface's.
	//
	// MAC changes: when someone else gives the interface a new address
	// (`ip link set veth1 address …`, NetworkManager's cloned MAC), the
	// bridge follows it: it re-opens the parent socket for the new address
	// (filter and unicast membership), moves the relay's source check to
	// it, announces the interface's addresses at it on the wire, and
	// reports it in Status.MAC. A multicast or all-zero address is not
	// followed (the kernel refuses to set one on a TAP anyway).
	MAC net.HardwareAddr
	// MTU, if not zero, is used instead of following the parent's MTU;
	// it may not be more than MaxMTU(Kind) (ErrMTUTooLarge).
	//
	// MTU changes. Following the parent, the interface gets the parent's
	// MTU, at most MaxMTU(Kind) (one log line says when it is less),
	// whenever the parent's MTU is new to the bridge: at attach, and when
	// it changes. An MTU someone else sets on the interface (`ip link set
	// veth1 mtu N`, NetworkManager) is always reflected in Status.MTU; one
	// above what the parent carries (the parent's MTU, or MTU if that is
	// more) would make the larger frames vanish on the parent, so the
	// bridge sets the interface back (to MTU, else the parent's) and warns,
	// naming the limit; a lower one is kept, until the parent's MTU
	// changes or Reconfigure brings a non-zero MTU (a Reconfigure with MTU
	// 0, as before, keeps it).
	MTU int
	// CarrierOn keeps the virtual interface's carrier on whatever the
	// parent's (Carrier=on); otherwise it follows the parent's.
	CarrierOn bool
	// WaitParent makes a missing parent a state (waiting-parent) instead of
	// an error: the bridge attaches when a link of that name appears.
	WaitParent bool
	// ARPIsolation makes the parent and the TAP each answer ARP only for
	// their own addresses and use only those as the sender of their ARP
	// requests (no "ARP flux"): it raises their net.ipv4.conf.IF.arp_ignore
	// to 1 and arp_announce to 2, leaving higher values, on the TAP when it
	// is created or adopted and on the parent whenever the bridge attaches
	// to one. Turned off (also by Reconfigure), it leaves the values as they
	// are. The values stay after the bridge is closed.
	ARPIsolation bool
	// BroadcastLimit is the storm limiter's limit (storm.go): at most this
	// many broadcast/multicast frames a second per class (ARP, ICMPv6
	// neighbour discovery, DHCP, other) from the parent to the virtual
	// NIC; 0 means DefaultBroadcastLimit, BroadcastLimitOff (negative)
	// no limit. Reconfigure applies a new one at once.
	BroadcastLimit int
	// DataPath is how frames move (DataPathRelay, DataPathKernel); ""
	// means DefaultDataPath(Kind): the kernel's for the veth kind, the
	// relay for a TAP. DataPathKernel is for the veth kind only (Start
	// refuses it for a TAP): tc programs in the kernel move the frames
	// between the parent and the pair (kpath_linux.go), where the kernel
	// allows it (tcx, Linux ≥ 6.6, and bpf() permitted); where it does
	// not, the bridge relays as with DataPathRelay, logs why (a warning
	// when DataPathKernel was asked for, an info line when it is the
	// default), and says so in Status.DataPath.
	DataPath DataPath
	// TAP, if not nil, is an open TAP descriptor to adopt instead of
	// creating the interface, such as the one systemd's fd store hands
	// back after a restart: the interface keeps its ifindex and addresses.
	// Start owns it from then on (it is closed on error).
	TAP *os.File
	// Links is the link control; nil means netlink in the calling
	// process's network namespace, opened by Start and closed by Close.
	// One given here stays the caller's (Close leaves it open), and must
	// see the namespace in which Opener opens the devices.
	Links LinkControl
	// Opener creates or adopts the TAP and opens the parent socket; nil
	// means the kernel's, in the calling process's network namespace
	// (OpenTAP, AdoptTAP, OpenParentSocket).
	Opener Opener
	// Log receives the bridge's events; nil discards them.
	Log *slog.Logger
	// OnChange, if not nil, is called (from any of the bridge's
	// goroutines, including the relay readers: it must not block)
	// after a state-like property changed.
	OnChange func()
}

// Status is a snapshot of a bridge's state-like properties.
type Status struct {
	Name string
	// Kind is what the virtual interface is (KindTAP, KindVeth).
	Kind Kind
	// Namespace says where the virtual interface is now: "" for the
	// bridge's own network namespace, else the configured Namespace path
	// or, for an interface someone moved, "netnsid N" (the id the
	// bridge's namespace has for the other one).
	Namespace     string
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
	// DataPath is the data path in use: DataPathKernel while the tc
	// programs are attached, else DataPathRelay (the relay, also while
	// no parent is attached).
	DataPath  DataPath
	StartedAt time.Time
	LastError string
}

// Bridge is one virtual interface and its relay.
//
// Goroutines: the Relay's readers move frames (see Relay).
// routineWatchLinks, started by Start, owns cfg, the parent binding
// (opening the parent socket and handing it to the relay, or taking it
// away) and the TAP's link control (carrier, MAC, MTU): it follows link
// notifications and runs the work Reconfigure and Health hand it on reqs,
// so none of those needs a lock. Before it starts, Start owns all of it.
// Status, Counters, TAPFd, Health, Reconfigure, Wait, Close and Release may be
// called from any goroutine.
type Bridge struct {
	// Set by Start, read-only after.
	name     string // Config.Name (the name never changes)
	log      *slog.Logger
	onChange func()
	links    LinkControl
	ownLinks bool // links was made by Start, and is closed by Close
	opener   Opener
	kind     Kind
	counters Counters // atomic: see Counters

	// cur is the virtual interface's device and the relay over it: set
	// by Start, replaced by routineWatchLinks when it re-creates the
	// interface (its namespace was destroyed); loaded by anyone.
	cur atomic.Pointer[devRelay]

	// Owned by routineWatchLinks (by Start before it, by Close after it):
	// where the virtual interface is, and the veth kind's peer.
	devNetns  int             // the namespace id of the interface's namespace; OwnNetns: the bridge's
	homeNetns int             // the namespace id of where the bridge creates it; OwnNetns: its own
	nsFile    *os.File        // Config.Namespace, open while the interface is created in it (else nil: an open namespace is never destroyed)
	peer      Link            // the veth kind's peer (Index 0 for a TAP)
	claim     io.Closer       // the veth kind's claim on its pair (Opener.ClaimVeth); nil if none
	devGone   <-chan struct{} // the relay's DeviceGone, nil once handled
	// The kernel data path (kpath_linux.go): the parent side while it is
	// the one in use (nil: the relay), whether its settings say the NIC
	// is in another namespace, and the last reason it could not be used
	// ("" if none), logged once.
	kpath     *kernelParent
	kpathPeer bool
	kpathErr  string

	// Owned by routineWatchLinks: the configuration as last applied
	// (cfg.MAC is the interface's address as the bridge last saw it, which
	// may be one it followed), and the last address it refused to follow.
	cfg    Config
	badMAC net.HardwareAddr
	// mtu is the MTU bookkeeping: followed is the parent MTU last
	// followed (see followMTU), err the LastError an MTU that could not
	// be set left ("" if none), cleared once one is set.
	mtu struct {
		followed int
		err      string
	}

	// state is what routineWatchLinks (or Start before it) sets up and
	// everyone reads; the relay's error reports write LastError.
	state struct {
		sync.Mutex
		st   Status
		sock ParentIO // the parent socket the relay uses; nil when detached
	}

	reqs      chan func()   // work for routineWatchLinks (Reconfigure, Health)
	done      chan struct{} // closed by Close: routineWatchLinks returns
	watchDone chan struct{} // closed by routineWatchLinks when it returns
	closeOnce sync.Once
	fatal     chan error // the error that ended the bridge, for Wait
}

// devRelay is a virtual interface's device and the relay over it.
type devRelay struct {
	dev   Device
	relay *Relay
}

// rl returns the current relay.
func (b *Bridge) rl() *Relay { return b.cur.Load().relay }

// dev returns the current device.
func (b *Bridge) dev() Device { return b.cur.Load().dev }

// Start creates the virtual interface of Config.Kind (or adopts Config.TAP,
// which keeps its MAC, or a veth pair an earlier bridge released: see
// openVeth), in Config.Namespace if set (or waits for it), sets its MAC,
// MTU and carrier, brings it up, sets ARP isolation if asked, opens the
// parent socket and starts relaying. It returns ErrNoParent if the parent
// does not exist (unless WaitParent), ErrNameInUse if the name (or, for
// the veth kind, the peer's name) is taken by a link that is not this
// bridge's, ErrNotTAP for a TAP to adopt that is no longer one, and an
// error wrapping ifname.ErrInvalid for a bad name. On error nothing is
// left behind (an adopted TAP is closed: the interface goes once no other
// process holds it; a veth pair Start created is deleted).
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
	switch cfg.Kind {
	case "":
		cfg.Kind = KindTAP
	case KindTAP:
	case KindVeth:
		if cfg.TAP != nil {
			return nil, fmt.Errorf("%s: a TAP descriptor to adopt for a bridge of the veth kind", cfg.Name)
		}
	default:
		return nil, fmt.Errorf("%s: unknown kind %q (want %s or %s)", cfg.Name, cfg.Kind, KindTAP, KindVeth)
	}
	if len(cfg.MAC) != 6 && !(cfg.MAC == nil && cfg.TAP != nil) {
		return nil, fmt.Errorf("%s: want a 6-byte MAC address", cfg.Name)
	}
	if err := checkMTU(cfg.Name, cfg.Kind, cfg.MTU); err != nil {
		return nil, err
	}
	if err := checkDataPath(cfg.Name, cfg.Kind, cfg.DataPath); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Opener == nil {
		cfg.Opener = kernelOpener{}
	}
	b := &Bridge{
		name: cfg.Name, log: cfg.Log, onChange: cfg.OnChange,
		links: cfg.Links, opener: cfg.Opener, kind: cfg.Kind,
		devNetns: OwnNetns, homeNetns: OwnNetns,
		reqs: make(chan func()),
		done: make(chan struct{}), watchDone: make(chan struct{}),
		fatal: make(chan error, 1),
	}
	b.state.st = Status{Name: cfg.Name, Kind: cfg.Kind, Parent: cfg.Parent, MAC: cfg.MAC, State: StateStarting, DataPath: DataPathRelay}

	// On error, undo what was done, last first.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if b.links == nil {
		nl, err := newNetlinkLinks(b.log)
		if err != nil {
			return nil, err
		}
		b.links, b.ownLinks = nl, true
		undo = append(undo, func() { nl.Close() })
	}

	// Subscribe before looking at the parent, so no change of the parent
	// between that look and the relay running goes unseen.
	sub, err := b.links.LinkSubscribe()
	if err != nil {
		return nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	undo = append(undo, sub.Close)

	var parent, sized *Link // sized: the parent with its MTU at most the kind's, to size the interface
	if l, err := b.links.LinkByName(cfg.Parent); err == nil {
		if err := checkParent(l, cfg.MAC); err != nil {
			return nil, err
		}
		parent = &l
		c := l
		c.MTU = min(c.MTU, MaxMTU(cfg.Kind))
		sized = &c
	} else if !errors.Is(err, ErrLinkNotFound) {
		return nil, fmt.Errorf("find parent %s: %w", cfg.Parent, err)
	} else if !cfg.WaitParent {
		return nil, fmt.Errorf("parent %s: %w", cfg.Parent, ErrNoParent)
	}

	if cfg.Namespace != "" {
		b.cfg = cfg // (for nsLabel and the log)
		f, err := b.openNamespace()
		switch {
		case errors.Is(err, os.ErrNotExist) && cfg.TAP != nil:
			// The TAP to adopt lives on wherever it is (its namespace
			// may have lost its name, or it was moved): adopted there;
			// the namespace is looked for again if it goes.
		case errors.Is(err, os.ErrNotExist):
			b.waitNamespace(nil)
			go b.routineWatchLinks(sub)
			return b, nil
		case err != nil:
			return nil, err
		default:
			b.nsFile = f
			defer func() { f.Close(); b.nsFile = nil }()
		}
	}
	var tap Device
	var link Link
	switch {
	case cfg.Kind == KindVeth:
		created := false
		if tap, link, created, err = b.openVeth(cfg, sized); err != nil {
			return nil, err
		}
		undo = append(undo, func() {
			tap.Close()
			if created {
				_ = b.links.LinkDel(b.peer.Index)
			}
		})
	case cfg.TAP != nil:
		f := cfg.TAP
		cfg.TAP = nil // the Opener owns it now
		if tap, err = b.opener.AdoptTAP(f); err != nil {
			return nil, err
		}
		undo = append(undo, func() { tap.Close() })
		// A TAP someone moved to another namespace (a container) while
		// vethd restarted is adopted there.
		if err = b.findAwayTAP(tap); err != nil {
			return nil, err
		}
		if link, err = b.adoptLink(tap.Name(), cfg, sized); err != nil {
			return nil, err
		}
	default:
		if tap, link, err = b.createTAP(cfg, sized); err != nil {
			return nil, err
		}
		undo = append(undo, func() { tap.Close() })
	}
	cfg.MAC = link.HardwareAddr
	b.cfg = cfg
	relay := NewRelay(tap, link.HardwareAddr, &b.counters, b.onRelayError)
	b.cur.Store(&devRelay{dev: tap, relay: relay})
	b.devGone = relay.DeviceGone()
	undo = append(undo, relay.Close)
	b.state.Lock()
	b.state.st.IfIndex = link.Index
	b.state.st.MAC = link.HardwareAddr
	b.state.st.MTU = link.MTU
	b.state.st.Offloads = tap.Offloads()
	b.state.st.Namespace = b.nsLabel(b.devNetns)
	b.state.st.StartedAt = time.Now()
	b.state.Unlock()
	if parent != nil {
		if err = b.attach(*parent, isolateTAP); err != nil {
			return nil, err
		}
	} else {
		b.isolateARP(nil, true)
		b.detach()
		b.log.Warn(fmt.Sprintf("Parent %s does not exist; %s has no carrier until it appears", cfg.Parent, cfg.Name))
	}
	go b.routineWatchLinks(sub)
	return b, nil
}

// createTAP creates the TAP of cfg with its MAC and MTU, up, without a
// carrier until the bridge attaches.
func (b *Bridge) createTAP(cfg Config, parent *Link) (Device, Link, error) {
	if _, err := b.links.LinkByName(cfg.Name); err == nil {
		return nil, Link{}, fmt.Errorf("create TAP %s: %w", cfg.Name, ErrNameInUse)
	}
	tap, err := b.opener.CreateTAP(cfg.Name)
	if err != nil {
		return nil, Link{}, err
	}
	mtu := cfg.MTU
	if mtu == 0 && parent != nil {
		mtu = min(parent.MTU, MaxMTU(KindTAP))
	}
	// Carrier off while the link comes up; attach turns it on if the
	// parent has one. The off→on change is what makes the kernel
	// report the TAP's operstate as UP rather than UNKNOWN.
	if err := tap.SetCarrier(false); err != nil {
		tap.Close()
		return nil, Link{}, err
	}
	link, err := b.setupTAPLink(cfg.Name, cfg.MAC, mtu, b.nsFile == nil)
	if err == nil && b.nsFile != nil {
		link, err = b.moveHome(link)
	}
	if err != nil {
		tap.Close()
		return nil, Link{}, err
	}
	return tap, link, nil
}

// setupTAPLink gives the fresh TAP name its address and MTU (0: left as it
// is), then brings it up. The address is set while the link is down, so
// nothing ever leaves with the kernel's random one.
//
// Equivalent to: `ip link set $name address $mac mtu $mtu up`.
func (b *Bridge) setupTAPLink(name string, mac net.HardwareAddr, mtu int, up bool) (Link, error) {
	l, err := b.links.LinkByName(name)
	if err != nil {
		return Link{}, fmt.Errorf("find %s: %w", name, err)
	}
	if err := b.links.LinkSetHardwareAddr(l.Index, mac); err != nil {
		return Link{}, fmt.Errorf("set %s mac %s: %w", name, mac, err)
	}
	if mtu != 0 {
		if err := b.links.LinkSetMTU(l.Index, mtu); err != nil {
			return Link{}, fmt.Errorf("set %s mtu %d: %w", name, mtu, err)
		}
	}
	if !up {
		return b.links.LinkByIndex(l.Index)
	}
	if err := b.links.LinkSetUp(l.Index); err != nil {
		return Link{}, fmt.Errorf("set %s up: %w", name, err)
	}
	return b.links.LinkByIndex(l.Index)
}

// adoptLink brings an adopted TAP's link in line with cfg: MTU and up,
// changing only what differs, so that its addresses and any DHCP lease
// stay. A renamed interface keeps its name, and the interface keeps its MAC
// address (see Config.MAC).
//
// Equivalent to: `ip link set $name mtu $mtu up`.
func (b *Bridge) adoptLink(name string, cfg Config, parent *Link) (Link, error) {
	if name != cfg.Name {
		b.log.Warn(fmt.Sprintf("Adopted interface is named %s, not %s (renamed by someone); keeping it", name, cfg.Name))
	}
	l, err := b.linkNamed(name)
	if err != nil {
		return Link{}, fmt.Errorf("find %s: %w", name, err)
	}
	if cfg.MAC != nil && !bytes.Equal(l.HardwareAddr, cfg.MAC) {
		// The interface stays as it was, also its address: someone
		// else may have set it while the bridge ran, and what they
		// built on it (a DHCP lease, a NetworkManager profile) must
		// survive a restart.
		b.log.Warn(fmt.Sprintf("Adopted %s keeps its MAC address mac=%s, not the configured %s; a reload sets the configured one",
			name, journal.Quote(l.HardwareAddr.String()), cfg.MAC))
	}
	mtu := cfg.MTU
	if mtu == 0 && parent != nil {
		mtu = min(parent.MTU, MaxMTU(cfg.Kind))
	}
	if mtu != 0 && mtu != l.MTU && b.devNetns == OwnNetns {
		// Not fatal, as for a running bridge: the interface is there and
		// relays; LastError says why its MTU is not the one wanted.
		if err := b.linkSetMTU(l.Index, mtu); err != nil {
			msg := fmt.Sprintf("set %s mtu %d: %v", name, mtu, err)
			b.mtu.err = msg // (cleared once an MTU is set)
			b.state.Lock()
			b.state.st.LastError = msg
			b.state.Unlock()
			b.log.Error(msg)
		}
	}
	if !l.Up && b.devNetns == OwnNetns {
		if err := b.linkSetUp(l.Index); err != nil {
			return Link{}, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return b.linkByIndex(l.Index)
}

// attachFlags say what attach does besides attaching.
type attachFlags int

const (
	// isolateTAP sets ARP isolation (if on) on the TAP too, not only on the parent.
	isolateTAP attachFlags = 1 << iota
	// announceMAC announces the TAP's addresses at its MAC on the new
	// socket before the relay uses it (the MAC is new).
	announceMAC
)

// attach sets ARP isolation (if on) on parent, opens the parent socket on
// it and hands it to the relay.
func (b *Bridge) attach(parent Link, flags attachFlags) error {
	if err := checkParent(parent, b.cfg.MAC); err != nil {
		return err
	}
	b.isolateARP(&parent, flags&isolateTAP != 0)
	sock, err := b.openParent(parent.Index, parent.Name, b.cfg.MAC)
	if err != nil {
		return err
	}
	if flags&announceMAC != 0 {
		b.announce(sock, parent.Name, b.cfg.MAC)
	}
	b.rl().SetStormLimit(b.cfg.BroadcastLimit)
	b.rl().SetParent(sock)
	carrier := parent.Carrier()
	if err := b.dev().SetCarrier(b.tapCarrier(carrier)); err != nil {
		b.log.Warn(fmt.Sprintf("cannot set carrier err=%s", journal.Quote(err.Error())))
	}
	// Read the promiscuity after joining: it shows the kernel's reaction.
	promisc := parent.Promiscuity
	if l, err := b.links.LinkByIndex(parent.Index); err == nil {
		promisc = l.Promiscuity
	}
	b.state.Lock()
	b.state.sock = sock
	b.state.st.Parent = parent.Name
	b.state.st.ParentIfIndex = parent.Index
	b.state.st.ParentCarrier = carrier
	b.state.st.Carrier = b.tapCarrier(carrier)
	b.state.st.Promiscuity = promisc
	b.state.st.State = stateFor(carrier)
	b.state.Unlock()
	b.followMTU(parent.MTU)
	return nil
}

// checkParent refuses a parent the bridge cannot share: one that is not
// an Ethernet device, or whose MAC address is mac (the virtual
// interface's; nil when not known yet). Start returns its error; a parent
// refused when it appears later leaves the bridge waiting-parent, with
// the error logged and in Status.LastError.
func checkParent(parent Link, mac net.HardwareAddr) error {
	if parent.EncapType != "" && parent.EncapType != "ether" {
		kind := ""
		if parent.Kind != "" {
			kind = ", kind " + parent.Kind
		}
		return fmt.Errorf("parent %s is %w (type %s%s)", parent.Name, ErrParentNotEthernet, parent.EncapType, kind)
	}
	if len(mac) > 0 && bytes.Equal(mac, parent.HardwareAddr) {
		return fmt.Errorf("MAC address %s is %s's own: %w", mac, parent.Name, ErrParentMAC)
	}
	return nil
}

// detach closes the parent socket and turns the carrier off: the parent is gone.
func (b *Bridge) detach() {
	b.rl().SetParent(nil)
	b.setKernelPath(nil)
	if err := b.dev().SetCarrier(b.tapCarrier(false)); err != nil {
		b.log.Warn(fmt.Sprintf("cannot set carrier err=%s", journal.Quote(err.Error())))
	}
	b.state.Lock()
	b.state.sock = nil
	b.state.st.ParentIfIndex = 0
	b.state.st.ParentCarrier = false
	b.state.st.Promiscuity = 0
	b.state.st.Carrier = b.tapCarrier(false)
	b.state.st.State = StateWaitingParent
	b.state.Unlock()
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

// checkMTU refuses a configured MTU (0: follow the parent) that an
// interface of kind k cannot take.
func checkMTU(name string, k Kind, mtu int) error {
	if mtu < 0 || mtu > MaxMTU(k) {
		return fmt.Errorf("%s: MTU %d: %w for a %s interface (at most %d)", name, mtu, ErrMTUTooLarge, k, MaxMTU(k))
	}
	return nil
}

// followMTU gives the interface the parent's MTU, parentMTU (0: none
// known), at most its kind's maximum, unless an MTU is configured: when
// parentMTU is new to the bridge (a new parent, a change of the
// parent's), or when the interface's MTU is above it. An MTU someone set
// below it stays until then (see Config.MTU).
func (b *Bridge) followMTU(parentMTU int) {
	if b.cfg.MTU != 0 || parentMTU <= 0 {
		return
	}
	st := b.Status()
	mtu := min(parentMTU, MaxMTU(b.kind))
	if parentMTU == b.mtu.followed && st.MTU <= mtu {
		return
	}
	if parentMTU != b.mtu.followed && mtu != parentMTU {
		// One line, whether the interface's MTU changes or not.
		b.mtu.followed = parentMTU
		b.log.Warn(fmt.Sprintf("MTU of %s follows %s only up to the most a %s interface takes mtu=%d parent_mtu=%d",
			b.name, st.Parent, b.kind, mtu, parentMTU))
		b.setMTULogged(mtu, "")
		return
	}
	b.mtu.followed = parentMTU
	b.setMTU(mtu)
}

// setMTU sets the TAP's MTU, if it differs, and logs it.
//
// Equivalent to: `ip link set $name mtu $mtu`.
func (b *Bridge) setMTU(mtu int) {
	msg := fmt.Sprintf("MTU of %s set mtu=%d", b.name, mtu)
	if b.cfg.MTU == 0 {
		msg = fmt.Sprintf("MTU of %s follows %s mtu=%d", b.name, b.Status().Parent, mtu)
	}
	b.setMTULogged(mtu, msg)
}

// setMTULogged is setMTU with its log line, msg ("": none), logged once
// the MTU is set and before the status says so (who sees the one sees the
// other). A failure is the bridge's LastError (and logged), until an MTU
// is set.
func (b *Bridge) setMTULogged(mtu int, msg string) {
	if mtu <= 0 {
		return
	}
	st := b.Status()
	if st.MTU == mtu || b.devNetns != OwnNetns {
		return // (in another namespace the MTU is that namespace's)
	}
	// By index: the TAP may have been renamed (or moved: then through
	// its namespace's id).
	if err := b.linkSetMTU(st.IfIndex, mtu); err != nil {
		err = fmt.Errorf("set %s mtu %d: %w", b.name, mtu, err)
		b.mtu.err = err.Error()
		b.setError(err)
		return
	}
	if msg != "" {
		b.log.Info(msg)
	}
	b.state.Lock()
	b.state.st.MTU = mtu
	if b.mtu.err != "" && b.state.st.LastError == b.mtu.err {
		b.state.st.LastError = "" // (it said this MTU could not be set)
	}
	b.state.Unlock()
	b.mtu.err = ""
	b.changed()
}

// mtuLimit returns the largest MTU the interface may have without frames
// vanishing on the parent: the parent's MTU, or the configured MTU if
// that is more (the admin's choice), at most the kind's maximum; 0 when
// there is no parent and no configured MTU. what names it for the log.
func (b *Bridge) mtuLimit() (limit int, what string) {
	pm := b.parentMTU()
	switch {
	case pm == 0 && b.cfg.MTU == 0:
		return 0, ""
	case b.cfg.MTU >= pm:
		return b.cfg.MTU, fmt.Sprintf("the configured MTU=%d", b.cfg.MTU)
	}
	limit = min(pm, MaxMTU(b.kind))
	return limit, fmt.Sprintf("the %d that %s carries", limit, b.Status().Parent)
}

// mtuChanged follows an MTU someone else set on the interface (mtu, as
// it is now): above mtuLimit it is set back, to the configured MTU or the
// parent's, with a warning naming the limit; otherwise it is kept. Either
// way Status.MTU says what the interface has.
func (b *Bridge) mtuChanged(mtu int) {
	limit, what := b.mtuLimit()
	keep := limit == 0 || mtu <= limit
	back := b.cfg.MTU
	if back == 0 {
		back = limit
	}
	// Logged before the status says so: who sees the one sees the other.
	if keep {
		b.log.Info(fmt.Sprintf("MTU of %s changed by someone else; keeping it mtu=%d", b.name, mtu))
	} else {
		b.log.Warn(fmt.Sprintf("MTU of %s changed by someone else to %d, above %s: frames that large would vanish; setting it back mtu=%d",
			b.name, mtu, what, back))
	}
	b.state.Lock()
	b.state.st.MTU = mtu
	b.state.Unlock()
	b.changed()
	if !keep {
		b.setMTULogged(back, "")
	}
}

// routineWatchLinks follows the parent (by ifindex) and the TAP through
// sub's link notifications, taking a new subscription when one is lost,
// and runs the work on reqs. Only while there is something to look at that
// sends no notification (Config.Namespace, waited for; the interface in
// another namespace) does it also wake once a second (pollInterval) to
// look: an idle bridge costs no wake-ups of its own. The socket's queue
// drops are read by the process-wide dropPoll (pollDrops). It returns when
// Close closes done.
func (b *Bridge) routineWatchLinks(sub LinkSubscription) {
	defer close(b.watchDone)
	defer func() {
		if sub != nil { // the current one
			sub.Close()
		}
	}()
	defer dropPoll.add(b.pollDrops)()
	var poll *time.Ticker // running while polling is needed
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	for {
		b.syncKernelPath()
		var pollC <-chan time.Time
		switch need := b.Status().State == StateWaitingNamespace || b.devNetns != OwnNetns; {
		case need && poll == nil:
			poll = time.NewTicker(pollInterval)
		case !need && poll != nil:
			poll.Stop()
			poll = nil
		}
		if poll != nil {
			pollC = poll.C
		}
		select {
		case <-b.done:
			return
		case f := <-b.reqs:
			f()
		case <-b.devGone:
			b.devGone = nil
			if b.devNetns != OwnNetns {
				b.devLost()
			} // (here its RTM_DELLINK says so)
		case <-pollC:
			switch {
			case b.Status().State == StateWaitingNamespace:
				b.lookForNamespace()
			case b.devNetns != OwnNetns:
				b.pollAway()
			}
		case ev, ok := <-sub.Events():
			if ok {
				b.handleEvent(ev)
				continue
			}
			// The subscription broke (e.g. its buffer overran): take a new
			// one, then look at the parent afresh.
			b.log.Warn("link notifications lost; resubscribing")
			sub.Close()
			if sub = b.resubscribe(); sub == nil {
				return
			}
			b.resync()
		}
	}
}

// pollInterval is how often a bridge looks at what sends no notification
// (see routineWatchLinks).
const pollInterval = time.Second

// pollDrops adds the frames the kernel dropped on the parent socket's full
// queue since the last look to the counters. It runs once a second on
// dropPoll's goroutine, for every bridge at once.
func (b *Bridge) pollDrops() {
	b.state.Lock()
	sock := b.state.sock
	b.state.Unlock()
	if sock != nil {
		if n := sock.Dropped(); n > 0 {
			b.counters.RxDrops[DropQueueFull].Add(n)
		}
	}
}

// resubscribe takes a new link subscription, trying again every second; it
// returns nil if Close is called meanwhile.
func (b *Bridge) resubscribe() LinkSubscription {
	for {
		sub, err := b.links.LinkSubscribe()
		if err == nil {
			return sub
		}
		select {
		case <-b.done:
			return nil
		case <-time.After(time.Second):
		}
	}
}

// handleEvent dispatches one link notification.
func (b *Bridge) handleEvent(ev LinkEvent) {
	l := ev.Link
	st := b.Status()
	// The interface's own events come only while it is in this namespace
	// (its ifindex elsewhere may be any link's here).
	own := b.devNetns == OwnNetns
	self := own && l.Index == st.IfIndex
	switch {
	case self && ev.Moved():
		b.devMoved(ev.NewNetnsID, ev.NewIndex)
	case self && ev.Deleted:
		b.tapGone()
	case self:
		b.tapChanged(l)
	case b.peer.Index != 0 && l.Index == b.peer.Index:
		b.peerChanged(ev)
	case !own && !ev.Deleted && b.isOurs(l):
		b.devBack(l)
	case st.State == StateWaitingParent && !ev.Deleted && l.Name == b.cfg.Parent && !self:
		// (Not the TAP itself renamed to the parent's name: that would loop.)
		b.parentAppeared(l)
	case l.Index == st.ParentIfIndex && st.ParentIfIndex != 0 && ev.Deleted:
		b.parentGone()
	case l.Index == st.ParentIfIndex && st.ParentIfIndex != 0:
		b.parentChanged(l)
	}
}

// tapChanged follows a change of the TAP's own link: a new MAC address
// or MTU, set by someone else (see mtuChanged). The notification may be
// older than a change the bridge made itself (Start, Reconfigure, an MTU
// followed), so it only says "look": the link as it is now decides.
func (b *Bridge) tapChanged(l Link) {
	newMAC := len(l.HardwareAddr) == 6 && !bytes.Equal(l.HardwareAddr, b.cfg.MAC)
	if !newMAC && (l.MTU == 0 || l.MTU == b.Status().MTU) {
		return
	}
	cur, err := b.linkByIndex(l.Index)
	if err != nil {
		return // (gone: its deletion is on its way)
	}
	if cur.MTU > 0 && cur.MTU != b.Status().MTU {
		b.mtuChanged(cur.MTU)
	}
	if len(cur.HardwareAddr) != 6 || bytes.Equal(cur.HardwareAddr, b.cfg.MAC) {
		return
	}
	b.followMAC(cur.HardwareAddr)
}

// followMAC makes mac, the TAP's new address, the one the bridge relays
// for: a parent socket for it replaces the old one (the kernel filter and
// the unicast membership are the socket's), the interface's addresses are
// announced at it on the wire, and the relay's source check moves to it.
// The carrier stays as it is: the link did not go away.
func (b *Bridge) followMAC(mac net.HardwareAddr) {
	mac = append(net.HardwareAddr(nil), mac...)
	if why := badMAC(mac); why != "" {
		if !bytes.Equal(mac, b.badMAC) {
			b.badMAC = mac
			b.log.Warn(fmt.Sprintf("MAC address of %s changed by someone else to %s, %s: not following it; frames are relayed for %s",
				b.name, mac, why, b.cfg.MAC))
		}
		return
	}
	b.badMAC = nil
	b.log.Info(fmt.Sprintf("MAC address of %s changed by someone else; following it mac=%s old_mac=%s",
		b.name, journal.Quote(mac.String()), journal.Quote(b.cfg.MAC.String())))
	st := b.Status()
	var sock ParentIO
	if st.ParentIfIndex != 0 {
		s, err := b.openParent(st.ParentIfIndex, st.Parent, mac)
		if err != nil {
			// The old socket stays: the interface can send, but
			// receives only broadcast and multicast until a new
			// socket opens (the parent comes back, a reload).
			b.setError(fmt.Errorf("follow the MAC address of %s to %s: %w", b.name, mac, err))
		} else {
			sock = s
			b.announce(sock, st.Parent, mac)
		}
	}
	b.cfg.MAC = mac
	b.rl().SetMAC(mac)
	if sock != nil {
		b.rl().SetStormLimit(b.cfg.BroadcastLimit)
		b.rl().SetParent(sock)
	}
	b.state.Lock()
	b.state.st.MAC = mac
	if sock != nil {
		b.state.sock = sock
	}
	b.state.Unlock()
	b.changed()
}

// badMAC says why mac cannot be an interface's address, or "" if it can.
func badMAC(mac net.HardwareAddr) string {
	if mac[0]&1 != 0 {
		return "a multicast address"
	}
	if bytes.Equal(mac, make(net.HardwareAddr, len(mac))) {
		return "the all-zero address"
	}
	return ""
}

// announce sends, on sock (a new parent socket on the parent named
// parent, not yet the relay's), an announcement of each of the TAP's
// addresses at mac, its new address (see announcement). Failures are
// logged: the neighbours then learn the new address when their entries
// expire.
func (b *Bridge) announce(sock ParentIO, parent string, mac net.HardwareAddr) {
	if b.devNetns != OwnNetns {
		return // its addresses are in another namespace, out of sight
	}
	addrs, err := b.links.LinkAddrs(b.Status().IfIndex)
	if err != nil {
		b.log.Warn(fmt.Sprintf("Cannot list the addresses of %s to announce them err=%s", b.name, journal.Quote(err.Error())))
		return
	}
	var sent []string
	for _, a := range addrs {
		f := announcement(mac, a)
		if f == nil {
			continue
		}
		if err := sock.WriteFrame(f); err != nil {
			b.log.Warn(fmt.Sprintf("Cannot announce %s of %s on %s err=%s", a, b.name, parent, journal.Quote(err.Error())))
			return
		}
		sent = append(sent, a.String())
	}
	if len(sent) > 0 {
		b.log.Info(fmt.Sprintf("Announced the addresses of %s at its MAC address on %s addresses=%s",
			b.name, parent, journal.Quote(strings.Join(sent, ","))))
	}
}

// devConfMin is a lower bound for one of a link's IPv4 settings.
type devConfMin struct {
	id  DevConf
	min uint32
}

// arpIsolationMin is what ARP isolation asks of a link's IPv4 settings,
// in the order they are logged: at least these values (higher ones are
// left as they are, as the kernel's max() with conf/all would).
func arpIsolationMin() [2]devConfMin {
	return [2]devConfMin{{DevConfARPIgnore, 1}, {DevConfARPAnnounce, 2}}
}

// isolateARP sets ARP isolation, if on, on parent (unless nil) and, if
// withTAP, on the TAP, and logs in one line what the links now have.
// Failures are errors of the bridge's (LastError), not fatal: it relays
// all the same.
func (b *Bridge) isolateARP(parent *Link, withTAP bool) {
	if !b.cfg.ARPIsolation {
		return
	}
	var names, values []string
	isolate := func(index int, name string) {
		conf, err := b.isolateLink(index)
		if err != nil {
			b.setError(fmt.Errorf("set ARP isolation on %s: %w", name, err))
			return
		}
		var v []string
		for _, m := range arpIsolationMin() {
			v = append(v, fmt.Sprintf("%s=%d", m.id, conf[m.id]))
		}
		names, values = append(names, name), append(values, strings.Join(v, " "))
	}
	if parent != nil {
		isolate(parent.Index, parent.Name)
	}
	if withTAP && b.devNetns == OwnNetns {
		// (In another namespace the interface's settings are its
		// namespace's business: see docs/namespaces.md.)
		isolate(b.Status().IfIndex, b.name)
	}
	switch {
	case len(names) == 0:
	case len(names) == 1 || values[0] == values[1]:
		b.log.Info(fmt.Sprintf("ARP isolation on %s: %s", strings.Join(names, " and "), values[0]))
	default:
		b.log.Info(fmt.Sprintf("ARP isolation on %s (%s) and %s (%s)", names[0], values[0], names[1], values[1]))
	}
}

// isolateLink raises link index's arp_ignore and arp_announce to what ARP
// isolation needs, setting only what is lower (a set that changes nothing
// still makes the kernel announce the link), and returns the values the
// link has then.
//
// Equivalent to: `sysctl net.ipv4.conf.$link.arp_ignore=1
// net.ipv4.conf.$link.arp_announce=2` where lower.
func (b *Bridge) isolateLink(index int) (InetConf, error) {
	cur, err := b.links.LinkInetConf(index)
	if err != nil {
		return nil, err
	}
	set, now := InetConf{}, InetConf{}
	for _, m := range arpIsolationMin() {
		now[m.id] = cur[m.id]
		if cur[m.id] < m.min {
			set[m.id], now[m.id] = m.min, m.min
		}
	}
	if len(set) > 0 {
		if err := b.links.LinkSetInetConf(index, set); err != nil {
			return nil, err
		}
	}
	return now, nil
}

// tapGone ends the bridge: someone deleted its interface.
func (b *Bridge) tapGone() {
	b.fail(fmt.Errorf("%s was deleted by someone else", b.name))
}

// parentAppeared attaches to l, a link of the parent's name that appeared
// while the bridge waited for one.
func (b *Bridge) parentAppeared(l Link) {
	if err := b.attach(l, 0); err != nil {
		b.setError(fmt.Errorf("attach to %s: %w", l.Name, err))
		return
	}
	b.log.Info(fmt.Sprintf("Attached %s into %s again parent_ifindex=%d", b.name, l.Name, l.Index))
	b.changed()
}

// parentGone detaches from the parent, which was deleted, and attaches at
// once to a link of the parent's name if there is one already (removed and
// re-created at once).
func (b *Bridge) parentGone() {
	old := b.Status()
	b.detach()
	b.log.Warn(fmt.Sprintf("Parent %s removed; %s has no carrier until a link named %s appears", old.Parent, b.name, b.cfg.Parent))
	b.changed()
	if l, err := b.links.LinkByName(b.cfg.Parent); err == nil && l.Index != old.IfIndex {
		b.parentAppeared(l)
	}
}

// parentChanged follows a change of the tracked parent: name, carrier, MTU.
func (b *Bridge) parentChanged(l Link) {
	// The promiscuity count as the kernel has it now: the change the
	// unicast membership makes on a NIC without a unicast filter is
	// announced by no notification, so one queued before it (the ARP
	// isolation's, say) would leave a stale count for good.
	if cur, err := b.links.LinkByIndex(l.Index); err == nil {
		l.Promiscuity = cur.Promiscuity
	}
	carrier := l.Carrier()
	b.state.Lock()
	old := b.state.st
	b.state.st.Parent = l.Name
	b.state.st.ParentCarrier = carrier
	b.state.st.Carrier = b.tapCarrier(carrier)
	b.state.st.Promiscuity = l.Promiscuity
	b.state.st.State = stateFor(carrier)
	b.state.Unlock()
	if l.Name != old.Parent {
		b.log.Info(fmt.Sprintf("Parent %s renamed to %s; still attached", old.Parent, l.Name))
	}
	if carrier != old.ParentCarrier {
		if err := b.dev().SetCarrier(b.tapCarrier(carrier)); err != nil {
			b.setError(err)
		}
		if carrier {
			b.log.Info(fmt.Sprintf("Parent %s has carrier; %s is up", l.Name, b.name))
		} else {
			b.log.Warn(fmt.Sprintf("Parent %s lost carrier; %s has no carrier", l.Name, b.name))
		}
	}
	b.followMTU(l.MTU)
	if l.Name != old.Parent || carrier != old.ParentCarrier || l.MTU != old.MTU || l.Promiscuity != old.Promiscuity {
		b.changed()
	}
}

// resync looks at the TAP's address and the parent again after
// notifications may have been lost.
func (b *Bridge) resync() {
	st := b.Status()
	if b.peer.Index != 0 {
		if p, err := b.links.LinkByIndex(b.peer.Index); err == nil {
			b.peerChanged(LinkEvent{Link: p, NewNetnsID: -1})
		} else if errors.Is(err, ErrLinkNotFound) {
			b.peerChanged(LinkEvent{Link: b.peer, Deleted: true, NewNetnsID: -1})
			return
		}
		st = b.Status()
	}
	if l, err := b.linkByIndex(st.IfIndex); err == nil {
		b.tapChanged(l)
		st = b.Status()
	}
	if st.ParentIfIndex != 0 {
		if l, err := b.links.LinkByIndex(st.ParentIfIndex); err == nil {
			b.parentChanged(l)
		} else {
			b.parentGone()
		}
		return
	}
	if st.State != StateWaitingParent {
		return // (stopping: Close is under way)
	}
	if l, err := b.links.LinkByName(b.cfg.Parent); err == nil && l.Index != st.IfIndex {
		b.parentAppeared(l)
	}
}

func (b *Bridge) onRelayError(dir string, err error) {
	b.setError(fmt.Errorf("%s %s: %w", b.name, dir, err))
}

func (b *Bridge) setError(err error) {
	b.log.Error(err.Error())
	b.state.Lock()
	b.state.st.LastError = err.Error()
	b.state.Unlock()
	b.changed()
}

func (b *Bridge) changed() {
	if b.onChange != nil {
		b.onChange()
	}
}

// fail ends the bridge with err: Wait returns it (and the caller logs it).
func (b *Bridge) fail(err error) {
	b.state.Lock()
	b.state.st.LastError = err.Error()
	b.state.Unlock()
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

// Close stops the relay and removes the virtual interface: a TAP goes when
// its descriptor closes (unless the fd store holds one), a veth pair is
// deleted. It is idempotent (as is Release: the first of the two counts)
// and returns once both relay goroutines have ended.
func (b *Bridge) Close() error { return b.stop(false) }

// Release stops relaying like Close but leaves the virtual interface for
// the next vethd to adopt (a restart): a veth pair stays, its peer up, so
// the NIC keeps its carrier, addresses and leases meanwhile; a TAP goes
// unless its descriptor is held elsewhere (the fd store).
func (b *Bridge) Release() error { return b.stop(true) }

// stop is Close (release false) and Release.
func (b *Bridge) stop(release bool) error {
	b.closeOnce.Do(func() {
		b.state.Lock()
		b.state.st.State = StateStopping
		b.state.Unlock()
		close(b.done)
		<-b.watchDone
		b.state.Lock()
		sock := b.state.sock
		b.state.Unlock()
		if sock != nil {
			b.counters.RxDrops[DropQueueFull].Add(sock.Dropped())
		}
		b.rl().Close()
		b.releaseClaim()
		if b.kind == KindVeth && b.peer.Index != 0 {
			if release {
				b.log.Info(fmt.Sprintf("Released %s: the veth pair stays for the next vethd", b.name))
			} else if err := b.links.LinkDel(b.peer.Index); err != nil && !errors.Is(err, ErrLinkNotFound) {
				b.log.Error(fmt.Sprintf("delete %s: %v", PeerName(b.name), err))
			}
		}
		if b.ownLinks {
			b.links.Close()
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
// service's watchdog pings are made of. A closed bridge answers ErrClosed.
func (b *Bridge) Health() error {
	select {
	case <-b.done: // the readers stop when closed: say so, not "reader stopped"
		return fmt.Errorf("%s: %w", b.name, ErrClosed)
	default:
	}
	if err := b.rl().Healthy(); err != nil {
		return fmt.Errorf("%s: %w", b.name, err)
	}
	if err := b.do(func() error { return nil }); err != nil {
		return fmt.Errorf("%s: %w", b.name, err)
	}
	return nil
}

// Reconfigure applies a new configuration without removing the TAP:
// Parent, MAC, MTU, CarrierOn, WaitParent and ARPIsolation may change;
// Name may not, and TAP, Links, Opener, Log and OnChange are ignored. A new
// parent, or a MAC other than the interface has (also one the bridge
// followed), closes the parent socket and opens a new one (a missing new
// parent is waited for; a new MAC is announced); MTU and carrier are set
// in place. ARP isolation turned on is set on both links at once; turned
// off, nothing is lowered.
func (b *Bridge) Reconfigure(nc Config) error {
	if nc.Name != b.name {
		return fmt.Errorf("%s: the name cannot change (to %q) without re-creating the interface", b.name, nc.Name)
	}
	if err := ifname.Validate(nc.Parent); err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	if nc.MAC != nil && len(nc.MAC) != 6 {
		return fmt.Errorf("%s: want a 6-byte MAC address", nc.Name)
	}
	if err := checkMTU(nc.Name, b.kind, nc.MTU); err != nil {
		return err
	}
	if err := checkDataPath(nc.Name, b.kind, nc.DataPath); err != nil {
		return err
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
	if st.State == StateWaitingNamespace {
		// No interface yet: the new configuration is what it is created with.
		if nc.MAC != nil {
			b.cfg.MAC = append(net.HardwareAddr(nil), nc.MAC...)
		}
		b.cfg.Parent, b.cfg.MTU, b.cfg.CarrierOn, b.cfg.WaitParent, b.cfg.ARPIsolation = nc.Parent, nc.MTU, nc.CarrierOn, nc.WaitParent, nc.ARPIsolation
		b.cfg.BroadcastLimit, b.cfg.DataPath = nc.BroadcastLimit, nc.DataPath
		b.state.Lock()
		b.state.st.Parent, b.state.st.MAC = b.cfg.Parent, b.cfg.MAC
		b.state.Unlock()
		return nil
	}
	macChanged := nc.MAC != nil && !bytes.Equal(nc.MAC, b.cfg.MAC)
	parentChanged := nc.Parent != b.cfg.Parent
	pathChanged := dataPathOf(b.kind, nc.DataPath) != dataPathOf(b.kind, b.cfg.DataPath)
	// The steps that can fail go first, before anything is changed.
	if macChanged && b.devNetns != OwnNetns {
		return fmt.Errorf("set %s mac %s: the interface is in another network namespace (%s); set it there", b.name, nc.MAC, st.Namespace)
	}
	if macChanged || parentChanged {
		// A parent that exists and cannot be shared (not Ethernet, or
		// the new MAC is its own) is refused: the bridge keeps relaying
		// as it was. (One that does not exist is waited for.)
		mac := b.cfg.MAC
		if macChanged {
			mac = nc.MAC
		}
		if l, err := b.links.LinkByName(nc.Parent); err == nil && !(st.IfIndex != 0 && l.Index == st.IfIndex && b.devNetns == OwnNetns) {
			if err := checkParent(l, mac); err != nil {
				return err
			}
		}
	}
	if macChanged {
		if err := b.links.LinkSetHardwareAddr(st.IfIndex, nc.MAC); err != nil {
			return fmt.Errorf("set %s mac %s: %w", b.name, nc.MAC, err)
		}
		mac := append(net.HardwareAddr(nil), nc.MAC...)
		b.cfg.MAC = mac
		b.rl().SetMAC(mac)
		b.state.Lock()
		b.state.st.MAC = mac
		b.state.Unlock()
		b.log.Info(fmt.Sprintf("MAC address of %s changed mac=%s", b.name, journal.Quote(mac.String())))
	}
	isolate := nc.ARPIsolation && !b.cfg.ARPIsolation // turned on: set it on both links now
	if nc.MTU == 0 && b.cfg.MTU != 0 {
		b.mtu.followed = 0 // MTU=inherit again: follow the parent's at once
	}
	if !nc.ARPIsolation && b.cfg.ARPIsolation {
		b.log.Info(fmt.Sprintf("ARP isolation of %s off; arp_ignore and arp_announce of %s and %s stay as they are", b.name, b.cfg.Parent, b.name))
	}
	b.cfg.MTU, b.cfg.CarrierOn, b.cfg.WaitParent, b.cfg.ARPIsolation = nc.MTU, nc.CarrierOn, nc.WaitParent, nc.ARPIsolation
	b.cfg.BroadcastLimit = nc.BroadcastLimit
	b.rl().SetStormLimit(nc.BroadcastLimit)
	if b.kpath != nil {
		_ = b.kpath.SetStormLimit(nc.BroadcastLimit)
	}
	if pathChanged {
		b.log.Info(fmt.Sprintf("Data path of %s set to %s", b.name, dataPathOf(b.kind, nc.DataPath)))
		b.cfg.DataPath = nc.DataPath
	}
	if parentChanged {
		b.log.Info(fmt.Sprintf("Parent of %s changed from %s to %s", b.name, b.cfg.Parent, nc.Parent))
		b.cfg.Parent = nc.Parent
		b.state.Lock()
		b.state.st.Parent = nc.Parent
		b.state.Unlock()
	}
	if macChanged || parentChanged || pathChanged {
		if st.ParentIfIndex != 0 {
			b.detach()
		}
		var flags attachFlags
		if isolate {
			flags |= isolateTAP
		}
		if macChanged {
			flags |= announceMAC
		}
		if l, err := b.links.LinkByName(b.cfg.Parent); err != nil {
			b.isolateARP(nil, isolate)
			b.log.Warn(fmt.Sprintf("Parent %s does not exist; %s has no carrier until it appears", b.cfg.Parent, b.name))
		} else if err := b.attach(l, flags); err != nil {
			b.setError(fmt.Errorf("attach to %s: %w", b.cfg.Parent, err))
		} else {
			b.log.Info(fmt.Sprintf("Attached %s into %s mac=%s", b.name, b.cfg.Parent, journal.Quote(b.cfg.MAC.String())))
		}
		if b.cfg.MTU != 0 {
			b.setMTU(b.cfg.MTU)
		}
		return nil
	}
	if isolate {
		var parent *Link
		if st.ParentIfIndex != 0 {
			if l, err := b.links.LinkByIndex(st.ParentIfIndex); err == nil {
				parent = &l
			}
		}
		b.isolateARP(parent, true)
	}
	carrier := b.tapCarrier(st.ParentCarrier)
	if carrier != st.Carrier {
		if err := b.dev().SetCarrier(carrier); err != nil {
			b.setError(err)
		} else {
			b.state.Lock()
			b.state.st.Carrier = carrier
			b.state.Unlock()
		}
	}
	// An explicit MTU wins, also over one someone else set since; with
	// the parent's, one someone set lower stays (see Config.MTU).
	if b.cfg.MTU != 0 {
		b.setMTU(b.cfg.MTU)
	} else {
		b.followMTU(b.parentMTU())
	}
	return nil
}

// TAPFd returns a new descriptor for the TAP, for systemd's fd store; the
// caller closes it (unix.Close) once handed over. A bridge of the veth kind
// has none: the error wraps errors.ErrUnsupported (store nothing).
func (b *Bridge) TAPFd() (int, error) { return b.dev().Dup() }

// Status returns a snapshot of the bridge's state.
func (b *Bridge) Status() Status {
	b.state.Lock()
	defer b.state.Unlock()
	return b.state.st
}

// Counters returns the live counters.
func (b *Bridge) Counters() *Counters { return &b.counters }
