package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vethd/vethd/internal/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netns is a named network namespace created by a test and removed by its
// cleanup, together with everything still running inside it.
type Netns struct {
	Name string
	// NL is a netlink handle whose socket lives in the namespace; using it
	// never moves a thread.
	NL     *netlink.Handle
	handle netns.NsHandle
}

// newNetns creates the namespace name (ip netns add), brings its loopback
// up, and registers its removal with t.Cleanup.
func newNetns(t *testing.T, name string) *Netns {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &Netns{Name: name, handle: -1}
	t.Cleanup(func() {
		if n.NL != nil {
			n.NL.Close()
		}
		if n.handle >= 0 {
			n.handle.Close()
		}
		if err := removeNetnsByName(name); err != nil {
			t.Errorf("remove namespace: %v", err)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	n.handle = h
	if n.NL, err = netlink.NewHandleAt(h); err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// Do runs fn on a locked OS thread switched into the namespace, in a
// goroutine of its own, and switches the thread back before unlocking it.
// Sockets opened by fn stay in the namespace after Do returns. If the
// thread cannot be switched back it stays locked, so the runtime destroys
// it when the goroutine ends: no thread is ever left in a foreign
// namespace.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			// Set failed: the thread is still where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", n.Name, err)
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Command returns a command that runs argv inside the namespace
// (ip netns exec, which also mounts the namespace's own /sys).
func (n *Netns) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// Run runs argv inside the namespace with a 30 s timeout and returns its
// combined output.
func (n *Netns) Run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("[%s] %s: %w", n.Name, strings.Join(argv, " "), err)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *Netns) MustRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := n.Run(argv...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// IP runs `ip -n NS args…` and fails the test on error.
func (n *Netns) IP(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Sysctl sets a sysctl of the namespace, key in dotted form
// (net.ipv4.conf.all.arp_ignore). /proc/sys/net is resolved against the
// namespace of the thread that opens it, hence Do.
func (n *Netns) Sysctl(t *testing.T, key, value string) {
	t.Helper()
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, value, n.Name, err)
	}
}

// Link returns the named link, or nil if there is none.
func (n *Netns) Link(name string) netlink.Link {
	l, err := n.NL.LinkByName(name)
	if err != nil {
		return nil
	}
	return l
}

// MustLink returns the named link and fails the test if it does not exist.
func (n *Netns) MustLink(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := n.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, n.Name, err)
	}
	return l
}

// LinkNames lists the names of the namespace's links.
func (n *Netns) LinkNames(t *testing.T) []string {
	t.Helper()
	links, err := netlinksafe.RetryDump(n.NL.LinkList)
	if err != nil {
		t.Fatalf("list links in %s: %v", n.Name, err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// LowerUp reports whether the link has carrier (IFF_LOWER_UP).
func (n *Netns) LowerUp(name string) bool {
	l := n.Link(name)
	return l != nil && l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
}

// SysfsCarrier reads /sys/class/net/NAME/carrier as seen inside the
// namespace: "1", "0", or "" when it cannot be read (the link is down or
// missing).
func (n *Netns) SysfsCarrier(name string) string {
	out, err := n.Run("cat", "/sys/class/net/"+name+"/carrier")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// LinkDetail is the part of `ip -d -j link show` the tests read.
type LinkDetail struct {
	Name        string   `json:"ifname"`
	Flags       []string `json:"flags"`
	Promiscuity int      `json:"promiscuity"`
	MTU         int      `json:"mtu"`
	Address     string   `json:"address"`
}

// Detail returns `ip -d -j link show dev NAME`.
func (n *Netns) Detail(t *testing.T, name string) LinkDetail {
	t.Helper()
	out := n.IP(t, "-d", "-j", "link", "show", "dev", name)
	var ds []LinkDetail
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("parse ip -j link show %s: %v\n%s", name, err, out)
	}
	return ds[0]
}

// Promiscuity returns the link's promiscuity count and whether the
// user-visible PROMISC flag (set by someone with IFF_PROMISC) is on.
func (n *Netns) Promiscuity(t *testing.T, name string) (count int, flag bool) {
	t.Helper()
	d := n.Detail(t, name)
	for _, f := range d.Flags {
		if f == "PROMISC" {
			flag = true
		}
	}
	return d.Promiscuity, flag
}

// Stat reads one of /sys/class/net/NAME/statistics through netlink.
func (n *Netns) Stat(t *testing.T, name, which string) uint64 {
	t.Helper()
	s := n.MustLink(t, name).Attrs().Statistics
	if s == nil {
		t.Fatalf("no statistics for %s", name)
	}
	switch which {
	case "rx_packets":
		return s.RxPackets
	case "tx_packets":
		return s.TxPackets
	case "rx_bytes":
		return s.RxBytes
	case "tx_bytes":
		return s.TxBytes
	}
	t.Fatalf("unknown statistic %s", which)
	return 0
}

// Ping runs ping inside the namespace; args are ping's own (-I …, -6, addr).
// It sends count echo requests and requires every one to be answered.
func (n *Netns) Ping(count int, args ...string) (string, error) {
	argv := append([]string{"ping", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2"}, args...)
	return n.Run(argv...)
}

// WaitPing retries a one-packet ping until it is answered, then requires
// three more to be answered; it fails the test after within.
func (n *Netns) WaitPing(t *testing.T, within time.Duration, args ...string) {
	t.Helper()
	var out string
	var err error
	deadline := time.Now().Add(within)
	for {
		if out, err = n.Ping(1, append([]string{"-w", "1"}, args...)...); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %s from %s: no answer within %v: %v\n%s", strings.Join(args, " "), n.Name, within, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err = n.Ping(3, args...); err != nil {
		t.Fatalf("ping %s from %s answered once, then failed: %v\n%s", strings.Join(args, " "), n.Name, err, out)
	}
}

// waitFor polls cond every 25 ms until it holds, and fails the test after
// within with what, plus the detail cond last gave.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := poll(within, cond); err != nil {
		t.Fatalf("timed out after %v waiting for %s: %v", within, what, err)
	}
}

// poll is waitFor without the test: it returns an error on timeout.
func poll(within time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(within)
	for {
		ok, detail := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("last seen: %s", detail)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
