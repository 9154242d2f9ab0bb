package bridge

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A read loop pauses for errorBackoff once errorRunBeforeBackoff unexpected
// errors came in a row, so that a persistent one cannot spin a CPU, while a
// single bad frame (some kernels fail the read of a frame they cannot
// describe in a vnet header) costs no more than the frame.
const (
	errorBackoff          = 10 * time.Millisecond
	errorRunBeforeBackoff = 16
)

// readErrors is a read loop's memory of unexpected errors: each is counted,
// one that differs from the loop's previous error is reported, and only a
// run of them pauses the loop. Each read loop owns its own.
type readErrors struct {
	last error
	run  int
	// pause sleeps; nil means time.Sleep (tests count the pauses).
	pause func(time.Duration)
}

// handle counts and perhaps reports err, and pauses if errors keep coming.
func (e *readErrors) handle(r *Relay, dir string, err error) {
	r.counters.Errors.Add(1)
	if r.onError != nil && (e.last == nil || e.last.Error() != err.Error()) {
		r.onError(dir, err)
	}
	e.last = err
	e.run++
	if e.run >= errorRunBeforeBackoff {
		if e.pause != nil {
			e.pause(errorBackoff)
		} else {
			time.Sleep(errorBackoff)
		}
	}
}

// ok ends a run of errors.
func (e *readErrors) ok() { e.run = 0 }

// BufSize is the size of each relay buffer: a vnet header and the largest
// GSO super-frame the kernel hands a packet socket or a TAP reader, with
// room to spare. Without BIG TCP that is 64 KiB; with it (gso_max_size or
// gro_max_size above 65536, up to GSO_MAX_SIZE, 8 × 65535 bytes) it was
// measured at 524,170 bytes from a veth wire with gso_max_size 524280
// (Linux 6.18). Frames larger than 64 KiB are written whole where the other
// side takes them and split otherwise (bigWriter). Buffer memory the
// kernel never fills is never touched, so it costs address space, not RSS.
// It is a whole number of 4 KiB pages (so mapped buffers are contiguous
// where pages are that size, and each can be released whole).
const BufSize = 1<<19 + 1<<12

// ErrTruncated is returned by FrameIO.ReadFrame when the frame did not fit
// the buffer; the frame is lost.
var ErrTruncated = errors.New("frame larger than the buffer")

// FrameIO is one side of the relay: the TAP or the parent's packet socket.
// Every frame read or written starts with a VnetHdrLen-byte virtio_net_hdr.
type FrameIO interface {
	// ReadFrame blocks for one frame, stores it in buf and returns its length;
	// net.ErrClosed once Close has been called.
	ReadFrame(buf []byte) (int, error)
	// WriteFrame sends one whole frame; net.ErrClosed once Close has been called.
	WriteFrame(frame []byte) error
	// Close makes pending and future calls return net.ErrClosed; it is idempotent.
	Close() error
}

// BatchSize is the most frames the wire reader asks for per read when the
// parent side is a BatchReader, each in a BufSize buffer preallocated once
// per Relay; fewer while the frames are large (batchSizer).
const BatchSize = 32

// BatchReader is implemented by a parent side that can read several frames
// per call; the relay uses it when the parent has it, and coalesces TCP
// segments within each batch before writing them to the TAP.
type BatchReader interface {
	// ReadBatch blocks for at least one frame, then reads up to len(bufs)
	// frames without waiting, frame i into bufs[i], its length in sizes[i]
	// (larger than len(bufs[i]) if it did not fit: that frame is lost), and
	// returns how many; net.ErrClosed once Close has been called.
	ReadBatch(bufs [][]byte, sizes []int) (int, error)
}

// DropReason says why a frame was not relayed.
type DropReason int

const (
	// DropRunt: a frame shorter than a vnet header plus an Ethernet header.
	DropRunt DropReason = iota
	// DropSpoof: a frame from the TAP whose source is not the virtual MAC.
	DropSpoof
	// DropOversize: a frame from the parent larger than the relay buffer.
	DropOversize
	// DropNoParent: a frame from the TAP while the parent is missing.
	DropNoParent
	// DropWriteError: the write to the other side failed (parent down, queue full, …).
	DropWriteError
	// DropQueueFull: the kernel dropped frames for vethd because its socket
	// queue was full (PACKET_STATISTICS), i.e. vethd could not keep up.
	DropQueueFull
	// DropStormARP, DropStormND, DropStormDHCP, DropStormOther: a group
	// frame from the parent over the storm limit of its class (storm.go);
	// while a class is held off in the kernel these are estimates.
	DropStormARP
	DropStormND
	DropStormDHCP
	DropStormOther
	numDropReasons
)

