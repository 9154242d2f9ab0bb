package bridge

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPeriodic: one goroutine runs every chore each interval, only while
// one is registered; after remove returns, its chore never runs again.
func TestPeriodic(t *testing.T) {
	p := newPeriodic(time.Millisecond)
	var a, b atomic.Int64
	rounds := 0
	p.round = func() { rounds++ } // under p.mu, like the chores
	removeA := p.add(func() { a.Add(1) })
	removeB := p.add(func() { b.Add(1) })
	waitUntil(t, "both chores ran 5 times", func() bool { return a.Load() >= 5 && b.Load() >= 5 })
	removeA()
	removeA() // idempotent
	n := a.Load()
	waitUntil(t, "b ran 5 more times", func() bool { return b.Load() >= n+5 })
	if a.Load() != n {
		t.Errorf("a ran %d times after its remove returned", a.Load()-n)
	}
	p.mu.Lock()
	r := rounds
	p.mu.Unlock()
	if r < 10 {
		t.Errorf("%d rounds for at least 10 runs of b", r)
	}
	removeB()
	if p.stop != nil || p.done != nil {
		t.Error("the ticker still runs with no chore")
	}
	// A new add starts it again.
	var c atomic.Int64
	removeC := p.add(func() { c.Add(1) })
	waitUntil(t, "c ran", func() bool { return c.Load() > 0 })
	removeC()
	if p.starts != 2 {
		t.Errorf("the ticker was started %d times, want 2", p.starts)
	}
}

// TestPeriodicOneGoroutine: a thousand chores cost one goroutine, which
// ends with the last.
func TestPeriodicOneGoroutine(t *testing.T) {
	p := newPeriodic(time.Hour)
	var removes []func()
	for range 1000 {
		removes = append(removes, p.add(func() {}))
	}
	if p.starts != 1 {
		t.Errorf("%d tickers started for 1000 chores, want 1", p.starts)
	}
	for _, r := range removes[1:] {
		r()
	}
	if p.stop == nil {
		t.Error("the ticker ended with a chore left")
	}
	removes[0]()
	if p.stop != nil {
		t.Error("the ticker still runs with no chore")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
