package nlrecv

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newNetns returns a handle on a new, empty network namespace (gone when
// the handle is closed), leaving the test's thread where it was.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) to make a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the test's netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// TestReceiveLinkNotifications: a Socket taken from a link subscription in
// a namespace of the test's own delivers the RTM_NEWLINK of a veth pair made
// there, parsed, from the kernel, with a buffer that grew past its initial
// size for it (initialSize is made tiny here) and is reused after; Close
// wakes a pending Receive.
func TestReceiveLinkNotifications(t *testing.T) {
	ns := newNetns(t)
	old := initialSize
	initialSize = 64 // smaller than any RTM_NEWLINK: the first read must grow it
	defer func() { initialSize = old }()

	s, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	sock, err := Take(s)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, name := range []string{"nlr0", "nlr2"} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			t.Fatalf("add veth %s: %v", name, err)
		}
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for !(seen["nlr0"] && seen["nlr2"]) && time.Now().Before(deadline) {
		msgs, from, err := sock.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if from.Pid != nl.PidKernel {
			t.Errorf("a notification from pid %d, not the kernel", from.Pid)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWLINK {
				continue
			}
			hdr := unix.NlMsghdr(m.Header)
			l, err := netlink.LinkDeserialize(&hdr, m.Data)
			if err != nil {
				t.Fatalf("a notification netlink cannot parse: %v", err)
			}
			seen[l.Attrs().Name] = true
		}
	}
	if !seen["nlr0"] || !seen["nlr2"] {
		t.Fatalf("RTM_NEWLINK seen for %v, want nlr0 and nlr2", seen)
	}
	if len(sock.buf) <= 64 {
		t.Errorf("the buffer is still %d bytes: it did not grow for a larger message", len(sock.buf))
	}

	errc := make(chan error, 1)
	go func() {
		for {
			if _, _, err := sock.Receive(); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	sock.Close()
	select {
	case <-errc:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not wake a pending Receive")
	}
}

// TestSubscription: a Subscription on a link socket of the test's own
// namespace delivers what its convert function makes of the kernel's
// messages (here the name of each new link, other messages left out), and
// Close closes Events without telling lost, which is for a subscription
// that ended by itself.
func TestSubscription(t *testing.T) {
	ns := newNetns(t)
	s, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	sock, err := Take(s)
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan error, 1)
	sub := Subscribe(sock, func(m syscall.NetlinkMessage) (string, bool) {
		if m.Header.Type != unix.RTM_NEWLINK {
			return "", false
		}
		hdr := unix.NlMsghdr(m.Header)
		l, err := netlink.LinkDeserialize(&hdr, m.Data)
		if err != nil {
			return "", false
		}
		return l.Attrs().Name, true
	}, func(err error) { lost <- err })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nls0"}, PeerName: "nls0p"}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	seen := map[string]bool{}
	for timeout := time.After(5 * time.Second); !(seen["nls0"] && seen["nls0p"]); {
		select {
		case name, ok := <-sub.Events():
			if !ok {
				t.Fatal("Events closed before the new links came")
			}
			seen[name] = true
		case <-timeout:
			t.Fatalf("after 5 s saw %v, want nls0 and nls0p", seen)
		}
	}
	if err := h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nls0"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // RTM_DELLINKs, which convert leaves out
	sub.Close()
	sub.Close() // idempotent
	for name := range sub.Events() {
		if name != "nls0" && name != "nls0p" {
			t.Errorf("event %q after the deletions: convert's false was not honoured", name)
		}
	}
	select {
	case err := <-lost:
		t.Errorf("lost called after Close: %v", err)
	default:
	}
}
