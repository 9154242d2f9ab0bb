// Command tcredirect is an experiment, not part of vethd: the kernel data
// path that issue 10's remaining targets point to, measured by standing in
// for `vethd --kind=veth` in bench/run.sh (docs/performance.md, "An
// in-kernel data path for the veth kind: a prototype, measured").
//
// It makes the veth pair NIC (moved into --netns) and vd-NIC (left here,
// beside the parent), named as vethd's veth kind names them but with the
// kernel's defaults (a random MAC, MTU 1500, vd-NIC's own IPv6 and ARP
// left on), and joins vd-NIC to the parent with two tcx programs, so that
// no frame passes through user space:
//
//   - on the parent's ingress, a frame for the NIC's MAC is redirected into
//     the NIC's receive path (bpf_redirect_peer, which needs the NIC in
//     another namespace: without --netns, or with TCREDIRECT_PEER=0 in the
//     environment, bpf_redirect to vd-NIC's transmit, one backlog hop
//     more), and a group frame is cloned to vd-NIC's transmit and passed
//     on;
//   - on vd-NIC's ingress (what the NIC sends), every frame is redirected
//     to the parent's transmit.
//
// It has none of vethd's guards (no storm limit, no source check, no VLAN
// filter), no counters and no path for the host's own frames to the NIC
// (the parent's egress): a measurement of the ceiling, nothing more. The
// programs live as long as the process: tcx links detach when their file
// descriptors close. On SIGTERM or SIGINT it removes the pair and exits 0.
//
//	(cd bench/tcredirect && CGO_ENABLED=0 go build -o /tmp/tcredirect .)
//	VETHD=/tmp/tcredirect BENCH_ONLY="macvlan vethd-veth crelay" ./bench/run.sh
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// tcxNext is TCX_NEXT: the frame goes on to the next program or the stack.
const tcxNext = -1

// __sk_buff's data and data_end (include/uapi/linux/bpf.h).
const (
	skbData    = 76
	skbDataEnd = 80
)

// toParent redirects every frame to the parent's transmit.
func toParent(parent int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(asm.R1, int32(parent)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	}
}

// fromParent redirects a frame for mac to the pair (redirect), clones a
// group frame to host's transmit, and passes every other frame on.
func fromParent(mac net.HardwareAddr, host int, redirect asm.BuiltinFunc) asm.Instructions {
	// As the program's loads read them: in the host's byte order.
	lo := int32(binary.NativeEndian.Uint32(mac[0:4]))
	hi := int32(binary.NativeEndian.Uint16(mac[4:6]))
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, skbData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14), // an Ethernet header
		asm.JGT.Reg(asm.R4, asm.R3, "next"),
		asm.LoadMem(asm.R5, asm.R2, 0, asm.Word),
		asm.JNE.Imm32(asm.R5, lo, "group"),
		asm.LoadMem(asm.R5, asm.R2, 4, asm.Half),
		asm.JNE.Imm32(asm.R5, hi, "group"),
		asm.Mov.Imm(asm.R1, int32(host)),
		asm.Mov.Imm(asm.R2, 0),
		redirect.Call(),
		asm.Return(),
		asm.LoadMem(asm.R5, asm.R2, 0, asm.Byte).WithSymbol("group"),
		asm.And.Imm(asm.R5, 1), // the group bit
		asm.JEq.Imm(asm.R5, 0, "next"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, int32(host)),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnCloneRedirect.Call(),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("next"),
		asm.Return(),
	}
}

func main() {
	nic := flag.String("v", "veth1", "the NIC's name")
	parentName := flag.String("e", "eth0", "the parent")
	flag.String("kind", "veth", "ignored: always a veth pair (bench/run.sh passes it)")
	nsName := flag.String("netns", "", "the named namespace the NIC goes into")
	flag.Parse()
	// bpf_redirect_peer drops a frame whose peer is in the same namespace.
	peer := *nsName != "" && os.Getenv("TCREDIRECT_PEER") != "0"
	if err := run(*nic, *parentName, *nsName, peer); err != nil {
		fmt.Fprintf(os.Stderr, "tcredirect: %v\n", err)
		os.Exit(1)
	}
}

func run(nic, parentName, nsName string, peer bool) error {
	// Before the pair exists: a signal during the set-up ends it through
	// the deferred clean-up, not the default action.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	parent, err := netlink.LinkByName(parentName)
	if err != nil {
		return err
	}
	hostName := "vd-" + nic
	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostName
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: nic}); err != nil {
		return fmt.Errorf("veth pair: %w", err)
	}
	defer func() { // removes both ends, wherever the NIC is
		if l, err := netlink.LinkByName(hostName); err == nil {
			netlink.LinkDel(l)
		}
	}()
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return err
	}
	nicLink, err := netlink.LinkByName(nic)
	if err != nil {
		return err
	}
	mac := nicLink.Attrs().HardwareAddr
	if nsName != "" {
		ns, err := netns.GetFromName(nsName)
		if err != nil {
			return fmt.Errorf("netns %s: %w", nsName, err)
		}
		defer ns.Close()
		if err := netlink.LinkSetNsFd(nicLink, int(ns)); err != nil {
			return fmt.Errorf("move %s: %w", nic, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	redirect := asm.FnRedirect
	if peer {
		redirect = asm.FnRedirectPeer
	}
	attach := func(name string, ins asm.Instructions, ifindex int) (link.Link, error) {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, License: "GPL", Instructions: ins})
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", name, err)
		}
		defer p.Close() // the link holds it
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		return l, nil
	}
	in, err := attach("from_parent", fromParent(mac, host.Attrs().Index, redirect), parent.Attrs().Index)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := attach("to_parent", toParent(parent.Attrs().Index), host.Attrs().Index)
	if err != nil {
		return err
	}
	defer out.Close()
	// bench/run.sh waits for vethd's words.
	fmt.Fprintf(os.Stderr, "Attached %s into %s (MAC %s, tcx, redirect_peer %v)\n", nic, parentName, mac, peer)
	<-ctx.Done()
	return nil
}
