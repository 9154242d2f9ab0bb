package service

import (
	"log/slog"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/journal"
)

// TestRuntimeLine: what SIGUSR1 logs is one line with every figure
// scripts/soak.sh reads, each a number (threads and RSS from
// /proc/self/status, which exists where vethd runs).
func TestRuntimeLine(t *testing.T) {
	re := regexp.MustCompile(`^runtime: goroutines=[0-9]+ threads=[0-9]+ heap-inuse=[0-9]+\.[0-9]MiB heap-released=[0-9]+\.[0-9]MiB rss=[0-9]+\.[0-9]MiB gc=[0-9]+$`)
	if got := runtimeLine(); !re.MatchString(got) {
		t.Errorf("runtimeLine() = %q, want it to match %s", got, re)
	}
}

// TestSIGUSR1LogsRuntime: SIGUSR1 logs the runtime line and changes
// nothing: vethd runs on (and stops at the next SIGTERM); before the
// bridge is up (pause) too.
func TestSIGUSR1LogsRuntime(t *testing.T) {
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	h.run(h.config(ModeInstance))
	h.start.nextStarted(t)
	h.ready(0)
	for i := 1; i <= 2; i++ {
		h.sigs <- syscall.SIGUSR1
		waitFor(t, "the runtime line", func() bool {
			n := 0
			for _, l := range h.log.Lines() {
				if strings.HasPrefix(l, "vethd: runtime: goroutines=") {
					n++
				}
			}
			return n == i
		})
	}
	select {
	case err := <-h.done:
		t.Fatalf("Run returned after SIGUSR1: %v", err)
	default:
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestSIGUSR1WhilePaused: in pause (waiting to take a bridge over), SIGUSR1
// logs and does not stop vethd either.
func TestSIGUSR1WhilePaused(t *testing.T) {
	d := newDaemon(Config{Log: slog.New(journal.NewHandler(&logSink{more: make(chan struct{})}, false, slog.LevelInfo))})
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGUSR1
	if d.pause(sigs, 50*time.Millisecond) {
		t.Fatal("pause reported a stop signal for SIGUSR1")
	}
	sigs <- syscall.SIGTERM
	if !d.pause(sigs, time.Second) {
		t.Fatal("pause did not stop on SIGTERM")
	}
}