var dropNames = [numDropReasons]string{"runt", "spoof", "oversize", "no-parent", "write-error", "queue-full",
	"storm-arp", "storm-nd", "storm-dhcp", "storm-other"}

// String returns the reason as it appears in logs and statistics.
func (r DropReason) String() string { return dropNames[r] }

// DropReasons lists every reason, in order.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// Counters are the relay's statistics. Rx is from the wire to the virtual
// interface, Tx from the virtual interface to the wire, as the virtual
// interface's own counters would count them. Bytes are Ethernet frame
// bytes; a GSO super-frame counts as one packet. A frame is counted as a
// packet once its write to the other side has succeeded, so whoever reads
// that side may see the frame a moment before the count. All fields are
// updated atomically and may be read at any time; packets are added before
// bytes, so a reader that sees the bytes sees the packet too.
type Counters struct {
	RxPackets, RxBytes atomic.Uint64
	TxPackets, TxBytes atomic.Uint64
	RxDrops            [numDropReasons]atomic.Uint64
	TxDrops            [numDropReasons]atomic.Uint64
	// Errors counts read errors that were not the end of the relay.
	Errors atomic.Uint64
	// RxCoalesced counts the wire frames that were merged into GSO frames
	// before the TAP write (each merged frame counts once in RxPackets).
	RxCoalesced atomic.Uint64
	// RxSplit and TxSplit count the BIG TCP super-frames (larger than
	// 64 KiB) that the other side refused whole and that were split into
	// GSO frames it takes (each piece counts in the packets and bytes).
	RxSplit, TxSplit atomic.Uint64
	// extra counts frames moved outside the relay (the kernel data path's
	// programs, kpath_linux.go) while it is set: Snapshot adds them, Reset
	// zeroes them. Whoever sets it adds its counts to the fields above
	// when it goes.
	extra atomic.Pointer[counterSource]
}

// counterSource is a source of counts outside the relay (Counters.extra).
type counterSource struct {
	add   func(*Stats) // adds the source's counts
	reset func()       // zeroes them
}

// add adds the counts in s to c.
func (c *Counters) add(s Stats) {
	c.RxPackets.Add(s.RxPackets)
	c.RxBytes.Add(s.RxBytes)
	c.TxPackets.Add(s.TxPackets)
	c.TxBytes.Add(s.TxBytes)
	for _, r := range DropReasons() {
		c.RxDrops[r].Add(s.RxDrops[r.String()])
		c.TxDrops[r].Add(s.TxDrops[r.String()])
	}
}

// Stats is a point-in-time copy of Counters.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	RxDrops, TxDrops   map[string]uint64
	Errors             uint64
	RxCoalesced        uint64
	RxSplit, TxSplit   uint64
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() Stats {
	s := Stats{
		RxPackets: c.RxPackets.Load(), RxBytes: c.RxBytes.Load(),
		TxPackets: c.TxPackets.Load(), TxBytes: c.TxBytes.Load(),
		RxDrops: map[string]uint64{}, TxDrops: map[string]uint64{},
		Errors: c.Errors.Load(), RxCoalesced: c.RxCoalesced.Load(),
		RxSplit: c.RxSplit.Load(), TxSplit: c.TxSplit.Load(),
	}
	for _, r := range DropReasons() {
		s.RxDrops[r.String()] = c.RxDrops[r].Load()
		s.TxDrops[r.String()] = c.TxDrops[r].Load()
	}
	if x := c.extra.Load(); x != nil {
		x.add(&s)
	}
	return s
}

// Reset sets every counter to zero.
func (c *Counters) Reset() {
	if x := c.extra.Load(); x != nil {
		x.reset()
	}
	for _, a := range []*atomic.Uint64{&c.RxPackets, &c.RxBytes, &c.TxPackets, &c.TxBytes, &c.Errors, &c.RxCoalesced, &c.RxSplit, &c.TxSplit} {
		a.Store(0)
	}
	for i := range c.RxDrops {
		c.RxDrops[i].Store(0)
		c.TxDrops[i].Store(0)
	}
}

