package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// A parent hub is the one receiving packet socket that all of a process's
// bridges on one parent share: the kernel runs every packet socket on a
// device, its filter included, for every frame that crosses the device in
// either direction, so with one socket per bridge, 64 bridges on a parent
// cost 64 runs of packet_rcv per frame. Measured with bench/bridges.sh: 63
// extra filtered sockets on the parent (idle: their filters drop every
// frame of the transfer) took one bridge from 11.6 to 8.4 Gbit/s and from
// 0.49 to 0.80 CPU s/GB, the whole loss that "one of 64 loaded" showed
// (docs/performance.md, "One socket per parent").
//
// The hub's socket is filtered for all its members' MACs (filterProgramFor)
// and read by the hub's own goroutine, which hands each frame to the member
// it is addressed to, and each group frame to every member but its sender,
// running each member's wire→TAP step (wireSink.deliver) on the reader's
// own goroutine: no copy and no hand-off between goroutines. So the
// wire→TAP work of all the bridges on a parent runs on one goroutine (one
// core at a time): a TAP write runs the host's receive path, about 35 µs a
// 64 KiB frame here, so several bridges downloading at once share about
// one core's worth of it (not measured; PACKET_FANOUT over several hub
// sockets would spread it and keep one filter run a frame).
//
// Each member has a socket of its own that receives nothing (bound with
// protocol 0) and holds its MAC's memberships, and sends from it while it
// has siblings. So a member's frames reach the hub as the host's outgoing
// frames, like anyone else's: a frame to a sibling, or a group frame,
// reaches the siblings by the path it takes between two vethd processes,
// and the kernel's loop-back rule (a packet socket never receives its own
// transmissions) cannot hide it from them. A hub's only member sends from
// the hub's socket, and that rule spares the hub its frames.
//
// Storm holds (storm.go): the hub's filter holds a class off in the kernel
// only while every member holds it; a member that holds a class the hub
// does not gets 1 in stormSample of that class's frames, picked by the
// hub's reader, so each member's limiter sees what a socket of its own
// would have given it.

// hubKey names a parent: its network namespace (the inode of
// /proc/thread-self/ns/net when the socket was opened) and its index.
type hubKey struct {
	netns   uint64
	ifindex int
}

// hubs are the open hubs, by parent; a parent has several when one is
// full (maxFilterMACs members, or its filter at its budget of option
// memory). A hub whose socket lost its device is taken out at the next
// join (its members keep it until they leave).
var hubs = struct {
	sync.Mutex
	m map[hubKey][]*parentHub
}{m: map[hubKey][]*parentHub{}}

// parentHub is one shared receiving socket and its reader.
type parentHub struct {
	key  hubKey
	name string
	sock *ParentSocket

	// mu guards the membership, the filter and the drop count; join,
	// leave, holdStorm and Dropped take it, the reader never does.
	mu       sync.Mutex
	list     []*hubMember
	macs     []net.HardwareAddr // the filter's MACs
	held     stormClasses       // the classes the filter holds off: those every member holds
	filtered bool               // the filter is for macs and held (false: apply must set it)
	drops    uint64             // PACKET_STATISTICS drops read so far
	retired  bool               // no longer in hubs: joins go elsewhere
	budget   int                // the most filter instructions (filterBudget)

	// For the reader: the members, and the classes held in userspace for
	// some member but not in the kernel (0: no frame needs classifying).
	snap atomic.Pointer[hubSnapshot]

	// deliverMu is held by the reader while it hands a batch to the
	// members; leave takes it once, after removing the member, so that
	// no delivery to the member is under way when leave returns.
	deliverMu sync.Mutex
	// txMu makes the writes of members that send from the hub's socket
	// (alone) one at a time: a member that was alone may still be in a
	// write when the next one becomes alone.
	txMu sync.Mutex
	done chan struct{} // closed when the reader has returned
	mem  []byte        // the reader's buffers' mapping (nil: heap)
}

