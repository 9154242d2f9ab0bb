package service

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/internal/journal"
	"github.com/vethd/vethd/internal/sdnotify"
	"github.com/vethd/vethd/internal/sdnotify/sdnotifytest"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/supervisor"
	"golang.org/x/sys/unix"
)

// fakeBridge is a Bridge without a kernel: its TAP is a memfd (or the
// descriptor it adopted), its state is what the test sets.
type fakeBridge struct {
	cfg      bridge.Config // as started
	adopted  bool          // cfg.TAP was given
	tap      *os.File
	counters bridge.Counters
	done     chan struct{} // closed by Close
	fatal    chan error    // Fail's error, for Wait
	health   chan struct{} // a token per Health call (buffered; dropped when full)

	mu           sync.Mutex
	status       bridge.Status
	healthErr    error
	reconfigErr  error
	reconfigured []bridge.Config
	closed       bool
	released     bool // ended by Release, not Close
}

var _ Bridge = (*fakeBridge)(nil)

// keptMAC is the address an adopted TAP keeps when cfg.MAC is nil.
var keptMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xaa}

func (b *fakeBridge) Status() bridge.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

func (b *fakeBridge) Counters() *bridge.Counters { return &b.counters }

func (b *fakeBridge) Reconfigure(c bridge.Config) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reconfigErr != nil {
		return b.reconfigErr
	}
	b.reconfigured = append(b.reconfigured, c)
	b.status.Parent = c.Parent
	if c.MTU != 0 {
		b.status.MTU = c.MTU
	}
	if c.MAC != nil {
		b.status.MAC = c.MAC
	}
	b.status.DataPath = fakeDataPath(b.cfg.Kind, c.DataPath)
	return nil
}

// fakeDataPath is the data path a fake bridge of kind k runs for the
// configured one: a fake kernel allows the kernel path ("" is the kind's
// default).
func fakeDataPath(k bridge.Kind, dp bridge.DataPath) bridge.DataPath {
	if dp == "" {
		return bridge.DefaultDataPath(k)
	}
	return dp
}

func (b *fakeBridge) Health() error {
	select {
	case b.health <- struct{}{}:
	default:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.healthErr
}

func (b *fakeBridge) Wait() error {
	select {
	case err := <-b.fatal:
		return err
	case <-b.done:
		return nil
	}
}

func (b *fakeBridge) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.status.State = bridge.StateStopping
	close(b.done)
	return b.tap.Close()
}

func (b *fakeBridge) Release() error {
	b.mu.Lock()
	b.released = !b.closed
	b.mu.Unlock()
	return b.Close()
}

func (b *fakeBridge) isReleased() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.released
}

func (b *fakeBridge) TAPFd() (int, error) {
	if b.cfg.Kind == bridge.KindVeth {
		return -1, fmt.Errorf("%s: a veth pair has no descriptor to store: %w", b.cfg.Name, errors.ErrUnsupported)
	}
	return unix.FcntlInt(b.tap.Fd(), unix.F_DUPFD_CLOEXEC, 0)
}

// Fail makes Wait return err, as a bridge whose TAP was deleted.
func (b *fakeBridge) Fail(err error) { b.fatal <- err }

func (b *fakeBridge) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *fakeBridge) set(f func(b *fakeBridge)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *fakeBridge) reconfigs() []bridge.Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bridge.Config(nil), b.reconfigured...)
}

// starter is a fake StartFunc. Every call is sent on calls, every bridge
// started on started (both buffered generously).
type starter struct {
	t       *testing.T
	calls   chan bridge.Config
	started chan *fakeBridge

	mu        sync.Mutex
	hook      func(cfg bridge.Config) error // if it returns an error, the start fails with it
	healthErr error                         // what new bridges' Health returns
	ifindex   int
	byName    map[string][]*fakeBridge
}

func newStarter(t *testing.T) *starter {
	return &starter{t: t, calls: make(chan bridge.Config, 100), started: make(chan *fakeBridge, 100), ifindex: 10, byName: map[string][]*fakeBridge{}}
}

func (s *starter) setHook(h func(cfg bridge.Config) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

// start is the StartFunc. Like bridge.Start it owns cfg.TAP and closes it
// on error.
func (s *starter) start(cfg bridge.Config) (Bridge, error) {
	s.calls <- cfg
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(cfg); err != nil {
			if cfg.TAP != nil {
				cfg.TAP.Close()
			}
			return nil, err
		}
	}
	b := &fakeBridge{cfg: cfg, adopted: cfg.TAP != nil, tap: cfg.TAP, done: make(chan struct{}), fatal: make(chan error, 1), health: make(chan struct{}, 1)}
	if b.tap == nil {
		b.tap = memfd(s.t, "tap")
	}
	mac := cfg.MAC
	if mac == nil {
		mac = keptMAC
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = 1500
	}
	s.mu.Lock()
	s.ifindex++
	b.healthErr = s.healthErr
	b.status = bridge.Status{
		Name: cfg.Name, Kind: cfg.Kind, Namespace: cfg.Namespace, Parent: cfg.Parent, IfIndex: s.ifindex, ParentIfIndex: 2,
		MAC: mac, MTU: mtu, State: bridge.StateRunning, Carrier: true, ParentCarrier: true,
		Offloads: []string{"csum", "tso4"}, DataPath: fakeDataPath(cfg.Kind, cfg.DataPath), StartedAt: time.Now(),
	}
	s.byName[cfg.Name] = append(s.byName[cfg.Name], b)
	s.mu.Unlock()
	s.started <- b
	return b, nil
}

// bridges returns the bridges started under name, in order.
func (s *starter) bridges(name string) []*fakeBridge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*fakeBridge(nil), s.byName[name]...)
}

