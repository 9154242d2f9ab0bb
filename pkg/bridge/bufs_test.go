package bridge_test

import (
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/bridge/bridgetest"
)

// TestRelayBuffersUnmapped: the readers' buffers are mapped outside the
// heap when a reader starts, kept across parent re-binds, and unmapped by
// Close (a re-created interface gets a new Relay: the old one's 16 MiB of
// address space must not stay behind). Not parallel: MappedBytes is the
// process's.
func TestRelayBuffersUnmapped(t *testing.T) {
	for _, side := range []struct {
		name    string
		wrap    func(*bridgetest.Pipe) bridge.FrameIO
		devBufs int64
	}{
		{"batches", func(p *bridgetest.Pipe) bridge.FrameIO { return p }, bridge.BatchSize},
		{"frames", func(p *bridgetest.Pipe) bridge.FrameIO { return frameOnly{p} }, 1},
	} {
		t.Run(side.name, func(t *testing.T) {
			before := bridge.MappedBytes()
			dev := bridgetest.NewPipe(8)
			c := &bridge.Counters{}
			r := bridge.NewRelay(side.wrap(dev), vmac, c, nil)
			for i := range 3 { // re-bound parents share one set
				parent := bridgetest.NewPipe(8)
				r.SetParent(parent)
				parent.In <- vframe(make([]byte, 10), vmac, peer, 1514, byte(i))
				recv(t, dev.Out)
				dev.In <- vframe(nil, bcast, vmac, 60, byte(i))
				recv(t, parent.Out)
			}
			want := (side.devBufs + bridge.BatchSize) * bridge.BufSize
			if got := bridge.MappedBytes() - before; got != want {
				t.Errorf("mapped while running: %d bytes, want %d (device side %d buffers, parent %d, of %d)", got, want, side.devBufs, bridge.BatchSize, bridge.BufSize)
			}
			r.Close()
			if got := bridge.MappedBytes() - before; got != 0 {
				t.Errorf("%d bytes still mapped after Close", got)
			}
		})
	}
}
