package bridge

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// stormFrames returns frames of every class and their edges: each
// class's shortest and one byte short, unicast, runts, tagged, odd IPv4
// header lengths, near-miss ports and ICMPv6 types.
func stormFrames() (frames [][]byte, want []stormClass) {
	add := func(f []byte, c stormClass) { frames, want = append(frames, f), append(want, c) }
	grp := func(dst net.HardwareAddr, typ uint16, n int) []byte { return frame(dst, otherMAC, typ, n) }
	add(grp(bcastMAC, unix.ETH_P_ARP, 42), stormARP)
	add(grp(bcastMAC, unix.ETH_P_ARP, 14), stormARP)
	add(grp(mcastMAC, 0x88b5, 60), stormOther)
	add(grp(bcastMAC, unix.ETH_P_8021Q, 64), stormOther)
	for _, t := range []byte{132, 133, 135, 137, 138, 128} {
		for _, n := range []int{minND6Frame - 1, minND6Frame, 86} {
			f := grp(mcastMAC, unix.ETH_P_IPV6, n)
			f[ip6NextHdrOff] = unix.IPPROTO_ICMPV6
			if n > icmp6TypeOff {
				f[icmp6TypeOff] = t
			}
			c := stormOther
			if n >= minND6Frame && t >= ndFirstType && t <= ndLastType {
				c = stormND
			}
			add(f, c)
		}
	}
	for _, port := range []uint16{546, 547, 68} {
		for _, n := range []int{minUDP6Frame - 1, minUDP6Frame, 120} {
			f := grp(mcastMAC, unix.ETH_P_IPV6, n)
			f[ip6NextHdrOff] = unix.IPPROTO_UDP
			if n >= minUDP6Frame {
				binary.BigEndian.PutUint16(f[udp6DstPortOff:], port)
			}
			c := stormOther
			if n >= minUDP6Frame && port == dhcp6ClientPort {
				c = stormDHCP
			}
			add(f, c)
		}
	}
	for _, ihl := range []byte{5, 6, 15} {
		for _, port := range []uint16{68, 67, 69} {
			for _, n := range []int{minDHCP4Frame - 1, minDHCP4Frame, 342} {
				f := grp(bcastMAC, unix.ETH_P_IP, n)
				f[ethHeaderLen] = 0x40 | ihl
				f[ip4ProtoOff] = unix.IPPROTO_UDP
				if n >= minDHCP4Frame {
					binary.BigEndian.PutUint16(f[ethHeaderLen+int(ihl)*4+2:], port)
				}
				c := stormOther
				if n >= minDHCP4Frame && port == dhcp4ClientPort {
					c = stormDHCP
				}
				add(f, c)
				g := append([]byte(nil), f...)
				g[ip4ProtoOff] = unix.IPPROTO_TCP
				add(g, stormOther)
			}
		}
	}
	return frames, want
}

// stormVM returns the storm filter for held as the x/net/bpf VM runs it,
// BPF's random number replaced by pick: 0 picks every frame, 1 none.
func stormVM(t *testing.T, held stormClasses, pick uint32, vlanTag bool) *bpf.VM {
	t.Helper()
	prog, err := stormFilter(ourMAC, held)
	if err != nil {
		t.Fatal(err)
	}
	for i, ins := range prog {
		if le, ok := ins.(bpf.LoadExtension); ok && le.Num == bpf.ExtRand {
			prog[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: pick}
		}
	}
	return vmProgram(t, prog, vlanTag)
}

func TestStormClassOf(t *testing.T) {
	frames, want := stormFrames()
	for i, f := range frames {
		c, group := stormClassOf(f)
		if !group || c != want[i] {
			t.Errorf("frame %d (% x…): class %d group %v, want %d", i, f[:min(len(f), 16)], c, group, want[i])
		}
	}
	if _, group := stormClassOf(frame(ourMAC, otherMAC, unix.ETH_P_ARP, 60)); group {
		t.Error("unicast frame classed as a group frame")
	}
	if _, group := stormClassOf(make([]byte, 13)); group {
		t.Error("runt classed as a group frame")
	}
}

