package bridge

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vethd/vethd/internal/journal"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The kernel data path (DataPathKernel, for the veth kind): the programs
// of bpf/kpath.c attached with tcx to the parent's ingress (from_wire)
// and egress (from_host) and to the peer's ingress (from_nic), so that
// frames between the parent and the pair never pass through vethd. The
// bridge stays the control plane: it makes the pair, follows the links,
// announces, and keeps the programs' settings (the virtual MAC, the storm
// limit, whether the NIC is in another namespace) in step. See
// docs/design.md, "The kernel data path".
//
// kernelParent is the parent side of such a bridge as the relay sees it
// (a ParentIO): a socket on the parent that only sends (the
// announcements; it receives nothing) and holds the virtual MAC's
// unicast membership and all-multicast, as the relay's socket does, so a
// NIC with a unicast filter accepts the frames; and the programs. While
// it is open, the peer's socket (the relay's device side) drops every
// frame in its filter, since from_nic moves them (the bridge gives it
// its frames back when it relays again: Bridge.peerFilter); Close
// detaches the programs and adds their counts to the bridge's.
type kernelParent struct {
	sock     *ParentSocket // send-only, with the memberships
	inst     *kpathInstance
	slot     uint32 // the NIC's in inst
	peer     uint32 // the peer's ifindex (by_peer's key)
	mac      kpathMacKey
	nicLink  link.Link // from_nic on the peer
	counters *Counters
	// src is what Counters.Snapshot adds while the programs run.
	src *counterSource

	mu      sync.Mutex // cfg, closed
	cfg     kpathConfig
	closed  bool
	closing sync.Once
}

// maxKpathNICs is how many NICs one kpathInstance serves (bpf/kpath.c's
// MAX_NICS); the next bridge on the parent gets a further instance.
const maxKpathNICs = 64

// kpathInstance is one loaded copy of bpf/kpath.c, attached to a parent's
// ingress and egress, serving the veth-kind bridges of this process on
// that parent (up to maxKpathNICs), each in a slot of its maps: however
// many bridges share the parent, each frame on it runs one program per
// direction (per instance) rather than one per bridge. from_nic, the
// same program, is attached to each bridge's peer.
type kpathInstance struct {
	key   kpathKey
	objs  kpathObjects
	links []link.Link // from_wire and from_host on the parent
	slots [maxKpathNICs]bool
	used  uint32 // one more than the highest slot in use (the hub map's)
	n     int    // slots in use
}

// kpathKey is a parent: its network namespace (inode) and ifindex.
type kpathKey struct {
	netns   uint64
	ifindex int
}

// kpathInstances are this process's instances, by parent; the lock also
// orders every change to their maps.
var kpathInstances struct {
	sync.Mutex
	m map[kpathKey][]*kpathInstance
}

var _ ParentIO = (*kernelParent)(nil)

// kpath counter slots, as bpf/kpath.c's enum.
const (
	kcRxPackets = iota
	kcRxBytes
	kcTxPackets
	kcTxBytes
	kcTxRunt
	kcTxSpoof
	kcRxStormARP
	kcRxStormND
	kcRxStormDHCP
	kcRxStormOther
	kcRxCloneError
	numKpathCounters
)

// errKernelPath wraps every reason the kernel data path could not be set
// up; the bridge then relays (DataPathRelay) and says why.
var errKernelPath = errors.New("kernel data path unavailable")

// kernelPathSpec is what openKernelPath needs.
type kernelPathSpec struct {
	parent     Link             // the parent
	peer       int              // the peer's ifindex, beside the parent
	peerSock   ParentIO         // the relay's socket on the peer
	mac        net.HardwareAddr // the virtual MAC
	stormLimit int              // as Config.BroadcastLimit
	usePeer    bool             // the NIC is in another namespace than the parent
	// ownInstance: load an instance of the programs for this NIC alone,
	// as another process would (tests).
	ownInstance bool
}

