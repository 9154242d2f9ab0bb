package integration

import (
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// debianUdevRules are the rules (of this machine's udev and network-manager
// packages) that decide NM_UNMANAGED for a veth before vethd's rule runs:
// 80-net-setup-link.rules sets ID_NET_DRIVER, 85-nm-unmanaged.rules marks
// every veth not named eth* unmanaged.
var debianUdevRules = []string{
	"/usr/lib/udev/rules.d/80-net-setup-link.rules",
	"/usr/lib/udev/rules.d/85-nm-unmanaged.rules",
}

// vethdPeerName is the shared naming of the veth kind's peer: vd-NAME, or
// for NAME longer than 12 characters vd- + NAME[:4] + FNV-1a-32(NAME) in hex.
func vethdPeerName(name string) string {
	if len(name) <= 12 {
		return "vd-" + name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("vd-%s%08x", name[:4], h.Sum32())
}

// TestUdevNMUnmanaged runs `udevadm test --action=add` (no event is sent;
// it only evaluates the rules) on links of a test namespace, with this
// machine's rules alone and with dist/udev/86-vethd.rules added, and checks
// the NM_UNMANAGED each ends with: Debian's 85-nm-unmanaged.rules marks a
// veth unmanaged; vethd's rule makes vethd's virtual NIC (a veth whose peer
// is vd-NAME, short and long names) managed again, keeps its peers
// unmanaged, and leaves every other link as Debian's rules had it — a plain
// veth pair, a veth named eth*, a long-named veth beside vethd's peers that
// is not their other end, a TAP (vethd's Kind=tap).
func TestUdevNMUnmanaged(t *testing.T) {
	needRoot(t)
	needTools(t, "ip", "udevadm")
	for _, f := range debianUdevRules {
		if _, err := os.Stat(f); err != nil {
			skipOrFail(t, fmt.Sprintf("needs %s (Debian packages udev and network-manager; scripts/deps.sh installs them)", f))
		}
	}
	// go test runs in the package's directory, test/.
	ours, err := filepath.Abs("../dist/udev/86-vethd.rules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ours); err != nil {
		t.Fatal(err)
	}
	ns := newNetns(t, fmt.Sprintf("%s%d-udev", nsPrefix, nsSeq.Add(1)))

	long := "vethlongname14"
	pairs := [][2]string{
		{"veth1", vethdPeerName("veth1")}, // vethd's, short name
		{long, vethdPeerName(long)},       // vethd's, long name
		{"web0", "web1"},                  // a container's plumbing
		{"eth5", "ct5"},                   // LXD-style eth* inside a container
		{"vethlongdecoy1", "dec1"},        // long name, beside vd-* links, not paired with one
	}
	for _, p := range pairs {
		ns.IP(t, "link", "add", p[0], "type", "veth", "peer", "name", p[1])
	}
	// vethd's TAP kind: driver tun, none of these rules is about it.
	ns.IP(t, "tuntap", "add", "dev", "veth9", "mode", "tap")

	// Want: with Debian's rules alone, then with ours too ("" = not set).
	want := map[string][2]string{
		"veth1":             {"1", "0"},
		"vd-veth1":          {"1", "1"},
		long:                {"1", "0"},
		vethdPeerName(long): {"1", "1"},
		"web0":              {"1", "1"},
		"web1":              {"1", "1"},
		"eth5":              {"", ""},
		"ct5":               {"1", "1"},
		"vethlongdecoy1":    {"1", "1"},
		"dec1":              {"1", "1"},
		"veth9":             {"", ""},
	}
	start := time.Now()
	for _, link := range slices.Sorted(maps.Keys(want)) {
		w := want[link]
		debian := udevNMUnmanaged(t, ns, link, "")
		with := udevNMUnmanaged(t, ns, link, ours)
		t.Logf("%-16s NM_UNMANAGED: Debian's rules %q, with 86-vethd.rules %q", link, debian, with)
		if debian != w[0] {
			t.Errorf("%s: Debian's rules alone give NM_UNMANAGED=%q, want %q (did 85-nm-unmanaged.rules change?)", link, debian, w[0])
		}
		if with != w[1] {
			t.Errorf("%s: with 86-vethd.rules NM_UNMANAGED=%q, want %q", link, with, w[1])
		}
	}
	t.Logf("%d udevadm test runs in %.1fs", 2*len(want), time.Since(start).Seconds())
}

// TestUdevNMUnmanagedVethd is TestUdevNMUnmanaged on the pairs vethd
// itself makes (--kind=veth), a short name and a 14-character one: the
// virtual NIC ends with NM_UNMANAGED=0, its peer with 1.
func TestUdevNMUnmanagedVethd(t *testing.T) {
	needRoot(t)
	needTools(t, "ip", "udevadm")
	for _, f := range debianUdevRules {
		if _, err := os.Stat(f); err != nil {
			skipOrFail(t, fmt.Sprintf("needs %s (Debian packages udev and network-manager; scripts/deps.sh installs them)", f))
		}
	}
	ours, err := filepath.Abs("../dist/udev/86-vethd.rules")
	if err != nil {
		t.Fatal(err)
	}
	l := NewLAN(t, LANConfig{})
	for _, name := range []string{"veth1", "vethlongname14"} {
		l.StartVethd(t, name, "eth0", "--kind=veth")
		peer := vethdPeerName(name)
		if kind := l.Host.IP(t, "-d", "-o", "link", "show", peer); !strings.Contains(kind, " veth ") {
			t.Fatalf("vethd --kind=veth made no veth peer %s:\n%s", peer, kind)
		}
		for link, want := range map[string]string{name: "0", peer: "1"} {
			if got := udevNMUnmanaged(t, l.Host, link, ours); got != want {
				t.Errorf("%s (vethd's, --kind=veth): NM_UNMANAGED=%q with 86-vethd.rules, want %q", link, got, want)
			} else {
				t.Logf("%s: NM_UNMANAGED=%s", link, got)
			}
		}
	}
}

// udevNMUnmanaged evaluates the udev rules for link's add event inside ns
// (ip netns exec mounts the namespace's /sys) and returns the NM_UNMANAGED
// they set. /run is a fresh tmpfs in that command's own mount namespace, so
// udevadm writes nothing of the machine's; 86-vethd.rules is rules (copied
// to /run/udev/rules.d) or, when rules is "", masked there (in case this
// machine has it installed).
func udevNMUnmanaged(t *testing.T, ns *Netns, link, rules string) string {
	t.Helper()
	src := rules
	if src == "" {
		src = "/dev/null"
	}
	out, err := ns.Run("sh", "-c", `set -e
mount -t tmpfs -o mode=0755 vethd-udev-test /run
mkdir -p /run/udev/rules.d
if [ "$2" = /dev/null ]; then ln -s /dev/null /run/udev/rules.d/86-vethd.rules; else cp "$2" /run/udev/rules.d/86-vethd.rules; fi
exec udevadm test --action=add "/sys/class/net/$1"`, "sh", link, src)
	if err != nil {
		t.Fatalf("udevadm test %s: %v\n%s", link, err, out)
	}
	if rules != "" && !strings.Contains(out, "86-vethd.rules") {
		t.Fatalf("udevadm test %s did not read 86-vethd.rules:\n%s", link, out)
	}
	val := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "NM_UNMANAGED="); ok {
			val = strings.TrimSpace(v)
		}
	}
	return val
}
