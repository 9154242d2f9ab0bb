package bridge_test

import (
	"bytes"
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/bridge/bridgetest"
)

// The NIC's side of the relay is read a frame at a time (a TAP) or a batch
// at a time (a veth pair's peer socket, a BatchReader): both loops check
// and count the same.

func TestRelayDeviceSides(t *testing.T) {
	for _, side := range []struct {
		name string
		wrap func(*bridgetest.Pipe) bridge.FrameIO
	}{
		{"batches", func(p *bridgetest.Pipe) bridge.FrameIO { return p }},
		{"frames", func(p *bridgetest.Pipe) bridge.FrameIO { return frameOnly{p} }},
	} {
		t.Run(side.name, func(t *testing.T) {
			dev, parent := bridgetest.NewPipe(64), bridgetest.NewPipe(64)
			c := &bridge.Counters{}
			r := bridge.NewRelay(side.wrap(dev), vmac, c, nil)
			t.Cleanup(r.Close)
			dev.In <- vframe(nil, bcast, vmac, 60, 1) // no parent yet
			waitCounter(t, "TxDrops[no-parent]", &c.TxDrops[bridge.DropNoParent], 1)
			r.SetParent(parent)
			dev.In <- vframe(nil, bcast, peer, 60, 2)                        // spoofed
			dev.In <- vframe(nil, bcast, vmac, 60, 3)[:bridge.VnetHdrLen+13] // runt
			dev.In <- make([]byte, bridge.BufSize+1)                         // oversize
			gso := vframe(gsoHdr, peer, vmac, 9000, 4)
			dev.In <- gso
			if got := recv(t, parent.Out); !bytes.Equal(got, gso) {
				t.Fatal("GSO frame from the NIC altered or not the first out")
			}
			waitCounter(t, "TxPackets", &c.TxPackets, 1)
			s := c.Snapshot()
			if s.TxDrops["spoof"] != 1 || s.TxDrops["runt"] != 1 || s.TxBytes != 9000 ||
				s.TxDrops["oversize"]+s.Errors != 1 { // (the frame loop counts an oversize read as an error)
				t.Fatalf("counters %+v", s)
			}
			// No allocation per frame either way.
			for range 4 {
				parent.Free <- make([]byte, 0, bridge.BufSize)
			}
			up := vframe(nil, peer, vmac, 1514, 5)
			step := func() {
				dev.In <- up
				parent.Free <- <-parent.Out
			}
			step()
			if n := testing.AllocsPerRun(200, step); n != 0 {
				t.Fatalf("NIC→wire allocates %.2f times per frame, want 0", n)
			}
		})
	}
}