// Relay moves frames between a TAP and the current parent socket, one
// goroutine per direction: routineTAPToWire for the Relay's whole life,
// and a routineWireToTAP for each parent SetParent installs. Each reader
// owns its buffers (allocated when it starts) and its readErrors; the
// per-frame path allocates nothing and takes no lock, but for a parent
// hub's only member, whose writes on the hub's socket take the hub's
// txMu. For a parent that is a hub member (hub_linux.go) the wire→TAP
// step (wireSink) runs on the hub's reader, in the hub's buffers, and
// routineWireToTAP only waits for the member to close.
//
// The TAP side lives as long as the Relay; the parent side can be swapped
// (SetParent) while frames flow, without a lock: the TAP reader loads the
// current parent atomically for every frame.
//
// SetParent and Close are called by one goroutine at a time (the bridge's
// owner), Close last. SetMAC, Healthy and the counters may be used from any
// goroutine.
//
// The parent readers' buffers (BatchSize × BufSize, 16 MiB of address space)
// are allocated once per Relay, by the first parent reader, and reused by the
// next: a parent re-created twenty times must not leave twenty sets for the
// garbage collector (RSS grew from 12 to 45–66 MiB that way). They and the
// TAP reader's are mapped outside the Go heap (mapBuffers) and unmapped by
// Close once the readers have returned. Only the pages frames have touched
// count in RSS, and a batchSizer keeps large frames to a few slots: 64 KiB
// frames use about 384 KiB of a set (2 MiB when every slot took them).
type Relay struct {
	// Set by NewRelay, read-only after: safe from any goroutine.
	tap      FrameIO
	counters *Counters
	// onError is called on a reader's goroutine with an unexpected read
	// error (not a shutdown) that differs from that reader's previous one,
	// so a repeating error is reported once; nil: errors are only counted.
	onError func(dir string, err error)

	// Atomics, shared by the readers and the methods: mac and parent are
	// loaded by the TAP reader for every frame, tapAlive by Healthy.
	mac      atomic.Uint64                 // the virtual MAC as macBits gives it; stored by SetMAC
	parent   atomic.Pointer[parentBinding] // the current parent, nil if none; swapped by SetParent
	tapAlive atomic.Bool                   // the TAP reader runs; cleared by it when it ends
	gone     chan struct{}                 // closed by the TAP reader when the interface went away
	// stormRate is the storm limit, frames a second per class (0: off);
	// stored by SetStormLimit, loaded by the parent reader (storm.go).
	stormRate atomic.Int64

	// Owned by the parent reader that runs (one at a time: SetParent waits
	// for the previous one to return before it starts the next).
	wireBufs   [][]byte // BatchSize buffers of BufSize; nil until first used
	wireMapped bool     // wireBufs come from mapBuffers (may be released)

	// The mappings of the readers' buffers, appended by each reader when it
	// maps them and unmapped by Close after the readers have returned.
	mapsMu sync.Mutex
	maps   [][]byte

	wg sync.WaitGroup // the readers; Close waits for them
}

// parentBinding is one parent side and its reader: done is closed when
// the reader has returned.
type parentBinding struct {
	io   FrameIO
	done chan struct{}
	// sink: the wire→TAP step a hub's reader runs for a parent that is a
	// hubMember, attached by SetParent before it returns (nil otherwise).
	sink *wireSink
}

// NewRelay returns a relay for tap, whose frames must come from mac, and
// counting into c; it starts the TAP reader. onError (which may be nil) is
// told of read errors, see Relay.onError.
func NewRelay(tap FrameIO, mac net.HardwareAddr, c *Counters, onError func(dir string, err error)) *Relay {
	r := &Relay{tap: tap, counters: c, onError: onError, gone: make(chan struct{})}
	r.SetMAC(mac)
	r.tapAlive.Store(true)
	r.wg.Add(1)
	go r.routineTAPToWire()
	return r
}

// DeviceGone returns a channel that is closed when the TAP side reports
// that its interface went away (a TAP deleted, with the namespace it was
// moved to, say), not when the relay is closed.
func (r *Relay) DeviceGone() <-chan struct{} { return r.gone }

// SetMAC changes the source address frames from the TAP must carry.
func (r *Relay) SetMAC(mac net.HardwareAddr) { r.mac.Store(macBits(mac)) }