// hubSnapshot is the hub's membership as the reader sees it, replaced
// whole (copy on write) by join, leave and holdStorm.
type hubSnapshot struct {
	members []*hubMember
	byMAC   map[uint64]*hubMember
	// sampled: classes some member holds and the kernel filter does not;
	// the reader picks 1 in stormSample of their group frames for those
	// members.
	sampled stormClasses
}

// hubMember is one bridge's share of a hub: its ParentIO.
type hubMember struct {
	hub  *parentHub
	mac  uint64
	addr net.HardwareAddr
	tx   *ParentSocket // sends; holds the MAC's memberships

	sink  atomic.Pointer[wireSink] // the relay's wire→TAP step; nil until Relay.SetParent attaches it
	held  atomic.Uint32            // the classes the member's limiter holds (stormClasses)
	alone atomic.Bool              // the hub's only member: sends from the hub's socket

	idx       []int  // the reader's: this batch's frames for the member
	seenDrops uint64 // the hub's drops when the member last asked (under hub.mu)

	once   sync.Once
	closed chan struct{} // closed by Close
}

var (
	_ ParentIO    = (*hubMember)(nil)
	_ stormHolder = (*hubMember)(nil)
)

// netnsInode returns the inode of the calling thread's network namespace.
func netnsInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("network namespace: %w", err)
	}
	return st.Ino, nil
}

// joinHub returns mac's membership of the hub of the parent with index
// ifindex (named name, for errors), opening the member's sending socket
// and, for the parent's first member, the hub.
func joinHub(ifindex int, name string, mac net.HardwareAddr) (*hubMember, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("filter: want a 6-byte MAC, got %d bytes", len(mac))
	}
	ns, err := netnsInode()
	if err != nil {
		ns = 0 // no /proc: vethd opens sockets in one namespace only
	}
	tx, err := openPacketSocket(ifindex, name, nil, mac)
	if err != nil {
		return nil, err
	}
	m := &hubMember{mac: macBits(mac), addr: slices.Clone(mac), tx: tx, closed: make(chan struct{}), idx: make([]int, 0, BatchSize)}
	key := hubKey{ns, ifindex}
	hubs.Lock()
	defer hubs.Unlock()
	for _, h := range slices.Clone(hubs.m[key]) {
		if !h.bound() {
			h.retire()
			continue
		}
		if err := h.add(m); err == nil {
			return m, nil
		} else if !errors.Is(err, errHubFull) {
			tx.Close()
			return nil, err
		}
	}
	h, err := openHub(key, name)
	if err != nil {
		tx.Close()
		return nil, err
	}
	if err := h.add(m); err != nil {
		h.close()
		tx.Close()
		return nil, err
	}
	hubs.m[key] = append(hubs.m[key], h)
	return m, nil
}

var errHubFull = errors.New("parent hub full")

// filterBytesPerIns is what one classic BPF instruction of a hub's filter
// costs in the socket's option memory once the kernel has converted it
// (measured on Linux 6.18: 57 members with distinct first words, 382
// instructions, filled an optmem_max of 20480 while the kernel held the
// old filter and the new one, about 27 bytes an instruction), rounded up.
const filterBytesPerIns = 32

// filterBudget returns the most instructions a hub's filter may have in the
// calling thread's network namespace: the kernel charges a socket's filter
// to net.core.optmem_max, and while it swaps one (a join, a leave, a storm
// hold) it charges the old and the new together; 20480 bytes (the default
// before Linux 6.9, Debian 12's) takes about 45 members.
func filterBudget() int {
	optmem := 20480
	if b, err := os.ReadFile("/proc/sys/net/core/optmem_max"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			optmem = v
		}
	}
	return max(optmem/(2*filterBytesPerIns), 64)
}

