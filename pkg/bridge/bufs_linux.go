package bridge

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// mappedBytes is how much relay buffer memory is mapped now (for tests and
// the runtime line).
var mappedBytes atomic.Int64

// mapBuffers returns n buffers of size bytes each, carved out of one
// anonymous private mapping outside the Go heap, and the mapping, for
// unmapBuffers. Untouched pages of a mapping cost no memory, so a relay's
// 16 MiB of address space for BIG TCP frames costs only what frames have
// filled; and the garbage collector neither scans nor counts them: as
// heap objects, 64 bridges' buffers made a heap of 1.26 GiB (above the
// soft memory limit that MemoryMax=1G gives) whose reused pages the
// allocator zeroed, i.e. made resident: 4 MiB of RSS per idle bridge
// instead of 1.4 (docs/performance.md, "64 bridges: idle cost"). If the
// mapping fails, the buffers come from the heap (mem is nil).
func mapBuffers(n, size int) (bufs [][]byte, mem []byte) {
	bufs = make([][]byte, n)
	mem, err := unix.Mmap(-1, 0, n*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		for i := range bufs {
			bufs[i] = make([]byte, size)
		}
		return bufs, nil
	}
	mappedBytes.Add(int64(len(mem)))
	for i := range bufs {
		bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs, mem
}

// unmapBuffers unmaps what mapBuffers mapped (nothing for nil). No buffer
// of the mapping may be used after it: the caller must know that every
// reader that had one has returned.
func unmapBuffers(mem []byte) {
	if mem == nil {
		return
	}
	if err := unix.Munmap(mem); err == nil {
		mappedBytes.Add(-int64(len(mem)))
	}
}
