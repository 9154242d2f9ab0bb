package bridge

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchState is the parent socket's recvmmsg state: message headers and
// iovecs, allocated on the first ReadBatch and reused after that. It is
// owned by the goroutine in ReadBatch (one at a time: the parent's reader).
type batchState struct {
	msgs   []unix.Mmsghdr
	iovs   []unix.Iovec
	vlen   int                   // messages to read, for doReadBatch
	n      int                   // messages read, from doReadBatch
	err    error                 // doReadBatch's error
	readFn func(fd uintptr) bool // s.doReadBatch, bound once
}

// The relay reads a ParentSocket a batch at a time (and coalesces) only if
// it is a BatchReader: make sure it stays one.
var _ BatchReader = (*ParentSocket)(nil)

// ReadBatch reads up to len(bufs) frames with one recvmmsg(MSG_DONTWAIT |
// MSG_TRUNC), waiting in the netpoller while there is none. With MSG_TRUNC
// the kernel reports a frame's full length, so a frame larger than its
// buffer shows as sizes[i] > len(bufs[i]) and is dropped by the relay,
// never relayed cut. See BatchReader.
func (s *ParentSocket) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	b := &s.batch
	if len(b.msgs) < len(bufs) {
		b.msgs = make([]unix.Mmsghdr, len(bufs))
		b.iovs = make([]unix.Iovec, len(bufs))
		b.readFn = s.doReadBatch
	}
	for i, buf := range bufs {
		b.iovs[i].Base = unsafe.SliceData(buf)
		b.iovs[i].SetLen(len(buf))
		b.msgs[i].Hdr.Iov = &b.iovs[i]
		b.msgs[i].Hdr.SetIovlen(1)
	}
	b.vlen = len(bufs)
	err := s.rc.Read(b.readFn)
	if err != nil || s.closed.Load() {
		if s.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	if b.err != nil {
		return 0, b.err
	}
	for i := range b.n {
		sizes[i] = int(b.msgs[i].Len)
		if b.msgs[i].Hdr.Flags&unix.MSG_TRUNC != 0 && sizes[i] <= len(bufs[i]) {
			sizes[i] = len(bufs[i]) + 1
		}
	}
	return b.n, nil
}

// doReadBatch's recvmmsg is raw for the reason given at pollFD.doRead.
func (s *ParentSocket) doReadBatch(fd uintptr) bool {
	b := &s.batch
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(b.vlen),
		unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	if errno == unix.EAGAIN {
		return false
	}
	if errno != 0 {
		b.n, b.err = 0, syscall.Errno(errno)
		return true
	}
	b.n, b.err = int(n), nil
	return true
}
