package bridge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
)

// Link is what a bridge knows of a network interface: the attributes of a
// link message (RTM_NEWLINK) that it uses.
type Link struct {
	Index        int
	Name         string
	MTU          int
	HardwareAddr net.HardwareAddr
	// Up is IFF_UP: the link is administratively up.
	Up bool
	// LowerUp is IFF_LOWER_UP: the link has a carrier.
	LowerUp bool
	// Promiscuity is the link's promiscuity count (IFLA_PROMISCUITY).
	Promiscuity int
	// EncapType is the link's hardware type (ifinfomsg.ifi_type,
	// ARPHRD_*) as netlink names it: "ether" for an Ethernet device,
	// "loopback", "none" (a tun in L3 mode, wireguard), "ipip", …; ""
	// when unknown, which is taken as Ethernet.
	EncapType string
	// Kind is the link's type (IFLA_INFO_KIND: "veth", "tun", …; "" for
	// a device without one, such as a physical NIC).
	Kind string
	// Alias is the link's alias (IFLA_IFALIAS), "" if none.
	Alias string
	// PeerIndex is IFLA_LINK: for a veth end, its peer's ifindex (in the
	// namespace PeerNetnsID names); 0 if none.
	PeerIndex int
	// PeerNetnsID is IFLA_LINK_NETNSID: the id this namespace has for the
	// one PeerIndex lives in, or -1 when that is this namespace.
	PeerNetnsID int
}

// Carrier reports whether the link is up with a carrier (IFF_UP and
// IFF_LOWER_UP).
func (l Link) Carrier() bool { return l.Up && l.LowerUp }

// LinkEvent is one link notification.
type LinkEvent struct {
	// Link is the link as the notification describes it.
	Link Link
	// Deleted is set when the link is gone (RTM_DELLINK); otherwise the
	// link is new or changed (RTM_NEWLINK).
	Deleted bool
	// NewNetnsID is IFLA_NEW_NETNSID of an RTM_DELLINK: the link did not
	// go but moved to the namespace this one knows by that id; -1 for a
	// deletion (and for every RTM_NEWLINK).
	NewNetnsID int
	// NewIndex is IFLA_NEW_IFINDEX of a move: the link's ifindex in its
	// new namespace (0 if the kernel did not say).
	NewIndex int
}

// Moved reports whether the event is a move to another namespace rather
// than a deletion.
func (ev LinkEvent) Moved() bool { return ev.Deleted && ev.NewNetnsID >= 0 }

// OwnNetns is the namespace id that stands for the bridge's own namespace
// in the LinkControl methods that take one (LinkByIndexAt, …).
const OwnNetns = -1

// VethSpec is a veth pair to create (LinkAddVeth).
type VethSpec struct {
	// Name, MAC and MTU are the virtual NIC's (the end users see).
	Name string
	MAC  net.HardwareAddr
	MTU  int
	// Namespace, if not nil, is the network namespace Name is created in
	// (the peer stays in the bridge's own).
	Namespace *os.File
	// Peer and PeerAlias name the other end, which the bridge relays.
	Peer, PeerAlias string
}

// DevConf names one of a link's IPv4 settings, net.ipv4.conf.IF.NAME, by
// its IPV4_DEVCONF_* id of <linux/ip.h> (which golang.org/x/sys/unix does
// not define): the attribute type in IFLA_AF_SPEC → AF_INET →
// IFLA_INET_CONF.
type DevConf int

const (
	DevConfARPAnnounce DevConf = 18 // IPV4_DEVCONF_ARP_ANNOUNCE: arp_announce
	DevConfARPIgnore   DevConf = 19 // IPV4_DEVCONF_ARP_IGNORE: arp_ignore
)

// String returns the setting's sysctl name (arp_ignore), or devconf-ID for
// one the bridge does not use.
func (c DevConf) String() string {
	switch c {
	case DevConfARPAnnounce:
		return "arp_announce"
	case DevConfARPIgnore:
		return "arp_ignore"
	}
	return fmt.Sprintf("devconf-%d", int(c))
}

// InetConf is a set of a link's IPv4 settings (see DevConf).
type InetConf map[DevConf]uint32

// ErrLinkNotFound is wrapped by the error of a LinkControl lookup when no
// such link exists.
var ErrLinkNotFound = errors.New("link not found")

