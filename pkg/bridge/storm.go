package bridge

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The storm limiter: token buckets on the broadcast and multicast ("group")
// frames the parent hands towards the virtual NIC, one bucket per class, so
// that a storm of one kind cannot starve the others:
//
//	arp    ARP (EtherType 0x0806)
//	nd     ICMPv6 neighbour discovery: router and neighbour solicitations
//	       and advertisements, redirects (types 133–137, no extension headers)
//	dhcp   DHCP and DHCPv6 to a client (UDP to port 68 or 546)
//	other  every other group frame: IPv4/IPv6 broadcast and multicast
//	       (mDNS, SSDP, …), any other EtherType, tagged frames
//
// Each bucket refills at the limit (frames a second) and holds a second's
// worth; unicast frames for the virtual MAC are never limited. A frame that
// finds its bucket empty is dropped and counted as storm-CLASS.
//
// Receiving a storm in userspace costs by itself (vethd spent ≈ 40 % of a
// core on a 100k frames/s storm before the limiter; dropping after
// recvmmsg still costs a share of that), so the first drop of a class also
// holds that class off in the kernel: the parent socket's filter is swapped
// for one that lets only 1 in stormSample of the class's group frames
// through (BPF's random extension), unicast and the other classes as
// before. Each such sample stands for stormSample frames, both in the
// bucket's arrival count and in the drop counter (storm drops of a held
// class are estimates), and still needs a token to be relayed, so a
// held class keeps a trickle. Once a second (a stormWindow) the reader
// looks at each held class's arrival estimate: below half the limit, the
// normal filter comes back. A storm that stops dead leaves no samples to
// look at: a timer then releases every hold after 2 stormWindows of silence.
const (
	// DefaultBroadcastLimit is Config.BroadcastLimit's default, in frames
	// a second per class: far above what a LAN's ARP, ND, DHCP or mDNS
	// traffic reaches, far below a storm.
	DefaultBroadcastLimit = 1000
	// BroadcastLimitOff, as Config.BroadcastLimit, turns the limiter off.
	BroadcastLimitOff = -1
	// stormSample: while a class is held off in the kernel, 1 of this
	// many of its group frames reaches vethd (a power of two).
	stormSample = 64
	// stormWindow is how often the reader re-estimates a held class's
	// rate, and half the silence after which every hold is released.
	stormWindow = time.Second
)

// stormClass is a class of group frames with a bucket of its own.
type stormClass uint8

const (
	stormARP stormClass = iota
	stormND
	stormDHCP
	stormOther
	numStormClasses
)

// stormClasses is a set of classes, bit c for class c.
type stormClasses uint8

func (s stormClasses) has(c stormClass) bool { return s&(1<<c) != 0 }

// stormDrop is each class's drop reason.
var stormDrop = [numStormClasses]DropReason{DropStormARP, DropStormND, DropStormDHCP, DropStormOther}

// UDP client ports of DHCP and DHCPv6, and the ICMPv6 neighbour discovery
// types (router solicitation … redirect).
const (
	dhcp4ClientPort = 68
	dhcp6ClientPort = 546
	ndFirstType     = 133
	ndLastType      = 137
)

// Offsets in an untagged Ethernet frame that the classifier reads, and the
// shortest frames it reads them in. stormClassOf and stormFilterPrefix
// must agree on every frame (a test runs both on the same frames).
const (
	ip6NextHdrOff  = ethHeaderLen + 6      // IPv6 next header
	icmp6TypeOff   = ethHeaderLen + 40     // ICMPv6 type, no extension headers
	udp6DstPortOff = ethHeaderLen + 40 + 2 // UDP destination port after an IPv6 header
	ip4ProtoOff    = ethHeaderLen + 9      // IPv4 protocol
	minDHCP4Frame  = ethHeaderLen + 60 + 4 // the longest IPv4 header and the UDP ports: safe to read the port
	minND6Frame    = icmp6TypeOff + 1      // up to the ICMPv6 type
	minUDP6Frame   = udp6DstPortOff + 2    // up to the UDP destination port
	ip4UDPDstOff   = ethHeaderLen + 2      // UDP destination port, past an IPv4 header of X bytes
	groupBit       = 0x01                  // I/G bit of the first destination byte
)

