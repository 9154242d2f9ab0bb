package bridge_test

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/bridge/bridgetest"
)

var (
	vmac   = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	peer   = net.HardwareAddr{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	bcast  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	gsoHdr = []byte{0x01, 0x01, 54, 0, 0xa8, 0x05, 34, 0, 16, 0} // NEEDS_CSUM, TCPv4, hdr 54, gso 1448, csum 34+16
)

// vframe builds a vnet header followed by an Ethernet frame of n bytes
// carrying a recognizable payload.
func vframe(hdr []byte, dst, src net.HardwareAddr, n int, mark byte) []byte {
	b := make([]byte, bridge.VnetHdrLen+n)
	copy(b, hdr)
	e := b[bridge.VnetHdrLen:]
	copy(e[0:6], dst)
	copy(e[6:12], src)
	e[12], e[13] = 0x08, 0x00
	for i := 14; i < n; i++ {
		e[i] = mark + byte(i)
	}
	return b
}

func recv(t *testing.T, ch chan []byte) []byte {
	t.Helper()
	select {
	case f := <-ch:
		return f
	case <-time.After(waitTimeout):
		t.Fatalf("no frame relayed within %v", waitTimeout)
		return nil
	}
}

// waitTimeout bounds how long a test waits for the relay: generous, as a
// loaded machine may deschedule a reader for a long time.
const waitTimeout = 10 * time.Second

// waitCounter waits until counter c (called name in the failure) is want.
// The relay counts a frame after its write to the other side succeeded,
// so a test that has just received the frame may be ahead of the count.
// Counters only grow, so one past want fails at once.
func waitCounter(t *testing.T, name string, c *atomic.Uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := c.Load()
		switch {
		case n == want:
			return
		case n > want:
			t.Fatalf("%s = %d, want %d", name, n, want)
		case time.Now().After(deadline):
			t.Fatalf("%s = %d after %v, want %d", name, n, waitTimeout, want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func newRelay(t *testing.T) (*bridge.Relay, *bridgetest.Pipe, *bridgetest.Pipe, *bridge.Counters) {
	t.Helper()
	tap, parent := bridgetest.NewPipe(8), bridgetest.NewPipe(8)
	c := &bridge.Counters{}
	r := bridge.NewRelay(tap, vmac, c, nil)
	r.SetParent(parent)
	t.Cleanup(r.Close)
	return r, tap, parent, c
}

func TestRelayBothWaysUntouched(t *testing.T) {
	_, tap, parent, c := newRelay(t)

	up := vframe(gsoHdr, peer, vmac, 9000, 1) // a GSO super-frame with its vnet header
	tap.In <- up
	if got := recv(t, parent.Out); !bytes.Equal(got, up) {
		t.Fatal("frame from the TAP reached the parent altered")
	}
	down := vframe(make([]byte, 10), vmac, peer, 1514, 2)
	parent.In <- down
	if got := recv(t, tap.Out); !bytes.Equal(got, down) {
		t.Fatal("frame from the parent reached the TAP altered")
	}
	waitCounter(t, "TxBytes", &c.TxBytes, 9000)
	waitCounter(t, "RxBytes", &c.RxBytes, 1514)
	s := c.Snapshot()
	if s.TxPackets != 1 || s.TxBytes != 9000 || s.RxPackets != 1 || s.RxBytes != 1514 {
		t.Fatalf("counters = %+v, want 1 tx packet of 9000 bytes and 1 rx of 1514", s)
	}
}

func TestRelayDropsSpoofedAndRunts(t *testing.T) {
	_, tap, parent, c := newRelay(t)

	tap.In <- vframe(nil, bcast, peer, 60, 3)                        // source is not ours
	tap.In <- vframe(nil, bcast, vmac, 60, 4)[:bridge.VnetHdrLen+13] // runt
	parent.In <- make([]byte, bridge.VnetHdrLen+5)                   // runt from the wire
	good := vframe(nil, bcast, vmac, 60, 5)
	tap.In <- good
	if got := recv(t, parent.Out); !bytes.Equal(got, good) {
		t.Fatal("first frame out is not the only legitimate one")
	}
	// The good frame is counted after its write; the wire-side runt is
	// consumed by the other goroutine: wait for both.
	waitCounter(t, "TxBytes", &c.TxBytes, 60)
	waitCounter(t, "RxDrops[runt]", &c.RxDrops[bridge.DropRunt], 1)
	s := c.Snapshot()
	if s.TxDrops["spoof"] != 1 || s.TxDrops["runt"] != 1 || s.RxDrops["runt"] != 1 || s.TxPackets != 1 {
		t.Fatalf("counters = %+v, want 1 spoof, 1 tx runt, 1 rx runt, 1 tx packet", s)
	}
	select {
	case f := <-tap.Out:
		t.Fatalf("a runt reached the TAP: % x", f)
	default:
	}
}

func TestRelayOversizeAndNoParent(t *testing.T) {
	r, tap, parent, c := newRelay(t)

	parent.In <- make([]byte, bridge.BufSize+1)
	ok := vframe(nil, vmac, peer, 100, 6)
	parent.In <- ok
	if got := recv(t, tap.Out); !bytes.Equal(got, ok) {
		t.Fatal("frame after an oversize one not relayed")
	}
	if n := c.RxDrops[bridge.DropOversize].Load(); n != 1 {
		t.Fatalf("oversize drops = %d, want 1", n)
	}

	r.SetParent(nil)
	if !parent.Closed() {
		t.Fatal("detaching did not close the parent")
	}
	tap.In <- vframe(nil, bcast, vmac, 60, 7)
	waitCounter(t, "TxDrops[no-parent]", &c.TxDrops[bridge.DropNoParent], 1)

	// A new parent picks up where the old one left off.
	p2 := bridgetest.NewPipe(8)
	r.SetParent(p2)
	f := vframe(nil, peer, vmac, 200, 8)
	tap.In <- f
	if got := recv(t, p2.Out); !bytes.Equal(got, f) {
		t.Fatal("frame not relayed to the new parent")
	}
}

func TestRelayCloseStopsReaders(t *testing.T) {
	tap, parent := bridgetest.NewPipe(1), bridgetest.NewPipe(1)
	r := bridge.NewRelay(tap, vmac, &bridge.Counters{}, nil)
	r.SetParent(parent)
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return: a reader did not stop")
	}
	if !tap.Closed() || !parent.Closed() {
		t.Fatal("Close left a side open")
	}
}

func TestCountersReset(t *testing.T) {
	_, tap, parent, c := newRelay(t)
	tap.In <- vframe(nil, bcast, vmac, 60, 9)
	recv(t, parent.Out)
	waitCounter(t, "TxBytes", &c.TxBytes, 60) // else the count could come after Reset
	c.Reset()
	if s := c.Snapshot(); s.TxPackets != 0 || s.TxBytes != 0 {
		t.Fatalf("after Reset: %+v", s)
	}
}

// TestRelayNoAllocs proves the per-frame path allocates nothing, in both
// directions (the fake's buffers are recycled through Free).
func TestRelayNoAllocs(t *testing.T) {
	_, tap, parent, _ := newRelay(t)
	up := vframe(gsoHdr, peer, vmac, 1514, 10)
	down := vframe(nil, vmac, peer, 1514, 11)
	for range 4 {
		tap.Free <- make([]byte, 0, bridge.BufSize)
		parent.Free <- make([]byte, 0, bridge.BufSize)
	}
	step := func() {
		tap.In <- up
		parent.In <- down
		parent.Free <- <-parent.Out
		tap.Free <- <-tap.Out
	}
	step() // warm up
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Fatalf("relay allocates %.2f times per frame pair, want 0", n)
	}
}

func BenchmarkRelay(b *testing.B) {
	tap, parent := bridgetest.NewPipe(64), bridgetest.NewPipe(64)
	r := bridge.NewRelay(tap, vmac, &bridge.Counters{}, nil)
	r.SetParent(parent)
	defer r.Close()
	up := vframe(nil, peer, vmac, 1514, 12)
	for range 64 {
		parent.Free <- make([]byte, 0, bridge.BufSize)
	}
	b.SetBytes(1514)
	b.ReportAllocs()
	for b.Loop() {
		tap.In <- up
		parent.Free <- <-parent.Out
	}
}

// TestRelayCoalescesBatch: segments already queued on the parent when the
// reader starts are read as one batch and reach the TAP as one GSO frame
// that resegments into exactly those segments; other frames pass through.
func TestRelayCoalescesBatch(t *testing.T) {
	tap, parent := bridgetest.NewPipe(64), bridgetest.NewPipe(64)
	in := frames(stream(false, 10, 1448, 500, 2))
	for _, f := range in {
		parent.In <- f
	}
	other := vframe(nil, vmac, peer, 100, 3)
	parent.In <- make([]byte, bridge.BufSize+1) // oversize, dropped
	parent.In <- other
	c := &bridge.Counters{}
	r := bridge.NewRelay(tap, vmac, c, nil)
	r.SetParent(parent)
	t.Cleanup(r.Close)
	checkMerged(t, recv(t, tap.Out), in)
	if got := recv(t, tap.Out); !bytes.Equal(got, other) {
		t.Fatal("frame after the coalesced one not passed through untouched")
	}
	waitCounter(t, "RxPackets", &c.RxPackets, 2)
	s := c.Snapshot()
	if s.RxPackets != 2 || s.RxCoalesced != 10 || s.RxDrops["oversize"] != 1 {
		t.Fatalf("counters = %+v, want 2 rx packets, 10 coalesced, 1 oversize", s)
	}
}

// frameOnly hides a Pipe's ReadBatch: the relay then reads frame by frame.
type frameOnly struct{ bridge.FrameIO }

// TestRelayUnbatchedParent: a parent that is not a BatchReader is relayed
// frame by frame, untouched.
func TestRelayUnbatchedParent(t *testing.T) {
	tap, parent := bridgetest.NewPipe(64), bridgetest.NewPipe(64)
	in := frames(stream(true, 4, 1448, 0, 2))
	for _, f := range in {
		parent.In <- f
	}
	r := bridge.NewRelay(tap, vmac, &bridge.Counters{}, nil)
	r.SetParent(frameOnly{parent})
	t.Cleanup(r.Close)
	for i := range in {
		if got := recv(t, tap.Out); !bytes.Equal(got, in[i]) {
			t.Fatalf("frame %d altered", i)
		}
	}
}

// TestRelayCoalesceNoAllocs: reading batches, coalescing and writing
// allocate nothing either (segments with checksums verified in software,
// the costliest path).
func TestRelayCoalesceNoAllocs(t *testing.T) {
	tap, parent := bridgetest.NewPipe(64), bridgetest.NewPipe(64)
	r := bridge.NewRelay(tap, vmac, &bridge.Counters{}, nil)
	r.SetParent(parent)
	t.Cleanup(r.Close)
	in := frames(stream(false, 8, 1448, 0, 0))
	for range 16 {
		tap.Free <- make([]byte, 0, bridge.BufSize)
	}
	step := func() {
		for _, f := range in {
			parent.In <- f
		}
		// However the reader split the burst into batches, all the
		// payload arrives.
		for got := 0; got < 8*1448; {
			f := <-tap.Out
			got += len(f) - bridge.VnetHdrLen - 14 - 20 - 32
			tap.Free <- f
		}
	}
	step()
	if n := testing.AllocsPerRun(100, step); n != 0 {
		t.Fatalf("batched relay allocates %.2f times per burst, want 0", n)
	}
}
