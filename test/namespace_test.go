package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Namespaces: veth1 given to another namespace (as systemd-nspawn
// --network-interface= does) keeps relaying; when that namespace is
// destroyed the bridge creates veth1 again in its own.

// bareSeq numbers the namespaces bareNetns makes (from 1000, apart from
// the LANs' numbers, which are limited).
var bareSeq atomic.Int32

func init() { bareSeq.Store(1000) }

// bareNetns creates a namespace the test holds no handle of (so that
// `ip netns del` destroys it), removed at cleanup if still there.
func bareNetns(t *testing.T, role string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d-%s", nsPrefix, bareSeq.Add(1), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { removeNetnsByName(name) })
	return name
}

// inNetns runs ip netns exec name argv… and returns its output.
func inNetns(name string, argv ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, argv...)...).CombinedOutput()
	return string(out), err
}

func TestMovedAndNamespaceDestroyed(t *testing.T) {
	for _, kind := range []string{"tap", "veth"} {
		t.Run(kind, func(t *testing.T) {
			l := NewLAN(t, LANConfig{})
			p := l.StartBridge(t, kind, vethMAC)
			ctr := bareNetns(t, "ctr")
			l.Host.IP(t, "link", "set", "veth1", "netns", ctr)
			if err := p.WaitLine("veth1 moved to network namespace netnsid=", 5*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			if !p.Running() {
				t.Fatalf("the bridge ended at the move:\n%s", p.Output())
			}
			addr := l.Addr4(60).String()
			for _, c := range [][]string{
				{"ip", "link", "set", "lo", "up"},
				{"ip", "link", "set", "veth1", "up"},
				{"ip", "addr", "add", addr + "/24", "dev", "veth1"},
			} {
				if out, err := inNetns(ctr, c...); err != nil {
					t.Fatalf("%v: %v: %s", c, err, out)
				}
			}
			waitFor(t, 10*time.Second, "ping from the namespace", func() (bool, string) {
				out, err := inNetns(ctr, "ping", "-c1", "-W1", l.Router4.String())
				return err == nil, out
			})
			// Carrier control reaches it there.
			l.LANNS.IP(t, "link", "set", "lan0", "down")
			waitFor(t, 5*time.Second, "NO-CARRIER in the namespace", func() (bool, string) {
				out, _ := inNetns(ctr, "ip", "link", "show", "veth1")
				return strings.Contains(out, "NO-CARRIER"), out
			})
			l.LANNS.IP(t, "link", "set", "lan0", "up")
			waitFor(t, 10*time.Second, "ping from the namespace again", func() (bool, string) {
				out, err := inNetns(ctr, "ping", "-c1", "-W1", l.Router4.String())
				return err == nil, out
			})

			// The namespace goes, and veth1 with it: re-created at home.
			if out, err := exec.Command("ip", "netns", "del", ctr).CombinedOutput(); err != nil {
				t.Fatalf("ip netns del: %v: %s", err, out)
			}
			if err := p.WaitLine("network namespace of veth1 was destroyed; re-creating veth1", 5*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			if err := p.WaitLine("Re-created veth1", 5*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			if mac := l.Host.MustLink(t, "veth1").Attrs().HardwareAddr.String(); mac != vethMAC {
				t.Errorf("re-created with MAC %s", mac)
			}
			l.SetStatic(t, "veth1", 50)
			l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
		})
	}
}

func TestMovedBack(t *testing.T) {
	for _, kind := range []string{"tap", "veth"} {
		t.Run(kind, func(t *testing.T) {
			l := NewLAN(t, LANConfig{})
			p := l.StartBridge(t, kind, vethMAC)
			ctr := bareNetns(t, "ctr")
			l.Host.IP(t, "link", "set", "veth1", "netns", ctr)
			if err := p.WaitLine("veth1 moved to network namespace", 5*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			// A MAC set in there is followed.
			if out, err := inNetns(ctr, "ip", "link", "set", "veth1", "address", "02:00:5e:10:00:66"); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if err := p.WaitLine("MAC address of veth1 changed by someone else; following it", 5*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			if out, err := exec.Command("ip", "-n", ctr, "link", "set", "veth1", "netns", "/run/netns/"+l.Host.Name).CombinedOutput(); err != nil {
				t.Fatalf("move back: %v: %s", err, out)
			}
			if err := p.WaitLine("veth1 is back in vethd's network namespace", 5*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			// vethd brings it up again (a move leaves a link down).
			waitFor(t, 5*time.Second, "veth1 up", func() (bool, string) {
				a := l.Host.MustLink(t, "veth1").Attrs()
				return a.RawFlags&syscall.IFF_UP != 0, a.Flags.String()
			})
			l.SetStatic(t, "veth1", 50)
			l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
		})
	}
}

// pingFrom waits until name (a namespace) reaches the LAN's router.
func pingFrom(t *testing.T, l *LAN, name string) {
	t.Helper()
	waitFor(t, 10*time.Second, "ping from "+name, func() (bool, string) {
		out, err := inNetns(name, "ping", "-c1", "-W1", l.Router4.String())
		return err == nil, out
	})
}

// useInNetns gives veth1 in name an address (and lo up).
func useInNetns(t *testing.T, l *LAN, name string) {
	t.Helper()
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", l.Addr4(60).String() + "/24", "dev", "veth1"},
	} {
		if out, err := inNetns(name, c...); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
}

func TestConfigNamespace(t *testing.T) {
	for _, kind := range []string{"tap", "veth"} {
		t.Run(kind, func(t *testing.T) {
			l := NewLAN(t, LANConfig{})
			ctr := bareNetns(t, "ctr")
			p := l.StartBridge(t, kind, vethMAC, "-netns", "/run/netns/"+ctr)
			out, err := inNetns(ctr, "ip", "link", "show", "veth1")
			if err != nil || !strings.Contains(out, vethMAC) || !strings.Contains(out, "state UP") {
				t.Fatalf("veth1 in %s: %v: %s\n%s", ctr, err, out, p.Output())
			}
			if l.Host.Link("veth1") != nil {
				t.Error("veth1 in the bridge's namespace too")
			}
			if kind == "veth" && l.Host.Link("vd-veth1") == nil {
				t.Error("no peer in the bridge's namespace")
			}
			useInNetns(t, l, ctr)
			pingFrom(t, l, ctr)
		})
	}
}

func TestConfigNamespaceWaits(t *testing.T) {
	for _, kind := range []string{"tap", "veth"} {
		t.Run(kind, func(t *testing.T) {
			l := NewLAN(t, LANConfig{})
			ctr := fmt.Sprintf("%s%d-later", nsPrefix, bareSeq.Add(1))
			t.Cleanup(func() { removeNetnsByName(ctr) })
			p := l.StartBridge(t, kind, vethMAC, "-netns", "/run/netns/"+ctr)
			if err := p.WaitLine("does not exist; veth1 is created in it when it appears", time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			if out, err := exec.Command("ip", "netns", "add", ctr).CombinedOutput(); err != nil {
				t.Fatalf("ip netns add: %v: %s", err, out)
			}
			if err := p.WaitLine("Re-created veth1", 5*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Output())
			}
			useInNetns(t, l, ctr)
			pingFrom(t, l, ctr)
			// Destroyed: waiting again (not re-created elsewhere).
			if out, err := exec.Command("ip", "netns", "del", ctr).CombinedOutput(); err != nil {
				t.Fatalf("ip netns del: %v: %s", err, out)
			}
			waitFor(t, 5*time.Second, "waiting again", func() (bool, string) {
				return strings.Count(p.Output(), "does not exist; veth1 is created in it when it appears") == 2, p.Output()
			})
			if l.Host.Link("veth1") != nil || !p.Running() {
				t.Errorf("veth1 here %v, bridge running %v", l.Host.Link("veth1") != nil, p.Running())
			}
		})
	}
}

// TestVethRestartWhileMoved: vethd restarts (Release, Start) while veth1 is
// in another namespace: the pair is adopted there and keeps relaying.
func TestVethRestartWhileMoved(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := l.StartBridge(t, "veth", vethMAC)
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
	p.Signal(syscall.SIGUSR1)
	if err := p.WaitLine("Released", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Wait(5 * time.Second)
	p2 := l.StartBridge(t, "veth", vethMAC)
	if err := p2.WaitLine("Adopted veth1, a veth pair with vd-veth1 left by an earlier vethd, in network namespace netnsid=", time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p2.Output())
	}
	pingFrom(t, l, ctr)
}
