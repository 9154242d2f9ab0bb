package bridge

import (
	"net"
	"testing"

	"golang.org/x/net/bpf"
)

var (
	ourMAC     = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	otherMAC   = net.HardwareAddr{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	nearMAC    = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x56} // differs in the last byte only
	nearHiMAC  = net.HardwareAddr{0x03, 0x11, 0x22, 0x33, 0x44, 0x55} // differs in the first word only (and is group)
	bcastMAC   = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcastMAC   = net.HardwareAddr{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}
	ipv4mcast  = net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}
	hostNICMAC = net.HardwareAddr{0x02, 0xfc, 0x00, 0x00, 0x00, 0x09}
)

// frame builds an Ethernet frame of total length n (≥ 14) with the given
// addresses and EtherType.
func frame(dst, src net.HardwareAddr, etherType uint16, n int) []byte {
	b := make([]byte, n)
	copy(b[0:6], dst)
	copy(b[6:12], src)
	if n >= 14 {
		b[12], b[13] = byte(etherType>>8), byte(etherType)
	}
	return b
}

// vlanAux is the VLAN tag the kernel stripped into a frame's metadata, as
// the filter's extensions see it.
type vlanAux struct {
	present bool
	tpid    uint16 // vlan_tpid: 0x8100 or 0x88a8
	tci     uint16 // vlan_tci: priority, DEI, VLAN id
}

// vmProgram returns prog with the kernel-only extensions the x/net/bpf VM
// cannot run replaced by constants: the frame's aux VLAN-tag-present flag
// as the kernel would see it. A present tag is an 802.1Q tag for VLAN 1
// (priority 3); vmProgramTag models any tag.
func vmProgram(t *testing.T, prog []bpf.Instruction, vlanTagPresent bool) *bpf.VM {
	t.Helper()
	if vlanTagPresent {
		return vmProgramTag(t, prog, vlanAux{true, 0x8100, 3<<13 | 1})
	}
	return vmProgramTag(t, prog, vlanAux{})
}

// vmProgramTag is vmProgram for a frame whose stripped tag is tag.
func vmProgramTag(t *testing.T, prog []bpf.Instruction, tag vlanAux) *bpf.VM {
	t.Helper()
	out := make([]bpf.Instruction, len(prog))
	for i, ins := range prog {
		if le, ok := ins.(bpf.LoadExtension); ok && le.Num != bpf.ExtLen {
			var v uint32
			switch le.Num {
			case bpf.ExtVLANTagPresent:
				if tag.present {
					v = 1
				}
			case bpf.ExtVLANProto:
				if tag.present {
					v = uint32(tag.tpid)
				}
			case bpf.ExtVLANTag:
				if tag.present {
					v = uint32(tag.tci)
				}
			default:
				t.Fatalf("filter uses extension %v the test does not model", le.Num)
			}
			ins = bpf.LoadConstant{Dst: bpf.RegA, Val: v}
		}
		out[i] = ins
	}
	vm, err := bpf.NewVM(out)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	return vm
}

// inlineTag returns f with an 802.1Q tag (TCI tci) in front of its EtherType.
func inlineTag(f []byte, tci uint16) []byte {
	out := append([]byte{}, f[:12]...)
	out = append(out, 0x81, 0x00, byte(tci>>8), byte(tci))
	return append(out, f[12:]...)
}

