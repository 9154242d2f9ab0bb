package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The kernel data path's programs in the kernel: a hubLAN (hub0, the
// parent, and wire0, the wire) with veth pairs nicN / pd-nicN beside it,
// each pair joined to hub0 by openKernelPath, and raw sockets on wire0,
// on hub0 (the host's own transmissions) and on each nicN.

// kpNIC is one virtual NIC of a kpLAN: the pair, its kernel path and a
// raw socket on the NIC.
type kpNIC struct {
	name     string
	mac      net.HardwareAddr
	peer     int // pd-NAME's ifindex
	sock     int // raw socket on the NIC
	k        *kernelParent
	counters *Counters
	peerSock *ParentSocket // the relay's socket on the peer, as a bridge has it
}

// kpPair makes the pair name / pd-name with mac on name, both up, a raw
// socket on name, and the relay's peer socket on pd-name.
func (l *hubLAN) kpPair(t *testing.T, name string, mac net.HardwareAddr) *kpNIC {
	t.Helper()
	n := &kpNIC{name: name, mac: mac, counters: &Counters{}}
	l.in(t, func() {
		// A quiet LAN: no IPv6 neighbour discovery or MLD of the links'
		// own in the counters (in the test's namespace only).
		for _, c := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+c+"/disable_ipv6", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.HardwareAddr = name, mac
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "pd-" + name}); err != nil {
			t.Fatalf("add veth: %v", err)
		}
		for _, ln := range []string{name, "pd-" + name} {
			lk, err := netlink.LinkByName(ln)
			if err != nil {
				t.Fatal(err)
			}
			if err := netlink.LinkSetUp(lk); err != nil {
				t.Fatal(err)
			}
			if ln == name {
				n.sock = rawSocket(t, lk.Attrs().Index)
			} else {
				n.peer = lk.Attrs().Index
			}
		}
		waitOperUp(t, name, "pd-"+name)
		ps, err := OpenPeerSocket(n.peer, "pd-"+name)
		if err != nil {
			t.Fatal(err)
		}
		n.peerSock = ps
	})
	t.Cleanup(func() { unix.Close(n.sock); n.peerSock.Close() })
	return n
}

// attach opens n's kernel path on hub0.
func (l *hubLAN) attach(t *testing.T, n *kpNIC, stormLimit int, usePeer bool) {
	t.Helper()
	l.attachWith(t, n, kernelPathSpec{stormLimit: stormLimit, usePeer: usePeer})
}

// attachWith opens n's kernel path on hub0 with spec's stormLimit,
// usePeer and ownInstance.
func (l *hubLAN) attachWith(t *testing.T, n *kpNIC, spec kernelPathSpec) {
	t.Helper()
	l.in(t, func() {
		spec.parent = Link{Index: l.ifindex, Name: "hub0"}
		spec.peer, spec.peerSock, spec.mac = n.peer, n.peerSock, n.mac
		k, err := openKernelPath(spec, n.counters)
		if err != nil {
			t.Fatalf("open kernel path: %v", err)
		}
		n.k = k
	})
	t.Cleanup(func() { n.k.Close() })
}

func rawSocket(t *testing.T, ifindex int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 20000})
	// Only what arrives, not what this end sends.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	return fd
}

func waitOperUp(t *testing.T, names ...string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		up := 0
		for _, n := range names {
			if l, err := netlink.LinkByName(n); err == nil && l.Attrs().OperState == netlink.OperUp {
				up++
			}
		}
		if up == len(names) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%v not up after 5 s", names)
		}
	}
}

// seen counts the frames like f (first 18 bytes) that arrive on fd
// within d.
func seen(fd int, f []byte, d time.Duration) int {
	buf := make([]byte, 2048)
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		m, err := unix.Read(fd, buf)
		if err == nil && m >= 18 && bytes.Equal(buf[:18], f[:18]) {
			n++
		}
	}
	return n
}

