// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
//
// The kernel data path of the veth-kind bridges on one parent in one vethd
// process (pkg/bridge/kpath_linux.go, docs/design.md "The kernel data
// path"): three tcx programs that move the frames of the virtual NICs
// between the parent and their pairs' peers without vethd reading or
// writing any of them, with the relay's rules. One instance of them (one
// set of maps) serves up to MAX_NICS NICs, each in a slot: the parent
// runs one program each way however many bridges share it.
//
//   from_wire   on the parent's ingress: a frame for a virtual MAC goes
//               into its NIC (bpf_redirect_peer when the NIC is in another
//               namespace, else the peer's transmit); a group frame is
//               cloned to the peer's transmit of every NIC but its
//               source's, within each NIC's storm limit for its class,
//               and goes on to the host.
//   from_host   on the parent's egress: the same for what the host (or a
//               virtual NIC, through from_nic) sends, except that a NIC
//               gets none of its own frames back.
//   from_nic    on each peer's ingress (what a NIC sends): a frame whose
//               source is not the NIC's MAC is dropped; every other goes
//               to the parent's transmit, where from_host sees it.
//
// A tagged frame (a VLAN id other than 0, in the skb's metadata or in
// line) is never handed to a NIC, as the relay's socket filter drops it.
// Frames that are no NIC's go on (TCX_NEXT) to the next program on the
// parent (another process's) and to the stack.
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

// Counters, one per-CPU slot each per NIC (kpath_linux.go's kpCounter
// mirrors them): NIC i's are at i * C_MAX + c.
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

// The NICs one instance serves (kpath_linux.go's maxKpathNICs).
#define MAX_NICS 64

#define NO_SLOT 0xffffffff

// A NIC's settings, written by vethd (its slot in nics); peer 0: a free
// slot.
struct config {
	__u8 mac[6];      // the virtual MAC
	__u16 use_peer;   // 1: the NIC is in another namespace (bpf_redirect_peer)
	__u32 peer;       // the peer's ifindex (beside the parent)
	__u32 parent;     // the parent's ifindex
	__u64 storm_ns;   // a group frame's cost in the bucket: 1e9 / limit ns; 0: no limit
};

struct mac_key {
	__u8 mac[6];
	__u16 zero;
};

// The instance: used, one more than the highest slot in use.
struct hub {
	__u32 used;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct config);
} nics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, struct mac_key);
	__type(value, __u32);
} by_mac SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, __u32);
} by_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hub);
} hub SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_NICS * C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// A token bucket per NIC and class as a theoretical arrival time (GCRA):
// a frame is let through while tat is at most a second ahead of now, and
// moves tat on by storm_ns. NIC i's are at i * S_MAX + class.
struct bucket {
	struct bpf_spin_lock lock;
	__u64 tat;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_NICS * S_MAX);
	__type(key, __u32);
	__type(value, struct bucket);
} storm SEC(".maps");

#define STORM_BURST_NS 1000000000ULL // a second's worth

static __always_inline void count(__u32 slot, __u32 c, __u64 n)
{
	__u32 i = slot * C_MAX + c;
	__u64 *v = bpf_map_lookup_elem(&counters, &i);
	if (v)
		*v += n;
}

static __always_inline struct config *nic(__u32 slot)
{
	return bpf_map_lookup_elem(&nics, &slot);
}

// slot_of_mac returns the slot of the NIC with MAC mac, or NO_SLOT.
static __always_inline __u32 slot_of_mac(const __u8 *mac)
{
	struct mac_key k = {};
	__builtin_memcpy(k.mac, mac, 6);
	__u32 *s = bpf_map_lookup_elem(&by_mac, &k);
	return s ? *s : NO_SLOT;
}