// stormClassOf returns the class of an Ethernet frame f (no vnet header)
// and whether f is a group frame at all (false: unicast, never limited).
func stormClassOf(f []byte) (stormClass, bool) {
	if len(f) < ethHeaderLen || f[0]&groupBit == 0 {
		return 0, false
	}
	switch binary.BigEndian.Uint16(f[etherTypeOff:]) {
	case unix.ETH_P_ARP:
		return stormARP, true
	case unix.ETH_P_IPV6:
		if len(f) < minND6Frame {
			break
		}
		switch f[ip6NextHdrOff] {
		case unix.IPPROTO_ICMPV6:
			if t := f[icmp6TypeOff]; t >= ndFirstType && t <= ndLastType {
				return stormND, true
			}
		case unix.IPPROTO_UDP:
			if len(f) >= minUDP6Frame && binary.BigEndian.Uint16(f[udp6DstPortOff:]) == dhcp6ClientPort {
				return stormDHCP, true
			}
		}
	case unix.ETH_P_IP:
		if len(f) >= minDHCP4Frame && f[ip4ProtoOff] == unix.IPPROTO_UDP {
			ihl := int(f[ethHeaderLen]&0x0f) * 4
			if binary.BigEndian.Uint16(f[ethHeaderLen+ihl+2:]) == dhcp4ClientPort {
				return stormDHCP, true
			}
		}
	}
	return stormOther, true
}

// stormFilterPrefix returns the instructions that run before the normal
// filter while the classes in held are held off: a group frame of a held
// class is dropped unless BPF's random number picks it (1 in stormSample);
// every other frame, and a picked one, goes on to the normal filter, which
// must follow the prefix directly (its jumps end there).
func stormFilterPrefix(held stormClasses) ([]bpf.Instruction, error) {
	p := &asm{}
	// Unicast, and runts (the normal filter drops those), go on.
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, ethHeaderLen, "", "normal")
	p.op(bpf.LoadAbsolute{Off: 0, Size: 1})
	p.jmpSet(groupBit, "", "normal")
	p.op(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	p.jmp(bpf.JumpEqual, unix.ETH_P_ARP, "arp", "")
	p.jmp(bpf.JumpEqual, unix.ETH_P_IPV6, "ip6", "")
	p.jmp(bpf.JumpEqual, unix.ETH_P_IP, "ip4", "other")

	p.label("ip6")
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, minND6Frame, "", "other")
	p.op(bpf.LoadAbsolute{Off: ip6NextHdrOff, Size: 1})
	p.jmp(bpf.JumpEqual, unix.IPPROTO_ICMPV6, "", "ip6udp")
	p.op(bpf.LoadAbsolute{Off: icmp6TypeOff, Size: 1})
	p.jmp(bpf.JumpGreaterOrEqual, ndFirstType, "", "other")
	p.jmp(bpf.JumpGreaterThan, ndLastType, "other", "nd")
	p.label("ip6udp")
	p.jmp(bpf.JumpEqual, unix.IPPROTO_UDP, "", "other")
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, minUDP6Frame, "", "other")
	p.op(bpf.LoadAbsolute{Off: udp6DstPortOff, Size: 2})
	p.jmp(bpf.JumpEqual, dhcp6ClientPort, "dhcp", "other")

	p.label("ip4")
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, minDHCP4Frame, "", "other")
	p.op(bpf.LoadAbsolute{Off: ip4ProtoOff, Size: 1})
	p.jmp(bpf.JumpEqual, unix.IPPROTO_UDP, "", "other")
	p.op(bpf.LoadMemShift{Off: ethHeaderLen}) // X = the IPv4 header's length
	p.op(bpf.LoadIndirect{Off: ip4UDPDstOff, Size: 2})
	p.jmp(bpf.JumpEqual, dhcp4ClientPort, "dhcp", "other")

	// Each class: held, a random pick goes on and the rest is dropped;
	// not held, on to the normal filter.
	for _, c := range []struct {
		label string
		class stormClass
	}{{"arp", stormARP}, {"nd", stormND}, {"dhcp", stormDHCP}, {"other", stormOther}} {
		p.label(c.label)
		if held.has(c.class) {
			p.op(bpf.LoadExtension{Num: bpf.ExtRand})
			p.jmpSet(stormSample-1, "drop", "normal")
		} else {
			p.jmp(bpf.JumpEqual, 0, "normal", "normal") // either way
		}
	}
	p.label("drop")
	p.op(bpf.RetConstant{Val: 0})
	p.label("normal")
	return p.resolve()
}

