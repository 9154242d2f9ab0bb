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
//
// Each buffer starts on a page boundary (the stride is size rounded up to a
// page), so that releaseBuffer can hand a whole buffer's pages back.
func mapBuffers(n, size int) (bufs [][]byte, mem []byte) {
	bufs = make([][]byte, n)
	page := unix.Getpagesize()
	stride := (size + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, n*stride, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		for i := range bufs {
			bufs[i] = make([]byte, size)
		}
		return bufs, nil
	}
	// No transparent huge pages: where THP is "always" (a common default),
	// the first frame in a slot would fault in a whole 2 MiB page, and the
	// sparse buffers would be resident after all. Best effort: a kernel
	// without THP refuses the advice.
	_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	mappedBytes.Add(int64(len(mem)))
	for i := range bufs {
		bufs[i] = mem[i*stride : i*stride+size : i*stride+size]
	}
	return bufs, mem
}

// releaseBuffer gives the pages of buf, a buffer from mapBuffers, back to
// the kernel (MADV_DONTNEED): they stop counting in RSS, and the next frame
// written there faults in zeroed pages again. Only for mapped buffers: on
// heap memory it would zero whatever shares the pages.
func releaseBuffer(buf []byte) {
	page := unix.Getpagesize()
	n := len(buf) / page * page // buf starts on a page
	if n > 0 {
		_ = unix.Madvise(buf[:n], unix.MADV_DONTNEED)
	}
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