// openKernelPath loads the programs, sets them up for s and attaches
// them; it opens the send-only socket on the parent first, so the
// memberships are in place before the first frame is redirected. An
// error wraps errKernelPath (and the kernel's reason: no tcx before
// Linux 6.6, bpf() refused, …); nothing is left behind.
func openKernelPath(s kernelPathSpec, c *Counters) (_ *kernelParent, err error) {
	sock, err := openPacketSocket(s.parent.Index, s.parent.Name, nil, s.mac)
	if err != nil {
		return nil, err
	}
	k := &kernelParent{sock: sock, counters: c, peer: uint32(s.peer)}
	copy(k.mac.Mac[:], s.mac)
	copy(k.cfg.Mac[:], s.mac)
	k.cfg.Peer, k.cfg.Parent = uint32(s.peer), uint32(s.parent.Index)
	k.cfg.UsePeer = boolBit(s.usePeer)
	k.cfg.StormNs = stormCost(s.stormLimit)
	kpathInstances.Lock()
	defer kpathInstances.Unlock()
	defer func() {
		if err != nil {
			k.release(false)
		}
	}()
	inst, slot, err := joinInstance(s.parent, s.ownInstance)
	if err != nil {
		return nil, err
	}
	k.inst, k.slot = inst, slot
	// A clean slot: no counts or storm debt of an earlier NIC's.
	if err := k.zeroSlot(); err != nil {
		return nil, fmt.Errorf("%w: clear the slot: %w", errKernelPath, err)
	}
	if err := inst.objs.Nics.Put(slot, &k.cfg); err != nil {
		return nil, fmt.Errorf("%w: settings: %w", errKernelPath, err)
	}
	if err := inst.objs.ByPeer.Put(k.peer, slot); err != nil {
		return nil, fmt.Errorf("%w: peer: %w", errKernelPath, err)
	}
	if ps, ok := s.peerSock.(*ParentSocket); ok {
		// The peer's frames are from_nic's from now on; what the
		// socket holds already is relayed to the parent through k.
		if err := ps.setFilter(dropAll); err != nil {
			return nil, fmt.Errorf("%w: peer socket filter: %w", errKernelPath, err)
		}
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: s.peer, Program: inst.objs.FromNic, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil, fmt.Errorf("%w: attach to %s's peer ingress (tcx, Linux 6.6 or later): %w", errKernelPath, s.parent.Name, err)
	}
	k.nicLink = l
	// The MAC last: from here on frames for it reach the NIC. (Another
	// bridge of this process with the same MAC on the parent loses its
	// unicast to this one, as with the relay's hub.)
	if err := inst.objs.ByMac.Put(&k.mac, slot); err != nil {
		return nil, fmt.Errorf("%w: MAC: %w", errKernelPath, err)
	}
	k.src = &counterSource{add: k.addTo, reset: k.resetCounters}
	c.extra.Store(k.src)
	return k, nil
}

// joinInstance returns an instance of the programs on parent with a free
// slot, taken, loading and attaching a new one if none has (or if own);
// under kpathInstances' lock.
func joinInstance(parent Link, own bool) (*kpathInstance, uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nil, 0, fmt.Errorf("%w: network namespace: %w", errKernelPath, err)
	}
	key := kpathKey{netns: st.Ino, ifindex: parent.Index}
	var inst *kpathInstance
	if !own {
		for _, in := range kpathInstances.m[key] {
			if in.n < maxKpathNICs {
				inst = in
				break
			}
		}
	}
	if inst == nil {
		in, err := newInstance(key, parent)
		if err != nil {
			return nil, 0, err
		}
		if kpathInstances.m == nil {
			kpathInstances.m = map[kpathKey][]*kpathInstance{}
		}
		kpathInstances.m[key] = append(kpathInstances.m[key], in)
		inst = in
	}
	var slot uint32
	for inst.slots[slot] {
		slot++
	}
	inst.slots[slot] = true
	inst.n++
	if slot+1 > inst.used {
		inst.used = slot + 1
		if err := inst.objs.Hub.Put(uint32(0), &kpathHub{Used: inst.used}); err != nil {
			inst.leave(slot)
			return nil, 0, fmt.Errorf("%w: instance: %w", errKernelPath, err)
		}
	}
	return inst, slot, nil
}