// openHub opens the receiving socket of a hub on the parent key.ifindex
// and starts its reader. Its filter keeps nothing until add sets it.
func openHub(key hubKey, name string) (*parentHub, error) {
	sock, err := openPacketSocket(key.ifindex, name, dropAllFilter, nil)
	if err != nil {
		return nil, err
	}
	h := &parentHub{key: key, name: name, sock: sock, done: make(chan struct{}), budget: filterBudget()}
	h.snap.Store(&hubSnapshot{})
	bufs, mem := mapBuffers(BatchSize, BufSize)
	h.mem = mem
	go h.run(bufs, mem != nil)
	return h, nil
}

// dropAllFilter keeps no frame: a new hub's socket until it has members.
var dropAllFilter = []bpf.Instruction{bpf.RetConstant{Val: 0}}

// bound reports whether the hub's socket is still bound to its parent:
// once the device is unregistered, the kernel unbinds its packet sockets
// for good (ifindex -1), even if a device with the same index appears.
func (h *parentHub) bound() bool {
	var idx int
	var gerr error
	if err := h.sock.rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if ll, ok := sa.(*unix.SockaddrLinklayer); ok && err == nil {
			idx = ll.Ifindex
		}
		gerr = err
	}); err != nil || gerr != nil {
		return false
	}
	return idx == h.key.ifindex
}

// retire takes the hub out of hubs (under hubs' lock); its members keep it
// until they leave.
func (h *parentHub) retire() {
	h.mu.Lock()
	h.retired = true
	h.mu.Unlock()
	hubs.m[h.key] = slices.DeleteFunc(hubs.m[h.key], func(o *parentHub) bool { return o == h })
	if len(hubs.m[h.key]) == 0 {
		delete(hubs.m, h.key)
	}
}

// add makes m a member (under hubs' lock): errHubFull if the filter
// cannot take another MAC.
func (h *parentHub) add(m *hubMember) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.list) >= maxFilterMACs {
		return errHubFull
	}
	list := append(slices.Clip(h.list), m)
	if len(h.list) > 0 {
		// Room for the filter with every storm class held, swapped
		// in while the old one is still charged.
		if prog, err := stormFilterFor(h.macsOf(list), 1<<numStormClasses-1); err != nil || len(prog) > h.budget {
			return errHubFull
		}
	}
	if err := h.apply(list); err != nil {
		if len(h.list) > 0 && errors.Is(err, unix.ENOMEM) {
			return errHubFull // the budget's estimate was short: another hub
		}
		return err
	}
	m.hub = h
	h.drops += h.sock.Dropped() // the drops so far are not the new member's
	m.seenDrops = h.drops
	return nil
}

// apply makes list the membership (under mu): the filter for its MACs,
// holding off the classes every member holds (swapped only if either
// changed), and the reader's snapshot.
func (h *parentHub) apply(list []*hubMember) error {
	var held, any stormClasses
	if len(list) > 0 {
		held = 1<<numStormClasses - 1
	}
	var macs []net.HardwareAddr
	byMAC := make(map[uint64]*hubMember, len(list))
	for _, m := range list {
		mh := stormClasses(m.held.Load())
		held &= mh
		any |= mh
		if _, dup := byMAC[m.mac]; !dup {
			macs = append(macs, m.addr)
		}
		byMAC[m.mac] = m // the latest member of a MAC (a bridge re-attaching) gets its frames
	}
	if !h.filtered || held != h.held || !slices.EqualFunc(macs, h.macs, func(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }) {
		prog := dropAllFilter
		if len(macs) > 0 {
			var err error
			if prog, err = stormFilterFor(macs, held); err != nil {
				return err
			}
		}
		if err := h.sock.setFilter(prog); err != nil {
			return fmt.Errorf("set filter on %s: %w", h.name, err)
		}
		h.macs, h.held, h.filtered = macs, held, true
	}
	h.list = list
	for _, m := range list {
		m.alone.Store(len(list) == 1)
	}
	h.snap.Store(&hubSnapshot{members: list, byMAC: byMAC, sampled: any &^ held})
	return nil
}

