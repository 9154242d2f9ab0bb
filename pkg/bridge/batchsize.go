package bridge

// batchBudget is about how many bytes of frames the wire reader asks the
// kernel for per recvmmsg: BatchSize MTU frames (the batches that pay, for
// the syscalls they save and the segments they let the coalescer merge),
// but only a handful of 64 KiB GSO frames, and one BIG TCP frame. A slot
// the kernel filled with a large frame stays resident, so 32 slots of 64 KiB
// frames were 2 MiB of RSS per bridge under load for nothing: one recvmmsg
// of five 64 KiB frames already costs the syscall less than 1 % of the
// copy.
const batchBudget = 384 << 10

// bigSlot is the fill above which a slot counts as holding a large frame
// (more than a page or two: an MTU frame, or a small coalesced one, does not).
const bigSlot = 16 << 10

// batchSizer chooses how many frames the wire reader asks for in each
// batch (vlen) and gives back the pages of slots that large frames filled
// and that the smaller batches no longer use. It shrinks at once when a
// batch held large frames and grows, doubling, only after batches that
// came back full of small ones; so traffic that alternates costs at most
// one release every few batches. Owned by the wire reader.
type batchSizer struct {
	vlen int // frames to ask for in the next batch, 1..BatchSize
	hi   int // slots [0, hi) may hold large frames' pages
	// release gives one slot's pages back; nil: the slots are heap memory
	// and are never released.
	release func(slot int)
}

func newBatchSizer(release func(slot int)) *batchSizer {
	return &batchSizer{vlen: BatchSize, release: release}
}

// observe takes what the last batch filled: fills[i] is how many bytes
// slot i holds now (its frame, or the coalesced frame built in it), one
// entry per frame read. It sets vlen for the next batch, and releases the
// slots beyond it that large frames filled.
func (s *batchSizer) observe(fills []int) {
	largest := 0
	for i, f := range fills {
		largest = max(largest, f)
		if f > bigSlot {
			s.hi = max(s.hi, i+1)
		}
	}
	full := len(fills) == s.vlen
	if largest > bigSlot {
		want := max(1, min(BatchSize, batchBudget/largest))
		if want < s.vlen {
			s.vlen = want
		} else if full {
			s.vlen = min(2*s.vlen, want)
		}
	} else if full {
		s.vlen = min(2*s.vlen, BatchSize)
	}
	if s.hi > s.vlen {
		if s.release != nil {
			for i := s.vlen; i < s.hi; i++ {
				s.release(i)
			}
		}
		s.hi = s.vlen
	}
}
