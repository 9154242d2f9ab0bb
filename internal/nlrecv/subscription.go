package nlrecv

import (
	"sync"
	"syscall"

	"github.com/vishvananda/netlink/nl"
)

// Subscription passes the kernel's notifications on a Socket on as values
// of type T, converted in a goroutine of its own: the shape of both of
// vethd's subscriptions (the bridge's link watcher, pkg/srcroute's
// router).
type Subscription[T any] struct {
	events    chan T
	done      chan struct{} // closed by Close, which then closes sock
	sock      *Socket
	closeOnce sync.Once
}

// Subscribe starts passing sock's notifications on: convert is called
// with each message the kernel sent (others are ignored) and returns its
// value, or false for none. When a read fails (the socket's buffer
// overran, so notifications were lost, or Close closed it) Events is
// closed; lost, which may be nil, is first told of the error unless Close
// caused it. The Subscription owns sock.
func Subscribe[T any](sock *Socket, convert func(m syscall.NetlinkMessage) (T, bool), lost func(error)) *Subscription[T] {
	s := &Subscription[T]{events: make(chan T), done: make(chan struct{}), sock: sock}
	go s.routineReceive(convert, lost)
	return s
}

func (s *Subscription[T]) routineReceive(convert func(m syscall.NetlinkMessage) (T, bool), lost func(error)) {
	defer close(s.events)
	for {
		msgs, from, err := s.sock.Receive()
		if err != nil {
			select {
			case <-s.done:
			default:
				if lost != nil {
					lost(err)
				}
			}
			return
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			ev, ok := convert(m)
			if !ok {
				continue
			}
			select {
			case s.events <- ev:
			case <-s.done:
				return
			}
		}
	}
}

// Events delivers the values in order; it is closed when the subscription
// ends (a lost notification, or Close).
func (s *Subscription[T]) Events() <-chan T { return s.events }

// Close ends the subscription and closes its socket, which wakes a pending
// read; it is idempotent.
func (s *Subscription[T]) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.sock.Close()
	})
}