// macBits packs a 6-byte address into the low 48 bits of a uint64.
func macBits(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// Healthy reports whether the relay's readers are running: the TAP reader
// always, the parent reader whenever a parent is set.
func (r *Relay) Healthy() error {
	if !r.tapAlive.Load() {
		return errors.New("the TAP reader has stopped")
	}
	if p := r.parent.Load(); p != nil {
		select {
		case <-p.done:
			return errors.New("the parent reader has stopped")
		default:
		}
	}
	return nil
}

// SetParent makes p the parent side and starts its reader; the previous
// parent, if any, is closed and its reader waited for. A nil p detaches:
// frames from the TAP are then dropped as no-parent.
func (r *Relay) SetParent(p FrameIO) {
	var nb *parentBinding
	if p != nil {
		nb = &parentBinding{io: p, done: make(chan struct{})}
	}
	old := r.parent.Swap(nb)
	if old != nil {
		old.io.Close()
		<-old.done
	}
	if m, ok := p.(*hubMember); ok {
		// Attached here, not by the reader goroutine: frames for the
		// member from now on reach the TAP.
		nb.sink = r.newWireSink(r.newStormLimiter(p))
		m.attach(nb.sink)
	}
	if nb != nil {
		r.wg.Add(1)
		go r.routineWireToTAP(nb)
	}
}

// Close closes the parent and the TAP, waits for both readers, and unmaps
// their buffers.
func (r *Relay) Close() {
	r.SetParent(nil)
	r.tap.Close()
	r.wg.Wait()
	r.mapsMu.Lock()
	defer r.mapsMu.Unlock()
	for _, m := range r.maps {
		unmapBuffers(m)
	}
	r.maps = nil
	r.wireBufs = nil
}

// buffers returns n buffers of BufSize for a reader of r, mapped outside
// the heap and unmapped by Close, and whether they are mapped (false: the
// mapping failed and they are heap memory).
func (r *Relay) buffers(n int) ([][]byte, bool) {
	bufs, mem := mapBuffers(n, BufSize)
	if mem != nil {
		r.mapsMu.Lock()
		r.maps = append(r.maps, mem)
		r.mapsMu.Unlock()
	}
	return bufs, mem != nil
}

// routineTAPToWire reads frames the host sends on the virtual interface and
// writes them to the parent. It ends when the TAP is closed.
func (r *Relay) routineTAPToWire() {
	defer r.wg.Done()
	defer r.tapAlive.Store(false)
	if br, ok := r.tap.(BatchReader); ok {
		r.tapToWireBatched(br)
		return
	}
	bufs, _ := r.buffers(1)
	buf := bufs[0]
	var bw *bigWriter // for the current parent
	var bwFor *parentBinding
	var errs readErrors
	for {
		n, err := r.tap.ReadFrame(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if isTAPGone(err) {
				// The interface was deleted under us (the link
				// watcher deals with it): nothing more to read.
				close(r.gone)
				return
			}
			if isLinkDown(err) {
				// A veth pair's peer went down (its NIC lost its
				// carrier): the socket reads again once it is up.
				continue
			}
			errs.handle(r, "tap read", err)
			continue
		}
		errs.ok()
		p := r.parent.Load()
		if p != bwFor && p != nil {
			bw, bwFor = newBigWriter(p.io), p
		}
		r.toWire(p, r.mac.Load(), buf[:n], bw)
	}
}

// toWire checks one frame from the device side (vnet header included) and
// writes it to the parent p (through the loop's bigWriter bw: whole, or
// split if it is a BIG TCP frame the parent refuses), counting it or the
// reason it was dropped: the one per-frame step of both TAP→wire loops.
func (r *Relay) toWire(p *parentBinding, mac uint64, f []byte, bw *bigWriter) {
	c := r.counters
	switch {
	case len(f) < VnetHdrLen+ethHeaderLen:
		c.TxDrops[DropRunt].Add(1)
	case macBits(f[VnetHdrLen+6:VnetHdrLen+12]) != mac:
		c.TxDrops[DropSpoof].Add(1)
	case p == nil:
		c.TxDrops[DropNoParent].Add(1)
	default:
		frames, bytes, split, err := bw.write(p.io, f)
		if split {
			c.TxSplit.Add(1)
		}
		if frames > 0 {
			c.TxPackets.Add(uint64(frames))
			c.TxBytes.Add(uint64(bytes))
		}
		switch {
		case err == errFrameTooBig:
			c.TxDrops[DropOversize].Add(1)
		case err != nil:
			c.TxDrops[DropWriteError].Add(1)
		}
	}
}

// tapToWireBatched is routineTAPToWire's loop for a device side that is
// a BatchReader (a veth pair's peer socket): up to BatchSize frames per
// read (recvmmsg), each checked and written to the parent as in the
// frame-by-frame loop.
func (r *Relay) tapToWireBatched(br BatchReader) {
	bufs, mapped := r.buffers(BatchSize)
	sizes := make([]int, BatchSize)
	fills := make([]int, BatchSize)
	bs := batchSizerFor(bufs, mapped)
	var bw *bigWriter // for the current parent
	var bwFor *parentBinding
	c := r.counters
	var errs readErrors
	for {
		n, err := br.ReadBatch(bufs[:bs.vlen], sizes)
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				return
			case isTAPGone(err):
				close(r.gone)
				return
			case isLinkDown(err):
			default:
				errs.handle(r, "tap read", err)
			}
			continue
		}
		errs.ok()
		p := r.parent.Load()
		if p != bwFor && p != nil {
			bw, bwFor = newBigWriter(p.io), p
		}
		mac := r.mac.Load()
		for i := range n {
			fills[i] = min(sizes[i], len(bufs[i]))
			if sizes[i] > len(bufs[i]) {
				c.TxDrops[DropOversize].Add(1)
				continue
			}
			r.toWire(p, mac, bufs[i][:sizes[i]], bw)
		}
		bs.observe(fills[:n])
	}
}