// TestStormFilterAgrees: for every set of held classes, the storm filter
// in the VM gives every frame (the edge cases and random ones) the normal
// filter's verdict, except a group frame of a held class that BPF's
// random number does not pick, which it drops — and stormClassOf, what
// userspace counts by, names the same class.
func TestStormFilterAgrees(t *testing.T) {
	frames, _ := stormFrames()
	rnd := rand.New(rand.NewPCG(9, 10))
	for range 3000 {
		n := rnd.IntN(400)
		f := make([]byte, n)
		for i := range f {
			f[i] = byte(rnd.Uint32())
		}
		if n >= 14 {
			switch rnd.IntN(4) { // mostly the EtherTypes the classifier looks at
			case 0:
				binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
				if n > ip4ProtoOff {
					f[ip4ProtoOff] = unix.IPPROTO_UDP
				}
			case 1:
				binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IPV6)
			case 2:
				binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
			}
			if rnd.IntN(3) == 0 {
				copy(f[0:6], ourMAC)
			}
		}
		frames = append(frames, f)
	}
	frames = append(frames, frame(ourMAC, otherMAC, unix.ETH_P_ARP, 60), frame(bcastMAC, ourMAC, unix.ETH_P_ARP, 60))
	for _, vlan := range []bool{false, true} {
		normal := vmProgram(t, mustFilter(t), vlan)
		for held := stormClasses(0); held < 1<<numStormClasses; held++ {
			none, all := stormVM(t, held, 1, vlan), stormVM(t, held, 0, vlan)
			for i, f := range frames {
				want, err := normal.Run(f)
				if err != nil {
					t.Fatal(err)
				}
				picked, err := all.Run(f)
				if err != nil {
					t.Fatal(err)
				}
				if picked != want {
					t.Fatalf("held %04b vlan %v frame %d: picked frame verdict %d, normal %d", held, vlan, i, picked, want)
				}
				c, group := stormClassOf(f)
				if group && held.has(c) {
					want = 0
				}
				got, err := none.Run(f)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("held %04b vlan %v frame %d (class %d, group %v, % x): verdict %d, want %d",
						held, vlan, i, c, group, f[:min(len(f), 24)], got, want)
				}
			}
		}
	}
}

func mustFilter(t *testing.T) []bpf.Instruction {
	t.Helper()
	p, err := FilterProgram(ourMAC)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStormFilterNoneHeldIsNormal(t *testing.T) {
	a, _ := stormFilter(ourMAC, 0)
	b := mustFilter(t)
	if len(a) != len(b) {
		t.Fatalf("no class held: %d instructions, the normal filter has %d", len(a), len(b))
	}
	for held := stormClasses(1); held < 1<<numStormClasses; held++ {
		p, err := stormFilter(ourMAC, held)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bpf.Assemble(p); err != nil {
			t.Fatalf("held %04b: %v", held, err)
		}
	}
}

// fakeHolder records the classes held; fail makes the next swap fail.
type fakeHolder struct {
	mu    sync.Mutex
	held  []stormClasses
	fail  bool
	macs  []string
	calls int
}

func (h *fakeHolder) holdStorm(mac net.HardwareAddr, held stormClasses) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.fail {
		return errors.New("swap failed")
	}
	h.held = append(h.held, held)
	h.macs = append(h.macs, mac.String())
	return nil
}

func (h *fakeHolder) last() (stormClasses, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held) == 0 {
		return 0, 0
	}
	return h.held[len(h.held)-1], len(h.held)
}

// holderIO is a parent side that can hold classes off.
type holderIO struct {
	FrameIO
	*fakeHolder
}

func newTestLimiter(t *testing.T, h *fakeHolder) (*stormLimiter, *Counters, *[]error) {
	t.Helper()
	c := &Counters{}
	var errs []error
	var p FrameIO = nopIO{}
	if h != nil {
		p = holderIO{nopIO{}, h}
	}
	l := newStormLimiter(p, ourMAC, c, func(err error) { errs = append(errs, err) })
	t.Cleanup(l.stop)
	return l, c, &errs
}

type nopIO struct{}

func (nopIO) ReadFrame([]byte) (int, error) { return 0, net.ErrClosed }
func (nopIO) WriteFrame([]byte) error       { return nil }
func (nopIO) Close() error                  { return nil }

var (
	arpFrame   = frame(bcastMAC, otherMAC, unix.ETH_P_ARP, 42)
	otherFrame = frame(bcastMAC, otherMAC, 0x88b5, 60)
	uniFrame   = frame(ourMAC, otherMAC, 0x88b5, 60)
)

