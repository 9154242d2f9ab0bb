package bridge

import (
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/vethd/vethd/internal/journal"
)

// PeerName returns the name of the peer of a veth-kind virtual NIC named
// name: "vd-" + name when that fits IFNAMSIZ (name of up to 12
// characters), else "vd-", the first 4 characters of name and the 8 hex
// digits of FNV-1a-32(name), 15 characters in all.
func PeerName(name string) string {
	if len(name) <= 12 {
		return "vd-" + name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("vd-%s%08x", name[:4], h.Sum32())
}

// PeerAlias returns the alias (IFLA_IFALIAS) by which a bridge knows the
// peer of the veth-kind virtual NIC name as its own.
func PeerAlias(name string) string { return "vethd peer of " + name }

// vethOffloads is what frames from a veth-kind virtual NIC may use: the
// peer's socket describes checksum offload, TSO and (Linux ≥ 6.2) UDP
// segmentation in the virtio_net_hdr, so the NIC keeps veth's default
// offloads and the relay passes its super-frames whole.
var vethOffloads = []string{"csum", "tso4", "tso6", "tso-ecn", "uso4", "uso6"}

// vethDevice is the Device of the veth kind: the socket on the pair's peer
// (the relay's side) and the peer's up/down, which is the virtual NIC's
// carrier. Its fields are set when it is made and read-only after.
type vethDevice struct {
	ParentIO              // the socket on the peer
	name      string      // the virtual NIC's name
	peerIndex int         // the peer's ifindex (in the bridge's namespace)
	links     LinkControl // sets the peer up and down
	stopGuard func()      // ends the watch of the peer's nftables guard (nil: unguarded)
}

var (
	_ Device      = (*vethDevice)(nil)
	_ BatchReader = (*vethDevice)(nil)
)

// ReadBatch reads a batch from the peer socket (recvmmsg), or one frame
// if the socket cannot read batches. See BatchReader.
func (d *vethDevice) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if br, ok := d.ParentIO.(BatchReader); ok {
		return br.ReadBatch(bufs, sizes)
	}
	n, err := d.ParentIO.ReadFrame(bufs[0])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

// Name returns the virtual NIC's name. See Device.
func (d *vethDevice) Name() string { return d.name }

// SetCarrier gives the virtual NIC a carrier, or takes it away, by bringing
// its peer up or down: a veth end has a carrier exactly while its peer is
// up. See Device.
//
// Equivalent to: `ip link set $peer up|down`.
func (d *vethDevice) SetCarrier(on bool) error {
	var err error
	if on {
		err = d.links.LinkSetUp(d.peerIndex)
	} else {
		err = d.links.LinkSetDown(d.peerIndex)
	}
	if err != nil {
		return fmt.Errorf("set %s carrier (%s %s): %w", d.name, PeerName(d.name), map[bool]string{true: "up", false: "down"}[on], err)
	}
	return nil
}

// Dup fails: a veth pair outlives vethd by itself, it has no descriptor to
// keep. See Device.
func (d *vethDevice) Dup() (int, error) {
	return -1, fmt.Errorf("%s is a veth pair, no descriptor to store: %w", d.name, errors.ErrUnsupported)
}

// Close closes the peer socket and stops watching the peer's guard, which
// stays with the peer (a released pair keeps it; deleting the peer removes
// it). See Device.
func (d *vethDevice) Close() error {
	if d.stopGuard != nil {
		d.stopGuard()
	}
	return d.ParentIO.Close()
}

// Offloads returns vethOffloads. See Device.
func (d *vethDevice) Offloads() []string { return vethOffloads }

// openVeth creates the veth pair of cfg (the virtual NIC with cfg.MAC and
// the MTU it should have, up; the peer prepared by LinkAddVeth, down) and
// opens the socket on its peer; or, when the peer is there already with
// this NIC's alias and the NIC at its other end (a previous vethd released
// it), adopts the pair: the NIC keeps its ifindex, addresses and MAC, its
// MTU and up are brought in line. A peer without its NIC (or with a NIC
// renamed or moved elsewhere) is deleted and the pair created again. A
// link of either name that is not this pair's is ErrNameInUse. created
// says whether the pair is new (Start's undo deletes only that). Either
// way the peer gets its nftables guard (guard_linux.go), kept in place
// while the device is open.
func (b *Bridge) openVeth(cfg Config, parent *Link) (dev Device, link Link, created bool, err error) {
	peerName, alias := PeerName(cfg.Name), PeerAlias(cfg.Name)
	// The claim first: a second vethd for this name must not adopt (and
	// relay) the pair the first is creating, nor delete it. Held until
	// the bridge stops (b.releaseClaim); a re-create keeps it.
	if b.claim == nil {
		c, err := b.opener.ClaimVeth(cfg.Name)
		if err != nil {
			return nil, Link{}, false, err
		}
		b.claim = c
		defer func() {
			if err != nil {
				b.releaseClaim()
			}
		}()
	}
	adopt := false
	if p, err := b.links.LinkByName(peerName); err == nil {
		if p.Kind != "veth" || p.Alias != alias {
			return nil, Link{}, false, fmt.Errorf("create veth pair %s: its peer's name %s: %w", cfg.Name, peerName, ErrNameInUse)
		}
		if p.PeerIndex != 0 && p.PeerNetnsID == b.homeNetns {
			if l, err := b.linkByIndex(p.PeerIndex); err == nil && l.Name == cfg.Name {
				adopt, b.peer = true, p
			}
		} else if p.PeerIndex != 0 && p.PeerNetnsID != OwnNetns {
			// NAME was given to another namespace (a container) while
			// vethd restarted: adopted there, under whatever name it
			// has there, as a move.
			if _, err := b.links.LinkByIndexAt(p.PeerNetnsID, p.PeerIndex); err == nil {
				adopt, b.peer, b.devNetns = true, p, p.PeerNetnsID
			}
		}
		if !adopt {
			b.log.Warn(fmt.Sprintf("Found %s, the peer of %s, without %s at its other end; deleting the pair and creating it again", peerName, cfg.Name, cfg.Name))
			if err := b.links.LinkDel(p.Index); err != nil && !errors.Is(err, ErrLinkNotFound) {
				return nil, Link{}, false, fmt.Errorf("delete %s: %w", peerName, err)
			}
		}
	} else if !errors.Is(err, ErrLinkNotFound) {
		return nil, Link{}, false, fmt.Errorf("find %s: %w", peerName, err)
	}

	if adopt {
		if b.devNetns != b.homeNetns {
			if link, err = b.links.LinkByIndexAt(b.devNetns, b.peer.PeerIndex); err != nil {
				return nil, Link{}, false, fmt.Errorf("find %s: %w", cfg.Name, err)
			}
			b.log.Info(fmt.Sprintf("Adopted %s, a veth pair with %s left by an earlier vethd, in network namespace netnsid=%d (named %s there) ifindex=%d mac=%s",
				cfg.Name, peerName, b.devNetns, link.Name, link.Index, journal.Quote(link.HardwareAddr.String())))
		} else {
			if link, err = b.adoptLink(cfg.Name, cfg, parent); err != nil {
				return nil, Link{}, false, err
			}
			b.log.Info(fmt.Sprintf("Adopted %s, a veth pair with %s left by an earlier vethd ifindex=%d mac=%s",
				cfg.Name, peerName, link.Index, journal.Quote(link.HardwareAddr.String())))
		}
	} else {
		if link, err = b.createVeth(cfg, parent); err != nil {
			return nil, Link{}, false, err
		}
		created = true
	}
	sock, err := b.opener.OpenPeerSocket(b.peer.Index, b.peer.Name)
	if err != nil {
		if created {
			_ = b.links.LinkDel(b.peer.Index)
		}
		return nil, Link{}, false, err
	}
	d := &vethDevice{ParentIO: sock, name: cfg.Name, peerIndex: b.peer.Index, links: b.links}
	// Keep what the NIC sends out of this namespace's own IP stack: the
	// relay's socket sees it before the guard drops it.
	if g, ok := b.links.(peerGuards); ok {
		d.stopGuard = g.guardPeer(b.peer.Name, cfg.Name, b.log)
	}
	return d, link, created, nil
}

// createVeth creates the pair of cfg in the virtual NIC's home namespace
// (b.homeNetns, b.nsFile), the NIC up; the peer (b.peer) stays
// down, without a carrier for the NIC, until the bridge attaches.
//
// Equivalent to: `ip link add $name address $mac mtu $mtu up [netns $ns]
// type veth peer name vd-$name …`.
func (b *Bridge) createVeth(cfg Config, parent *Link) (Link, error) {
	if b.homeNetns == OwnNetns {
		if _, err := b.links.LinkByName(cfg.Name); err == nil {
			return Link{}, fmt.Errorf("create veth pair %s: %w", cfg.Name, ErrNameInUse)
		}
	}
	mtu := cfg.MTU
	if mtu == 0 && parent != nil {
		mtu = parent.MTU
	}
	spec := VethSpec{Name: cfg.Name, MAC: cfg.MAC, MTU: mtu, Namespace: b.nsFile, Peer: PeerName(cfg.Name), PeerAlias: PeerAlias(cfg.Name)}
	if err := b.links.LinkAddVeth(spec); err != nil {
		return Link{}, err
	}
	p, err := b.links.LinkByName(spec.Peer)
	if err == nil && p.PeerIndex == 0 {
		err = fmt.Errorf("%s has no other end", spec.Peer)
	}
	if err != nil {
		return Link{}, fmt.Errorf("find %s, the peer of %s: %w", spec.Peer, cfg.Name, err)
	}
	b.peer = p
	fail := func(err error) (Link, error) {
		_ = b.links.LinkDel(p.Index)
		return Link{}, err
	}
	l, err := b.linkByIndex(p.PeerIndex)
	if err != nil {
		return fail(fmt.Errorf("find %s: %w", cfg.Name, err))
	}
	return l, nil
}

// VethClaimAddr is the abstract unix socket address ("@" first) whose
// owner relays the veth pair of the virtual NIC name (Opener.ClaimVeth).
func VethClaimAddr(name string) string { return "@vethd/veth/" + name }

// releaseClaim gives up the veth pair's claim, if held. Called by the
// bridge's owner (Start's undo, stop).
func (b *Bridge) releaseClaim() {
	if b.claim != nil {
		b.claim.Close()
		b.claim = nil
	}
}