// TestFilterPriorityTags: a stripped 802.1Q tag with VLAN id 0 (an 802.1p
// priority tag, any priority, DEI or not) passes when nothing but a plain
// EtherType follows it; any other VLAN id, an 802.1ad tag, and a priority
// tag in front of a further tag do not; the same holds for in-line tags.
func TestFilterPriorityTags(t *testing.T) {
	prog, err := FilterProgram(ourMAC)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		frame  []byte
		tag    vlanAux
		accept bool
	}{
		{"VID 0, priority 0, to us", frame(ourMAC, otherMAC, 0x0800, 60), vlanAux{true, 0x8100, 0}, true},
		{"VID 0, priority 5, to us", frame(ourMAC, otherMAC, 0x0800, 60), vlanAux{true, 0x8100, 5 << 13}, true},
		{"VID 0, priority 7 and DEI, ARP broadcast", frame(bcastMAC, otherMAC, 0x0806, 60), vlanAux{true, 0x8100, 7<<13 | 1<<12}, true},
		{"VID 0, IPv6 multicast", frame(mcastMAC, otherMAC, 0x86dd, 86), vlanAux{true, 0x8100, 6 << 13}, true},
		{"VID 0, GSO-sized", frame(ourMAC, otherMAC, 0x86dd, 200000), vlanAux{true, 0x8100, 0}, true},
		{"VID 0, foreign unicast", frame(otherMAC, hostNICMAC, 0x0800, 60), vlanAux{true, 0x8100, 0}, false},
		{"VID 0, broadcast from our MAC", frame(bcastMAC, ourMAC, 0x0806, 60), vlanAux{true, 0x8100, 0}, false},
		{"VID 5, to us", frame(ourMAC, otherMAC, 0x0800, 60), vlanAux{true, 0x8100, 5}, false},
		{"VID 5, priority 0, broadcast", frame(bcastMAC, otherMAC, 0x0806, 60), vlanAux{true, 0x8100, 5}, false},
		{"VID 4095, to us", frame(ourMAC, otherMAC, 0x0800, 60), vlanAux{true, 0x8100, 0x0fff}, false},
		{"VID 256 (high bits only), to us", frame(ourMAC, otherMAC, 0x0800, 60), vlanAux{true, 0x8100, 0x0100}, false},
		{"802.1ad S-tag VID 0, to us", frame(ourMAC, otherMAC, 0x0800, 60), vlanAux{true, 0x88a8, 0}, false},
		{"VID 0 outer, 802.1Q inner (QinQ)", frame(ourMAC, otherMAC, 0x8100, 64), vlanAux{true, 0x8100, 0}, false},
		{"VID 0 outer, 802.1ad inner", frame(ourMAC, otherMAC, 0x88a8, 64), vlanAux{true, 0x8100, 0}, false},
		{"VID 0 outer, 0x9100 inner", frame(bcastMAC, otherMAC, 0x9100, 64), vlanAux{true, 0x8100, 0}, false},
		{"in-line 802.1Q VID 0, to us (an ARP behind it)", inlineTag(frame(ourMAC, otherMAC, 0x0806, 64), 5<<13), vlanAux{}, true},
		{"in-line 802.1Q VID 0, IPv4 broadcast", inlineTag(frame(bcastMAC, otherMAC, 0x0800, 64), 0), vlanAux{}, true},
		{"in-line 802.1Q VID 7, to us", inlineTag(frame(ourMAC, otherMAC, 0x0800, 64), 7), vlanAux{}, false},
		{"in-line 802.1Q VID 0 then 802.1Q", inlineTag(frame(ourMAC, otherMAC, 0x8100, 64), 0), vlanAux{}, false},
		{"in-line 802.1Q VID 0 then 802.1ad", inlineTag(frame(ourMAC, otherMAC, 0x88a8, 64), 0), vlanAux{}, false},
		{"in-line 802.1Q VID 0 cut after the tag", inlineTag(frame(ourMAC, otherMAC, 0x0800, 14), 0)[:17], vlanAux{}, false},
		{"stripped VID 0 and in-line VID 0", inlineTag(frame(ourMAC, otherMAC, 0x0800, 64), 0), vlanAux{true, 0x8100, 0}, false},
		{"VID 0, runt", frame(ourMAC, otherMAC, 0, 13)[:13], vlanAux{true, 0x8100, 0}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := vmProgramTag(t, prog, tc.tag).Run(tc.frame)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got := n > 0; got != tc.accept {
				t.Fatalf("accept = %v (returned %d), want %v", got, n, tc.accept)
			}
			if tc.accept && n < len(tc.frame) {
				t.Fatalf("accepted frame truncated to %d of %d bytes", n, len(tc.frame))
			}
		})
	}
}

