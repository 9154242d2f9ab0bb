package bridge

import (
	"errors"
	"testing"
	"time"
)

// TestReadErrorsBackOffOnlyOnARun: a lone bad read costs no pause (a
// remote sender could otherwise stall the reader at will), a run of them
// pauses the loop, and a good read ends the run.
func TestReadErrorsBackOffOnlyOnARun(t *testing.T) {
	c := &Counters{}
	var reported []string
	r := &Relay{counters: c, onError: func(dir string, err error) { reported = append(reported, dir+": "+err.Error()) }}
	pauses := 0
	e := readErrors{pause: func(d time.Duration) {
		if d != errorBackoff {
			t.Errorf("paused %v, want %v", d, errorBackoff)
		}
		pauses++
	}}
	boom := errors.New("boom")
	for range 3 {
		for range errorRunBeforeBackoff - 1 {
			e.handle(r, "parent read", boom)
		}
		e.ok() // a good frame between bad ones
	}
	if pauses != 0 {
		t.Fatalf("%d pauses for runs shorter than %d errors, want none", pauses, errorRunBeforeBackoff)
	}
	for range errorRunBeforeBackoff + 2 {
		e.handle(r, "parent read", boom)
	}
	if pauses != 3 {
		t.Fatalf("%d pauses for a run of %d errors, want 3", pauses, errorRunBeforeBackoff+2)
	}
	if n, want := c.Errors.Load(), uint64(3*(errorRunBeforeBackoff-1)+errorRunBeforeBackoff+2); n != want {
		t.Fatalf("Errors = %d, want %d", n, want)
	}
	if len(reported) != 1 {
		t.Fatalf("reported %d times (%q), want once for one distinct error", len(reported), reported)
	}
}
