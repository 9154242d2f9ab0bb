// Package bridgetest provides fakes of what a bridge needs of the kernel, so
// that the relay and a whole bridge can be tested without root, a TAP or a
// network: Pipe, a channel-backed bridge.FrameIO; and Net, a link table
// (bridge.LinkControl) with TAPs and parent sockets built on Pipes
// (bridge.Opener).
package bridgetest

import (
	"net"
	"sync"

	"github.com/vethd/vethd/pkg/bridge"
)

// Pipe is a bridge.FrameIO and bridge.BatchReader fed and drained through
// channels: the relay reads the frames a test sends on In (as one batch
// whatever is queued there; wrap the Pipe in a struct that embeds only
// bridge.FrameIO to read frame by frame), and every frame the relay writes is
// copied into a buffer from Free (or a new one if Free is empty) and sent
// on Out. Prime Free and hand the buffers back to keep a test free of
// allocations.
type Pipe struct {
	In   chan []byte
	Out  chan []byte
	Free chan []byte

	closeOnce sync.Once
	closed    chan struct{}

	breakOnce sync.Once
	broken    chan struct{} // closed by Break; breakErr is set before
	breakErr  error
}

var (
	_ bridge.FrameIO     = (*Pipe)(nil)
	_ bridge.BatchReader = (*Pipe)(nil)
)

// NewPipe returns a Pipe whose channels hold up to depth frames.
func NewPipe(depth int) *Pipe {
	return &Pipe{
		In:     make(chan []byte, depth),
		Out:    make(chan []byte, depth),
		Free:   make(chan []byte, depth),
		closed: make(chan struct{}),
		broken: make(chan struct{}),
	}
}

// ReadFrame returns the next frame sent on In. See bridge.FrameIO.
func (p *Pipe) ReadFrame(buf []byte) (int, error) {
	if err := p.brokenErr(); err != nil {
		return 0, err
	}
	select {
	case f := <-p.In:
		if len(f) > len(buf) {
			return 0, bridge.ErrTruncated
		}
		return copy(buf, f), nil
	case <-p.closed:
		return 0, net.ErrClosed
	case <-p.broken:
		return 0, p.breakErr
	}
}

// ReadBatch waits for the first frame sent on In, then takes whatever else
// is queued there, up to len(bufs) frames. A frame longer than its buffer
// is not copied; its size is reported. See bridge.BatchReader.
func (p *Pipe) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if err := p.brokenErr(); err != nil {
		return 0, err
	}
	var f []byte
	select {
	case f = <-p.In:
	case <-p.closed:
		return 0, net.ErrClosed
	case <-p.broken:
		return 0, p.breakErr
	}
	n := 0
	for {
		sizes[n] = len(f)
		if len(f) <= len(bufs[n]) {
			copy(bufs[n], f)
		}
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case f = <-p.In:
		default:
			return n, nil
		}
	}
}

// WriteFrame copies frame and sends the copy on Out. See bridge.FrameIO.
func (p *Pipe) WriteFrame(frame []byte) error {
	if err := p.brokenErr(); err != nil {
		return err
	}
	var b []byte
	select {
	case b = <-p.Free:
	default:
	}
	b = append(b[:0], frame...)
	select {
	case p.Out <- b:
		return nil
	case <-p.closed:
		return net.ErrClosed
	case <-p.broken:
		return p.breakErr
	}
}

// Close ends pending and future calls with net.ErrClosed. See bridge.FrameIO.
func (p *Pipe) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

// Closed reports whether Close has been called.
func (p *Pipe) Closed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// Break makes pending and future reads and writes fail with err, as those
// of a device that went away do (a TAP whose interface was deleted reads
// EBADFD). Only the first Break counts; after Close, calls may also return
// net.ErrClosed.
func (p *Pipe) Break(err error) {
	p.breakOnce.Do(func() {
		p.breakErr = err
		close(p.broken)
	})
}

// brokenErr returns Break's error once Break has been called, or nil.
func (p *Pipe) brokenErr() error {
	select {
	case <-p.broken:
		return p.breakErr
	default:
		return nil
	}
}
