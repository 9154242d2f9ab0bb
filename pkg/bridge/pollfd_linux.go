package bridge

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollFD is a non-blocking file descriptor in Go's netpoller, read and
// written one frame per call without allocating: the closures handed to
// RawConn are built once. One goroutine may read while another writes;
// Close may be called from any goroutine, and more than once.
type pollFD struct {
	// Set by newPollFD, read-only after.
	f      *os.File
	rc     syscall.RawConn
	rflags int // recv flags (MSG_TRUNC on sockets); 0: read(2)

	closed atomic.Bool // set by Close before the file is closed
	once   sync.Once   // makes Close idempotent

	// Reader state, owned by the goroutine in ReadFrame (one at a time).
	rbuf   []byte
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	// Writer state, owned by the goroutine in WriteFrame (one at a time).
	wbuf    []byte
	werr    error
	writeFn func(fd uintptr) bool
}

var _ FrameIO = (*pollFD)(nil)

// newPollFD takes ownership of fd (which must already be non-blocking).
// recvTrunc reads with recv(MSG_TRUNC) so that a frame larger than the
// buffer is detected (sockets only).
func newPollFD(fd int, name string, recvTrunc bool) (*pollFD, error) {
	p := &pollFD{f: os.NewFile(uintptr(fd), name)}
	rc, err := p.f.SyscallConn()
	if err != nil {
		p.f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.rc = rc
	if recvTrunc {
		p.rflags = unix.MSG_TRUNC
	}
	p.readFn = p.doRead
	p.writeFn = p.doWrite
	return p, nil
}

// The relay's syscalls are raw (unix.RawSyscall: no entersyscall and
// exitsyscall), which is safe because every descriptor here is
// non-blocking: a read, recvmmsg or write returns at once, with EAGAIN if
// it would wait, and the goroutine then parks in the netpoller. A plain
// unix.Syscall tells the scheduler that the thread may block, and a TAP
// write, which runs the host's whole receive path inside it, often lasts
// longer than the 20 µs after which sysmon takes the P away and hands it
// to another thread, so that the writer must win a P back when it returns;
// that churn was 6–11 % of vethd's CPU (runtime.sysmon, handoffp, startm,
// futex wake-ups) and added tens of µs to a round trip. The raw syscall
// holds its P while the kernel works on the frame (about 35 µs per 64 KiB
// frame at 15 Gbit/s, the whole path included), which is also the longest
// a stop-the-world waits for it. docs/performance.md, "Issue 10: the
// levers".
func (p *pollFD) doRead(fd uintptr) bool {
	var n uintptr
	var errno syscall.Errno
	if p.rflags != 0 {
		n, _, errno = unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafePointer(p.rbuf)), uintptr(len(p.rbuf)), uintptr(p.rflags), 0, 0)
	} else {
		n, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafePointer(p.rbuf)), uintptr(len(p.rbuf)))
	}
	if errno == unix.EAGAIN {
		return false
	}
	if errno != 0 {
		p.rn, p.rerr = 0, errno
		return true
	}
	p.rn, p.rerr = int(n), nil
	return true
}

func (p *pollFD) doWrite(fd uintptr) bool {
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafePointer(p.wbuf)), uintptr(len(p.wbuf)))
	if errno == unix.EAGAIN {
		return false
	}
	p.werr = nil
	if errno != 0 {
		p.werr = errno
	}
	return true
}

// ReadFrame reads one frame into buf. See FrameIO.
func (p *pollFD) ReadFrame(buf []byte) (int, error) {
	p.rbuf = buf
	err := p.rc.Read(p.readFn)
	p.rbuf = nil
	if err != nil || p.closed.Load() {
		if p.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	if p.rn > len(buf) {
		return 0, ErrTruncated
	}
	return p.rn, nil
}

// WriteFrame writes one frame. See FrameIO.
func (p *pollFD) WriteFrame(frame []byte) error {
	p.wbuf = frame
	err := p.rc.Write(p.writeFn)
	p.wbuf = nil
	if err != nil {
		if p.closed.Load() {
			return net.ErrClosed
		}
		return err
	}
	return p.werr
}

// Close closes the descriptor, waking any blocked reader or writer. See FrameIO.
func (p *pollFD) Close() error {
	var err error
	p.once.Do(func() {
		p.closed.Store(true)
		err = p.f.Close()
	})
	return err
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }
