package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSystemd listens on a NOTIFY_SOCKET under t.TempDir(), as
// go-systemd's daemon/sdnotify_test.go does.
func fakeSystemd(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// receive reads one datagram and the descriptors it carries.
func receive(t *testing.T, conn *net.UnixConn) (string, []int) {
	t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*8))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, got...)
	}
	return string(buf[:n]), fds
}

func TestNotifierMessages(t *testing.T) {
	sd := fakeSystemd(t)
	n := newNotifier()
	if !n.enabled() {
		t.Fatal("notifier disabled with NOTIFY_SOCKET set")
	}
	n.send("READY=1\nSTATUS=up")
	if msg, fds := receive(t, sd); msg != "READY=1\nSTATUS=up" || len(fds) != 0 {
		t.Errorf("got %q with %d fds", msg, len(fds))
	}
	n.status("two\nlines")
	if msg, _ := receive(t, sd); msg != "STATUS=two lines" {
		t.Errorf("status sent %q, want one line", msg)
	}
	n.reloading()
	if msg, _ := receive(t, sd); !strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("reloading sent %q", msg)
	}
	n.removeFD("tap")
	if msg, _ := receive(t, sd); msg != "FDSTOREREMOVE=1\nFDNAME=tap" {
		t.Errorf("removeFD sent %q", msg)
	}
}

func TestNotifierStoreFD(t *testing.T) {
	sd := fakeSystemd(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := newNotifier().storeFD("tap", int(w.Fd())); err != nil {
		t.Fatal(err)
	}
	msg, fds := receive(t, sd)
	if msg != "FDSTORE=1\nFDNAME=tap" || len(fds) != 1 {
		t.Fatalf("got %q with %d fds, want FDSTORE=1 FDNAME=tap with one", msg, len(fds))
	}
	// The descriptor received is the pipe's write end: write through it.
	got := os.NewFile(uintptr(fds[0]), "stored")
	defer got.Close()
	got.Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := r.Read(b); err != nil || b[0] != 'x' {
		t.Errorf("stored descriptor is not the one sent: %v %q", err, b)
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier()
	if n.enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.send("READY=1"); err != nil {
		t.Error(err)
	}
	if err := n.storeFD("tap", 1); err != nil {
		t.Error(err)
	}
	if d := n.watchdogInterval(); d != 0 {
		t.Errorf("watchdog interval %v without WATCHDOG_USEC", d)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", "")
	if d := newNotifier().watchdogInterval(); d != 3*time.Second {
		t.Errorf("interval %v, want 3s", d)
	}
}