// newInstance loads the programs and attaches from_wire and from_host to
// parent.
func newInstance(key kpathKey, parent Link) (_ *kpathInstance, err error) {
	in := &kpathInstance{key: key}
	if err := loadKpathObjects(&in.objs, nil); err != nil {
		return nil, fmt.Errorf("%w: load the programs: %w", errKernelPath, err)
	}
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	for _, a := range []struct {
		prog *ebpf.Program
		at   ebpf.AttachType
		what string
	}{
		{in.objs.FromHost, ebpf.AttachTCXEgress, "egress"},
		{in.objs.FromWire, ebpf.AttachTCXIngress, "ingress"},
	} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: parent.Index, Program: a.prog, Attach: a.at})
		if err != nil {
			return nil, fmt.Errorf("%w: attach to %s's %s (tcx, Linux 6.6 or later): %w", errKernelPath, parent.Name, a.what, err)
		}
		in.links = append(in.links, l)
	}
	return in, nil
}

// leave frees slot; the last NIC to leave detaches the programs. Under
// kpathInstances' lock.
func (in *kpathInstance) leave(slot uint32) {
	if !in.slots[slot] {
		return
	}
	in.slots[slot] = false
	in.n--
	if in.n > 0 {
		used := in.used
		for used > 0 && !in.slots[used-1] {
			used--
		}
		if used != in.used && in.objs.Hub.Put(uint32(0), &kpathHub{Used: used}) == nil {
			in.used = used
		}
		return
	}
	list := kpathInstances.m[in.key]
	for i, x := range list {
		if x == in {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(kpathInstances.m, in.key)
	} else {
		kpathInstances.m[in.key] = list
	}
	in.close()
}

func (in *kpathInstance) close() {
	for _, l := range in.links {
		l.Close()
	}
	in.objs.Close()
}

// dropAll is a socket filter that keeps no frame.
var dropAll = []bpf.Instruction{bpf.RetConstant{Val: 0}}

// keepAll is a socket filter that keeps every frame whole.
var keepAll = []bpf.Instruction{bpf.RetConstant{Val: filterSnap}}

func boolBit(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}

// stormCost is a group frame's cost in kpath.c's buckets for a storm
// limit as Config.BroadcastLimit gives it: 1e9/limit ns, 0 for no limit.
func stormCost(limit int) uint64 {
	switch {
	case limit == 0:
		limit = DefaultBroadcastLimit
	case limit < 0:
		return 0
	}
	return uint64(time.Second) / uint64(limit)
}

// update changes the programs' settings with f, under the lock.
func (k *kernelParent) update(f func(*kpathConfig)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return net.ErrClosed
	}
	f(&k.cfg)
	return k.inst.objs.Nics.Put(k.slot, &k.cfg)
}

// SetStormLimit sets the programs' storm limit, as Relay.SetStormLimit.
func (k *kernelParent) SetStormLimit(limit int) error {
	return k.update(func(c *kpathConfig) { c.StormNs = stormCost(limit) })
}

// SetPeerMode says whether the NIC is in another namespace than the
// parent: from_wire then hands it its frames with bpf_redirect_peer
// (straight into the NIC's receive path), else through the peer's
// transmit (bpf_redirect_peer drops a frame whose NIC is in the parent's
// namespace).
func (k *kernelParent) SetPeerMode(other bool) error {
	return k.update(func(c *kpathConfig) { c.UsePeer = boolBit(other) })
}