func TestFilterProgram(t *testing.T) {
	prog, err := FilterProgram(ourMAC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("assemble: %v", err)
	}
	cases := []struct {
		name   string
		frame  []byte
		vlanTP bool // the kernel stripped a VLAN tag into the skb's metadata
		accept bool
	}{
		{"unicast to us", frame(ourMAC, otherMAC, 0x0800, 60), false, true},
		{"unicast to us, GSO-sized", frame(ourMAC, otherMAC, 0x0800, 65000), false, true},
		{"unicast to us from the host NIC (outgoing)", frame(ourMAC, hostNICMAC, 0x0806, 42), false, true},
		{"unicast to us from another vethd on the parent (outgoing)", frame(ourMAC, nearMAC, 0x0800, 98), false, true},
		{"foreign unicast", frame(otherMAC, hostNICMAC, 0x0800, 60), false, false},
		{"foreign unicast differing in last byte", frame(nearMAC, otherMAC, 0x0800, 60), false, false},
		{"host NIC's own unicast (outgoing, not for us)", frame(otherMAC, hostNICMAC, 0x0800, 1514), false, false},
		{"broadcast", frame(bcastMAC, otherMAC, 0x0806, 60), false, true},
		{"IPv6 multicast", frame(mcastMAC, otherMAC, 0x86dd, 86), false, true},
		{"IPv4 multicast", frame(ipv4mcast, otherMAC, 0x0800, 60), false, true},
		{"group, dst shares first word", frame(nearHiMAC, otherMAC, 0x0800, 60), false, true},
		{"broadcast from the host NIC (outgoing)", frame(bcastMAC, hostNICMAC, 0x0806, 42), false, true},
		{"broadcast from our own MAC (looped back)", frame(bcastMAC, ourMAC, 0x0806, 60), false, false},
		{"multicast from our own MAC", frame(mcastMAC, ourMAC, 0x86dd, 86), false, false},
		{"broadcast from a source sharing our first word", frame(bcastMAC, nearMAC, 0x0806, 60), false, true},
		{"in-line 802.1Q to us", inlineTag(frame(ourMAC, otherMAC, 0x0800, 60), 5), false, false},
		{"in-line 802.1ad to us", frame(ourMAC, otherMAC, 0x88a8, 64), false, false},
		{"in-line 0x9100 broadcast", frame(bcastMAC, otherMAC, 0x9100, 64), false, false},
		{"stripped VLAN tag, to us", frame(ourMAC, otherMAC, 0x0800, 60), true, false},
		{"stripped VLAN tag, broadcast", frame(bcastMAC, otherMAC, 0x0806, 60), true, false},
		{"runt: 13 bytes", frame(ourMAC, otherMAC, 0, 13)[:13], false, false},
		{"runt: 6 bytes", frame(ourMAC, otherMAC, 0, 14)[:6], false, false},
		{"empty", []byte{}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vm := vmProgram(t, prog, tc.vlanTP)
			n, err := vm.Run(tc.frame)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got := n > 0; got != tc.accept {
				t.Fatalf("accept = %v (returned %d), want %v", got, n, tc.accept)
			}
			if tc.accept && n < len(tc.frame) {
				t.Fatalf("accepted frame truncated to %d of %d bytes", n, len(tc.frame))
			}
		})
	}
}

func TestFilterProgramDependsOnMAC(t *testing.T) {
	a, _ := FilterProgram(ourMAC)
	b, _ := FilterProgram(otherMAC)
	f := frame(ourMAC, hostNICMAC, 0x0800, 60)
	if n, _ := vmProgram(t, a, false).Run(f); n == 0 {
		t.Fatal("filter for ourMAC drops a frame to ourMAC")
	}
	if n, _ := vmProgram(t, b, false).Run(f); n != 0 {
		t.Fatal("filter for otherMAC accepts a frame to ourMAC")
	}
}

