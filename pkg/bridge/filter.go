package bridge

import (
	"fmt"
	"net"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Ethernet constants the filter and the relay use, which x/sys lacks (it
// has the EtherTypes: unix.ETH_P_*).
const (
	ethHeaderLen = 14 // ETH_HLEN
	etherTypeOff = 12 // the EtherType in the Ethernet header
	// filterSnap is how much of an accepted frame the filter keeps: all of
	// it (more than the largest GSO frame).
	filterSnap = 0x40000
)

// FilterProgram returns the classic BPF program attached to the parent
// socket of a virtual interface whose address is mac. It keeps exactly:
//
//   - frames addressed to mac (from the wire, or sent by the host itself,
//     e.g. by another vethd on the same parent);
//   - broadcast and multicast frames whose source is not mac (our own
//     group frames, looped back by the host or a bridge, are dropped);
//
// and drops everything else: unicast for any other address (even when the
// parent is promiscuous), runts shorter than an Ethernet header, and
// VLAN-tagged frames, whether the tag was stripped by the NIC or the kernel
// into the skb's metadata (checked with the vlan_tag_present extension) or
// is still in-line (an 802.1Q, 802.1ad or 0x9100 EtherType).
//
// The program runs in the kernel before a frame is queued on the socket, so
// a frame it drops never reaches vethd at all. The same rule holds for the
// host's own transmissions (PACKET_OUTGOING): only frames for mac, and group
// frames from another source, pass — which is what lets two virtual
// interfaces on one parent talk, like macvlan's bridge mode.
func FilterProgram(mac net.HardwareAddr) ([]bpf.Instruction, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("filter: want a 6-byte MAC, got %d bytes", len(mac))
	}
	hi := uint32(mac[0])<<24 | uint32(mac[1])<<16 | uint32(mac[2])<<8 | uint32(mac[3])
	lo := uint32(mac[4])<<8 | uint32(mac[5])

	p := &asm{}
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, ethHeaderLen, "", "drop")
	p.op(bpf.LoadExtension{Num: bpf.ExtVLANTagPresent})
	p.jmp(bpf.JumpNotEqual, 0, "drop", "")
	p.op(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021Q, "drop", "")
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021AD, "drop", "")
	p.jmp(bpf.JumpEqual, unix.ETH_P_QINQ1, "drop", "") // pre-standard QinQ tag still seen on some gear
	// Destination is our MAC?
	p.op(bpf.LoadAbsolute{Off: 0, Size: 4})
	p.jmp(bpf.JumpEqual, hi, "", "group")
	p.op(bpf.LoadAbsolute{Off: 4, Size: 2})
	p.jmp(bpf.JumpEqual, lo, "accept", "group")
	// Otherwise only group frames, and only from another source.
	p.label("group")
	p.op(bpf.LoadAbsolute{Off: 0, Size: 1})
	p.jmpSet(0x01, "", "drop")
	p.op(bpf.LoadAbsolute{Off: 6, Size: 4})
	p.jmp(bpf.JumpEqual, hi, "", "accept")
	p.op(bpf.LoadAbsolute{Off: 10, Size: 2})
	p.jmp(bpf.JumpEqual, lo, "drop", "accept")
	p.label("accept")
	p.op(bpf.RetConstant{Val: filterSnap})
	p.label("drop")
	p.op(bpf.RetConstant{Val: 0})
	return p.resolve()
}

// asm is a tiny assembler for forward jumps to named labels.
type asm struct {
	ins    []bpf.Instruction
	jumps  map[int][2]string // instruction index → true/false targets ("" = next)
	labels map[string]int
}

func (a *asm) op(i bpf.Instruction) { a.ins = append(a.ins, i) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *asm) jmp(cond bpf.JumpTest, val uint32, jt, jf string) {
	a.target(jt, jf)
	a.op(bpf.JumpIf{Cond: cond, Val: val})
}

func (a *asm) jmpSet(mask uint32, jt, jf string) {
	a.jmp(bpf.JumpBitsSet, mask, jt, jf)
}

func (a *asm) target(jt, jf string) {
	if a.jumps == nil {
		a.jumps = map[int][2]string{}
	}
	a.jumps[len(a.ins)] = [2]string{jt, jf}
}

func (a *asm) resolve() ([]bpf.Instruction, error) {
	skip := func(from int, label string) (uint8, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := a.labels[label]
		if !ok || to <= from || to-from-1 > 255 {
			return 0, fmt.Errorf("filter: bad jump from %d to %q", from, label)
		}
		return uint8(to - from - 1), nil
	}
	for i, t := range a.jumps {
		j := a.ins[i].(bpf.JumpIf)
		var err error
		if j.SkipTrue, err = skip(i, t[0]); err != nil {
			return nil, err
		}
		if j.SkipFalse, err = skip(i, t[1]); err != nil {
			return nil, err
		}
		a.ins[i] = j
	}
	return a.ins, nil
}
