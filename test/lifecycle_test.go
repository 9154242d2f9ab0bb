package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKill9: vethd joins its MAC with PACKET_MR_UNICAST and never sets
// IFF_PROMISC; on a veth parent (no unicast filter) the kernel raises the
// promiscuity count by itself. After kill -9 the kernel closes the fds:
// the TAP disappears within 2 s and the count returns to what it was.
func TestKill9(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	before, flag := l.Host.Promiscuity(t, "eth0")
	if flag {
		t.Fatalf("eth0 PROMISC before vethd started")
	}
	p := l.StartVethd(t, "veth1", "eth0")
	during, flag := l.Host.Promiscuity(t, "eth0")
	if flag {
		t.Errorf("vethd set IFF_PROMISC on eth0 (ip link shows PROMISC)")
	}
	if during != before+1 {
		t.Errorf("eth0 promiscuity %d while vethd runs, want %d (kernel fallback for the unicast membership)", during, before+1)
	}

	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 2*time.Second, "veth1 to disappear after kill -9", func() (bool, string) {
		return l.Host.Link("veth1") == nil, "veth1 still there"
	})
	waitFor(t, 2*time.Second-time.Since(start), fmt.Sprintf("eth0 promiscuity back to %d", before), func() (bool, string) {
		n, _ := l.Host.Promiscuity(t, "eth0")
		return n == before, fmt.Sprint(n)
	})
}

// TestSignalStop: SIGTERM and SIGINT make vethd remove the TAP and exit 0
// within one second, giving the parent's promiscuity back — also while a
// flood ping runs through it. All runs use the default (persistent) MAC,
// which must be the same each time, unicast and locally administered, and
// differ from the one another interface name gets.
func TestSignalStop(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	before, _ := l.Host.Promiscuity(t, "eth0")
	var macs []string
	for _, c := range []struct {
		sig  syscall.Signal
		load bool
	}{{syscall.SIGTERM, false}, {syscall.SIGINT, false}, {syscall.SIGTERM, true}} {
		p := l.StartVethd(t, "veth1", "eth0")
		mac := l.MAC(t, "veth1")
		macs = append(macs, mac.String())
		if mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Errorf("default MAC %s: want unicast and locally administered", mac)
		}
		if c.load {
			l.Host.IP(t, "addr", "replace", l.Addr4(50).String()+"/24", "dev", "veth1")
			l.Host.WaitPing(t, 5*time.Second, "-I", "veth1", l.Router4.String())
			flood := startProc(t, l.LANNS, "ping -f", "ping", "-f", "-q", "-s", "1400", "-w", "20", l.Addr4(50).String())
			time.Sleep(500 * time.Millisecond)
			if !flood.Running() {
				t.Fatalf("flood ping ended early:\n%s", flood.Output())
			}
			rx0 := l.Host.Stat(t, "veth1", "rx_packets")
			time.Sleep(200 * time.Millisecond)
			if d := l.Host.Stat(t, "veth1", "rx_packets") - rx0; d < 20 {
				t.Errorf("flood ping: only %d packets in 200 ms reached veth1", d)
			}
		}
		stopWithin(t, l, p, c.sig, time.Second)
		if n, _ := l.Host.Promiscuity(t, "eth0"); n != before {
			t.Errorf("%v: eth0 promiscuity %d after exit, want %d", c.sig, n, before)
		}
	}
	for _, m := range macs[1:] {
		if m != macs[0] {
			t.Errorf("persistent MAC changed between runs: %v", macs)
		}
	}
	l.StartVethd(t, "veth2", "eth0")
	if m2 := l.MAC(t, "veth2").String(); m2 == macs[0] {
		t.Errorf("veth1 and veth2 got the same persistent MAC %s", m2)
	}
}

// TestTAPDeleted: vethd(8) says that if the virtual interface is deleted
// by someone else, vethd exits with status 1; it must do so within 2 s and
// log a line naming the deletion.
func TestTAPDeleted(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	p := l.StartVethd(t, "veth1", "eth0")
	l.Host.IP(t, "link", "del", "veth1")
	start := time.Now()
	st := p.Wait(2 * time.Second)
	if st == nil {
		t.Fatalf("vethd still running 2 s after veth1 was deleted\n%s", p.Output())
	}
	t.Logf("vethd exited %v after veth1 was deleted: %v", time.Since(start).Round(time.Millisecond), st)
	if st.ExitCode() != 1 {
		t.Errorf("vethd exited with %v, want status 1", st)
	}
	if !strings.Contains(p.Output(), "deleted") {
		t.Errorf("vethd logged no line naming the deletion (\"deleted\"):\n%s", p.Output())
	}
}

// TestRandomMAC: -m random gives a new unicast, locally administered MAC at
// each start.
func TestRandomMAC(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	var macs []string
	for i := 0; i < 2; i++ {
		p := l.StartVethd(t, "veth1", "eth0", "-m", "random")
		mac := l.MAC(t, "veth1")
		if mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Errorf("random MAC %s: want unicast and locally administered", mac)
		}
		macs = append(macs, mac.String())
		p.Stop(3 * time.Second)
		waitFor(t, 2*time.Second, "veth1 gone", func() (bool, string) { return l.Host.Link("veth1") == nil, "" })
	}
	if macs[0] == macs[1] {
		t.Errorf("-m random gave the same MAC twice: %s", macs[0])
	}
}
