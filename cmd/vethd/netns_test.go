package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// ownNetnsEnv marks the test binary re-executed in its own network
// namespace.
const ownNetnsEnv = "VETHD_CMD_TEST_OWN_NETNS"

// TestMain runs this package's tests, as root, in a network namespace of
// their own, where the only interface is lo. The tests call run(), whose
// seed defaults are -v veth0 -e eth0: should a flag check ever fail to
// refuse what a test expects refused, run() starts a bridge, and here it
// finds no eth0 instead of attaching to this machine's own (it once did,
// for ten minutes). Without root run() cannot attach to anything, so the
// tests run where they are. A root that cannot make a namespace fails the
// tests rather than run them in the machine's.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 || os.Getenv(ownNetnsEnv) == "1" {
		os.Exit(m.Run())
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cmd/vethd tests: %v\n", err)
		os.Exit(1)
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), ownNetnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintf(os.Stderr, "cmd/vethd tests: cannot run them in a network namespace of their own: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestOwnNetns: as root, the tests see none of this machine's interfaces.
func TestOwnNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the tests run in this machine's namespace (run() cannot attach without root)")
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name != "lo" {
			t.Errorf("interface %s (index %d) in the tests' network namespace: not their own", i.Name, i.Index)
		}
	}
}