// stormFilter returns the parent socket's filter for the virtual MAC mac
// while the classes in held are held off: stormFilterPrefix, then
// FilterProgram's normal filter. With no class held, the normal filter.
func stormFilter(mac net.HardwareAddr, held stormClasses) ([]bpf.Instruction, error) {
	return stormFilterFor([]net.HardwareAddr{mac}, held)
}

// stormFilterFor is stormFilter for the MACs of a parent hub: the prefix,
// then filterProgramFor(macs).
func stormFilterFor(macs []net.HardwareAddr, held stormClasses) ([]bpf.Instruction, error) {
	normal, err := filterProgramFor(macs)
	if err != nil || held == 0 {
		return normal, err
	}
	prefix, err := stormFilterPrefix(held)
	if err != nil {
		return nil, err
	}
	return append(prefix, normal...), nil
}

// stormHolder is a parent side that can hold classes off in the kernel
// (a ParentSocket; a parent hub's member, whose hub holds a class in the
// kernel only while every member holds it and samples it in userspace
// for a member that holds it alone); the limiter of a parent without it
// drops in userspace only.
type stormHolder interface {
	// holdStorm asks for the classes in held to be held off for the
	// virtual MAC mac (none: the normal filter): the ParentSocket swaps
	// its filter, a hub member records them (see hubMember.holdStorm).
	holdStorm(mac net.HardwareAddr, held stormClasses) error
}

var _ stormHolder = (*ParentSocket)(nil)

// holdStorm swaps the socket's filter (SO_ATTACH_FILTER replaces the
// attached program atomically: no frame passes unfiltered). See stormHolder.
func (s *ParentSocket) holdStorm(mac net.HardwareAddr, held stormClasses) error {
	prog, err := stormFilter(mac, held)
	if err != nil {
		return err
	}
	if err := s.setFilter(prog); err != nil {
		return fmt.Errorf("set storm filter on %s: %w", s.f.Name(), err)
	}
	return nil
}

// SetStormLimit sets the storm limiter of the frames from the parent:
// limit frames a second per class (0: DefaultBroadcastLimit; negative,
// BroadcastLimitOff: no limit). The parent reader picks it up with its
// next frame. Safe from any goroutine.
func (r *Relay) SetStormLimit(limit int) {
	switch {
	case limit == 0:
		limit = DefaultBroadcastLimit
	case limit < 0:
		limit = 0
	}
	r.stormRate.Store(int64(limit))
}

// tokenNs is what one frame costs in a bucket: buckets count frame·ns per
// second, so that a refill is elapsed ns × rate, without division.
const tokenNs = int64(time.Second)

// stormLimiter is one parent reader's storm limiter: the reader owns
// everything but the kernel hold, which the release timer (its own
// goroutine) also changes, under hold's lock; held is the reader's copy of
// hold.held, refreshed by tick.
type stormLimiter struct {
	counters *Counters
	start    time.Time
	rate     int64                  // frames a second per class; 0: off
	tokens   [numStormClasses]int64 // in frame·ns/s; full: rate·tokenNs
	last     int64                  // ns since start of the last refill
	seen     [numStormClasses]int64 // frames of each class in this window (a held class's samples count stormSample)
	window   int64                  // ns since start at which this window began
	held     stormClasses
	// canHold: the parent is a stormHolder and no swap has failed (the
	// reader's copy of hold.to != nil && !hold.failed).
	canHold bool
	// expireAfter is the silence after which every hold is released:
	// 2 stormWindows (tests shorten it).
	expireAfter time.Duration

	hold struct {
		sync.Mutex
		held    stormClasses
		cur     atomic.Uint32    // held, for tick to read without the lock
		to      stormHolder      // nil: userspace only
		mac     net.HardwareAddr // the filter's virtual MAC
		timer   *time.Timer      // releases every hold after a silence
		failed  bool             // a swap failed: userspace only from then on
		done    bool             // the reader ended: the timer does nothing
		onError func(error)
	}
}

// newStormLimiter returns the limiter of a reader of parent p (which may
// hold off classes in the kernel if it is a stormHolder), for a socket
// whose filter is for mac. onError (not nil) is told if a filter swap fails.
func newStormLimiter(p FrameIO, mac net.HardwareAddr, c *Counters, onError func(error)) *stormLimiter {
	l := &stormLimiter{counters: c, start: time.Now(), expireAfter: 2 * stormWindow}
	if h, ok := p.(stormHolder); ok {
		l.hold.to = h
		l.canHold = true
	}
	l.hold.mac = mac
	l.hold.onError = onError
	return l
}