// read returns the programs' counters, summed over the CPUs.
func (k *kernelParent) read() [numKpathCounters]uint64 {
	var out [numKpathCounters]uint64
	var per []uint64
	for i := range out {
		if k.inst.objs.Counters.Lookup(k.slot*numKpathCounters+uint32(i), &per) != nil {
			continue
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out
}

// addTo adds the programs' counters to s (Counters.Snapshot).
func (k *kernelParent) addTo(s *Stats) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	addKpath(s, k.read())
}

// addKpath adds kpath counts v to s.
func addKpath(s *Stats, v [numKpathCounters]uint64) {
	s.RxPackets += v[kcRxPackets]
	s.RxBytes += v[kcRxBytes]
	s.TxPackets += v[kcTxPackets]
	s.TxBytes += v[kcTxBytes]
	s.TxDrops[DropRunt.String()] += v[kcTxRunt]
	s.TxDrops[DropSpoof.String()] += v[kcTxSpoof]
	for i, r := range stormDrop {
		s.RxDrops[r.String()] += v[kcRxStormARP+i]
	}
	s.RxDrops[DropWriteError.String()] += v[kcRxCloneError]
}

// resetCounters zeroes the programs' counters (Counters.Reset).
func (k *kernelParent) resetCounters() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	_ = k.zeroCounters()
}

// zeroCounters zeroes the NIC's slot of the counters.
func (k *kernelParent) zeroCounters() error {
	zero := make([]uint64, ebpf.MustPossibleCPU())
	for i := range uint32(numKpathCounters) {
		if err := k.inst.objs.Counters.Put(k.slot*numKpathCounters+i, zero); err != nil {
			return err
		}
	}
	return nil
}

// zeroSlot zeroes the NIC's counters and storm buckets.
func (k *kernelParent) zeroSlot() error {
	if err := k.zeroCounters(); err != nil {
		return err
	}
	for c := range uint32(numStormClasses) {
		if err := k.inst.objs.Storm.Put(k.slot*uint32(numStormClasses)+c, &kpathBucket{}); err != nil {
			return err
		}
	}
	return nil
}

// ReadFrame blocks until Close: the send-only socket receives nothing,
// and the frames from the parent go to the NIC in the kernel. See FrameIO.
func (k *kernelParent) ReadFrame(buf []byte) (int, error) { return k.sock.ReadFrame(buf) }

// WriteFrame sends a frame out of the parent (announcements, and what the
// peer's socket held when the programs took over). See FrameIO.
func (k *kernelParent) WriteFrame(frame []byte) error { return k.sock.WriteFrame(frame) }

// Dropped is 0: no queue of vethd's can overrun. See ParentIO.
func (k *kernelParent) Dropped() uint64 { return 0 }

// Close detaches the programs, adds their counts to the bridge's
// counters and closes the send-only socket. Idempotent.
func (k *kernelParent) Close() error {
	k.closing.Do(func() {
		kpathInstances.Lock()
		defer kpathInstances.Unlock()
		k.release(true)
	})
	return nil
}

// release undoes openKernelPath; fold: add the programs' counts to the
// bridge's counters first. Under kpathInstances' lock.
func (k *kernelParent) release(fold bool) {
	if in := k.inst; in != nil {
		// The MAC first, so no frame is redirected to the peer once
		// the bridge lets it go; then the peer's program.
		var slot uint32
		if in.objs.ByMac.Lookup(&k.mac, &slot) == nil && slot == k.slot {
			_ = in.objs.ByMac.Delete(&k.mac)
		}
		if in.objs.ByPeer.Lookup(k.peer, &slot) == nil && slot == k.slot {
			_ = in.objs.ByPeer.Delete(k.peer)
		}
	}
	if k.nicLink != nil {
		k.nicLink.Close()
	}
	k.mu.Lock()
	if fold && k.inst != nil {
		s := Stats{RxDrops: map[string]uint64{}, TxDrops: map[string]uint64{}}
		addKpath(&s, k.read())
		k.counters.add(s)
	}
	k.closed = true
	k.mu.Unlock()
	if k.src != nil {
		k.counters.extra.CompareAndSwap(k.src, nil)
	}
	if in := k.inst; in != nil {
		_ = in.objs.Nics.Put(k.slot, &kpathConfig{})
		in.leave(k.slot)
	}
	k.sock.Close()
}