// batchSizerFor returns the batchSizer of a batch reader with buffers
// bufs, which releases them only if they are mapped.
func batchSizerFor(bufs [][]byte, mapped bool) *batchSizer {
	if !mapped {
		return newBatchSizer(nil)
	}
	return newBatchSizer(func(i int) { releaseBuffer(bufs[i]) })
}

// parentBuffers returns the parent readers' n (≤ BatchSize) buffers of
// BufSize, allocated on the first call; called only by the parent reader
// that runs.
func (r *Relay) parentBuffers(n int) [][]byte {
	if r.wireBufs == nil {
		r.wireBufs, r.wireMapped = r.buffers(BatchSize)
	}
	return r.wireBufs[:n]
}

// routineWireToTAP reads frames the kernel filter passed on the parent and
// writes them to the TAP. It ends when its parent socket is closed. A parent
// that is a BatchReader is read a batch at a time, and TCP segments are
// coalesced within each batch (see coalescer).
func (r *Relay) routineWireToTAP(b *parentBinding) {
	defer r.wg.Done()
	defer close(b.done)
	if b.sink != nil {
		r.wireToTAPHub(b.io.(*hubMember), b.sink)
		return
	}
	lim := r.newStormLimiter(b.io)
	defer lim.stop()
	if br, ok := b.io.(BatchReader); ok {
		r.wireToTAPBatched(br, lim)
		return
	}
	buf := r.parentBuffers(1)[0]
	bw := newBigWriter(r.tap)
	c := r.counters
	var errs readErrors
	for {
		n, err := b.io.ReadFrame(buf)
		if err != nil {
			if !r.parentReadError(err, &errs) {
				return
			}
			continue
		}
		errs.ok()
		if n < VnetHdrLen+ethHeaderLen {
			c.RxDrops[DropRunt].Add(1)
			continue
		}
		if lim.tick(time.Now(), r.stormRate.Load()); !lim.pass(buf[VnetHdrLen:n]) {
			continue
		}
		if !r.toTAP(bw, buf[:n]) {
			return
		}
	}
}

// toTAP writes one frame from the parent (vnet header included) to the
// device side through the loop's bigWriter bw (whole, or split if it is a
// BIG TCP frame the device side refuses), counting it or the reason it was
// dropped. It reports false once the device side is closed.
func (r *Relay) toTAP(bw *bigWriter, f []byte) bool {
	c := r.counters
	frames, bytes, split, err := bw.write(r.tap, f)
	if split {
		c.RxSplit.Add(1)
	}
	if frames > 0 {
		c.RxPackets.Add(uint64(frames))
		c.RxBytes.Add(uint64(bytes))
	}
	switch {
	case err == nil:
	case errors.Is(err, net.ErrClosed):
		return false
	case err == errFrameTooBig:
		c.RxDrops[DropOversize].Add(1)
	default:
		c.RxDrops[DropWriteError].Add(1)
	}
	return true
}

