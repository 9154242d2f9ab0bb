package integration

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	testVMAC   = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	foreignMAC = net.HardwareAddr{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}
	bcastMAC   = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcastMAC   = net.HardwareAddr{0x01, 0x00, 0x5e, 0x7f, 0x00, 0x01}
)

// filterCase is one kind of frame sent from the LAN, and whether vethd
// must hand it to the TAP.
type filterCase struct {
	kind     string
	dst, src net.HardwareAddr
	vid      uint16
	atTAP    bool // reaches veth1 (all N) or never (0)
}

// TestForeignUnicastFiltered sends frames from a raw socket on lan0 while
// eth0 is forced promiscuous, and counts them on packet sockets bound to
// veth1 (what vethd hands to the TAP) and to eth0 (the control: every frame
// did reach the parent, so a zero at the TAP is vethd's filter at work).
// Unicast to another MAC, tagged frames, and group frames sent with the
// virtual MAC as source must never reach the TAP; unicast to the virtual
// MAC, broadcast and multicast must, all of them, byte for byte.
func TestForeignUnicastFiltered(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	l.StartVethd(t, "veth1", "eth0", "-m", testVMAC.String())
	if got := l.MAC(t, "veth1"); got.String() != testVMAC.String() {
		t.Fatalf("veth1 MAC %s, want %s (-m)", got, testVMAC)
	}
	checkFilter(t, l, "veth1", testVMAC)
}

// checkFilter is the body of TestForeignUnicastFiltered for a virtual
// interface virt with MAC vmac on eth0.
func checkFilter(t *testing.T, l *LAN, virt string, vmac net.HardwareAddr) {
	l.Host.IP(t, "link", "set", "eth0", "promisc", "on")

	const n = 50
	lan := l.LAN0MAC
	cases := []filterCase{
		{kind: "foreign", dst: foreignMAC, src: lan, atTAP: false},
		{kind: "ours", dst: vmac, src: lan, atTAP: true},
		{kind: "bcast", dst: bcastMAC, src: lan, atTAP: true},
		{kind: "mcast", dst: mcastMAC, src: lan, atTAP: true},
		{kind: "selfsrc", dst: bcastMAC, src: vmac, atTAP: false},
		{kind: "vlan", dst: vmac, src: lan, vid: 5, atTAP: false},
		{kind: "vlanbcast", dst: bcastMAC, src: lan, vid: 5, atTAP: false},
	}

	tap := newFrameCounter(openPacket(t, l.Host, virt, unix.ETH_P_ALL))
	defer tap.stop()
	parent := newFrameCounter(openPacket(t, l.Host, "eth0", unix.ETH_P_ALL))
	defer parent.stop()
	tx := openPacket(t, l.LANNS, "lan0", 0)

	sent := map[string][]byte{}
	for seq := 0; seq < n; seq++ {
		for _, c := range cases {
			f := markedFrame(c.dst, c.src, c.vid, c.kind, seq)
			if seq == 0 {
				sent[c.kind] = f
			}
			if err := tx.send(f); err != nil {
				t.Fatalf("send %s frame: %v", c.kind, err)
			}
			// Paced so that no socket buffer on the way overflows: a
			// loss here would be a test artefact, not a filter decision.
			time.Sleep(50 * time.Microsecond)
		}
	}
	// The sentinel goes last; once both sockets saw it, every earlier
	// frame has been delivered or dropped.
	if err := tx.send(markedFrame(bcastMAC, lan, 0, "END", 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the sentinel frame on eth0 and "+virt, func() (bool, string) {
		return tap.count("END") > 0 && parent.count("END") > 0,
			fmt.Sprintf("%s %v, eth0 %v", virt, tap.snapshot(), parent.snapshot())
	})
	time.Sleep(200 * time.Millisecond)
	tap.stop()
	parent.stop()
	t.Logf("seen on %s: %v", virt, tap.snapshot())
	t.Logf("seen on eth0:  %v (tagged: %v)", parent.snapshot(), parent.vlan)

	for _, c := range cases {
		// Control: the frame reached the parent (the tagged ones tagged).
		if got := parent.count(c.kind); got != n {
			t.Errorf("control: eth0 saw %d %s frames, want %d", got, c.kind, n)
		}
		if c.vid > 0 && parent.vlan[c.kind] != n {
			t.Errorf("control: eth0 saw %d %s frames with a VLAN tag, want %d", parent.vlan[c.kind], c.kind, n)
		}
		want := 0
		if c.atTAP {
			want = n
		}
		if got := tap.count(c.kind); got != want {
			t.Errorf("%s got %d of %d %s frames (dst %s src %s vid %d), want %d",
				virt, got, n, c.kind, c.dst, c.src, c.vid, want)
		}
		if c.atTAP && tap.first[c.kind] != nil && !bytes.Equal(tap.first[c.kind], sent[c.kind]) {
			t.Errorf("%s frame altered on the way:\nsent %x\ngot  %x", c.kind, sent[c.kind], tap.first[c.kind])
		}
	}
}

// TestSpoofedSourceDropped (DESIGN.md, egress): a frame written to the TAP
// with a source MAC other than the virtual one is dropped; with the
// virtual MAC as source it goes out on the wire — and a broadcast sent by
// veth1 does not come back into veth1 (vethd sees its own transmissions on
// the parent and must not loop them).
func TestSpoofedSourceDropped(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	l.StartVethd(t, "veth1", "eth0", "-m", testVMAC.String())

	wire := newFrameCounter(openPacket(t, l.LANNS, "lan0", unix.ETH_P_ALL))
	defer wire.stop()
	back := newFrameCounter(openPacket(t, l.Host, "veth1", unix.ETH_P_ALL))
	defer back.stop()
	tx := openPacket(t, l.Host, "veth1", 0)
	const n = 50
	for seq := 0; seq < n; seq++ {
		for _, f := range [][]byte{
			markedFrame(l.LAN0MAC, testVMAC, 0, "genuine", seq),
			markedFrame(bcastMAC, testVMAC, 0, "genuinebcast", seq),
			markedFrame(l.LAN0MAC, foreignMAC, 0, "spoofed", seq),
			markedFrame(bcastMAC, foreignMAC, 0, "spoofedbcast", seq),
		} {
			if err := tx.send(f); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	if err := tx.send(markedFrame(bcastMAC, testVMAC, 0, "END", 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the sentinel frame on lan0", func() (bool, string) {
		return wire.count("END") > 0, fmt.Sprint(wire.snapshot())
	})
	time.Sleep(200 * time.Millisecond)
	wire.stop()
	back.stop()
	t.Logf("seen on lan0: %v; coming back into veth1: %v", wire.snapshot(), back.snapshot())
	for _, kind := range []string{"genuine", "genuinebcast"} {
		if got := wire.count(kind); got != n {
			t.Errorf("lan0 got %d of %d %s frames sourced from the virtual MAC, want all", got, n, kind)
		}
	}
	if got := len(back.snapshot()); got != 0 {
		t.Errorf("frames sent by veth1 came back into veth1: %v", back.snapshot())
	}
	for _, kind := range []string{"spoofed", "spoofedbcast"} {
		if got := wire.count(kind); got != 0 {
			t.Errorf("lan0 got %d of %d %s frames (source %s, not veth1's), want 0", got, n, kind, foreignMAC)
		}
	}
}
