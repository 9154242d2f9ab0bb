// Package nlrecv reads a netlink notification socket into a buffer of its
// own that it reuses, instead of vishvananda/netlink's
// NetlinkSocket.Receive, which zeroes a 64 KiB array on the reading
// goroutine's stack for every call: a goroutine waiting there holds a
// 128 KiB stack, all of it resident, and `vethd --all` waits like that
// once or more per bridge (docs/performance.md, "64 bridges").
package nlrecv

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// initialSize is the buffer a Socket starts with: room for any link,
// address, route or rule notification of an ordinary interface (a few
// hundred bytes to 2 KiB). A larger message (a NIC with many SR-IOV
// functions) grows the buffer to its size.
var initialSize = 8 << 10

// Socket is a netlink socket read by one goroutine at a time; Close may be
// called from any goroutine and wakes a pending Receive.
type Socket struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte

	// The read's results, set by readFn.
	n      int
	from   unix.Sockaddr
	err    error
	readFn func(fd uintptr) bool
}

// Take makes a Socket of s (created by nl.Subscribe or nl.SubscribeAt, so
// in the namespace and groups it names) and closes s: the Socket reads a
// duplicate of its descriptor, in Go's netpoller.
func Take(s *nl.NetlinkSocket) (*Socket, error) {
	fd, err := unix.FcntlInt(uintptr(s.GetFd()), unix.F_DUPFD_CLOEXEC, 0)
	s.Close()
	if err != nil {
		return nil, fmt.Errorf("duplicate the netlink socket: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	r := &Socket{f: os.NewFile(uintptr(fd), "netlink"), buf: make([]byte, initialSize)}
	if r.rc, err = r.f.SyscallConn(); err != nil {
		r.f.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	r.readFn = r.read
	return r, nil
}

// read peeks at the next message's length, grows the buffer to it if it
// is larger, and reads it.
func (r *Socket) read(fd uintptr) bool {
	n, _, err := unix.Recvfrom(int(fd), r.buf[:1], unix.MSG_PEEK|unix.MSG_TRUNC)
	if err == unix.EAGAIN {
		return false
	}
	if err == nil && n > len(r.buf) {
		r.buf = make([]byte, n)
	}
	r.n, r.from, r.err = 0, nil, err
	if err == nil {
		r.n, r.from, r.err = unix.Recvfrom(int(fd), r.buf, 0)
		if r.err == unix.EAGAIN {
			return false
		}
	}
	return true
}

// Receive waits for the next datagram and returns its messages and
// sender, like nl.NetlinkSocket.Receive. The messages' Data point into the
// Socket's buffer: they are valid until the next Receive.
func (r *Socket) Receive() ([]syscall.NetlinkMessage, *unix.SockaddrNetlink, error) {
	if err := r.rc.Read(r.readFn); err != nil {
		return nil, nil, err
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	from, ok := r.from.(*unix.SockaddrNetlink)
	if !ok {
		return nil, nil, errors.New("netlink: a message from a non-netlink address")
	}
	if r.n < unix.NLMSG_HDRLEN {
		return nil, nil, fmt.Errorf("netlink: a message of %d bytes, shorter than its header", r.n)
	}
	msgs, err := syscall.ParseNetlinkMessage(r.buf[:r.n])
	if err != nil {
		return nil, nil, err
	}
	return msgs, from, nil
}

// Close closes the socket; a pending or later Receive returns an error.
func (r *Socket) Close() error { return r.f.Close() }
