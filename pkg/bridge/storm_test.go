package bridge_test

import (
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/bridge/bridgetest"
)

// frameOnlyParent hides a Pipe's ReadBatch, so the relay reads it a frame
// at a time.
type frameOnlyParent struct{ *bridgetest.Pipe }

func (p frameOnlyParent) ReadFrame(b []byte) (int, error) { return p.Pipe.ReadFrame(b) }
func (p frameOnlyParent) WriteFrame(f []byte) error       { return p.Pipe.WriteFrame(f) }
func (p frameOnlyParent) Close() error                    { return p.Pipe.Close() }

// TestRelayStormLimit: through the relay, in both read loops, a
// broadcast storm from the parent is cut to about the limit (the bucket's
// second's worth, and what it refills while the test runs) and counted as
// storm-other, while every unicast frame for the virtual MAC among the
// storm still reaches the TAP; with the limit off everything passes.
func TestRelayStormLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		limit int
		batch bool
	}{{"batched", 20, true}, {"frame by frame", 20, false}, {"off", bridge.BroadcastLimitOff, true}} {
		t.Run(c.name, func(t *testing.T) {
			tap, parent := bridgetest.NewPipe(64), bridgetest.NewPipe(64)
			cnt := &bridge.Counters{}
			r := bridge.NewRelay(tap, vmac, cnt, nil)
			t.Cleanup(r.Close)
			r.SetStormLimit(c.limit)
			if c.batch {
				r.SetParent(parent)
			} else {
				r.SetParent(frameOnlyParent{parent})
			}
			const storm, unicast = 2000, 100
			go func() {
				for i := range storm {
					f := vframe(make([]byte, bridge.VnetHdrLen), bcast, peer, 60, byte(i))
					f[bridge.VnetHdrLen+12], f[bridge.VnetHdrLen+13] = 0x88, 0xb5 // "other"
					parent.In <- f
					if i%(storm/unicast) == 0 {
						parent.In <- vframe(make([]byte, bridge.VnetHdrLen), vmac, peer, 60, 0)
					}
				}
			}()
			// Drops are counted as they happen, frames as they arrive:
			// wait until every frame is one or the other.
			var got, uni int
			deadline := time.Now().Add(waitTimeout)
			for got+int(cnt.RxDrops[bridge.DropStormOther].Load()) < storm+unicast {
				if time.Now().After(deadline) {
					t.Fatalf("%d frames passed and %d dropped of %d", got, cnt.RxDrops[bridge.DropStormOther].Load(), storm+unicast)
				}
				select {
				case f := <-tap.Out:
					got++
					if f[bridge.VnetHdrLen] == vmac[0] && f[bridge.VnetHdrLen+5] == vmac[5] {
						uni++
					}
				case <-time.After(time.Millisecond):
				}
			}
			bc := got - uni
			t.Logf("limit %d: %d broadcast and %d unicast frames passed, %d storm-other", c.limit, bc, uni, cnt.RxDrops[bridge.DropStormOther].Load())
			if uni != unicast {
				t.Errorf("%d of %d unicast frames passed", uni, unicast)
			}
			switch {
			case c.limit < 0 && bc != storm:
				t.Errorf("limit off: %d of %d broadcast frames passed", bc, storm)
			case c.limit > 0 && (bc < c.limit || bc > 4*c.limit):
				t.Errorf("%d of %d broadcast frames passed, want about %d", bc, storm, c.limit)
			}
		})
	}
}