// slot_of_peer returns the slot of the NIC whose peer is ifindex, or
// NO_SLOT.
static __always_inline __u32 slot_of_peer(__u32 ifindex)
{
	__u32 *s = bpf_map_lookup_elem(&by_peer, &ifindex);
	return s ? *s : NO_SLOT;
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

// storm_ok takes a token from the bucket of NIC slot for class, counting
// a drop if there is none.
static __always_inline int storm_ok(__u32 slot, struct config *cfg, __u32 class)
{
	__u64 cost = cfg->storm_ns;
	if (cost == 0)
		return 1;
	__u32 i = slot * S_MAX + class;
	struct bucket *bk = bpf_map_lookup_elem(&storm, &i);
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
		count(slot, C_RX_STORM_ARP + class, 1);
	return ok;
}

// group is what clone_to_nic needs of a group frame.
struct group {
	struct __sk_buff *skb;
	__u32 used;  // the hub's used
	__u32 src;   // the sender's slot, or NO_SLOT
	__u32 class; // the frame's storm class
	__u8 source[6] __attribute__((aligned(8))); // the frame's source MAC
};

// clone_to_nic hands a clone of group frame g to the NIC in slot i unless
// it sent the frame, its MAC is the frame's source, or its storm limit
// for the class is spent. bpf_loop's callback: the verifier checks it
// once, not once per slot, so the programs load well within its
// instruction limit with MAX_NICS slots also where vethd has CAP_BPF but
// not CAP_PERFMON (the units' capabilities), where the verifier follows
// every branch's speculative path too.
static long clone_to_nic(__u32 i, void *data)
{
	struct group *g = data;
	if (i >= g->used || i >= MAX_NICS)
		return 1;
	if (i == g->src)
		return 0;
	struct config *cfg = nic(i);
	if (!cfg || cfg->peer == 0 || mac_eq(g->source, cfg->mac))
		return 0;
	if (!storm_ok(i, cfg, g->class))
		return 0;
	if (bpf_clone_redirect(g->skb, cfg->peer, 0) == 0) {
		count(i, C_RX_PACKETS, 1);
		count(i, C_RX_BYTES, g->skb->len);
	} else {
		count(i, C_RX_CLONE_ERROR, 1);
	}
	return 0;
}

// to_nics hands a frame from the parent's ingress (ingress 1) or egress
// to the NICs: the frame itself to the NIC it is addressed to, a clone of
// a group frame to each NIC but the one in slot src (the sender's, or
// NO_SLOT) and one whose MAC is its source.
static __always_inline int to_nics(struct __sk_buff *skb, int ingress, __u32 src)
{
	struct ethhdr eth __attribute__((aligned(8)));
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return TCX_NEXT;
	if (!(eth.h_dest[0] & 1)) {
		__u32 slot = slot_of_mac(eth.h_dest);
		if (slot == NO_SLOT || slot == src)
			return TCX_NEXT;
		struct config *cfg = nic(slot);
		if (!cfg || cfg->peer == 0 || tagged(skb, eth.h_proto))
			return TCX_NEXT;
		count(slot, C_RX_PACKETS, 1);
		count(slot, C_RX_BYTES, skb->len);
		if (ingress && cfg->use_peer)
			return bpf_redirect_peer(cfg->peer, 0);
		return bpf_redirect(cfg->peer, 0);
	}
	__u32 zero = 0;
	struct hub *h = bpf_map_lookup_elem(&hub, &zero);
	if (!h || h->used == 0 || tagged(skb, eth.h_proto))
		return TCX_NEXT;
	struct group g = {
		.skb = skb,
		.used = h->used < MAX_NICS ? h->used : MAX_NICS,
		.src = src,
		.class = storm_class(skb, eth.h_proto),
	};
	__builtin_memcpy(g.source, eth.h_source, 6);
	bpf_loop(g.used, clone_to_nic, &g, 0);
	return TCX_NEXT;
}

SEC("tcx/ingress")
int from_wire(struct __sk_buff *skb)
{
	return to_nics(skb, 1, NO_SLOT);
}

SEC("tcx/egress")
int from_host(struct __sk_buff *skb)
{
	// A NIC's own frames, which from_nic sent here, are not for it.
	return to_nics(skb, 0, slot_of_peer(skb->ingress_ifindex));
}

SEC("tcx/ingress")
int from_nic(struct __sk_buff *skb)
{
	__u32 slot = slot_of_peer(skb->ifindex);
	struct config *cfg = slot == NO_SLOT ? 0 : nic(slot);
	__u8 src[6] __attribute__((aligned(8)));
	if (!cfg || cfg->parent == 0)
		return TCX_DROP;
	if (bpf_skb_load_bytes(skb, 6, src, sizeof(src)) < 0 || skb->len < ETH_HLEN) {
		count(slot, C_TX_RUNT, 1);
		return TCX_DROP;
	}
	if (!mac_eq(src, cfg->mac)) {
		count(slot, C_TX_SPOOF, 1);
		return TCX_DROP;
	}
	count(slot, C_TX_PACKETS, 1);
	count(slot, C_TX_BYTES, skb->len);
	return bpf_redirect(cfg->parent, 0);
}

// Loaded under the GPL (the kernel asks for a GPL-compatible licence
// string); the source is also under vethd's Apache-2.0.
char _license[] SEC("license") = "GPL";