// LinkControl is what a bridge asks of the kernel's link table: netlink in
// the default implementation (see Config.Links). Links are named by ifindex
// once found, so that a rename does not lose them.
type LinkControl interface {
	// LinkByName returns the link named name; the error wraps ErrLinkNotFound if there is none.
	LinkByName(name string) (Link, error)
	// LinkByIndex returns the link with ifindex index; the error wraps ErrLinkNotFound if there is none.
	LinkByIndex(index int) (Link, error)
	// LinkSetHardwareAddr sets the MAC address of link index.
	LinkSetHardwareAddr(index int, mac net.HardwareAddr) error
	// LinkSetMTU sets the MTU of link index.
	LinkSetMTU(index, mtu int) error
	// LinkSetUp brings link index up (IFF_UP).
	LinkSetUp(index int) error
	// LinkInetConf returns link index's own IPv4 settings (net.ipv4.conf.IF.*), not the effective ones (the kernel also weighs conf/all).
	LinkInetConf(index int) (InetConf, error)
	// LinkSetInetConf sets some of link index's IPv4 settings; the kernel then announces the link as changed (RTM_NEWLINK), changed or not.
	LinkSetInetConf(index int, conf InetConf) error
	// LinkAddrs returns link index's usable addresses, IPv4 and IPv6 (not tentative, not failed duplicate detection).
	LinkAddrs(index int) ([]netip.Addr, error)
	// LinkSetDown brings link index down (clears IFF_UP).
	LinkSetDown(index int) error
	// LinkDel deletes link index (a veth end takes its peer with it).
	LinkDel(index int) error
	// LinkAddVeth creates the pair v describes, the NIC up (in its namespace: creation applies the flags there), and prepares the peer for relaying, still down: MTU 65535, alias, no IPv6 addresses (addr_gen_mode none), NOARP, no multicast.
	LinkAddVeth(v VethSpec) error
	// LinkSetNamespace moves link index into the network namespace open as ns and, in the same request, sets its MTU there (unless 0) and brings it up there: the kernel applies a request's MTU and flags after its move, and no other request reaches a link in another namespace.
	LinkSetNamespace(index int, ns *os.File, mtu int) error
	// NamespaceID returns the id this namespace has for the one open as ns, assigning one if it has none.
	NamespaceID(ns *os.File) (int, error)
	// LinkByIndexAt is LinkByIndex in the namespace with id nsid (OwnNetns: this one), without entering it (IFLA_TARGET_NETNSID, which RTM_GETLINK honours; RTM_SETLINK takes it for "move there", so links elsewhere are only looked at, never changed).
	LinkByIndexAt(nsid, index int) (Link, error)
	// LinkByNameAt is LinkByName in the namespace with id nsid (see LinkByIndexAt).
	LinkByNameAt(nsid int, name string) (Link, error)
	// LinkSubscribe starts delivering the notifications of every link's changes.
	LinkSubscribe() (LinkSubscription, error)
	// Close releases the control; subscriptions it started are closed separately.
	Close() error
}

// LinkSubscription is a stream of link notifications from a LinkControl.
type LinkSubscription interface {
	// Events delivers the notifications in order; it is closed when the subscription is lost (some were missed: look again).
	Events() <-chan LinkEvent
	// Close ends the subscription (Events is then no longer served); it is idempotent.
	Close()
}

// Opener opens a bridge's devices: the kernel's in the default
// implementation (OpenTAP, AdoptTAP, OpenParentSocket, OpenPeerSocket;
// see Config.Opener).
type Opener interface {
	// CreateTAP creates the TAP interface name, which exists while the device is open; the error wraps ErrNameInUse if the name is taken.
	CreateTAP(name string) (Device, error)
	// AdoptTAP takes over the open TAP descriptor f and closes f whatever happens; the error wraps ErrNotTAP if f is not (or no longer) one.
	AdoptTAP(f *os.File) (Device, error)
	// OpenParentSocket opens the filtered socket for frames to and from mac on the parent with ifindex ifindex (named name, for errors).
	OpenParentSocket(ifindex int, name string, mac net.HardwareAddr) (ParentIO, error)
	// OpenPeerSocket opens the socket that relays a veth pair through its peer, ifindex ifindex (named name): what the virtual NIC sends is read from it, what is written to it the virtual NIC receives.
	OpenPeerSocket(ifindex int, name string) (ParentIO, error)
	// ClaimVeth claims the veth pair of the virtual NIC name for this
	// process until the Closer is closed (or the process ends); the error
	// wraps ErrNameInUse if another vethd holds the claim. A veth pair has
	// no owner of its own (a TAP's descriptor is one): without the claim,
	// two vethd started at once for one name both relay it.
	ClaimVeth(name string) (io.Closer, error)
}

// Device is the virtual interface's side of the relay, as a bridge uses it:
// a TAP's descriptor, or the socket on a veth pair's peer.
type Device interface {
	FrameIO
	// Name returns the interface's name as it was when the device was opened.
	Name() string
	// SetCarrier turns the interface's carrier on or off.
	SetCarrier(on bool) error
	// Dup returns a new close-on-exec descriptor for the device, which the caller closes (unix.Close); the error wraps errors.ErrUnsupported for a kind that has none.
	Dup() (int, error)
	// Offloads lists the offloads frames from the interface may use (csum, tso4, …).
	Offloads() []string
}

// ParentIO is the parent's side of the relay, as a bridge uses it.
type ParentIO interface {
	FrameIO
	// Dropped returns how many frames were dropped because the receive queue was full, since the last call.
	Dropped() uint64
}