func send(t *testing.T, fd int, f []byte) {
	t.Helper()
	if _, err := unix.Write(fd, f); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// requireTCX skips where the kernel has no tcx (before Linux 6.6); CI's
// kernel has it, so CI fails instead.
func requireTCX(t *testing.T, l *hubLAN) {
	t.Helper()
	var err error
	l.in(t, func() {
		_, err = link.QueryPrograms(link.QueryOptions{Target: l.ifindex, Attach: ebpf.AttachTCXIngress})
	})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) && !ciRun() {
			t.Skipf("no tcx in this kernel: %v", err)
		}
		t.Fatalf("query tcx: %v", err)
	}
}

// tcxPrograms counts the programs on hub0's tcx ingress and egress.
func (l *hubLAN) tcxPrograms(t *testing.T) int {
	t.Helper()
	n := 0
	l.in(t, func() {
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: l.ifindex, Attach: at})
			if err != nil {
				t.Fatal(err)
			}
			n += len(r.Programs)
		}
	})
	return n
}

var (
	kpMAC1  = net.HardwareAddr{0x02, 0x77, 0x00, 0x00, 0x01, 0x01}
	kpMAC2  = net.HardwareAddr{0x02, 0x77, 0x00, 0x00, 0x01, 0x02}
	kpOther = net.HardwareAddr{0x02, 0x77, 0x00, 0x00, 0x01, 0xee}
	bcast   = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// TestKernelPathFrames: from the wire, a frame for the NIC's MAC reaches
// the NIC and a frame for another does not; a broadcast reaches it, its
// own looped back does not; a VLAN-tagged frame for it does not; what
// the host sends to its MAC reaches it; what the NIC sends from its MAC
// leaves on the wire, a spoofed source does not; the relay's socket on
// the peer sees none of it; the counters say so, and keep it after
// Close, which leaves no program behind.
func TestKernelPathFrames(t *testing.T) {
	l := newHubLAN(t)
	requireTCX(t, l)
	n := l.kpPair(t, "nic1", kpMAC1)
	l.attach(t, n, BroadcastLimitOff, false)
	var host int
	l.in(t, func() { host = rawSocket(t, l.ifindex) })
	defer unix.Close(host)

	i := 0
	next := func(dst, src net.HardwareAddr) []byte { i++; return tagged(dst, src, 0x88b5, i) }
	check := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s: seen %d times, want %d", what, got, want)
		}
	}

	f := next(kpMAC1, kpOther)
	l.inject(t, f)
	check("wire → NIC, unicast", seen(n.sock, f, 200*time.Millisecond), 1)
	f = next(kpOther, kpMAC2)
	l.inject(t, f)
	check("wire → NIC, another's unicast", seen(n.sock, f, 200*time.Millisecond), 0)
	f = next(bcast, kpOther)
	l.inject(t, f)
	check("wire → NIC, broadcast", seen(n.sock, f, 200*time.Millisecond), 1)
	f = next(bcast, kpMAC1)
	l.inject(t, f)
	check("wire → NIC, its own broadcast", seen(n.sock, f, 200*time.Millisecond), 0)
	// In line: 802.1Q, VLAN 5.
	f = frame(kpMAC1, kpOther, unix.ETH_P_8021Q, 60)
	copy(f[14:18], []byte{0x00, 0x05, 0x88, 0xb5})
	l.inject(t, f)
	check("wire → NIC, VLAN 5", seen(n.sock, f, 200*time.Millisecond), 0)
	f = next(kpMAC1, kpOther)
	send(t, host, f)
	check("host → NIC", seen(n.sock, f, 200*time.Millisecond), 1)

	f = next(kpOther, kpMAC1)
	send(t, n.sock, f)
	if !l.sawOnWire(f) {
		t.Error("NIC → wire: not on the wire")
	}
	f = next(kpOther, kpMAC2)
	send(t, n.sock, f)
	if l.sawOnWire(f) {
		t.Error("NIC → wire, spoofed source: on the wire")
	}
	if m := queued(t, n.peerSock); m != 0 {
		t.Errorf("the relay's peer socket holds %d frames", m)
	}

	want := func(s Stats) {
		t.Helper()
		if s.RxPackets != 3 || s.TxPackets != 1 || s.TxDrops["spoof"] != 1 || s.RxBytes != 3*60 || s.TxBytes != 60 {
			t.Errorf("counters: rx %d/%d B, tx %d/%d B, spoof %d; want rx 3/180 B, tx 1/60 B, spoof 1",
				s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes, s.TxDrops["spoof"])
		}
	}
	want(n.counters.Snapshot())
	if got := l.tcxPrograms(t); got != 2 {
		t.Errorf("%d programs on hub0's tcx, want 2", got)
	}
	n.k.Close()
	want(n.counters.Snapshot())
	if got := l.tcxPrograms(t); got != 0 {
		t.Errorf("%d programs on hub0's tcx after Close", got)
	}
}

