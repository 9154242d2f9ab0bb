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
	return filterProgramFor([]net.HardwareAddr{mac})
}

// maxFilterMACs is the most virtual MACs one filter may hold (a parent
// hub's members): at most 6 instructions a MAC, well inside the kernel's
// 4096 (BPF_MAXINSNS) with the storm prefix in front.
const maxFilterMACs = 256

// filterProgramFor is FilterProgram for the virtual MACs macs (1 to
// maxFilterMACs, all distinct) on one socket, the filter of a parent hub
// (hub_linux.go): it keeps frames addressed to any of them and every group
// frame; with one MAC, only group frames whose source is not that MAC, as
// FilterProgram says. With several, a group frame from one of them passes
// (a sibling on the same socket must receive it) and the hub leaves it out
// for its sender.
//
// Frames addressed to no virtual MAC (most frames on a busy parent) run
// through one comparison of the destination's first four bytes per
// distinct value; the last two bytes are compared only behind a match.
// Every conditional jump is short: the program is laid out so that each
// reaches at most a few instructions ahead (cBPF's jump offsets are 8
// bits), and the long ones are unconditional (32 bits).
func filterProgramFor(macs []net.HardwareAddr) ([]bpf.Instruction, error) {
	if len(macs) == 0 || len(macs) > maxFilterMACs {
		return nil, fmt.Errorf("filter: want 1 to %d MACs, got %d", maxFilterMACs, len(macs))
	}
	type half struct{ hi, lo uint32 }
	var his []uint32
	los := map[uint32][]uint32{}
	for _, mac := range macs {
		if len(mac) != 6 {
			return nil, fmt.Errorf("filter: want a 6-byte MAC, got %d bytes", len(mac))
		}
		h := half{uint32(mac[0])<<24 | uint32(mac[1])<<16 | uint32(mac[2])<<8 | uint32(mac[3]), uint32(mac[4])<<8 | uint32(mac[5])}
		if _, ok := los[h.hi]; !ok {
			his = append(his, h.hi)
		}
		los[h.hi] = append(los[h.hi], h.lo)
	}

	p := &asm{}
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, ethHeaderLen, "", "drop1")
	p.op(bpf.LoadExtension{Num: bpf.ExtVLANTagPresent})
	p.jmp(bpf.JumpEqual, 0, "untagged", "")
	// A stripped tag: only an 802.1Q priority tag (VLAN id 0), and only
	// if no further tag follows.
	p.op(bpf.LoadExtension{Num: bpf.ExtVLANProto})
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021Q, "", "drop1")
	p.op(bpf.LoadExtension{Num: bpf.ExtVLANTag})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanVIDMask})
	p.jmp(bpf.JumpEqual, 0, "", "drop1")
	p.jmp(bpf.JumpEqual, 0, "ethertype", "ethertype")
	p.label("untagged")
	p.op(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021Q, "", "tags")
	// An in-line 802.1Q tag: the same rule, on the frame's bytes.
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jmp(bpf.JumpGreaterOrEqual, ethHeaderLen+vlanHeaderLen, "", "drop1")
	p.op(bpf.LoadAbsolute{Off: ethHeaderLen, Size: 2})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanVIDMask})
	p.jmp(bpf.JumpEqual, 0, "", "drop1")
	p.op(bpf.LoadAbsolute{Off: ethHeaderLen + 2, Size: 2})
	p.jmp(bpf.JumpEqual, 0, "tags", "tags")
	// The EtherType (behind a priority tag) must not be another tag.
	p.label("ethertype")
	p.op(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	p.label("tags")
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021Q, "drop1", "")
	p.jmp(bpf.JumpEqual, unix.ETH_P_8021AD, "drop1", "")
	p.jmp(bpf.JumpEqual, unix.ETH_P_QINQ1, "drop1", "macs") // pre-standard QinQ tag still seen on some gear
	p.label("drop1")
	p.op(bpf.RetConstant{Val: 0})
	// Destination one of the MACs? The first four bytes, one comparison
	// for each distinct value, each match jumping (far) to the
	// comparisons of the last two bytes.
	p.label("macs")
	p.op(bpf.LoadAbsolute{Off: 0, Size: 4})
	for k, hi := range his {
		next := fmt.Sprintf("hi%d", k+1)
		p.jmp(bpf.JumpEqual, hi, "", next)
		p.ja(fmt.Sprintf("lo%d", k))
		p.label(next)
	}
	p.ja("group")
	for k, hi := range his {
		p.label(fmt.Sprintf("lo%d", k))
		p.op(bpf.LoadAbsolute{Off: 4, Size: 2})
		for j, lo := range los[hi] {
			next := fmt.Sprintf("lo%d.%d", k, j+1)
			p.jmp(bpf.JumpEqual, lo, "", next)
			p.op(bpf.RetConstant{Val: filterSnap})
			p.label(next)
		}
		p.ja("group")
	}
	// Otherwise only group frames: with one MAC, only from another source.
	p.label("group")
	p.op(bpf.LoadAbsolute{Off: 0, Size: 1})
	if len(macs) == 1 {
		hi, lo := his[0], los[his[0]][0]
		p.jmpSet(0x01, "", "drop")
		p.op(bpf.LoadAbsolute{Off: 6, Size: 4})
		p.jmp(bpf.JumpEqual, hi, "", "accept")
		p.op(bpf.LoadAbsolute{Off: 10, Size: 2})
		p.jmp(bpf.JumpEqual, lo, "drop", "accept")
	} else {
		p.jmpSet(0x01, "accept", "drop")
	}
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
	far    map[int]string    // instruction index → an unconditional jump's target
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

// ja jumps to label unconditionally (a 32-bit offset: any distance).
func (a *asm) ja(label string) {
	if a.far == nil {
		a.far = map[int]string{}
	}
	a.far[len(a.ins)] = label
	a.op(bpf.Jump{})
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
	for i, label := range a.far {
		to, ok := a.labels[label]
		if !ok || to <= i {
			return nil, fmt.Errorf("filter: bad jump from %d to %q", i, label)
		}
		a.ins[i] = bpf.Jump{Skip: uint32(to - i - 1)}
	}
	return a.ins, nil
}
