// Package supervisor keeps named tasks running: a task that fails is
// started again after a backoff that doubles at each failure, while the
// others go on.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/vethd/vethd/internal/journal"
)

// Task runs until ctx is cancelled (then it returns nil) or it fails (then
// it returns why). It must not return nil before ctx is cancelled.
type Task func(ctx context.Context) error

// Backoff is how long to wait before restarts: Min after the first failure,
// doubling up to Max. A task that ran for Max or longer before failing
// starts again from Min.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff is one second doubling to one minute.
var DefaultBackoff = Backoff{Min: time.Second, Max: time.Minute}

// Supervisor runs tasks by name. Its methods may be called from any
// goroutine.
type Supervisor struct {
	backoff Backoff
	log     *slog.Logger
	// onRestart, if not nil, is called before each restart (for tests).
	onRestart func(name string, attempt int, wait time.Duration)

	mu    sync.Mutex // guards tasks
	tasks map[string]*running
}

type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a supervisor with backoff b; log receives one line per
// failure and restart.
func New(b Backoff, log *slog.Logger) *Supervisor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{backoff: b, log: log, tasks: map[string]*running{}}
}

// ErrExists is returned by Start for a name already running.
var ErrExists = errors.New("a task of that name is running")

// Start runs t under name until Stop.
func (s *Supervisor) Start(name string, t Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[name]; ok {
		return ErrExists
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	s.tasks[name] = r
	go s.routineRun(ctx, name, t, r.done)
	return nil
}

// routineRun runs t again and again until ctx is cancelled.
func (s *Supervisor) routineRun(ctx context.Context, name string, t Task, done chan struct{}) {
	defer close(done)
	wait := s.backoff.Min
	for attempt := 1; ; attempt++ {
		began := time.Now()
		err := t(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("ended without an error")
		}
		if time.Since(began) >= s.backoff.Max {
			wait = s.backoff.Min
		}
		s.log.Error(fmt.Sprintf("Bridge %s failed; restarting it err=%s in=%s", name, journal.Quote(err.Error()), wait))
		if s.onRestart != nil {
			s.onRestart(name, attempt, wait)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		wait = min(2*wait, s.backoff.Max)
	}
}

// Stop cancels the task name and waits for it to return. Unknown names
// are ignored.
func (s *Supervisor) Stop(name string) {
	s.mu.Lock()
	r, ok := s.tasks[name]
	delete(s.tasks, name)
	s.mu.Unlock()
	if ok {
		r.cancel()
		<-r.done
	}
}

// StopAll stops every task, concurrently, and waits for them.
func (s *Supervisor) StopAll() {
	var wg sync.WaitGroup
	for _, n := range s.Names() {
		wg.Go(func() { s.Stop(n) })
	}
	wg.Wait()
}

// Names returns the names of the running tasks, sorted.
func (s *Supervisor) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.tasks))
	for n := range s.tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
