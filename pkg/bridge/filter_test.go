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

// vmProgram returns prog with the kernel-only extensions the x/net/bpf VM
// cannot run replaced by constants: the frame's aux VLAN-tag-present flag
// as the kernel would see it.
func vmProgram(t *testing.T, prog []bpf.Instruction, vlanTagPresent bool) *bpf.VM {
	t.Helper()
	out := make([]bpf.Instruction, len(prog))
	for i, ins := range prog {
		if le, ok := ins.(bpf.LoadExtension); ok && le.Num != bpf.ExtLen {
			if le.Num != bpf.ExtVLANTagPresent {
				t.Fatalf("filter uses extension %v the test does not model", le.Num)
			}
			v := uint32(0)
			if vlanTagPresent {
				v = 1
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
		{"in-line 802.1Q to us", frame(ourMAC, otherMAC, 0x8100, 64), false, false},
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
