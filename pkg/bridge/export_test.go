package bridge

// Coalesce runs the coalescer over copies of frames (each a vnet header
// and an Ethernet frame), as one batch, and returns the frames the relay
// would write to the TAP, in order.
func Coalesce(frames [][]byte) [][]byte {
	return NewBatchCoalescer(len(frames)).Run(frames)
}

// BatchCoalescer is a coalescer with its batch buffers, for tests and
// benchmarks.
type BatchCoalescer struct {
	c    *coalescer
	bufs [][]byte
	out  [][]byte
}

// NewBatchCoalescer returns a BatchCoalescer for batches of up to n frames.
func NewBatchCoalescer(n int) *BatchCoalescer {
	b := &BatchCoalescer{c: newCoalescer(n), bufs: make([][]byte, n), out: make([][]byte, 0, n)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, BufSize)
	}
	return b
}

// Run coalesces copies of frames as one batch; the result is valid until
// the next Run.
func (b *BatchCoalescer) Run(frames [][]byte) [][]byte {
	b.c.reset()
	for i, f := range frames {
		copy(b.bufs[i], f)
		b.c.add(b.bufs, i, len(f))
	}
	b.c.finish(b.bufs)
	b.out = b.out[:0]
	for _, g := range b.c.groups {
		b.out = append(b.out, b.bufs[g.slot][:g.n])
	}
	return b.out
}

// Checksum exposes checksum for tests.
func Checksum(b []byte, initial uint16) uint16 { return checksum(b, initial) }

// MappedBytes is how much relay buffer memory is mapped now.
func MappedBytes() int64 { return mappedBytes.Load() }