func TestFilterProgramRejectsBadMAC(t *testing.T) {
	if _, err := FilterProgram(net.HardwareAddr{1, 2, 3}); err == nil {
		t.Fatal("want an error for a 3-byte MAC")
	}
}

// TestFilterProgramForMACs: a hub's filter for many MACs, some sharing their
// first four bytes (one comparison of those, several of the last two),
// keeps frames to each of them and no other unicast, keeps every group
// frame (a member's own included: the hub leaves it out for the sender),
// and still drops tagged frames; with 256 MACs every jump assembles and,
// with the storm prefix holding every class, the program stays far inside
// the kernel's 4096 instructions.
func TestFilterProgramForMACs(t *testing.T) {
	var macs []net.HardwareAddr
	for i := range maxFilterMACs {
		macs = append(macs, net.HardwareAddr{0x02, 0x42, byte(i % 3), 0x00, byte(i >> 8), byte(i)})
	}
	prog, err := filterProgramFor(macs)
	if err != nil {
		t.Fatal(err)
	}
	vm := vmProgram(t, prog, false)
	run := func(f []byte) bool {
		n, err := vm.Run(f)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		return n > 0
	}
	for _, i := range []int{0, 1, 2, 3, 127, 254, 255} {
		if !run(frame(macs[i], otherMAC, 0x0800, 60)) {
			t.Errorf("frame to member %d (%s) dropped", i, macs[i])
		}
	}
	for _, dst := range []net.HardwareAddr{otherMAC, hostNICMAC, {0x02, 0x42, 0x00, 0x00, 0x01, 0x01}, {0x02, 0x42, 0x03, 0x00, 0x00, 0x00}} {
		if run(frame(dst, otherMAC, 0x0800, 60)) {
			t.Errorf("frame to %s (no member) kept", dst)
		}
	}
	for _, src := range []net.HardwareAddr{otherMAC, macs[7]} {
		if !run(frame(bcastMAC, src, 0x0806, 60)) {
			t.Errorf("broadcast from %s dropped", src)
		}
	}
	if run(inlineTag(frame(macs[5], otherMAC, 0x0800, 64), 7)) {
		t.Error("frame to a member in VLAN 7 kept")
	}
	if n, _ := vmProgram(t, prog, true).Run(frame(macs[5], otherMAC, 0x0800, 60)); n != 0 {
		t.Error("frame to a member with a stripped VLAN 1 tag kept")
	}
	full, err := stormFilterFor(macs, 1<<numStormClasses-1)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bpf.Assemble(full)
	if err != nil {
		t.Fatalf("assemble: %v", err)
	}
	if len(raw) > 2048 {
		t.Errorf("%d instructions for %d MACs with every class held", len(raw), len(macs))
	}
	t.Logf("%d MACs: %d instructions, %d with every class held", len(macs), len(prog), len(raw))
	// The worst case: every MAC's first four bytes its own.
	var distinct []net.HardwareAddr
	for i := range maxFilterMACs {
		distinct = append(distinct, net.HardwareAddr{0x02, 0x42, 0x00, byte(i), 0x00, 0x01})
	}
	worst, err := stormFilterFor(distinct, 1<<numStormClasses-1)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := bpf.Assemble(worst); err != nil || len(raw) > 6*maxFilterMACs+100 {
		t.Errorf("%d MACs with distinct first words: %d instructions (%v), want at most 6 a MAC and the prefixes", len(distinct), len(raw), err)
	} else {
		t.Logf("%d MACs with distinct first words: %d instructions with every class held (the kernel takes 4096)", len(distinct), len(raw))
	}
	for _, n := range []int{0, maxFilterMACs + 1} {
		if _, err := filterProgramFor(append(macs, otherMAC)[:n]); err == nil {
			t.Errorf("%d MACs accepted", n)
		}
	}
}