// TestKernelPathSiblings: two NICs on one parent, sharing one instance
// of the programs (two bridges of one process) or each with its own (as
// two vethd processes have them): unicast between them goes from one to
// the other and not on the wire; a broadcast from one reaches the other
// and the wire, not its sender; the parent runs one program each way per
// instance.
func TestKernelPathSiblings(t *testing.T) {
	for _, own := range []bool{false, true} {
		name := "shared"
		if own {
			name = "own"
		}
		t.Run(name, func(t *testing.T) {
			l := newHubLAN(t)
			requireTCX(t, l)
			a, b := l.kpPair(t, "nic1", kpMAC1), l.kpPair(t, "nic2", kpMAC2)
			l.attachWith(t, a, kernelPathSpec{stormLimit: BroadcastLimitOff, ownInstance: own})
			l.attachWith(t, b, kernelPathSpec{stormLimit: BroadcastLimitOff, ownInstance: own})
			want := 2
			if own {
				want = 4
			}
			if got := l.tcxPrograms(t); got != want {
				t.Errorf("%d programs on hub0's ingress and egress, want %d", got, want)
			}
			checkSiblings(t, l, a, b)
		})
	}
}

// checkSiblings checks that NICs a and b (on hub0) reach each other and
// the wire as two NICs on one cable.
func checkSiblings(t *testing.T, l *hubLAN, a, b *kpNIC) {
	t.Helper()
	f := tagged(b.mac, a.mac, 0x88b5, 1)
	send(t, a.sock, f)
	if got := seen(b.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("%s → %s: seen %d times on %s", a.name, b.name, got, b.name)
	}
	if l.sawOnWire(f) {
		t.Errorf("%s → %s: on the wire", a.name, b.name)
	}
	f = tagged(bcast, a.mac, 0x88b5, 2)
	send(t, a.sock, f)
	if got := seen(b.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("%s's broadcast: seen %d times on %s", a.name, got, b.name)
	}
	if !l.sawOnWire(f) {
		t.Errorf("%s's broadcast: not on the wire", a.name)
	}
	f = tagged(bcast, a.mac, 0x88b5, 3)
	send(t, a.sock, f)
	if got := seen(a.sock, f, 200*time.Millisecond); got != 0 {
		t.Errorf("%s's broadcast: back on %s %d times", a.name, a.name, got)
	}
}