// TestStormLimiter: a storm of one class is cut to the limit and held off
// in the kernel at its first drop; the other classes and unicast still
// pass; samples count stormSample frames; a quiet window releases it.
func TestStormLimiter(t *testing.T) {
	h := &fakeHolder{}
	l, c, errs := newTestLimiter(t, h)
	now := l.start
	l.tick(now, 100)
	passed := 0
	for range 1000 {
		if l.pass(otherFrame) {
			passed++
		}
	}
	if passed != 100 {
		t.Errorf("%d of 1000 storm frames passed, want the bucket's 100", passed)
	}
	if held, n := h.last(); held != 1<<stormOther || n != 1 {
		t.Errorf("kernel holds %04b after %d swaps, want only other held, once", held, n)
	}
	if h.macs[0] != ourMAC.String() {
		t.Errorf("storm filter built for %s, want %s", h.macs[0], ourMAC)
	}
	if got := c.RxDrops[DropStormOther].Load(); got < 900 {
		t.Errorf("storm-other = %d, want ≥ 900", got)
	}
	for range 50 {
		if !l.pass(arpFrame) || !l.pass(uniFrame) {
			t.Fatal("an ARP or unicast frame was dropped during a storm of another class")
		}
	}
	// Half a second later: 50 tokens; each sample now counts 64.
	now = now.Add(500 * time.Millisecond)
	l.tick(now, 100)
	before := c.RxDrops[DropStormOther].Load()
	for range 60 {
		l.pass(otherFrame)
	}
	if got, want := c.RxDrops[DropStormOther].Load()-before, uint64(50*(stormSample-1)+10*stormSample); got != want {
		t.Errorf("60 samples: %d storm drops counted, want %d (50 relayed, each standing for %d)", got, want, stormSample)
	}
	// The window ends with the storm still on: held.
	now = now.Add(600 * time.Millisecond)
	l.tick(now, 100)
	if held, _ := h.last(); held != 1<<stormOther {
		t.Errorf("storm still on: kernel holds %04b, want other", held)
	}
	// A quiet window: released.
	now = now.Add(1100 * time.Millisecond)
	l.tick(now, 100)
	if held, n := h.last(); held != 0 || n != 2 {
		t.Errorf("after a quiet window: kernel holds %04b after %d swaps, want none after 2", held, n)
	}
	if len(*errs) != 0 {
		t.Errorf("errors: %v", *errs)
	}
	// Off: everything passes, nothing is counted.
	l.tick(now, 0)
	before = c.RxDrops[DropStormOther].Load()
	for range 5000 {
		if !l.pass(otherFrame) {
			t.Fatal("limiter off: a frame was dropped")
		}
	}
	if c.RxDrops[DropStormOther].Load() != before {
		t.Error("limiter off: drops counted")
	}
}

// TestStormLimiterSilenceReleases: a storm that stops dead leaves no
// frame to end a window with; the timer releases the hold.
func TestStormLimiterSilenceReleases(t *testing.T) {
	h := &fakeHolder{}
	l, _, _ := newTestLimiter(t, h)
	l.expireAfter = 20 * time.Millisecond
	l.tick(time.Now(), 10)
	for range 20 {
		l.pass(arpFrame)
	}
	if held, _ := h.last(); held != 1<<stormARP {
		t.Fatalf("kernel holds %04b, want arp", held)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if held, n := h.last(); held == 0 && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			held, n := h.last()
			t.Fatalf("after a silence: kernel holds %04b after %d swaps, want none after 2", held, n)
		}
		time.Sleep(time.Millisecond)
	}
	// The reader sees the release at its next frame: no weighting.
	l.tick(time.Now(), 10)
	if l.held != 0 {
		t.Errorf("reader still thinks %04b held", l.held)
	}
}

// TestStormLimiterSwapFails: a filter that cannot be swapped is reported
// once, and the limiter goes on in userspace.
func TestStormLimiterSwapFails(t *testing.T) {
	h := &fakeHolder{fail: true}
	l, c, errs := newTestLimiter(t, h)
	l.tick(l.start, 10)
	passed := 0
	for range 100 {
		if l.pass(otherFrame) {
			passed++
		}
	}
	if passed != 10 || c.RxDrops[DropStormOther].Load() != 90 {
		t.Errorf("passed %d, storm-other %d; want 10 and 90", passed, c.RxDrops[DropStormOther].Load())
	}
	if len(*errs) != 1 || h.calls != 1 {
		t.Errorf("%d errors reported, %d swaps tried; want 1 and 1", len(*errs), h.calls)
	}
}

// TestStormLimiterUserspaceOnly: a parent that cannot hold (a fake) is
// limited in userspace.
func TestStormLimiterUserspaceOnly(t *testing.T) {
	l, c, _ := newTestLimiter(t, nil)
	l.tick(l.start, 5)
	for range 10 {
		l.pass(arpFrame)
	}
	if got := c.RxDrops[DropStormARP].Load(); got != 5 {
		t.Errorf("storm-arp = %d, want 5", got)
	}
}

func TestStormLimiterAllocs(t *testing.T) {
	l, _, _ := newTestLimiter(t, &fakeHolder{})
	now := l.start
	l.tick(now, 1000)
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		l.tick(now, 1000)
		l.pass(otherFrame)
		l.pass(arpFrame)
		l.pass(uniFrame)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
}

func TestSetStormLimit(t *testing.T) {
	r := &Relay{}
	for _, c := range []struct{ in, want int }{{0, DefaultBroadcastLimit}, {BroadcastLimitOff, 0}, {-7, 0}, {250, 250}} {
		r.SetStormLimit(c.in)
		if got := r.stormRate.Load(); got != int64(c.want) {
			t.Errorf("SetStormLimit(%d): rate %d, want %d", c.in, got, c.want)
		}
	}
}