// nextCall waits for the next call of the StartFunc.
func (s *starter) nextCall(t *testing.T) bridge.Config {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no start of a bridge")
	}
	return bridge.Config{}
}

// waitStarts waits until n bridges named name were started and returns
// the last.
func (s *starter) waitStarts(t *testing.T, name string, n int) *fakeBridge {
	t.Helper()
	for {
		if b := s.bridges(name); len(b) >= n {
			return b[n-1]
		}
		s.nextStarted(t)
	}
}

// nextStarted waits for the next bridge started.
func (s *starter) nextStarted(t *testing.T) *fakeBridge {
	t.Helper()
	select {
	case b := <-s.started:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no bridge started")
	}
	return nil
}

// memfd returns a new anonymous file, standing for a TAP descriptor.
func memfd(t *testing.T, name string) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), name)
}

// ino returns f's inode: the same for every descriptor of one memfd.
func ino(t *testing.T, f *os.File) uint64 {
	t.Helper()
	st, err := f.Stat()
	if err != nil {
		t.Fatalf("stat %s: %v", f.Name(), err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// isClosed reports whether f was closed.
func isClosed(f *os.File) bool {
	_, err := f.Stat()
	return err != nil
}

// logSink collects the log lines, for WaitLine.
type logSink struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed (and replaced) at each line
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.SplitSeq(strings.TrimSuffix(string(p), "\n"), "\n") {
		l.lines = append(l.lines, line)
	}
	close(l.more)
	l.more = make(chan struct{})
	return len(p), nil
}

func (l *logSink) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// count returns how many lines contain s.
func (l *logSink) count(s string) int {
	n := 0
	for _, line := range l.Lines() {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// WaitLine waits for a line containing s and returns it.
func (l *logSink) WaitLine(t *testing.T, s string) string {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		lines, more := l.lines, l.more
		l.mu.Unlock()
		for _, line := range lines {
			if strings.Contains(line, s) {
				return line
			}
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("no log line with %q; log:\n%s", s, strings.Join(lines, "\n"))
			return ""
		}
	}
}

// harness runs a daemon over fakes: a fake starter, a fake systemd (the
// real sdnotify.Notifier on an sdnotifytest socket), a log sink, a
// configuration directory and no bus unless the test connects one.
type harness struct {
	t     *testing.T
	dir   string // ConfigDir
	mid   string // machine-id file
	sd    *sdnotifytest.Systemd
	log   *logSink
	start *starter
	sigs  chan os.Signal
	d     *daemon
	done  chan error // Run's result
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		t:     t,
		dir:   dir,
		mid:   filepath.Join(dir, "machine-id"),
		sd:    sdnotifytest.New(t),
		log:   &logSink{more: make(chan struct{})},
		start: newStarter(t),
		sigs:  make(chan os.Signal, 4),
		done:  make(chan error, 1),
	}
	if err := os.WriteFile(h.mid, []byte("3d1219c7c4c5404aaa1d2a6d2adfdaa4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.sd.Setenv(t)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("FDSTORE", "")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", strings.Join(h.log.Lines(), "\n"))
		}
	})
	return h
}

// config returns a Config for mode over the harness's fakes.
func (h *harness) config(mode Mode) Config {
	return Config{
		Mode: mode, Name: "veth1", Parent: "eth0", MAC: "persistent",
		Instance: "veth1", ConfigDir: h.dir, MachineIDFile: h.mid, Version: "test",
		Log:         slog.New(journal.NewHandler(h.log, false, slog.LevelInfo)),
		Notifier:    sdnotify.New(),
		StartBridge: h.start.start,
		ConnectBus:  func() (*dbus.Conn, error) { return nil, errors.New("no bus in this test") },
		BusRetry:    time.Hour,
		Backoff:     supervisor.Backoff{Min: time.Millisecond, Max: time.Millisecond},
	}
}

// writeConf writes DIR/NAME.conf.
func (h *harness) writeConf(name, text string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name+".conf"), []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// run starts the daemon on its own goroutine; the test stops it (stop),
// or the cleanup does.
func (h *harness) run(cfg Config) {
	h.t.Helper()
	h.d = newDaemon(cfg)
	go func() { h.done <- h.d.serve(h.sigs) }()
	h.t.Cleanup(func() {
		select {
		case h.sigs <- syscall.SIGTERM:
		default:
		}
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.t.Error("Run did not end at cleanup")
		}
	})
}

// wait waits for Run to return and returns its error.
func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return")
	}
	return nil
}

// stop sends SIGTERM and waits for Run's return.
func (h *harness) stop() error {
	h.t.Helper()
	h.sigs <- syscall.SIGTERM
	return h.wait()
}

// ready waits for READY=1 after the first skip messages and returns its
// index.
func (h *harness) ready(skip int) int {
	h.t.Helper()
	return h.sd.WaitFor(h.t, skip, 10*time.Second, "READY=1")
}

// instance returns the daemon's instance name, fetched on the Run
// goroutine, which owns the set.
func (h *harness) instance(name string) *instance {
	h.t.Helper()
	var in *instance
	if err := h.d.call(func() error { in = h.d.instances[name]; return nil }); err != nil {
		h.t.Fatal(err)
	}
	if in == nil {
		h.t.Fatalf("no instance %s", name)
	}
	return in
}

// mustLine fails unless the log has a line equal to want.
func (h *harness) mustLine(want string) {
	h.t.Helper()
	for _, l := range h.log.Lines() {
		if l == want {
			return
		}
	}
	h.t.Errorf("no log line %q", want)
}

// waitFor polls cond, for state that has no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
