package integration

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/sdnotify/sdnotifytest"
)

// Restarts while the virtual interface is in another namespace: moved
// there (`ip link set veth1 netns X`), or created there (Namespace=). The
// next vethd adopts it where it is and it keeps relaying, with its
// ifindex and addresses. A TAP comes back from systemd's fd store (here
// the fake systemd's), a veth pair is found by its peer.

// ifindexIn returns name's ifindex in the namespace ns.
func ifindexIn(t *testing.T, ns, name string) int {
	t.Helper()
	out, err := inNetns(ns, "cat", "/sys/class/net/"+name+"/ifindex")
	if err != nil {
		t.Fatalf("%s in %s: %v: %s", name, ns, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("%s in %s: ifindex %q", name, ns, out)
	}
	return n
}

// restartService stops vethd p (SIGTERM: the fake systemd keeps the TAP's
// descriptor) and starts it again with ARGS… and the stored descriptor; it
// returns the new vethd once it is READY=1 again, having adopted the TAP.
func restartService(t *testing.T, l *LAN, sd *sdnotifytest.Systemd, p *Proc, args ...string) *Proc {
	t.Helper()
	n := len(sd.Messages())
	p.Signal(syscall.SIGTERM)
	sd.WaitFor(t, n, 5*time.Second, "STOPPING=1")
	if st := p.Wait(5 * time.Second); st == nil || st.ExitCode() != 0 {
		t.Fatalf("vethd did not exit 0 on SIGTERM: %v\n%s", st, p.Output())
	}
	stored := sd.Stored("tap")
	if len(stored) != 1 {
		t.Fatalf("%d descriptors stored as tap, want 1", len(stored))
	}
	n = len(sd.Messages())
	p2 := startService(t, l, sd, 0, map[string]*os.File{"tap": stored[0]}, args...)
	if err := p2.WaitLine("Adopted veth1 from systemd's fd store", 10*time.Second); err != nil {
		t.Fatalf("restart did not adopt the TAP: %v\n%s", err, p2.Output())
	}
	sd.WaitFor(t, n, 5*time.Second, "READY=1")
	return p2
}

// TestTAPRestartWhileMoved: the TAP equivalent of TestVethRestartWhileMoved:
// vethd restarts while veth1 is in another namespace; the TAP from the fd
// store is adopted there and keeps relaying.
func TestTAPRestartWhileMoved(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\n")
	sd := sdnotifytest.NewIn(t, l.Dir)
	args := []string{"--instance", "veth1", "--config-dir", dir}
	p := startService(t, l, sd, 0, nil, args...)
	sd.WaitFor(t, 0, 10*time.Second, "READY=1")
	ctr := bareNetns(t, "ctr")
	l.Host.IP(t, "link", "set", "veth1", "netns", ctr)
	if err := p.WaitLine("veth1 moved to network namespace", 5*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	if out, err := inNetns(ctr, "ip", "link", "set", "veth1", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	useInNetns(t, l, ctr)
	pingFrom(t, l, ctr)
	idx := ifindexIn(t, ctr, "veth1")

	p2 := restartService(t, l, sd, p, args...)
	if err := p2.WaitLine("Adopted veth1 in network namespace netnsid=", time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p2.Output())
	}
	if got := ifindexIn(t, ctr, "veth1"); got != idx {
		t.Errorf("restart changed ifindex %d → %d", idx, got)
	}
	if l.Host.Link("veth1") != nil {
		t.Error("a veth1 in vethd's namespace after the restart")
	}
	pingFrom(t, l, ctr)
	if !p2.Running() {
		t.Fatalf("vethd ended after the restart:\n%s", p2.Output())
	}
}

// TestConfigNamespaceRestart: a restart of a bridge whose interface
// Namespace= creates in another namespace adopts it there (it was a
// restart loop for the TAP kind: "a TAP descriptor to adopt with a
// namespace"), for both kinds; the interface keeps its ifindex and its
// address and relays.
func TestConfigNamespaceRestart(t *testing.T) {
	t.Run("tap", func(t *testing.T) {
		l := NewLAN(t, LANConfig{})
		ctr := bareNetns(t, "ctr")
		dir := confDir(t, l)
		writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nNamespace="+ctr+"\n")
		sd := sdnotifytest.NewIn(t, l.Dir)
		args := []string{"--instance", "veth1", "--config-dir", dir}
		p := startService(t, l, sd, 0, nil, args...)
		sd.WaitFor(t, 0, 10*time.Second, "READY=1")
		useInNetns(t, l, ctr)
		pingFrom(t, l, ctr)
		idx := ifindexIn(t, ctr, "veth1")

		p2 := restartService(t, l, sd, p, args...)
		if err := p2.WaitLine("Adopted veth1 in its network namespace /run/netns/"+ctr, time.Second); err != nil {
			t.Fatalf("%v\n%s", err, p2.Output())
		}
		if got := ifindexIn(t, ctr, "veth1"); got != idx {
			t.Errorf("restart changed ifindex %d → %d", idx, got)
		}
		if out, err := inNetns(ctr, "ip", "-4", "addr", "show", "dev", "veth1"); err != nil || !strings.Contains(out, l.Addr4(60).String()+"/24") {
			t.Errorf("veth1's address after the restart: %v: %s", err, out)
		}
		pingFrom(t, l, ctr)
		// Running on, not restarting (the loop exited 1 at once).
		time.Sleep(500 * time.Millisecond)
		if !p2.Running() {
			t.Fatalf("vethd ended after the restart:\n%s", p2.Output())
		}
	})
	t.Run("veth", func(t *testing.T) {
		l := NewLAN(t, LANConfig{})
		ctr := bareNetns(t, "ctr")
		p := l.StartBridge(t, "veth", vethMAC, "-netns", "/run/netns/"+ctr)
		useInNetns(t, l, ctr)
		pingFrom(t, l, ctr)
		idx := ifindexIn(t, ctr, "veth1")
		p.Signal(syscall.SIGUSR1)
		if err := p.WaitLine("Released", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		p.Wait(5 * time.Second)
		p2 := l.StartBridge(t, "veth", vethMAC, "-netns", "/run/netns/"+ctr)
		if err := p2.WaitLine("Adopted veth1, a veth pair with vd-veth1 left by an earlier vethd", time.Second); err != nil {
			t.Fatalf("%v\n%s", err, p2.Output())
		}
		if got := ifindexIn(t, ctr, "veth1"); got != idx {
			t.Errorf("restart changed ifindex %d → %d", idx, got)
		}
		if l.Host.Link("veth1") != nil {
			t.Error("a veth1 in the bridge's namespace after the restart")
		}
		pingFrom(t, l, ctr)
	})
}