// openParent opens the parent side for the virtual MAC mac on the parent
// with index ifindex, named name: the kernel data path where the bridge
// is configured for it (DataPathKernel, the veth kind's default) and the kernel
// allows it, else the relay's socket (Opener.OpenParentSocket). It
// records which in b.kpath and Status.DataPath, and gives the peer's
// socket its frames back when the relay takes them again. Called by the
// bridge's owner; the caller hands the result to the relay (SetParent),
// which closes the previous parent side.
func (b *Bridge) openParent(ifindex int, name string, mac net.HardwareAddr) (ParentIO, error) {
	// (Only with the kernel's Opener: a test's fake links have no
	// ifindexes to attach programs to.)
	if _, kernel := b.opener.(kernelOpener); kernel && dataPathOf(b.kind, b.cfg.DataPath) == DataPathKernel {
		var peerSock ParentIO
		if d, ok := b.dev().(*vethDevice); ok {
			peerSock = d.ParentIO
		}
		k, err := openKernelPath(kernelPathSpec{
			parent: Link{Index: ifindex, Name: name}, peer: b.peer.Index, peerSock: peerSock,
			mac: mac, stormLimit: b.cfg.BroadcastLimit, usePeer: b.devNetns != OwnNetns,
		}, &b.counters)
		if err == nil {
			b.log.Info(fmt.Sprintf("Kernel data path of %s on %s attached (tcx): its frames move in the kernel", b.name, name))
			b.kpathErr = ""
			b.setKernelPath(k)
			return k, nil
		}
		if !errors.Is(err, errKernelPath) {
			return nil, err // the parent's socket: as the relay's would fail
		}
		if msg := err.Error(); msg != b.kpathErr {
			b.kpathErr = msg
			line := fmt.Sprintf("%s relays through vethd instead of the kernel: err=%s", b.name, journal.Quote(msg))
			if b.cfg.DataPath == DataPathKernel {
				b.log.Warn(line) // asked for
			} else {
				b.log.Info(line) // the veth kind's default
			}
		}
	}
	sock, err := b.opener.OpenParentSocket(ifindex, name, mac)
	if err != nil {
		return nil, err
	}
	b.setKernelPath(nil)
	return sock, nil
}

// setKernelPath records k (nil: the relay) as the data path in use. When
// the relay takes over from the kernel path, the peer's socket gets its
// frames back. Called by the bridge's owner.
func (b *Bridge) setKernelPath(k *kernelParent) {
	if k == nil && b.kind == KindVeth {
		if d, ok := b.dev().(*vethDevice); ok {
			if ps, ok := d.ParentIO.(*ParentSocket); ok && (b.kpath != nil || b.kpathErr != "") {
				_ = ps.setFilter(keepAll)
			}
		}
	}
	b.kpath = k
	b.kpathPeer = b.devNetns != OwnNetns
	dp := DataPathRelay
	if k != nil {
		dp = DataPathKernel
	}
	b.state.Lock()
	changed := b.state.st.DataPath != dp
	b.state.st.DataPath = dp
	b.state.Unlock()
	if changed {
		b.changed()
	}
}

// syncKernelPath keeps the kernel path's settings in step with where the
// NIC is (SetPeerMode). Called by the bridge's owner after each event.
func (b *Bridge) syncKernelPath() {
	if b.kpath == nil {
		return
	}
	if other := b.devNetns != OwnNetns; other != b.kpathPeer {
		if err := b.kpath.SetPeerMode(other); err == nil {
			b.kpathPeer = other
		}
	}
}