// TestKernelPathMany: maxKpathNICs+2 NICs on one parent in one process
// run two instances of the programs (two each way on the parent); the
// first and the last reach each other across them, a frame from the
// wire reaches the NIC of its MAC only, and each NIC counts its own;
// a NIC closed in the middle frees its slot (its MAC no longer reaches
// anything, the others still work), and the last to close detaches the
// programs.
func TestKernelPathMany(t *testing.T) {
	l := newHubLAN(t)
	requireTCX(t, l)
	n := maxKpathNICs + 2
	nics := make([]*kpNIC, n)
	for i := range nics {
		mac := net.HardwareAddr{0x02, 0x78, 0, 0, byte(i >> 8), byte(i)}
		nics[i] = l.kpPair(t, fmt.Sprintf("nic%d", i), mac)
		l.attach(t, nics[i], BroadcastLimitOff, false)
	}
	if got := l.tcxPrograms(t); got != 4 {
		t.Errorf("%d programs on hub0's ingress and egress for %d NICs, want 4", got, n)
	}
	first, mid, last := nics[0], nics[maxKpathNICs/2], nics[n-1]
	checkSiblings(t, l, first, last)
	checkSiblings(t, l, last, mid)
	f := tagged(mid.mac, kpOther, 0x88b5, 9)
	l.inject(t, f)
	if got := seen(mid.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("wire → %s: seen %d times", mid.name, got)
	}
	if got := seen(first.sock, f, 50*time.Millisecond); got != 0 {
		t.Errorf("wire → %s: seen %d times on %s", mid.name, got, first.name)
	}
	if s := mid.counters.Snapshot(); s.RxPackets == 0 {
		t.Errorf("%s counted no frame received", mid.name)
	}
	mid.k.Close()
	l.inject(t, f)
	if got := seen(mid.sock, f, 100*time.Millisecond); got != 0 {
		t.Errorf("wire → %s after its Close: seen %d times", mid.name, got)
	}
	// Its slot goes to the next NIC.
	again := l.kpPair(t, "nicx", mid.mac)
	l.attach(t, again, BroadcastLimitOff, false)
	if got := l.tcxPrograms(t); got != 4 {
		t.Errorf("%d programs after a NIC left and another came, want 4", got)
	}
	if s := again.counters.Snapshot(); s.RxPackets != 0 || s.TxPackets != 0 {
		t.Errorf("a NIC in a freed slot starts with the counts of its predecessor: %+v", s)
	}
	l.inject(t, f)
	if got := seen(again.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("wire → the NIC in the freed slot: seen %d times", got)
	}
	checkSiblings(t, l, again, first)
	for _, x := range append(nics, again) {
		x.k.Close()
	}
	if got := l.tcxPrograms(t); got != 0 {
		t.Errorf("%d programs left on hub0 after every NIC closed", got)
	}
	kpathInstances.Lock()
	left := len(kpathInstances.m)
	kpathInstances.Unlock()
	if left != 0 {
		t.Errorf("%d parents with instances left in the registry", left)
	}
}

// TestKernelPathStorm: with a limit of 20 a second, of 200 ARP broadcasts
// sent at once about 20 reach the NIC and the rest are counted as
// storm-arp; a unicast frame is never limited; a new limit applies at
// once.
func TestKernelPathStorm(t *testing.T) {
	l := newHubLAN(t)
	requireTCX(t, l)
	n := l.kpPair(t, "nic1", kpMAC1)
	l.attach(t, n, 20, false)
	arp := frame(bcast, kpOther, unix.ETH_P_ARP, 60)
	for range 200 {
		l.inject(t, arp)
	}
	got := seen(n.sock, arp, 300*time.Millisecond)
	s := n.counters.Snapshot()
	if got < 15 || got > 30 || s.RxDrops["storm-arp"] != uint64(200-got) {
		t.Errorf("200 ARP broadcasts at a limit of 20/s: %d reached the NIC, %d storm-arp drops", got, s.RxDrops["storm-arp"])
	}
	uni := tagged(kpMAC1, kpOther, unix.ETH_P_ARP, 1)
	for range 50 {
		l.inject(t, uni)
	}
	if got := seen(n.sock, uni, 300*time.Millisecond); got != 50 {
		t.Errorf("50 unicast ARP: %d reached the NIC", got)
	}
	if err := n.k.SetStormLimit(BroadcastLimitOff); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		l.inject(t, arp)
	}
	if got := seen(n.sock, arp, 300*time.Millisecond); got != 100 {
		t.Errorf("100 ARP broadcasts without a limit: %d reached the NIC", got)
	}
}

