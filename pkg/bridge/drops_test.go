package bridge_test

import (
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
)

// TestQueueDropsCounted: what the kernel dropped on the parent socket's
// full queue shows in the counters within a couple of seconds while the
// bridge runs (the process-wide poll reads it once a second), not only
// when it closes (TestClose).
func TestQueueDropsCounted(t *testing.T) {
	h := newLCHarness(t)
	b := h.start(h.config())
	sock := h.n.Socket()
	var want uint64
	for _, add := range []uint64{3, 4} {
		sock.AddDropped(add)
		want += add
		deadline := time.Now().Add(5 * time.Second)
		for b.Counters().RxDrops[bridge.DropQueueFull].Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d queue-full drops after 5 s, want %d", b.Counters().RxDrops[bridge.DropQueueFull].Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