// tick refills the buckets up to now, with the relay's current rate, and
// ends a window that is over. The reader calls it before each batch.
func (l *stormLimiter) tick(now time.Time, rate int64) {
	ns := int64(now.Sub(l.start))
	if rate != l.rate {
		l.rate = rate
		for c := range l.tokens {
			l.tokens[c] = rate * tokenNs
		}
		l.last, l.window, l.seen = ns, ns, [numStormClasses]int64{}
		if rate == 0 {
			l.setHeld(0)
		}
	}
	if rate == 0 {
		return
	}
	el := min(max(ns-l.last, 0), tokenNs)
	l.last = ns
	full := rate * tokenNs
	for c := range l.tokens {
		l.tokens[c] = min(l.tokens[c]+el*rate, full)
	}
	l.held = stormClasses(l.hold.cur.Load())
	if w := ns - l.window; w >= int64(stormWindow) {
		next := l.held
		for c := range numStormClasses {
			// Below half the limit: the storm is over.
			if l.held.has(c) && l.seen[c]*int64(time.Second)/w < rate/2 {
				next &^= 1 << c
			}
		}
		l.seen, l.window = [numStormClasses]int64{}, ns
		l.setHeld(next)
	}
}

// pass reports whether the frame f from the parent (no vnet header) may
// go on to the virtual NIC, counting it as a storm drop if not.
func (l *stormLimiter) pass(f []byte) bool {
	if l.rate == 0 {
		return true
	}
	class, group := stormClassOf(f)
	if !group {
		return true
	}
	weight := int64(1)
	if l.held.has(class) {
		weight = stormSample // the kernel dropped the others
	}
	l.seen[class] += weight
	if l.tokens[class] >= tokenNs {
		l.tokens[class] -= tokenNs
		if weight > 1 {
			l.counters.RxDrops[stormDrop[class]].Add(uint64(weight - 1))
		}
		return true
	}
	l.counters.RxDrops[stormDrop[class]].Add(uint64(weight))
	if l.canHold && !l.held.has(class) {
		l.setHeld(l.held | 1<<class)
	}
	return false
}

// setHeld makes the kernel hold off the classes in held (if the parent
// can), and arms the release timer while any is.
func (l *stormLimiter) setHeld(held stormClasses) {
	h := &l.hold
	h.Lock()
	defer h.Unlock()
	if h.to == nil || h.failed || h.done {
		return
	}
	if held != h.held {
		if err := h.to.holdStorm(h.mac, held); err != nil {
			h.failed = true
			l.canHold = false
			h.onError(err)
			if h.held != 0 && h.to.holdStorm(h.mac, 0) == nil {
				h.held = 0
				h.cur.Store(0)
			}
			l.held = h.held
			return
		}
		h.held = held
		h.cur.Store(uint32(held))
	}
	l.held = held
	switch {
	case held != 0 && h.timer == nil:
		h.timer = time.AfterFunc(l.expireAfter, l.expire)
	case held != 0:
		h.timer.Reset(l.expireAfter)
	case h.timer != nil:
		h.timer.Stop()
	}
}

// expire is the release timer: no window ended for 2 stormWindows, so no
// frame came at all (a storm that stopped dead); the normal filter comes
// back. It runs on the timer's goroutine.
func (l *stormLimiter) expire() {
	h := &l.hold
	h.Lock()
	defer h.Unlock()
	if h.done || h.failed || h.held == 0 {
		return
	}
	if err := h.to.holdStorm(h.mac, 0); err != nil {
		h.failed = true
		h.onError(err)
		return
	}
	h.held = 0
	h.cur.Store(0)
}

// stop ends the limiter when its reader ends: the timer is stopped and
// does nothing if it fires anyway. The socket's filter is left as it is
// (the socket is being closed).
func (l *stormLimiter) stop() {
	h := &l.hold
	h.Lock()
	defer h.Unlock()
	h.done = true
	if h.timer != nil {
		h.timer.Stop()
	}
}

// newStormLimiter returns the storm limiter for a reader of the parent p,
// whose socket filters for the relay's current MAC.
func (r *Relay) newStormLimiter(p FrameIO) *stormLimiter {
	m := r.mac.Load()
	mac := net.HardwareAddr{byte(m >> 40), byte(m >> 32), byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
	return newStormLimiter(p, mac, r.counters, func(err error) {
		if r.onError != nil {
			r.onError("storm filter", err)
		}
	})
}