// wireToTAPBatched is routineWireToTAP's loop for a BatchReader: read up to
// BatchSize frames, and hand them to the loop's wireSink; lim is the
// loop's storm limiter.
func (r *Relay) wireToTAPBatched(br BatchReader, lim *stormLimiter) {
	bufs := r.parentBuffers(BatchSize)
	sizes := make([]int, BatchSize)
	fills := make([]int, BatchSize)
	all := make([]int, BatchSize)
	for i := range all {
		all[i] = i
	}
	bs := batchSizerFor(bufs, r.wireMapped)
	w := r.newWireSink(lim)
	var errs readErrors
	for {
		n, err := br.ReadBatch(bufs[:bs.vlen], sizes)
		if err != nil {
			if !r.parentReadError(err, &errs) {
				return
			}
			continue
		}
		errs.ok()
		for i := range n {
			fills[i] = min(sizes[i], len(bufs[i]))
		}
		if !w.deliver(bufs, sizes, all[:n], fills) {
			return
		}
		bs.observe(fills[:n])
	}
}

// wireToTAPHub is routineWireToTAP for a member of a parent hub: the hub's
// reader runs w (attached by SetParent) on the frames for it, until the
// member is closed (or the hub's reader ended, which Healthy then reports).
func (r *Relay) wireToTAPHub(m *hubMember, w *wireSink) {
	defer w.lim.stop()
	select {
	case <-m.closed:
	case <-m.hub.done:
	}
	m.detach()
}

// wireSink is one parent reader's wire→TAP step: the frames of a batch,
// storm-limited, coalesced, written to the TAP. It is used by one
// goroutine at a time: the relay's parent reader, or the reader of the hub
// that its parent is a member of.
type wireSink struct {
	r   *Relay
	lim *stormLimiter
	co  *coalescer
	bw  *bigWriter
}

func (r *Relay) newWireSink(lim *stormLimiter) *wireSink {
	return &wireSink{r: r, lim: lim, co: newCoalescer(BatchSize), bw: newBigWriter(r.tap)}
}

// deliver relays frames bufs[i][:sizes[i]] for each i of idx (one batch,
// in order): runts and oversized frames are counted and dropped, group
// frames pass the storm limiter and are written as they are (a hub hands
// one to several relays: it must not change), and TCP segments to the
// virtual MAC are coalesced; fills[slot] is raised to the length of a
// merged frame written from slot. It reports false once the device side is
// closed.
func (w *wireSink) deliver(bufs [][]byte, sizes, idx, fills []int) bool {
	r, co := w.r, w.co
	c := r.counters
	co.reset()
	w.lim.tick(time.Now(), r.stormRate.Load())
	for _, i := range idx {
		switch sz := sizes[i]; {
		case sz > len(bufs[i]):
			c.RxDrops[DropOversize].Add(1)
		case sz < VnetHdrLen+ethHeaderLen:
			c.RxDrops[DropRunt].Add(1)
		case !w.lim.pass(bufs[i][VnetHdrLen:sz]): // counted as storm-CLASS
		case bufs[i][VnetHdrLen]&groupBit != 0:
			co.pass(i, sz)
		default:
			co.add(bufs, i, sz)
		}
	}
	merged := co.merged
	co.finish(bufs)
	if d := co.merged - merged; d != 0 {
		c.RxCoalesced.Add(d)
	}
	for i := range co.groups {
		g := &co.groups[i]
		fills[g.slot] = max(fills[g.slot], g.n)
		if !r.toTAP(w.bw, bufs[g.slot][:g.n]) {
			return false
		}
	}
	return true
}

// parentReadError handles an error from reading the parent and reports
// whether the reader should go on (false: the parent was closed).
func (r *Relay) parentReadError(err error, errs *readErrors) bool {
	c := r.counters
	switch {
	case errors.Is(err, net.ErrClosed):
		return false
	case errors.Is(err, ErrTruncated):
		c.RxDrops[DropOversize].Add(1)
	case isLinkDown(err):
		// The parent went down or away; the link watcher handles it.
	default:
		errs.handle(r, "parent read", err)
	}
	return true
}
