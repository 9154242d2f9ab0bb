package integration

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// Helpers for the tests of a separate NIC (separate_test.go).

// NewPlainLAN is NewLAN (no DHCP, no RA) without a single sysctl set, in
// either namespace: what vethd finds on a host it is installed on, whose
// namespaces start from the kernel's (and this machine's) defaults. So
// whatever the tests see of ARP is vethd's doing.
func NewPlainLAN(t *testing.T) *LAN {
	t.Helper()
	needRoot(t)
	needTools(t, "ip")
	l := newLANNamespaces(t, LANConfig{})
	l.createWire("eth0")
	return l
}

// Addr6 returns 2001:db8:X::host.
func (l *LAN) Addr6(host byte) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::%x", l.X, host))
}

// ProcSys reads /proc/sys/PATH (PATH in dotted form, like sysctl's)
// inside the namespace.
func (n *Netns) ProcSys(t *testing.T, key string) string {
	t.Helper()
	return strings.TrimSpace(n.MustRun(t, "cat", filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))))
}

// arpReply matches a reply line of iputils arping:
// "Unicast reply from 198.18.1.11 [02:7E:00:00:01:01]  0.600ms".
var arpReply = regexp.MustCompile(`reply from (\S+) \[([0-9A-Fa-f:]+)\]`)

// ARPing sends count broadcast ARP requests for addr out of ifname, one a
// second (arping -b: broadcast every one, even after a reply), and returns
// the replies by the MAC they came from (lower case) and arping's output.
func (n *Netns) ARPing(t *testing.T, ifname string, addr netip.Addr, count int) (map[string]int, string) {
	t.Helper()
	needTools(t, "arping")
	out, err := n.Run("arping", "-b", "-c", fmt.Sprint(count), "-I", ifname, addr.String())
	if err != nil {
		out += "\n" + err.Error() // exit status 1: no reply
	}
	macs := map[string]int{}
	for _, m := range arpReply.FindAllStringSubmatch(out, -1) {
		if m[1] != addr.String() {
			t.Fatalf("arping %s: a reply for %s\n%s", addr, m[1], out)
		}
		macs[strings.ToLower(m[2])]++
	}
	return macs, out
}

// Neighbour returns the link-layer address of addr in the namespace's
// neighbour table on dev ("" if there is no entry with one).
func (n *Netns) Neighbour(t *testing.T, dev string, addr netip.Addr) string {
	t.Helper()
	f := strings.Fields(n.IP(t, "neigh", "show", addr.String(), "dev", dev))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return strings.ToLower(f[i+1])
		}
	}
	return ""
}

// propWatcher collects the PropertiesChanged signals of one bridge object.
type propWatcher struct {
	t    *testing.T
	sigs chan *dbus.Signal
	got  map[string]any // every property signalled so far, last value
}

// watchProps subscribes conn to the PropertiesChanged signals of bridge
// name's object.
func watchProps(t *testing.T, conn *dbus.Conn, name string) *propWatcher {
	t.Helper()
	w := &propWatcher{t: t, sigs: make(chan *dbus.Signal, 64), got: map[string]any{}}
	conn.Signal(w.sigs)
	if err := conn.AddMatchSignal(dbus.WithMatchObjectPath(dbusapi.ObjectPath(name)),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	return w
}

// wait waits until the signals so far have set every property of want to
// its value.
func (w *propWatcher) wait(within time.Duration, want map[string]any) {
	w.t.Helper()
	deadline := time.After(within)
	for {
		match := true
		for k, v := range want {
			if w.got[k] != v {
				match = false
			}
		}
		if match {
			return
		}
		select {
		case s := <-w.sigs:
			if len(s.Body) < 2 {
				continue
			}
			if m, ok := s.Body[1].(map[string]dbus.Variant); ok {
				for k, v := range m {
					w.got[k] = v.Value()
				}
			}
		case <-deadline:
			w.t.Fatalf("PropertiesChanged gave %v, want %v", w.got, want)
		}
	}
}