// leave ends m's membership; the last member closes the hub. When leave
// returns, the reader no longer hands m frames.
func (h *parentHub) leave(m *hubMember) {
	hubs.Lock()
	h.mu.Lock()
	list := slices.DeleteFunc(slices.Clone(h.list), func(o *hubMember) bool { return o == m })
	last := len(list) == 0
	m.alone.Store(false)
	if err := h.apply(list); err != nil {
		// The old filter stays (it also keeps m's frames, which no
		// member is handed any more).
		h.list = list
		h.snap.Store(&hubSnapshot{members: list, byMAC: snapshotByMAC(list), sampled: h.snap.Load().sampled})
	}
	retire := last && !h.retired
	h.mu.Unlock()
	if retire {
		h.retire()
	}
	hubs.Unlock()
	if last {
		h.close()
		return
	}
	h.deliverMu.Lock()
	//lint:ignore SA2001 an empty critical section: waits for the reader's batch under way
	h.deliverMu.Unlock()
}

// snapshotByMAC maps each MAC of list to its latest member.
func snapshotByMAC(list []*hubMember) map[uint64]*hubMember {
	byMAC := make(map[uint64]*hubMember, len(list))
	for _, m := range list {
		byMAC[m.mac] = m
	}
	return byMAC
}

// close closes the socket, waits for the reader and unmaps its buffers.
func (h *parentHub) close() {
	h.sock.Close()
	<-h.done
	if h.mem != nil {
		unmapBuffers(h.mem)
		h.mem = nil
	}
}

// hubRand is the reader's xorshift state for the userspace storm samples.
type hubRand uint64

func (r *hubRand) pick() bool {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = hubRand(x)
	return x&(stormSample-1) == 0
}

// run is the hub's reader: a batch at a time (recvmmsg, sized by a
// batchSizer), each frame to its member or, a group frame, to every member
// but its sender; then each member's frames, in order, to its wireSink.
func (h *parentHub) run(bufs [][]byte, mapped bool) {
	defer close(h.done)
	sizes := make([]int, BatchSize)
	fills := make([]int, BatchSize)
	bs := batchSizerFor(bufs, mapped)
	rnd := hubRand(time.Now().UnixNano() | 1)
	var errs hubErrors
	for {
		n, err := h.sock.ReadBatch(bufs[:bs.vlen], sizes)
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				return
			case isLinkDown(err):
			default:
				errs.handle(h, err)
			}
			continue
		}
		errs.run = 0
		// The snapshot is loaded under deliverMu: a member that leave
		// has taken out is never handed another frame.
		h.deliverMu.Lock()
		snap := h.snap.Load()
		for i := range n {
			fills[i] = min(sizes[i], len(bufs[i]))
			f := bufs[i][:fills[i]]
			if len(f) < VnetHdrLen+ethHeaderLen {
				continue // the filter keeps no runt
			}
			e := f[VnetHdrLen:]
			if e[0]&groupBit == 0 {
				if m := snap.byMAC[macBits(e)]; m != nil {
					m.idx = append(m.idx, i)
				}
				continue
			}
			src := macBits(e[6:])
			var cls stormClass
			sampled, picked := false, false
			if snap.sampled != 0 {
				c, _ := stormClassOf(e)
				if snap.sampled.has(c) {
					cls, sampled, picked = c, true, rnd.pick()
				}
			}
			for _, m := range snap.members {
				if m.mac == src || (sampled && !picked && stormClasses(m.held.Load()).has(cls)) {
					continue
				}
				// A relay that follows a new MAC sends from it
				// while its old member still receives: not its
				// own frames back either.
				if w := m.sink.Load(); w != nil && w.r.mac.Load() == src {
					continue
				}
				m.idx = append(m.idx, i)
			}
		}
		for _, m := range snap.members {
			if len(m.idx) == 0 {
				continue
			}
			if w := m.sink.Load(); w != nil {
				w.deliver(bufs, sizes, m.idx, fills)
			}
			m.idx = m.idx[:0]
		}
		h.deliverMu.Unlock()
		bs.observe(fills[:n])
	}
}

