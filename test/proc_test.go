package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a long-running process started by a test inside a namespace. Its
// stdout and stderr are captured line by line; the test's cleanup stops it
// (SIGTERM, then SIGKILL) and, if the test failed, logs what it printed.
type Proc struct {
	Name string
	cmd  *exec.Cmd

	mu    sync.Mutex
	lines []string

	done     chan struct{} // closed once the process has been waited for
	state    *os.ProcessState
	readDone chan struct{} // closed when the output pipe reached EOF
}

// startProc starts argv inside ns. The process is killed if the test binary
// dies (Pdeathsig), and stopped by t.Cleanup otherwise.
func startProc(t *testing.T, ns *Netns, name string, argv ...string) *Proc {
	t.Helper()
	return startProcWith(t, ns, name, nil, argv...)
}

// startProcWith is startProc with setup, if not nil, called on the command
// before it starts (to add environment or descriptors).
func startProcWith(t *testing.T, ns *Netns, name string, setup func(*exec.Cmd), argv ...string) *Proc {
	t.Helper()
	p, err := spawn(ns, name, setup, argv...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.Stop(3 * time.Second)
		if t.Failed() {
			t.Logf("--- output of %s (%s) ---\n%s", p.Name, strings.Join(argv, " "), p.Output())
		}
	})
	return p
}

func spawn(ns *Netns, name string, setup func(*exec.Cmd), argv ...string) (*Proc, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := ns.Command(context.Background(), argv...)
	if setup != nil {
		setup(cmd)
	}
	// A plain *os.File, not an io.Writer: Wait then returns when the
	// process exits, even if something it forked keeps the pipe open.
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pw.Close()
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), readDone: make(chan struct{})}
	go func() {
		defer close(p.readDone)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	go func() {
		cmd.Wait()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (ip netns exec execs the program, so it is the
// program's own pid).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to within for the process to exit and returns its state,
// or nil on timeout.
func (p *Proc) Wait(within time.Duration) *os.ProcessState {
	select {
	case <-p.done: // checked first: an exited process wins over a zero timeout
	default:
		timer := time.NewTimer(within)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			return nil
		}
	}
	// Let the reader collect the last lines (the pipe may be held open by
	// a child; don't wait long for it).
	select {
	case <-p.readDone:
	case <-time.After(200 * time.Millisecond):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs and reaps.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	p.Signal(syscall.SIGTERM)
	if p.Wait(grace) == nil {
		p.Signal(syscall.SIGKILL)
		p.Wait(10 * time.Second)
	}
}

// errExited is returned by WaitLine when the process ended first.
var errExited = errors.New("process exited")

// WaitLine waits up to within for an output line containing substr.
func (p *Proc) WaitLine(substr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if strings.Contains(l, substr) {
				p.mu.Unlock()
				return nil
			}
		}
		p.mu.Unlock()
		if !p.Running() {
			// One last look after the pipe drained.
			if st := p.Wait(0); st != nil {
				p.mu.Lock()
				found := strings.Contains(strings.Join(p.lines, "\n"), substr)
				p.mu.Unlock()
				if found {
					return nil
				}
				return fmt.Errorf("%w (%v) before printing %q", errExited, st, substr)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no line containing %q within %v", substr, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
