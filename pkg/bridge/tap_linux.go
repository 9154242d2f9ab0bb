package bridge

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TAP is the virtual interface's character device: frames the host sends on
// the interface are read from it, frames written to it are received by the
// interface. Every frame starts with a virtio_net_hdr. Its fields are set
// when it is opened and read-only after.
type TAP struct {
	*pollFD
	name     string
	offloads []string // what the kernel accepted (csum, tso4, …)
}

var (
	_ FrameIO = (*TAP)(nil)
	_ Device  = (*TAP)(nil)
)

// ErrNameInUse is returned by OpenTAP when a network interface of that name
// already exists.
var ErrNameInUse = errors.New("interface name already in use")

// OpenTAP creates the TAP interface name with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR
// and IFF_TUN_EXCL (fail if the name is taken), enables checksum and
// segmentation offloads, and puts its fd in the netpoller. The interface
// exists as long as the returned TAP is open (it is not persistent).
//
// Equivalent to: `ip tuntap add dev $name mode tap vnet_hdr` (but owned by
// this process).
func OpenTAP(name string) (*TAP, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TAP %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create TAP %s: %w", name, ErrNameInUse)
		}
		return nil, fmt.Errorf("create TAP %s: %w", name, err)
	}
	return newTAP(fd, name)
}

// newTAP finishes a TAP attached to fd, which it owns (and closes on error):
// vnet header size, offloads, non-blocking, into the netpoller.
func newTAP(fd int, name string) (*TAP, error) {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set %s vnet header size: %w", name, err)
	}
	offloads, err := setOffloads(fd, name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set %s non-blocking: %w", name, err)
	}
	p, err := newPollFD(fd, "tap:"+name, false)
	if err != nil {
		return nil, err
	}
	return &TAP{pollFD: p, name: name, offloads: offloads}, nil
}

// ErrNotTAP is returned by AdoptTAP for a descriptor that is not an
// attached TAP device with vnet headers (or whose interface was deleted).
var ErrNotTAP = errors.New("not a TAP interface with vnet headers")

// AdoptTAP takes over an open TAP descriptor, such as the one systemd's fd
// store hands back after a restart: it checks that f is attached to a TAP
// interface set up like OpenTAP's (TUNGETIFF), sets the offloads again and
// puts the fd in the netpoller. The interface, its ifindex and its
// addresses are the ones that already exist. AdoptTAP owns f from then on,
// and closes it on error.
//
// Equivalent to: nothing in `ip`; it is the inverse of handing the fd over.
func AdoptTAP(f *os.File) (*TAP, error) {
	defer f.Close()
	// A descriptor of our own, so that f can be closed whatever happens.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("adopt TAP %s: %w", f.Name(), err)
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		unix.Close(fd)
		// EBADFD: the interface was deleted; EINVAL/ENOTTY: not a tun fd.
		return nil, fmt.Errorf("adopt TAP from %s: %w (%w)", f.Name(), ErrNotTAP, err)
	}
	name := ifr.Name()
	flags := ifr.Uint16()
	if flags&(unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR) != unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR {
		unix.Close(fd)
		return nil, fmt.Errorf("adopt %s: %w (flags %#x)", name, ErrNotTAP, flags)
	}
	return newTAP(fd, name)
}

// Dup returns a new descriptor for the TAP (close-on-exec), to hand to
// systemd's fd store: the interface then outlives this process until
// systemd closes its copy. It is a raw fd on purpose: an *os.File's Fd
// method would make the shared file description blocking. The caller
// closes it with unix.Close. See Device.
func (t *TAP) Dup() (int, error) {
	nfd := -1
	var err error
	cerr := t.rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
	})
	if cerr != nil {
		return -1, fmt.Errorf("dup %s fd: %w", t.name, cerr)
	}
	if err != nil {
		return -1, fmt.Errorf("dup %s fd: %w", t.name, err)
	}
	return nfd, nil
}

// setOffloads tells the kernel which offloads vethd accepts in frames read
// from the TAP on fd (named name): checksum, TSO (v4, v6, ECN) and, where
// the kernel has it, UDP segmentation. It returns the ones accepted. The
// parent's socket passes them on untouched.
func setOffloads(fd int, name string) ([]string, error) {
	base := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	if unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, base|unix.TUN_F_USO4|unix.TUN_F_USO6) == nil {
		return []string{"csum", "tso4", "tso6", "tso-ecn", "uso4", "uso6"}, nil
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, base); err != nil {
		return nil, fmt.Errorf("set %s offloads: %w", name, err)
	}
	return []string{"csum", "tso4", "tso6", "tso-ecn"}, nil
}

// Name returns the interface name, as it was when the TAP was opened or
// adopted. See Device.
func (t *TAP) Name() string { return t.name }

// Offloads returns the offloads the kernel accepted (csum, tso4, …). See
// Device.
func (t *TAP) Offloads() []string { return t.offloads }

// SetCarrier turns the interface's carrier on or off (TUNSETCARRIER), so
// DHCP clients and network managers see the parent's link state. See
// Device.
//
// Equivalent to: `ip link set $name carrier on|off`.
func (t *TAP) SetCarrier(on bool) error {
	v := 0
	if on {
		v = 1
	}
	var err error
	cerr := t.rc.Control(func(fd uintptr) {
		err = unix.IoctlSetPointerInt(int(fd), unix.TUNSETCARRIER, v)
	})
	if cerr != nil {
		return fmt.Errorf("set %s carrier: %w", t.name, cerr)
	}
	if err != nil {
		return fmt.Errorf("set %s carrier: %w", t.name, err)
	}
	return nil
}

// isTAPGone reports whether a TAP read error means the interface was
// deleted while vethd held it open (the fd is then detached: EBADFD).
func isTAPGone(err error) bool { return errors.Is(err, unix.EBADFD) }

// InOwnNetns reports whether the TAP's interface is in the calling
// process's network namespace: the namespace of the device (TUNGETDEVNETNS)
// is this process's. It tells a moved TAP that came back from another of
// the same name.
func (t *TAP) InOwnNetns() bool {
	nsfd := -1
	cerr := t.rc.Control(func(fd uintptr) {
		nsfd, _ = unix.IoctlRetInt(int(fd), unix.TUNGETDEVNETNS)
	})
	if cerr != nil || nsfd < 0 {
		return false
	}
	defer unix.Close(nsfd)
	var dev, own unix.Stat_t
	if unix.Fstat(nsfd, &dev) != nil || unix.Stat("/proc/thread-self/ns/net", &own) != nil {
		return false
	}
	return dev.Dev == own.Dev && dev.Ino == own.Ino
}

// NetnsFile returns the network namespace the TAP's interface is in
// (TUNGETDEVNETNS), open; the caller closes it.
func (t *TAP) NetnsFile() (*os.File, error) {
	nsfd := -1
	var err error
	cerr := t.rc.Control(func(fd uintptr) {
		nsfd, err = unix.IoctlRetInt(int(fd), unix.TUNGETDEVNETNS)
	})
	if cerr != nil {
		return nil, fmt.Errorf("%s: %w", t.name, cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: TUNGETDEVNETNS: %w", t.name, err)
	}
	return os.NewFile(uintptr(nsfd), "netns of "+t.name), nil
}
