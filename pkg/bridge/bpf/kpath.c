// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
//
// The kernel data path of a veth-kind bridge (pkg/bridge/kpath_linux.go,
// docs/design.md "The kernel data path"): three tcx programs that move the
// frames of one virtual NIC between the parent and the pair's peer without
// vethd reading or writing any of them, with the relay's rules:
//
//   from_wire   on the parent's ingress: a frame for the virtual MAC goes
//               into the NIC (bpf_redirect_peer when the NIC is in another
//               namespace, else the peer's transmit); a group frame from
//               another source is cloned to the peer's transmit, within
//               the storm limit of its class, and goes on to the host.
//   from_host   on the parent's egress: the same for what the host (or a
//               sibling virtual NIC, through from_nic) sends, except this
//               NIC's own frames on their way out.
//   from_nic    on the peer's ingress (what the NIC sends): a frame whose
//               source is not the virtual MAC is dropped; every other goes
//               to the parent's transmit, where from_host of each sibling
//               on the parent sees it.
//
// A tagged frame (a VLAN id other than 0, in the skb's metadata or in
// line) is never handed to the NIC, as the relay's socket filter drops it.
// Frames that are not this NIC's go on (TCX_NEXT) to the next program on
// the parent (another bridge's) and to the stack.
//
// Regenerate the objects with `go generate ./pkg/bridge/` (clang and
// libbpf-dev; see docs/design.md).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// tcx return codes (include/uapi/linux/bpf.h, Linux 6.6; Debian 12's
// headers predate them).
#define TCX_NEXT (-1)
#define TCX_PASS 0
#define TCX_DROP 2

// Counters, one per-CPU slot each (kpath_linux.go's kpCounter mirrors them).
enum {
	C_RX_PACKETS,
	C_RX_BYTES,
	C_TX_PACKETS,
	C_TX_BYTES,
	C_TX_RUNT,
	C_TX_SPOOF,
	C_RX_STORM_ARP,
	C_RX_STORM_ND,
	C_RX_STORM_DHCP,
	C_RX_STORM_OTHER,
	C_RX_CLONE_ERROR,
	C_MAX,
};

// Storm classes, as storm.go's stormClass.
enum { S_ARP, S_ND, S_DHCP, S_OTHER, S_MAX };

// The bridge's settings, written by vethd (one entry).
struct config {
	__u8 mac[6];      // the virtual MAC
	__u16 use_peer;   // 1: the NIC is in another namespace (bpf_redirect_peer)
	__u32 peer;       // the peer's ifindex (beside the parent)
	__u32 parent;     // the parent's ifindex
	__u64 storm_ns;   // a group frame's cost in the bucket: 1e9 / limit ns; 0: no limit
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// A token bucket per class as a theoretical arrival time (GCRA): a frame
// is let through while tat is at most a second ahead of now, and moves
// tat on by storm_ns.
struct bucket {
	struct bpf_spin_lock lock;
	__u64 tat;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, S_MAX);
	__type(key, __u32);
	__type(value, struct bucket);
} storm SEC(".maps");

#define STORM_BURST_NS 1000000000ULL // a second's worth

static __always_inline void count(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);
	if (v)
		*v += n;
}

static __always_inline struct config *settings_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&settings, &zero);
}

// mac_eq compares two addresses at 2-byte aligned places (the verifier
// refuses misaligned stack loads).
static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	const __u16 *x = (const __u16 *)a, *y = (const __u16 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
}

static __always_inline int is_tag(__u16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
	       proto == bpf_htons(0x9100);
}

// tagged says whether a frame belongs to a VLAN: a tag with a VLAN id
// other than 0 in the skb's metadata (stripped by the NIC or the kernel)
// or in line, or a priority tag (VLAN id 0) in front of a further tag.
// A priority tag alone is not: the stack behind the NIC ignores it.
static __always_inline int tagged(struct __sk_buff *skb, __u16 proto)
{
	if (skb->vlan_present && (skb->vlan_tci & 0x0fff) != 0)
		return 1;
	if (!is_tag(proto))
		return 0;
	if (skb->vlan_present) // a second tag behind the stripped one
		return 1;
	__u16 tag[2]; // TCI and the next EtherType
	if (bpf_skb_load_bytes(skb, ETH_HLEN, tag, sizeof(tag)) < 0)
		return 1;
	return (bpf_ntohs(tag[0]) & 0x0fff) != 0 || is_tag(tag[1]);
}

