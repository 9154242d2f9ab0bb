package bridge

import (
	"errors"
	"fmt"
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

// Opener opens a bridge's two devices: the kernel's in the default
// implementation (OpenTAP, AdoptTAP, OpenParentSocket; see Config.Opener).
type Opener interface {
	// CreateTAP creates the TAP interface name, which exists while the device is open; the error wraps ErrNameInUse if the name is taken.
	CreateTAP(name string) (TAPDevice, error)
	// AdoptTAP takes over the open TAP descriptor f and closes f whatever happens; the error wraps ErrNotTAP if f is not (or no longer) one.
	AdoptTAP(f *os.File) (TAPDevice, error)
	// OpenParentSocket opens the filtered socket for frames to and from mac on the parent with ifindex ifindex (named name, for errors).
	OpenParentSocket(ifindex int, name string, mac net.HardwareAddr) (ParentIO, error)
}

// TAPDevice is the virtual interface's side of the relay, as a bridge uses it.
type TAPDevice interface {
	FrameIO
	// Name returns the interface's name as it was when the device was opened.
	Name() string
	// SetCarrier turns the interface's carrier on or off.
	SetCarrier(on bool) error
	// Dup returns a new close-on-exec descriptor for the device, which the caller closes (unix.Close).
	Dup() (int, error)
	// Offloads lists the offloads the kernel accepted (csum, tso4, …).
	Offloads() []string
}

// ParentIO is the parent's side of the relay, as a bridge uses it.
type ParentIO interface {
	FrameIO
	// Dropped returns how many frames were dropped because the receive queue was full, since the last call.
	Dropped() uint64
}
