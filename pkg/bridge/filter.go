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
	// it. (The kernel keeps min(snap, frame length); a smaller number would
	// cut BIG TCP super-frames, up to 512 KiB, silently.)
	filterSnap = 0xffffffff
	// vlanHeaderLen is an 802.1Q tag (TPID and TCI) in-line in a frame.
	vlanHeaderLen = 4
	// vlanVIDMask is the VLAN id in a tag control information field.
	vlanVIDMask = 0x0fff
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
// The one tag it lets through is the 802.1p priority tag: an 802.1Q tag
// with VLAN id 0, which only carries a priority and which the Linux stack
// treats as untagged (it clears the tag and ignores the priority). The
// kernel strips the 802.1Q tag of a received frame into the skb's
// metadata before packet sockets see it, so such a frame reaches vethd,
// and the virtual interface, untagged, as a NIC with VLAN stripping hands
// it to the stack; an in-line priority tag (only the host's own
// transmissions can carry one) is relayed as it is, and the stack behind
// the virtual interface ignores it the same way. Either passes only if no
// further tag follows: a priority tag in front of a VLAN or QinQ tag,
// which the stack would resolve to that VLAN, is dropped.
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
	p.jmp(bpf.JumpEqual, 0, "untagged", "")
	// A stripped tag: only an 802.1Q priority tag (VLAN id 0), and only
	// if no further tag follows.
	p.op(bpf.LoadExtension{Num: bpf.ExtVLANProto})
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021Q, "", "drop")
	p.op(bpf.LoadExtension{Num: bpf.ExtVLANTag})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanVIDMask})
	p.jmp(bpf.JumpEqual, 0, "", "drop")
	p.jmp(bpf.JumpEqual, 0, "ethertype", "ethertype")
	p.label("untagged")
	p.op(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021Q, "", "tags")
	// An in-line 802.1Q tag: the same rule, on the frame's bytes.
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, ethHeaderLen+vlanHeaderLen, "", "drop")
	p.op(bpf.LoadAbsolute{Off: ethHeaderLen, Size: 2})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanVIDMask})
	p.jmp(bpf.JumpEqual, 0, "", "drop")
	p.op(bpf.LoadAbsolute{Off: ethHeaderLen + 2, Size: 2})
	p.jmp(bpf.JumpEqual, 0, "tags", "tags")
	// The EtherType (behind a priority tag) must not be another tag.
	p.label("ethertype")
	p.op(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	p.label("tags")
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
