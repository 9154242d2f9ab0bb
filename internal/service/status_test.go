package service

import (
	"errors"
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/macaddr"
)

// TestStatusText: the STATUS= line for each state, one bridge and several.
func TestStatusText(t *testing.T) {
	st := newStarter(t)
	d := newDaemon(Config{Mode: ModeAll, ConfigDir: "/etc/vethd", StartBridge: st.start})
	if got, want := d.statusLine(), "No bridges configured in /etc/vethd"; got != want {
		t.Errorf("no bridges: %q, want %q", got, want)
	}

	s := spec{cfg: bridge.Config{Name: "veth1", Parent: "eth0"}, policy: macaddr.Policy{Kind: macaddr.Persistent}}
	in := d.newInstance(s)
	if got, want := d.statusLine(), "veth1 starting"; got != want {
		t.Errorf("before the start: %q, want %q", got, want)
	}
	in.setErr(errors.New("create TAP veth1: boom"))
	if got, want := d.statusLine(), "veth1 starting (last error: create TAP veth1: boom)"; got != want {
		t.Errorf("after a failed start: %q, want %q", got, want)
	}
	if _, err := in.start(); err != nil {
		t.Fatal(err)
	}
	b := st.bridges("veth1")[0]
	b.counters.RxPackets.Store(3)
	b.counters.RxBytes.Store(1500)
	b.counters.TxPackets.Store(2)
	b.counters.TxBytes.Store(999)
	for _, c := range []struct {
		state bridge.State
		want  string
	}{
		{bridge.StateRunning, "veth1 running on eth0, mac 02:00:00:00:00:aa; rx 3 packets (1.5 kB), tx 2 packets (999 B)"},
		{bridge.StateDegraded, "veth1 degraded: parent eth0 has no carrier; rx 3 packets (1.5 kB), tx 2 packets (999 B)"},
		{bridge.StateWaitingParent, "veth1 waiting for parent eth0 to appear"},
		{bridge.StateWaitingNamespace, "veth1 waiting for network namespace /run/netns/lab to appear"},
		{bridge.StateStopping, "veth1 stopping"},
	} {
		b.set(func(b *fakeBridge) { b.status.State = c.state; b.status.Namespace = "/run/netns/lab" })
		if got := d.statusLine(); got != c.want {
			t.Errorf("%s: %q, want %q", c.state, got, c.want)
		}
	}
	b.set(func(b *fakeBridge) { b.status.LastError = "set veth1 mtu 9000: invalid argument" })
	if got, want := d.statusLine(), "veth1 stopping (last error: set veth1 mtu 9000: invalid argument)"; got != want {
		t.Errorf("bridge's error: %q, want %q", got, want)
	}

	s.cfg.Name = "veth2"
	d.newInstance(s)
	b.set(func(b *fakeBridge) { b.status.State = bridge.StateRunning })
	if got, want := d.statusLine(), "2 bridges: veth1 running, veth2 starting; rx 3 packets, tx 2 packets"; got != want {
		t.Errorf("two bridges: %q, want %q", got, want)
	}
	in.stop(false, false)
}