// storm_class returns a group frame's class, as storm.go's stormClassOf.
static __always_inline __u32 storm_class(struct __sk_buff *skb, __u16 proto)
{
	__u8 b[2];
	if (proto == bpf_htons(ETH_P_ARP))
		return S_ARP;
	if (proto == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, b, 1) < 0)
			return S_OTHER;
		if (b[0] == 58) { // ICMPv6, no extension headers
			if (bpf_skb_load_bytes(skb, ETH_HLEN + 40, b, 1) < 0)
				return S_OTHER;
			return b[0] >= 133 && b[0] <= 137 ? S_ND : S_OTHER;
		}
		if (b[0] == 17) { // UDP
			if (bpf_skb_load_bytes(skb, ETH_HLEN + 42, b, 2) < 0)
				return S_OTHER;
			return (b[0] << 8 | b[1]) == 546 ? S_DHCP : S_OTHER;
		}
		return S_OTHER;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		// As stormClassOf: only frames long enough for the longest
		// IPv4 header and the UDP ports.
		if (skb->len < ETH_HLEN + 64)
			return S_OTHER;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 9, b, 1) < 0 || b[0] != 17)
			return S_OTHER;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, b, 1) < 0)
			return S_OTHER;
		__u32 ihl = (b[0] & 0x0f) * 4;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + ihl + 2, b, 2) < 0)
			return S_OTHER;
		return (b[0] << 8 | b[1]) == 68 ? S_DHCP : S_OTHER;
	}
	return S_OTHER;
}

// storm_ok takes a token from the frame's class, counting a drop if there
// is none.
static __always_inline int storm_ok(struct __sk_buff *skb, struct config *cfg, __u16 proto)
{
	__u64 cost = cfg->storm_ns;
	if (cost == 0)
		return 1;
	__u32 class = storm_class(skb, proto);
	struct bucket *bk = bpf_map_lookup_elem(&storm, &class);
	if (!bk)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	int ok = 0;
	bpf_spin_lock(&bk->lock);
	__u64 tat = bk->tat;
	if (tat < now)
		tat = now;
	if (tat + cost - now <= STORM_BURST_NS) {
		bk->tat = tat + cost;
		ok = 1;
	}
	bpf_spin_unlock(&bk->lock);
	if (!ok)
		count(C_RX_STORM_ARP + class, 1);
	return ok;
}

// to_nic hands a frame for the NIC (settings cfg) from the parent's
// ingress (ingress 1) or egress: the frame itself when it is addressed to the virtual MAC,
// a clone when it is a group frame from another source.
static __always_inline int to_nic(struct __sk_buff *skb, struct config *cfg, int ingress)
{
	struct ethhdr eth __attribute__((aligned(8)));
	if (cfg->peer == 0)
		return TCX_NEXT;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return TCX_NEXT;
	if (mac_eq(eth.h_dest, cfg->mac)) {
		if (tagged(skb, eth.h_proto))
			return TCX_NEXT;
		count(C_RX_PACKETS, 1);
		count(C_RX_BYTES, skb->len);
		if (ingress && cfg->use_peer)
			return bpf_redirect_peer(cfg->peer, 0);
		return bpf_redirect(cfg->peer, 0);
	}
	if (!(eth.h_dest[0] & 1) || mac_eq(eth.h_source, cfg->mac))
		return TCX_NEXT;
	if (tagged(skb, eth.h_proto) || !storm_ok(skb, cfg, eth.h_proto))
		return TCX_NEXT;
	if (bpf_clone_redirect(skb, cfg->peer, 0) == 0) {
		count(C_RX_PACKETS, 1);
		count(C_RX_BYTES, skb->len);
	} else {
		count(C_RX_CLONE_ERROR, 1);
	}
	return TCX_NEXT;
}

SEC("tcx/ingress")
int from_wire(struct __sk_buff *skb)
{
	struct config *cfg = settings_get();
	if (!cfg)
		return TCX_NEXT;
	return to_nic(skb, cfg, 1);
}

SEC("tcx/egress")
int from_host(struct __sk_buff *skb)
{
	struct config *cfg = settings_get();
	// The NIC's own frames, which from_nic sent here, are not its.
	if (!cfg || skb->ingress_ifindex == cfg->peer)
		return TCX_NEXT;
	return to_nic(skb, cfg, 0);
}

SEC("tcx/ingress")
int from_nic(struct __sk_buff *skb)
{
	struct config *cfg = settings_get();
	__u8 src[6] __attribute__((aligned(8)));
	if (!cfg || cfg->parent == 0)
		return TCX_DROP;
	if (bpf_skb_load_bytes(skb, 6, src, sizeof(src)) < 0 || skb->len < ETH_HLEN) {
		count(C_TX_RUNT, 1);
		return TCX_DROP;
	}
	if (!mac_eq(src, cfg->mac)) {
		count(C_TX_SPOOF, 1);
		return TCX_DROP;
	}
	count(C_TX_PACKETS, 1);
	count(C_TX_BYTES, skb->len);
	return bpf_redirect(cfg->parent, 0);
}

// Loaded under the GPL (the kernel asks for a GPL-compatible licence
// string); the source is also under vethd's Apache-2.0.
char _license[] SEC("license") = "GPL";
