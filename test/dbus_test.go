package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// TestDBusObject runs vethd --instance against a private system bus: its
// properties match the interface, PropertiesChanged follows the parent's
// carrier, Reload, ResetCounters and Describe work for root, and when the
// bus goes away vethd runs on and comes back on the new bus.
func TestDBusObject(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	bus, dir, p := startOnBus(t, l, "[Bridge]\nParent=eth0\n")

	conn := bus.Conn(t)
	c := dbusapi.NewClient(conn)
	waitFor(t, 5*time.Second, "veth1 on the bus", func() (bool, string) {
		names, err := c.List(context.Background())
		return err == nil && len(names) == 1 && names[0] == "veth1", fmt.Sprint(names, err)
	})
	// The object is on the bus before the bridge has started (State
	// starting); its properties are what the test compares once it runs.
	var st dbusapi.Status
	waitFor(t, 5*time.Second, "veth1 running on the bus", func() (bool, string) {
		var err error
		st, _, err = c.Get(context.Background(), "veth1")
		return err == nil && st.State == "running", fmt.Sprint(st.State, err)
	})
	link := l.Host.MustLink(t, "veth1").Attrs()
	parent := l.Host.MustLink(t, "eth0").Attrs()
	if st.Name != "veth1" || st.Parent != "eth0" || int(st.IfIndex) != link.Index || int(st.ParentIfIndex) != parent.Index ||
		st.MACAddress != link.HardwareAddr.String() || st.MACPolicy != "persistent" || int(st.MTU) != link.MTU ||
		st.State != "running" || !st.Carrier || !st.ParentCarrier || len(st.Offloads) == 0 || st.LastError != "" {
		t.Errorf("properties %+v do not match veth1 %+v on eth0 %d", st, link, parent.Index)
	}
	// A veth has no unicast filter: the membership makes eth0 promiscuous,
	// silently (issue 9 item 5: a stale notification used to turn this off).
	if parent.Promisc == 0 || !st.Promiscuous {
		t.Errorf("Promiscuous %v on the bus, eth0's promiscuity %d; want both on", st.Promiscuous, parent.Promisc)
	}
	if age := time.Since(time.UnixMicro(int64(st.StartedUsec))); age < 0 || age > time.Minute {
		t.Errorf("StartedUsec is %v ago", age)
	}

	// PropertiesChanged on a parent carrier change.
	sigs := make(chan *dbus.Signal, 16)
	conn.Signal(sigs)
	if err := conn.AddMatchSignal(dbus.WithMatchObjectPath(dbusapi.ObjectPath("veth1")),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	changed := func(what string, want map[string]any) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		got := map[string]any{}
		for {
			select {
			case s := <-sigs:
				if len(s.Body) < 2 {
					continue
				}
				if m, ok := s.Body[1].(map[string]dbus.Variant); ok {
					for k, v := range m {
						got[k] = v.Value()
					}
				}
				match := true
				for k, v := range want {
					if got[k] != v {
						match = false
					}
				}
				if match {
					return
				}
			case <-deadline:
				t.Fatalf("%s: PropertiesChanged gave %v, want %v", what, got, want)
			}
		}
	}
	l.LANNS.IP(t, "link", "set", "lan0", "down")
	changed("parent carrier lost", map[string]any{"ParentCarrier": false, "Carrier": false, "State": "degraded"})
	l.LANNS.IP(t, "link", "set", "lan0", "up")
	changed("parent carrier back", map[string]any{"ParentCarrier": true, "Carrier": true, "State": "running"})

	// Counters, ResetCounters.
	virt4 := l.SetStatic(t, "veth1", 60)
	l.LANNS.WaitPing(t, 5*time.Second, virt4.String())
	_, cnt, err := c.Get(context.Background(), "veth1")
	if err != nil || cnt.RxPackets == 0 || cnt.TxPackets == 0 {
		t.Fatalf("counters after ping: %+v %v", cnt, err)
	}
	if err := c.ResetCounters(context.Background(), "veth1"); err != nil {
		t.Fatal(err)
	}
	_, after, _ := c.Get(context.Background(), "veth1")
	if after.RxBytes >= cnt.RxBytes || after.TxBytes >= cnt.TxBytes {
		t.Errorf("ResetCounters: bytes %d/%d before, %d/%d after", cnt.RxBytes, cnt.TxBytes, after.RxBytes, after.TxBytes)
	}

	// Reload applies a new MTU and signals it.
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nMTU=1400\n")
	if err := c.Reload(context.Background(), "veth1"); err != nil {
		t.Fatal(err)
	}
	changed("reload", map[string]any{"MTU": uint32(1400)})
	if m := l.Host.MustLink(t, "veth1").Attrs().MTU; m != 1400 {
		t.Errorf("MTU after Reload = %d", m)
	}
	// A bad file: Reload fails, names the line, the bridge runs on.
	writeConf(t, dir, "veth1", "[Bridge]\nParent=eth0\nMTU=huge\n")
	if err := c.Reload(context.Background(), "veth1"); err == nil || !strings.Contains(err.Error(), "veth1.conf:3: MTU=") {
		t.Errorf("Reload of a bad file: %v", err)
	}
	if st, _, _ := c.Get(context.Background(), "veth1"); st.State != "running" || !strings.Contains(st.LastError, "MTU=") {
		t.Errorf("after a failed reload: state %s, LastError %q", st.State, st.LastError)
	}

	doc, err := c.Describe(context.Background(), "veth1")
	var d struct {
		Config struct{ Parent string } `json:"config"`
		Status struct{ Name string }
	}
	if err != nil || json.Unmarshal([]byte(doc), &d) != nil || d.Config.Parent != "eth0" || d.Status.Name != "veth1" {
		t.Errorf("Describe: %v %s", err, doc)
	}

	// The bus goes away and comes back: vethd runs on, reconnects and owns
	// its name again.
	bus.Stop()
	if err := p.WaitLine("Lost the system bus", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	bus2 := dbustest.StartIn(t, l.Dir, dbustest.PolicyFile(t))
	if err := p.WaitLine("Connected to the system bus", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	conn2, err := dbus.Connect(bus2.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if st, _, err := dbusapi.NewClient(conn2).Get(context.Background(), "veth1"); err != nil || st.State != "running" {
		t.Errorf("after the bus came back: %+v %v", st, err)
	}
	if !p.Running() {
		t.Error("vethd exited when the bus went away")
	}
}

// startOnBus starts a bus like the system bus with vethd's policy (its
// socket and config under l.Dir, so that the leak check would find the
// daemon) and vethd --instance veth1 on it, configured by conf, and waits
// until veth1 is attached. It returns the bus, the configuration
// directory and the process.
func startOnBus(t *testing.T, l *LAN, conf string) (*dbustest.Bus, string, *Proc) {
	t.Helper()
	bus := dbustest.StartIn(t, l.Dir, dbustest.PolicyFile(t))
	dir := confDir(t, l)
	writeConf(t, dir, "veth1", conf)
	needVethd(t)
	p := startProcWith(t, l.Host, "vethd --instance veth1", func(c *exec.Cmd) {
		c.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus.Addr)
	}, vethdBin, "--instance", "veth1", "--config-dir", dir)
	if err := p.WaitLine("Attached veth1 into eth0", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return bus, dir, p
}