// TestKernelPathPeer: with the NIC in another namespace, from_wire hands
// it its frames with bpf_redirect_peer; told it is back, through the
// peer's transmit (bpf_redirect_peer would drop them).
func TestKernelPathPeer(t *testing.T) {
	l := newHubLAN(t)
	requireTCX(t, l)
	n := l.kpPair(t, "nic1", kpMAC1)
	l.attach(t, n, BroadcastLimitOff, true)
	unix.Close(n.sock) // (unbound by the move)
	var other netns.NsHandle
	l.in(t, func() {
		var err error
		if other, err = netns.New(); err != nil { // (this thread is in it now)
			t.Fatal(err)
		}
		if err := netns.Set(l.ns); err != nil {
			t.Fatal(err)
		}
		nic, err := netlink.LinkByName("nic1")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetNsFd(nic, int(other)); err != nil {
			t.Fatal(err)
		}
		if err := netns.Set(other); err != nil {
			t.Fatal(err)
		}
		if nic, err = netlink.LinkByName("nic1"); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(nic); err != nil {
			t.Fatal(err)
		}
		waitOperUp(t, "nic1")
		n.sock = rawSocket(t, nic.Attrs().Index)
	})
	defer other.Close()
	f := tagged(kpMAC1, kpOther, 0x88b5, 1)
	l.inject(t, f)
	if got := seen(n.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("wire → NIC in another namespace (redirect_peer): seen %d times", got)
	}
	// The NIC's frames still reach the wire from there.
	f = tagged(kpOther, kpMAC1, 0x88b5, 2)
	send(t, n.sock, f)
	if !l.sawOnWire(f) {
		t.Error("NIC in another namespace → wire: not on the wire")
	}
	if err := n.k.SetPeerMode(false); err != nil {
		t.Fatal(err)
	}
	f = tagged(kpMAC1, kpOther, 0x88b5, 3)
	l.inject(t, f)
	if got := seen(n.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("wire → NIC in another namespace (redirect): seen %d times", got)
	}
}

// queued counts the frames waiting on s, without blocking.
func queued(t *testing.T, s *ParentSocket) int {
	t.Helper()
	n := 0
	buf := make([]byte, 2048)
	_ = s.rc.Control(func(fd uintptr) {
		for {
			if _, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT); err != nil {
				return
			}
			n++
		}
	})
	return n
}

func ciRun() bool { return os.Getenv("CI") == "true" }

// TestKernelPathBesideRelay: a NIC on the kernel path and a bridge on the
// relay (a hub member) on one parent reach each other both ways, and a
// broadcast of either reaches the other.
func TestKernelPathBesideRelay(t *testing.T) {
	l := newHubLAN(t)
	requireTCX(t, l)
	n := l.kpPair(t, "nic1", kpMAC1)
	l.attach(t, n, BroadcastLimitOff, false)
	_, tap, _ := l.member(t, hubMACA)

	f := tagged(kpMAC1, hubMACA, 0x88b5, 1)
	tap.send(f)
	if got := seen(n.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("relay → kernel path: seen %d times on the NIC", got)
	}
	f = tagged(bcast, hubMACA, 0x88b5, 2)
	tap.send(f)
	if got := seen(n.sock, f, 200*time.Millisecond); got != 1 {
		t.Errorf("relay's broadcast: seen %d times on the NIC", got)
	}
	f = tagged(hubMACA, kpMAC1, 0x88b5, 3)
	send(t, n.sock, f)
	eventually(t, "kernel path → relay", func() bool { return tap.got(f) == 1 })
	f = tagged(bcast, kpMAC1, 0x88b5, 4)
	send(t, n.sock, f)
	eventually(t, "kernel path's broadcast → relay", func() bool { return tap.got(f) == 1 })
}

// TestKpathLayout: the objects' maps have the sizes kpath_linux.go
// counts with (bpf/kpath.c's MAX_NICS, C_MAX and S_MAX against
// maxKpathNICs, numKpathCounters and numStormClasses). No root needed.
func TestKpathLayout(t *testing.T) {
	spec, err := loadKpath()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{
		"nics":     maxKpathNICs,
		"by_mac":   maxKpathNICs,
		"by_peer":  maxKpathNICs,
		"counters": maxKpathNICs * numKpathCounters,
		"storm":    maxKpathNICs * uint32(numStormClasses),
		"hub":      1,
	} {
		m, ok := spec.Maps[name]
		if !ok {
			t.Errorf("no map %s in the objects", name)
			continue
		}
		if m.MaxEntries != want {
			t.Errorf("map %s has %d entries, kpath_linux.go counts %d", name, m.MaxEntries, want)
		}
	}
}

// envKpathUnitCaps marks the child of TestKpathLoadsWithUnitCaps.
const envKpathUnitCaps = "VETHD_KPATH_UNIT_CAPS_CHILD"

