package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// fakeGuard is a peerGuard over a fake nftables: in says whether the
// chain is there, installErr what installing it returns.
type fakeGuard struct {
	*peerGuard
	in         bool
	installErr error
	installs   int
	out        bytes.Buffer
}

func newFakeGuard() *fakeGuard {
	f := &fakeGuard{}
	log := slog.New(slog.NewTextHandler(&f.out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f.peerGuard = &peerGuard{peer: "vd-veth1", nic: "veth1", log: log}
	f.install = func(string) error {
		f.installs++
		if f.installErr != nil {
			return f.installErr
		}
		f.in = true
		return nil
	}
	f.present = func(string) (bool, error) { return f.in, nil }
	return f
}

// lines returns the log lines since the last call.
func (f *fakeGuard) lines() []string {
	s := strings.TrimSpace(f.out.String())
	f.out.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestGuardReinstallsOncePerLoss: a guard in place costs a look per check
// and no install; a lost one is installed again with one warning per loss.
func TestGuardReinstallsOncePerLoss(t *testing.T) {
	f := newFakeGuard()
	f.ensure(false)
	if l := f.lines(); !f.in || f.installs != 1 || len(l) != 1 || !strings.Contains(l[0], "level=INFO msg=\"Guarded vd-veth1: ") {
		t.Fatalf("first install: in=%v installs=%d log %q", f.in, f.installs, l)
	}
	for range 3 {
		f.ensure(true)
	}
	if f.installs != 1 || len(f.lines()) != 0 {
		t.Fatalf("checks of a guard in place installed %d times", f.installs-1)
	}
	for loss := range 2 {
		f.in = false // nft flush ruleset
		f.ensure(true)
		f.ensure(true)
		l := f.lines()
		if f.installs != 2+loss || len(l) != 2 || !strings.Contains(l[0], "level=WARN") || !strings.Contains(l[0], "is gone") ||
			!strings.Contains(l[1], "Installed the nftables guard of vd-veth1 again") {
			t.Fatalf("loss %d: installs=%d log %q", loss, f.installs, l)
		}
	}
}

// TestGuardUnavailableWarnsOnce: a kernel without nf_tables_netdev gets one
// warning saying what is exposed, however often the guard is tried again,
// and a later success is logged.
func TestGuardUnavailableWarnsOnce(t *testing.T) {
	f := newFakeGuard()
	f.installErr = fmt.Errorf("install the guard of vd-veth1: %w", unix.EPROTONOSUPPORT)
	f.ensure(false)
	for range 3 {
		f.ensure(true)
	}
	l := f.lines()
	if len(l) != 1 || !strings.Contains(l[0], "level=WARN") || !strings.Contains(l[0], "unavailable") ||
		!strings.Contains(l[0], "reaches this namespace's own IP stack through vd-veth1") {
		t.Fatalf("log %q", l)
	}
	if f.installs != 4 {
		t.Errorf("%d installs, want 4", f.installs)
	}
	f.installErr = nil
	f.ensure(true)
	if l := f.lines(); !f.in || len(l) != 1 || !strings.Contains(l[0], "again") {
		t.Errorf("after nftables came back: in=%v log %q", f.in, l)
	}
}

func TestGuardUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("x: %w", unix.EPROTONOSUPPORT), true},
		{fmt.Errorf("x: %w", unix.ENOENT), true},
		{fmt.Errorf("x: %w", unix.EAFNOSUPPORT), true},
		{fmt.Errorf("x: %w", unix.EPERM), false},
		{errors.New("other"), false},
	} {
		if got := guardUnavailable(c.err); got != c.want {
			t.Errorf("guardUnavailable(%v) = %v", c.err, got)
		}
	}
}

// TestGuardChain: the chain drops everything at the peer's ingress, first.
func TestGuardChain(t *testing.T) {
	c := guardChain("vd-veth1")
	if c.Name != "vd-veth1" || c.Device != "vd-veth1" || c.Table.Name != "vethd" || c.Table.Family != nftables.TableFamilyNetdev ||
		*c.Hooknum != *nftables.ChainHookIngress || *c.Priority != *nftables.ChainPriorityFirst || *c.Policy != nftables.ChainPolicyDrop {
		t.Errorf("chain %+v", c)
	}
}
