package bridge

import (
	"sync"
	"time"
)

// periodic runs the bridges' periodic chores from one goroutine and one
// ticker for the whole process, however many bridges there are: with a
// ticker each, 64 idle bridges woke the process 400–500 times a second
// and cost 2.6–3.3 % of a CPU doing nothing (docs/performance.md, "64
// bridges: idle cost").
//
// Its goroutine, routineTick, runs only while something is registered:
// the first add starts it, the last remove ends it (and waits for it), so
// a process or a test without bridges has no ticker.
type periodic struct {
	interval time.Duration
	round    func() // if not nil, runs before each round of chores (under mu)

	mu     sync.Mutex        // held while the chores run, so remove waits for a running one
	fns    map[uint64]func() // the chores, by add's id
	next   uint64
	stop   chan struct{} // closed to end routineTick; nil while it does not run
	done   chan struct{} // closed by routineTick when it ends
	starts int           // how many times routineTick was started (for the tests)
}

// dropPoll is the once-a-second chore list of every bridge: reading its
// parent socket's queue drops (PACKET_STATISTICS) into the counters.
var dropPoll = newPeriodic(time.Second)

func newPeriodic(interval time.Duration) *periodic {
	return &periodic{interval: interval, fns: map[uint64]func(){}}
}

// add registers f, which then runs every interval on the periodic's
// goroutine (never two at once, and never while add or remove runs) until
// the func add returns is called; that func is idempotent, and once it has
// returned f is not running and never runs again. f must not call add or
// remove.
func (p *periodic) add(f func()) (remove func()) {
	p.mu.Lock()
	id := p.next
	p.next++
	p.fns[id] = f
	if p.stop == nil {
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		p.starts++
		go p.routineTick(p.interval, p.stop, p.done)
	}
	p.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { p.remove(id) }) }
}

// remove unregisters the chore id; the last one ends routineTick and
// waits for it.
func (p *periodic) remove(id uint64) {
	p.mu.Lock()
	delete(p.fns, id)
	var done chan struct{}
	if len(p.fns) == 0 && p.stop != nil {
		close(p.stop)
		done = p.done
		p.stop, p.done = nil, nil
	}
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}

// routineTick runs the chores every iv until stop is closed.
func (p *periodic) routineTick(iv time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.run(stop)
		}
	}
}

// run runs every chore once, unless stop was closed meanwhile.
func (p *periodic) run(stop <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-stop:
		return
	default:
	}
	if p.round != nil {
		p.round()
	}
	for _, f := range p.fns {
		f()
	}
}