// kpathVerifiedMarker starts the child's line of results.
const kpathVerifiedMarker = "kpath-verified: "

// TestKpathLoadsWithUnitCaps loads the programs as vethd's units run it:
// not root, with CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF and without
// CAP_SYS_ADMIN or CAP_PERFMON, where the verifier also follows each
// branch's speculative path and so processes far more instructions than
// for root (a group loop unrolled over MAX_NICS slots passed for root and
// hit the 1M-instruction limit under the units, which fell back to the
// relay). It runs a copy of this binary as uid 65534 with those ambient
// capabilities; the child loads the objects and prints how many
// instructions the verifier processed for each program.
func TestKpathLoadsWithUnitCaps(t *testing.T) {
	if os.Getenv(envKpathUnitCaps) == "1" {
		var objs kpathObjects
		opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}
		if err := loadKpathObjects(&objs, opts); err != nil {
			fmt.Printf("%s{\"error\": %q}\n", kpathVerifiedMarker, err.Error())
			return
		}
		defer objs.Close()
		fmt.Printf("%sFromWire: %s | FromHost: %s | FromNic: %s\n", kpathVerifiedMarker,
			verifierStats(objs.FromWire), verifierStats(objs.FromHost), verifierStats(objs.FromNic))
		return
	}
	if os.Getuid() != 0 {
		t.Skip("needs root (to run a copy of the test as uid 65534 with CAP_BPF)")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bridge.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestKpathLoadsWithUnitCaps$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = []string{envKpathUnitCaps + "=1", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_BPF},
		Pdeathsig:   syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the child as uid 65534: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if res, ok := strings.CutPrefix(line, kpathVerifiedMarker); ok {
			if strings.Contains(res, "error") {
				t.Fatalf("the programs do not load with the units' capabilities: %s", res)
			}
			t.Logf("loaded as uid 65534 with CAP_NET_ADMIN CAP_NET_RAW CAP_BPF: %s", res)
			return
		}
	}
	t.Fatalf("the child printed no result:\n%s", out)
}

// verifierStats is the verifier's summary line of p ("processed N insns
// ..."), or the whole log if it has none.
func verifierStats(p *ebpf.Program) string {
	for _, line := range strings.Split(p.VerifierLog, "\n") {
		if strings.HasPrefix(line, "processed ") {
			return line
		}
	}
	return strings.TrimSpace(p.VerifierLog)
}

// TestKpathObjectsMatchSource: the committed objects were compiled from
// bpf/kpath.c as it stands. Building needs no C compiler, so nothing else
// notices an edit to kpath.c that was not followed by go generate; the
// objects' BTF line information holds, for each compiled statement, the
// file, the line number and the line's text, and each must still be that
// line of kpath.c. No root needed.
func TestKpathObjectsMatchSource(t *testing.T) {
	src, err := os.ReadFile("bpf/kpath.c")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	for _, obj := range []string{"kpath_bpfel.o", "kpath_bpfeb.o"} {
		spec, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		checked, stale := 0, 0
		for name, p := range spec.Programs {
			for _, ins := range p.Instructions {
				li, ok := ins.Source().(*btf.Line)
				if !ok {
					continue
				}
				if filepath.Base(li.FileName()) != "kpath.c" {
					continue // a libbpf header's inline function
				}
				checked++
				n := int(li.LineNumber())
				got := ""
				if n >= 1 && n <= len(lines) {
					got = strings.TrimSpace(lines[n-1])
				}
				if want := strings.TrimSpace(li.Line()); got != want {
					stale++
					if stale <= 3 {
						t.Errorf("%s, program %s: compiled from kpath.c:%d %q, which is now %q; run go generate ./pkg/bridge/ (clang and libbpf-dev)",
							obj, name, n, want, got)
					}
				}
			}
		}
		if checked < 100 {
			t.Errorf("%s: line information for only %d instructions from kpath.c (built without -g?)", obj, checked)
		}
		if stale > 3 {
			t.Errorf("%s: %d stale lines in all", obj, stale)
		}
	}
}
