// Package sdnotifytest is a fake systemd for tests: a notify socket (the
// $NOTIFY_SOCKET of sd_notify(3)) under a test's directory that records
// every message and keeps the descriptors sent with FDSTORE=1, as
// systemd's fd store does (one copy of a file description per name,
// dropped by FDSTOREREMOVE=1).
//
// It is the one fake systemd of vethd's tests: the root-free tests of
// internal/sdnotify and internal/service point $NOTIFY_SOCKET at it
// (Setenv), the integration tests in test/ hand its Path to the vethd
// they start.
package sdnotifytest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Systemd is a fake notify socket. Its methods may be called from any
// goroutine.
type Systemd struct {
	// Path is the socket's path, the value for $NOTIFY_SOCKET.
	Path string
	conn *net.UnixConn

	mu     sync.Mutex
	msgs   []string
	stored map[string][]*os.File // FDNAME → descriptors
	more   chan struct{}         // closed (and replaced) at each message
}

// New listens on a socket in a new t.TempDir(); see NewIn.
func New(t testing.TB) *Systemd {
	t.Helper()
	return NewIn(t, t.TempDir())
}

// NewIn listens on a socket with a unique name in dir, which must exist.
// At cleanup the socket is closed and the stored descriptors too; if the
// test failed, the messages received are logged.
func NewIn(t testing.TB, dir string) *Systemd {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("notify-%d.sock", time.Now().UnixNano()))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	sd := &Systemd{Path: path, conn: conn, stored: map[string][]*os.File{}, more: make(chan struct{})}
	done := make(chan struct{})
	go sd.routineReceive(done)
	t.Cleanup(func() {
		conn.Close()
		<-done
		sd.mu.Lock()
		defer sd.mu.Unlock()
		for _, fs := range sd.stored {
			for _, f := range fs {
				f.Close()
			}
		}
		sd.stored = map[string][]*os.File{}
		if t.Failed() {
			t.Logf("sd_notify messages:\n%s", strings.Join(sd.msgs, "\n--\n"))
		}
	})
	return sd
}

// Setenv points $NOTIFY_SOCKET at sd for the rest of the test.
func (sd *Systemd) Setenv(t *testing.T) {
	t.Helper()
	t.Setenv("NOTIFY_SOCKET", sd.Path)
}

// routineReceive records the messages until the socket is closed.
func (sd *Systemd) routineReceive(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 8192)
	oob := make([]byte, unix.CmsgSpace(16*4))
	for {
		n, oobn, _, _, err := sd.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		sd.record(string(buf[:n]), receivedFDs(oob[:oobn]))
	}
}

// receivedFDs returns the descriptors of SCM_RIGHTS control messages.
func receivedFDs(oob []byte) []int {
	var fds []int
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, c := range cmsgs {
		if got, err := unix.ParseUnixRights(&c); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// record keeps msg and, for FDSTORE=1, the descriptors that came with it;
// it closes the others.
func (sd *Systemd) record(msg string, fds []int) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	sd.msgs = append(sd.msgs, msg)
	close(sd.more)
	sd.more = make(chan struct{})
	fields := Parse(msg)
	name := fields["FDNAME"]
	switch {
	case fields["FDSTORE"] == "1":
		// Like systemd, keep one copy of a file description.
		for _, fd := range fds {
			if slices.ContainsFunc(sd.stored[name], func(f *os.File) bool { return sameFile(int(f.Fd()), fd) }) {
				unix.Close(fd)
				continue
			}
			sd.stored[name] = append(sd.stored[name], os.NewFile(uintptr(fd), name))
		}
		fds = nil
	case fields["FDSTOREREMOVE"] == "1":
		sd.dropLocked(name)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// sameFile reports whether two of this process's descriptors are the same
// open file description (kcmp KCMP_FILE, as systemd's same_fd does).
func sameFile(a, b int) bool {
	const kcmpFile = 0
	pid := uintptr(os.Getpid())
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, pid, pid, kcmpFile, uintptr(a), uintptr(b), 0)
	return errno == 0 && r == 0
}

// Parse splits a message into its KEY=value lines.
func Parse(msg string) map[string]string {
	m := map[string]string{}
	for l := range strings.SplitSeq(msg, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Messages returns the messages received so far, oldest first.
func (sd *Systemd) Messages() []string {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return slices.Clone(sd.msgs)
}

// Find returns the index of the first message after the first skip ones
// that has every KEY=value line of want, or -1.
func (sd *Systemd) Find(skip int, want ...string) int {
	msgs := sd.Messages()
	return find(msgs, skip, want)
}

func find(msgs []string, skip int, want []string) int {
	for i := max(skip, 0); i < len(msgs); i++ {
		f := Parse(msgs[i])
		if !slices.ContainsFunc(want, func(w string) bool { k, v, _ := strings.Cut(w, "="); return f[k] != v }) {
			return i
		}
	}
	return -1
}

// WaitFor waits up to within for a message (after the first skip ones)
// that has every KEY=value line of want, and returns its index. It fails
// the test if none comes.
func (sd *Systemd) WaitFor(t testing.TB, skip int, within time.Duration, want ...string) int {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		sd.mu.Lock()
		i, n, more := find(sd.msgs, skip, want), len(sd.msgs), sd.more
		sd.mu.Unlock()
		if i >= 0 {
			return i
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("no sd_notify message with %s within %v (%d messages)", strings.Join(want, ","), within, n)
			return -1
		}
	}
}

// Stored returns the descriptors stored under name. They stay sd's.
func (sd *Systemd) Stored(name string) []*os.File {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return slices.Clone(sd.stored[name])
}

// Drop closes the descriptors stored under name and forgets them, as
// systemd does when the service stops for good.
func (sd *Systemd) Drop(name string) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	sd.dropLocked(name)
}

// dropLocked is Drop; sd.mu must be held.
func (sd *Systemd) dropLocked(name string) {
	for _, f := range sd.stored[name] {
		f.Close()
	}
	delete(sd.stored, name)
}
