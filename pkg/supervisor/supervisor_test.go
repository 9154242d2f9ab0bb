package supervisor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
