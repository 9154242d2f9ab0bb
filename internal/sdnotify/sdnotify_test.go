package sdnotify_test

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/sdnotify"
	"github.com/vethd/vethd/internal/sdnotify/sdnotifytest"
)

func TestNotifierMessages(t *testing.T) {
	sd := sdnotifytest.New(t)
	sd.Setenv(t)
	n := sdnotify.New()
	if !n.Enabled() {
		t.Fatal("notifier disabled with NOTIFY_SOCKET set")
	}
	n.Send("READY=1\nSTATUS=up")
	n.Send(sdnotify.Status("two\nlines"))
	n.Send(sdnotify.Reloading())
	n.RemoveFD("tap")
	sd.WaitFor(t, 0, 5*time.Second, "FDSTOREREMOVE=1")
	msgs := sd.Messages()
	if len(msgs) != 4 {
		t.Fatalf("messages %q, want 4", msgs)
	}
	if msgs[0] != "READY=1\nSTATUS=up" {
		t.Errorf("got %q", msgs[0])
	}
	if msgs[1] != "STATUS=two lines" {
		t.Errorf("status sent %q, want one line", msgs[1])
	}
	if !strings.HasPrefix(msgs[2], "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("reloading sent %q", msgs[2])
	}
	if msgs[3] != "FDSTOREREMOVE=1\nFDNAME=tap" {
		t.Errorf("removeFD sent %q", msgs[3])
	}
}

func TestNotifierStoreFD(t *testing.T) {
	sd := sdnotifytest.New(t)
	sd.Setenv(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	n := sdnotify.New()
	if err := n.StoreFD("tap", int(w.Fd())); err != nil {
		t.Fatal(err)
	}
	i := sd.WaitFor(t, 0, 5*time.Second, "FDSTORE=1", "FDNAME=tap")
	if msg := sd.Messages()[i]; msg != "FDSTORE=1\nFDNAME=tap" {
		t.Fatalf("got %q, want FDSTORE=1 FDNAME=tap", msg)
	}
	got := sd.Stored("tap")
	if len(got) != 1 {
		t.Fatalf("%d descriptors stored, want 1", len(got))
	}
	// The descriptor received is the pipe's write end: write through it.
	got[0].Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := r.Read(b); err != nil || b[0] != 'x' {
		t.Errorf("stored descriptor is not the one sent: %v %q", err, b)
	}
	// The same file description again is kept once, as systemd does.
	if err := n.StoreFD("tap", int(w.Fd())); err != nil {
		t.Fatal(err)
	}
	sd.WaitFor(t, i+1, 5*time.Second, "FDSTORE=1", "FDNAME=tap")
	if got := sd.Stored("tap"); len(got) != 1 {
		t.Errorf("%d descriptors stored after storing one twice, want 1", len(got))
	}
	n.RemoveFD("tap")
	sd.WaitFor(t, 0, 5*time.Second, "FDSTOREREMOVE=1", "FDNAME=tap")
	if got := sd.Stored("tap"); len(got) != 0 {
		t.Errorf("%d descriptors stored after FDSTOREREMOVE, want 0", len(got))
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for _, n := range []*sdnotify.Notifier{sdnotify.New(), {}} {
		if n.Enabled() {
			t.Fatal("enabled without NOTIFY_SOCKET")
		}
		if err := n.Send("READY=1"); err != nil {
			t.Error(err)
		}
		if err := n.StoreFD("tap", 1); err != nil {
			t.Error(err)
		}
		if err := n.RemoveFD("tap"); err != nil {
			t.Error(err)
		}
	}
	t.Setenv("WATCHDOG_USEC", "")
	if d := sdnotify.New().WatchdogInterval(); d != 0 {
		t.Errorf("watchdog interval %v without WATCHDOG_USEC", d)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", "")
	if d := sdnotify.New().WatchdogInterval(); d != 3*time.Second {
		t.Errorf("interval %v, want 3s", d)
	}
}

func TestNoFDStore(t *testing.T) {
	t.Setenv("FDSTORE", "0")
	if !sdnotify.New().NoFDStore() {
		t.Error("FDSTORE=0, yet the store is said to keep descriptors")
	}
	t.Setenv("FDSTORE", "16")
	if sdnotify.New().NoFDStore() {
		t.Error("FDSTORE=16, yet no fd store")
	}
}

func TestStoredFDs(t *testing.T) {
	// Without $LISTEN_PID naming this process, nothing was passed.
	t.Setenv("LISTEN_PID", "")
	t.Setenv("LISTEN_FDS", "1")
	if m := sdnotify.StoredFDs(); len(m) != 0 {
		t.Errorf("StoredFDs = %v without LISTEN_PID", m)
	}
}

// TestStoredFDsPassed: descriptors passed as systemd passes them (from fd
// 3 on, $LISTEN_FDS, $LISTEN_FDNAMES, $LISTEN_PID naming the process) come
// back by name, an unnamed one as LISTEN_FD_N, of two with one name the
// last, and the variables are gone afterwards. The test runs itself as the
// process systemd started (it sets $LISTEN_PID to its own pid, which
// systemd sets between fork and exec).
func TestStoredFDsPassed(t *testing.T) {
	if os.Getenv("SDNOTIFY_TEST_CHILD") == "1" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		m := sdnotify.StoredFDs()
		var out []string
		for name, f := range m {
			b := make([]byte, 16)
			n, _ := f.Read(b)
			out = append(out, name+"="+string(b[:n]))
		}
		sort.Strings(out)
		fmt.Printf("fds %s env %q%q%q\n", strings.Join(out, " "), os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"))
		return
	}
	var files []*os.File
	for _, s := range []string{"a", "b", "c", "d"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString(s)
		w.Close()
		defer r.Close()
		files = append(files, r)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoredFDsPassed$")
	cmd.ExtraFiles = files // fds 3, 4, 5, 6
	cmd.Env = append(os.Environ(), "SDNOTIFY_TEST_CHILD=1", "LISTEN_FDS=4", "LISTEN_FDNAMES=tap:tap-veth9::tap")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := `fds LISTEN_FD_5=c tap-veth9=b tap=d env """"""`
	if !strings.Contains(string(out), want) {
		t.Errorf("child said %q, want %q", out, want)
	}
}