// hubErrors is the reader's memory of unexpected read errors, as
// readErrors is a relay reader's: each is counted by every member's relay,
// one that differs from the previous is reported to each, and a run of
// them pauses the reader.
type hubErrors struct {
	last string
	run  int
}

func (e *hubErrors) handle(h *parentHub, err error) {
	report := err.Error() != e.last
	e.last = err.Error()
	h.deliverMu.Lock() // as for frames: no member that has left
	for _, m := range h.snap.Load().members {
		if w := m.sink.Load(); w != nil {
			w.r.counters.Errors.Add(1)
			if report && w.r.onError != nil {
				w.r.onError("parent read", err)
			}
		}
	}
	h.deliverMu.Unlock()
	e.run++
	if e.run >= errorRunBeforeBackoff {
		time.Sleep(errorBackoff)
	}
}

// ReadFrame waits until the member is closed: a hub's reader, not the
// relay's, reads the parent (Relay.routineWireToTAP hands it a wireSink).
func (m *hubMember) ReadFrame([]byte) (int, error) {
	<-m.closed
	return 0, net.ErrClosed
}

// WriteFrame sends frame out of the parent: from the hub's socket while the
// member is the hub's only one, so that the kernel does not hand the frame
// back to the hub (a packet socket never receives its own transmissions:
// one clone and one filter run per frame saved), and from the member's
// own socket while it has siblings, which must receive its frames.
func (m *hubMember) WriteFrame(frame []byte) error {
	if m.alone.Load() {
		h := m.hub
		h.txMu.Lock()
		defer h.txMu.Unlock()
		return h.sock.WriteFrame(frame)
	}
	return m.tx.WriteFrame(frame)
}

// Close ends the membership (the hub stops handing the member frames
// before it returns) and closes the member's socket, which drops its MAC's
// memberships; it is idempotent.
func (m *hubMember) Close() error {
	m.once.Do(func() {
		m.hub.leave(m)
		m.tx.Close()
		close(m.closed)
	})
	return nil
}

// Dropped returns the frames the hub's socket dropped for a full queue
// since the member last asked: the socket is shared, so each member counts
// every such drop (the lost frames' destinations are unknown). See ParentIO.
func (m *hubMember) Dropped() uint64 {
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drops += h.sock.Dropped()
	d := h.drops - m.seenDrops
	m.seenDrops = h.drops
	return d
}

// holdStorm records the classes m's limiter holds and swaps the hub's
// filter if the classes every member holds changed. See stormHolder.
func (m *hubMember) holdStorm(_ net.HardwareAddr, held stormClasses) error {
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	old := m.held.Swap(uint32(held))
	if h.list == nil {
		return nil
	}
	if err := h.apply(h.list); err != nil {
		m.held.Store(old) // the limiter takes the hold as not made
		return fmt.Errorf("storm hold: %w", err)
	}
	return nil
}

// attach hands the member's frames to w from the reader's next batch on.
func (m *hubMember) attach(w *wireSink) { m.sink.Store(w) }

// detach stops handing the member's frames to its wireSink, and waits for
// a delivery under way.
func (m *hubMember) detach() {
	m.sink.Store(nil)
	m.hub.deliverMu.Lock()
	//lint:ignore SA2001 an empty critical section: waits for the reader's batch under way
	m.hub.deliverMu.Unlock()
}

// macsOf lists the distinct MACs of list, in order (as apply gives them
// to the filter).
func (h *parentHub) macsOf(list []*hubMember) []net.HardwareAddr {
	seen := make(map[uint64]bool, len(list))
	var macs []net.HardwareAddr
	for _, m := range list {
		if !seen[m.mac] {
			seen[m.mac] = true
			macs = append(macs, m.addr)
		}
	}
	return macs
}
