package supervisor

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/journal"
)

func TestRestartsWithBackoffAndKeepsOthers(t *testing.T) {
	s := New(Backoff{Min: time.Millisecond, Max: 8 * time.Millisecond}, nil)
	var mu sync.Mutex
	var waits []time.Duration
	s.onRestart = func(name string, attempt int, wait time.Duration) {
		if name != "bad" {
			t.Errorf("restart of %s: only bad fails", name)
		}
		mu.Lock()
		waits = append(waits, wait)
		mu.Unlock()
	}
	var badRuns, goodRuns atomic.Int32
	fails := make(chan struct{})
	s.Start("bad", func(ctx context.Context) error {
		if badRuns.Add(1) == 6 {
			close(fails)
			<-ctx.Done()
			return nil
		}
		return errors.New("boom")
	})
	s.Start("good", func(ctx context.Context) error {
		goodRuns.Add(1)
		<-ctx.Done()
		return nil
	})
	if err := s.Start("good", nil); !errors.Is(err, ErrExists) {
		t.Errorf("second Start of good = %v, want ErrExists", err)
	}
	select {
	case <-fails:
	case <-time.After(5 * time.Second):
		t.Fatal("bad was not restarted five times")
	}
	if got := s.Names(); len(got) != 2 || got[0] != "bad" || got[1] != "good" {
		t.Errorf("Names = %v", got)
	}
	s.StopAll()
	if n := goodRuns.Load(); n != 1 {
		t.Errorf("good ran %d times, want 1 (untouched by bad's failures)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{1, 2, 4, 8, 8}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v ms", waits, want)
	}
	for i := range want {
		if waits[i] != want[i]*time.Millisecond {
			t.Errorf("wait %d = %v, want %v", i, waits[i], want[i]*time.Millisecond)
		}
	}
	if len(s.Names()) != 0 {
		t.Errorf("tasks left after StopAll: %v", s.Names())
	}
}

func TestStopDuringBackoff(t *testing.T) {
	s := New(Backoff{Min: time.Hour, Max: time.Hour}, nil)
	ran := make(chan struct{}, 1)
	s.Start("x", func(ctx context.Context) error {
		ran <- struct{}{}
		return errors.New("fail")
	})
	<-ran
	done := make(chan struct{})
	go func() { s.Stop("x"); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waited out the backoff")
	}
	s.Stop("unknown")
}

func TestLogsFailureLine(t *testing.T) {
	var buf syncBuffer
	s := New(Backoff{Min: time.Millisecond, Max: time.Millisecond}, slog.New(journal.NewHandler(&buf, false, slog.LevelInfo)))
	restarted := make(chan struct{})
	var once sync.Once
	s.onRestart = func(string, int, time.Duration) { once.Do(func() { close(restarted) }) }
	var runs atomic.Int32
	s.Start("veth1", func(ctx context.Context) error {
		if runs.Add(1) > 1 {
			<-ctx.Done()
			return nil
		}
		return errors.New("create TAP veth1: boom")
	})
	select {
	case <-restarted:
	case <-time.After(5 * time.Second):
		t.Fatal("no restart")
	}
	s.StopAll()
	want := "vethd: error: Bridge veth1 failed; restarting it err=\"create TAP veth1: boom\" in=1ms\n"
	if got := buf.String(); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the supervisor's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
