#!/usr/bin/env bash
# demo/demo.sh - show what vethd does (about 15 s; about a minute on a fresh
# machine, most of it the Go build): one network cable, two
# DHCP leases, two MAC addresses, and each address really on its own card:
# the LAN's ARP table maps it to that card's MAC, its replies and the host's
# own traffic from it leave by that card (captured on the LAN side).
#
# Run as root (`make demo`, or `./demo/demo.sh`; `sudo` in front where it
# exists). Everything happens on a
# small LAN made of network namespaces and a veth pair that this script
# creates and removes again (also on failure or Ctrl-C). The machine's own
# interfaces are never touched: every interface is created directly inside a
# namespace, only addresses from 198.18.0.0/15 (reserved for benchmarking) are
# used, no default route is set, and the DHCP server and clients run only
# inside the namespaces. dhclient runs with a tiny script of ours instead of
# the stock dhclient-script, so the host's /etc/resolv.conf is left alone.
# No sysctl is set: what two NICs on one subnet need (ARP isolation, source
# routing) vethd sets up by itself, and the demo shows it.
#
# Environment (all optional):
#   VETHD=/path/to/vethd    use this binary instead of building one (into
#                           the temporary directory, never into the tree)
#   DEMO_STANDIN=macvlan    show the story with the kernel's macvlan standing
#                           in for vethd (to compare, or to develop this script)
#   DEMO_KEEP_LOGS=1        keep the temporary directory with every log
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # kill_wait, remove_netns, missing_packages, apt_install
STANDIN="${DEMO_STANDIN:-}"

LAN="vdemo-lan-$$"     # the "ISP / office LAN": a DHCP server on lan0
HOST="vdemo-host-$$"   # "this machine": one NIC, eth0, plugged into the LAN
LAN_IP=198.18.0.1
TMP=""
VETHD_PID=""
DNSMASQ_PID=""
STEP=0
STEPS=11
FAILED_SAID=""

# ---------------------------------------------------------------- output ---
if [[ -t 1 ]]; then
  B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' D=$'\e[2m' N=$'\e[0m'
else
  B="" G="" R="" D="" N=""
fi
step() { STEP=$((STEP + 1)); printf '\n%s[%d/%d] %s%s\n' "$B" "$STEP" "$STEPS" "$*" "$N"; }
say()  { printf '      %s\n' "$*"; }
show() { sed 's/^/        /'; }   # indent command output
die()  { printf '\n%sFAILED%s (step %d): %s\n' "$R" "$N" "$STEP" "$*" >&2; FAILED_SAID=1; exit 1; }
in_host() { ip netns exec "$HOST" "$@"; }
in_lan()  { ip netns exec "$LAN" "$@"; }

# --------------------------------------------------------------- cleanup ---
cleanup() {
  local rc=$? f
  trap - EXIT
  trap "" INT TERM   # finish cleaning up even if interrupted again
  set +e
  if [[ $rc -ne 0 && -z "$FAILED_SAID" ]]; then
    printf '\n%sFAILED%s (step %d): a command failed (exit status %d)\n' "$R" "$N" "$STEP" "$rc" >&2
  fi
  kill_wait "$VETHD_PID"
  if [[ -n "$TMP" ]]; then
    for f in "$TMP"/dhclient-*.pid; do
      [[ -s "$f" ]] && kill_wait "$(cat "$f")"
    done
  fi
  kill_wait "$DNSMASQ_PID"
  remove_netns "$HOST" "$LAN"
  if [[ -n "$TMP" ]]; then
    if [[ $rc -ne 0 || -n "${DEMO_KEEP_LOGS:-}" ]]; then
      printf '%slogs kept in %s%s\n' "$D" "$TMP" "$N" >&2
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------- the story ---
[[ $(id -u) -eq 0 ]] || { echo "demo.sh: needs root (try: sudo $0)" >&2; exit 1; }

cat <<EOF
${B}vethd demo${N}: a second network card on the same cable.
vethd creates a virtual interface (veth1) with its own MAC address and relays
its frames over a real NIC (eth0). To the LAN it looks like one more machine
plugged in, so a DHCP server hands it a second, separate lease.
Everything runs in throw-away network namespaces; your own network is untouched.
EOF

step "Check the tools"
# dnsmasq-base, not "dnsmasq": no system DNS service
mapfile -t need < <(missing_packages ip=iproute2 ping=iputils-ping dnsmasq=dnsmasq-base dhclient=isc-dhcp-client tcpdump=tcpdump)
if ((${#need[@]})); then
  say "installing: ${need[*]}"
  apt_install "${need[@]}" || die "could not install ${need[*]}"
fi
say "ip, ping, dnsmasq (DHCP server), dhclient (DHCP client) and tcpdump: present"

TMP="$(mktemp -d /tmp/vethd-demo.XXXXXX)"

step "Build vethd"
if [[ -n "$STANDIN" ]]; then
  [[ "$STANDIN" == macvlan ]] || die "DEMO_STANDIN must be 'macvlan'"
  say "DEMO_STANDIN=macvlan: the kernel's macvlan plays vethd's part in this run"
elif [[ -n "${VETHD:-}" ]]; then
  [[ -x "$VETHD" ]] || die "VETHD=$VETHD is not an executable"
  say "using $VETHD"
else
  GO="$(command -v go || true)"
  for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [[ -z "$GO" && -x "$g" ]] && GO="$g"
  done
  VETHD="$ROOT/bin/vethd"
  if [[ -n "$GO" ]]; then
    # Built outside the tree: run as root in another user's checkout, a
    # bin/ written here would be left owned by root.
    VETHD="$TMP/vethd"
    (cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$VETHD" ./cmd/vethd) >"$TMP/build.log" 2>&1 \
      || { show <"$TMP/build.log"; die "go build failed"; }
    say "go build ./cmd/vethd: OK"
  elif [[ -x "$VETHD" ]]; then
    say "no Go toolchain found; using the existing $VETHD"
  else
    die "no Go toolchain found (looked in PATH, /usr/local/go/bin) and no bin/vethd"
  fi
fi

step "Build the LAN: two namespaces joined by one cable"
ip netns add "$LAN"
ip netns add "$HOST"
# The cable: a veth pair created inside the namespaces, never in the root one.
ip -n "$HOST" link add eth0 type veth peer name lan0 netns "$LAN"
ip -n "$LAN"  link set lo up
ip -n "$HOST" link set lo up
ip -n "$LAN"  addr add "$LAN_IP/24" dev lan0
ip -n "$LAN"  link set lan0 up
ip -n "$HOST" link set eth0 up
# Nothing else: no sysctl, no rule. Two NICs on one subnet need ARP isolation
# (else eth0 answers ARP for veth1's address too, with eth0's MAC) and source
# routing (else whatever veth1's address sends leaves by eth0, the first route
# to the LAN); vethd sets up both, as the next steps show.
say "namespace $LAN : the LAN (think: your ISP or office network), lan0 = $LAN_IP/24"
say "namespace $HOST: this machine, with one network card: eth0"
say "one cable between them: eth0 <-> lan0"

step "Start the LAN's DHCP server (dnsmasq on lan0, pool 198.18.0.100-199)"
# No DNS (port=0), no router or DNS option in the offers, no ping check.
in_lan dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --user=root \
  --interface=lan0 --bind-interfaces --no-ping --dhcp-authoritative \
  --dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,1h \
  --dhcp-option=3 --dhcp-option=6 \
  --dhcp-leasefile="$TMP/dnsmasq.leases" --pid-file="$TMP/dnsmasq.pid" \
  --log-dhcp --log-facility="$TMP/dnsmasq.log" &
DNSMASQ_PID=$!
for _ in $(seq 50); do
  in_lan ss -Hlun 'sport = :67' 2>/dev/null | grep -q . && break
  kill -0 "$DNSMASQ_PID" 2>/dev/null || die "dnsmasq exited: $(cat "$TMP/dnsmasq.log" 2>/dev/null)"
  sleep 0.1
done
in_lan ss -Hlun 'sport = :67' | grep -q . || die "dnsmasq is not listening on port 67"
say "dnsmasq is listening inside $LAN only"

# The DHCP client's script: only adds/removes the leased address, nothing else
# (no routes, no resolv.conf, no hostname).
cat >"$TMP/dhclient-script" <<'EOF'
#!/bin/sh
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    [ -n "$old_ip_address" ] && ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null ;;
esac
exit 0
EOF
chmod 0755 "$TMP/dhclient-script"

lease() { # IFACE: get a DHCPv4 lease on IFACE inside the host namespace
  local ifc=$1
  cat >"$TMP/dhclient-$ifc.conf" <<EOF
timeout 15;
retry 60;
send host-name "demo-$ifc";
request subnet-mask, broadcast-address;
EOF
  timeout --foreground 25 ip netns exec "$HOST" dhclient -4 -1 -v \
    -cf "$TMP/dhclient-$ifc.conf" -sf "$TMP/dhclient-script" \
    -pf "$TMP/dhclient-$ifc.pid" -lf "$TMP/dhclient-$ifc.leases" "$ifc" \
    >"$TMP/dhclient-$ifc.log" 2>&1 \
    || { show <"$TMP/dhclient-$ifc.log"; die "no DHCP lease on $ifc"; }
}
# capture FILTER COUNT CMD...: run CMD in the foreground while tcpdump on the
# LAN's lan0 captures COUNT frames matching FILTER into $TMP/cap.txt.
capture() {
  local filter=$1 count=$2 cap
  shift 2
  : >"$TMP/cap.err"
  in_lan timeout 8 tcpdump -Z root -l -nn -e -i lan0 -c "$count" "$filter" >"$TMP/cap.txt" 2>"$TMP/cap.err" &
  cap=$!
  for _ in $(seq 50); do grep -q listening "$TMP/cap.err" && break; sleep 0.1; done
  "$@" >"$TMP/cmd.txt" 2>&1 || { show <"$TMP/cmd.txt"; die "$* failed"; }
  wait "$cap" || true
}
# frames: the captured frames as "SRC-MAC > DST-MAC: IP > IP: what".
frames() { sed -E 's/^[0-9:.]+ //; s/, ethertype [^:]*: /: /; s/, id [0-9]+, seq [0-9]+, length [0-9]+$//' "$TMP/cap.txt"; }
# only_from MAC WHAT: fail unless every captured frame came from MAC.
only_from() {
  local srcs
  srcs="$(awk '{print $2}' "$TMP/cap.txt" | sort -u | tr '\n' ' ')"
  [[ "$srcs" == "$1 " ]] || die "$2: frames from ${srcs:-nobody}, not only from $1"
}
# tx_of IFACE: the packets the host's kernel has sent out of IFACE.
tx_of() { in_host cat "/sys/class/net/$1/statistics/tx_packets"; }

addr_of() { ip -n "$HOST" -4 -o addr show dev "$1" | awk '{split($4, a, "/"); print a[1]; exit}'; }
mac_in_host() { ip -n "$HOST" -o link show dev "$1" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }

step "eth0 asks the LAN for an address (dhclient eth0)"
lease eth0
ETH0_IP="$(addr_of eth0)"; ETH0_MAC="$(mac_in_host eth0)"
[[ -n "$ETH0_IP" ]] || die "eth0 has no address after DHCP"
say "eth0 got ${G}$ETH0_IP${N} (MAC $ETH0_MAC): the one lease a single NIC normally gets"

if [[ -z "$STANDIN" ]]; then
  step "Start vethd: a virtual NIC veth1 that rides on eth0"
  say "\$ vethd -v veth1 -e eth0"
  ip netns exec "$HOST" "$VETHD" -v veth1 -e eth0 2>"$TMP/vethd.log" &
  VETHD_PID=$!    # `ip netns exec` execs, so this is vethd's own PID
  for _ in $(seq 100); do
    grep -q 'Attached veth1 into eth0' "$TMP/vethd.log" && break
    kill -0 "$VETHD_PID" 2>/dev/null || { show <"$TMP/vethd.log"; die "vethd exited before attaching"; }
    sleep 0.1
  done
  grep -q 'Attached veth1 into eth0' "$TMP/vethd.log" \
    || { show <"$TMP/vethd.log"; die "vethd did not attach within 10 s"; }
  grep -E -m2 'ARP isolation|Attached veth1 into eth0' "$TMP/vethd.log" | show
else
  step "Start the stand-in: kernel macvlan veth1 on eth0 (instead of vethd)"
  ip -n "$HOST" link add veth1 link eth0 type macvlan mode bridge
  # The kernel's macvlan isolates nothing by itself: do by hand what vethd does.
  for ifc in eth0 veth1; do
    in_host sysctl -qw "net.ipv4.conf.$ifc.arp_ignore=1" "net.ipv4.conf.$ifc.arp_announce=2"
  done
  ip -n "$HOST" link set veth1 up
  say "by hand for the stand-in: arp_ignore=1, arp_announce=2 on eth0 and veth1"
fi
VETH1_MAC="$(mac_in_host veth1)"
[[ -n "$VETH1_MAC" ]] || die "veth1 does not exist"
[[ "$VETH1_MAC" != "$ETH0_MAC" ]] || die "veth1 has eth0's MAC ($VETH1_MAC)"
say "veth1 is up with its own MAC ${G}$VETH1_MAC${N} (eth0's is $ETH0_MAC)"

step "veth1 asks the LAN for an address too (dhclient veth1)"
lease veth1
VETH1_IP="$(addr_of veth1)"
[[ -n "$VETH1_IP" ]] || die "veth1 has no address after DHCP"
[[ "$VETH1_IP" != "$ETH0_IP" ]] || die "veth1 got eth0's address $ETH0_IP"
say "veth1 got ${G}$VETH1_IP${N}: a second lease, on the same cable"
say "this machine now has two NICs on the LAN:"
ip -n "$HOST" -br -4 addr show | grep -v '^lo' | show
ip -n "$HOST" -br link show | grep -v '^lo' | show
if [[ -z "$STANDIN" ]]; then
  # vethd names its table in veth1's alias and adds the rule for each
  # address it sees: wait until both are there, for that table.
  TABLE="" ALIAS=""
  for _ in $(seq 50); do
    ALIAS="$(in_host cat /sys/class/net/veth1/ifalias 2>/dev/null || true)"
    TABLE="${ALIAS#vethd table=}"
    [[ -n "$TABLE" && "$TABLE" != "$ALIAS" ]] \
      && ip -n "$HOST" rule show | grep -q "from $VETH1_IP lookup $TABLE proto 118" && break
    sleep 0.1
  done
  [[ -n "$TABLE" && "$TABLE" != "$ALIAS" ]] || die "vethd does not route veth1 (alias: '$ALIAS')"
  say "vethd routes what comes from veth1's address out of veth1 (table $TABLE):"
  { ip -n "$HOST" rule show | grep "proto 118"; ip -n "$HOST" route show table "$TABLE"; } | show
  ip -n "$HOST" rule show | grep -q "from $VETH1_IP lookup $TABLE proto 118" \
    || die "no source rule for $VETH1_IP"
else
  TABLE=100
  ip -n "$HOST" rule add from "$VETH1_IP" lookup "$TABLE"
  ip -n "$HOST" route add "${LAN_IP%.*}.0/24" dev veth1 table "$TABLE"
  say "by hand for the stand-in: ip rule add from $VETH1_IP lookup $TABLE, and veth1's subnet in it"
fi

step "The LAN pings each address: each answers from its own card"
for ifc in eth0 veth1; do
  [[ $ifc == eth0 ]] && ip=$ETH0_IP mac=$ETH0_MAC || ip=$VETH1_IP mac=$VETH1_MAC
  before="$(tx_of veth1)"
  capture "icmp[icmptype] == icmp-echoreply and src host $ip" 3 \
    in_lan ping -c 3 -i 0.2 -W 2 "$ip"
  after="$(tx_of veth1)"
  say "\$ ping $ip (from the LAN): 3 answered; the replies on the cable:"
  frames | show
  only_from "$mac" "echo replies from $ip"
  if [[ $ifc == veth1 ]]; then
    ((after - before >= 3)) || die "veth1 sent $((after - before)) packets, want the 3 replies"
    say "replies from ${G}$ip${N} come from ${G}$mac${N} (veth1); veth1's packet counter: $before -> $after"
  else
    say "replies from $ip come from $mac (eth0)"
  fi
done

step "This machine sends from veth1's address: out by veth1"
before="$(tx_of veth1)"
capture "icmp[icmptype] == icmp-echo and src host $VETH1_IP" 3 \
  in_host ping -c 3 -i 0.2 -W 2 -I "$VETH1_IP" "$LAN_IP"
after="$(tx_of veth1)"
say "\$ ping -I $VETH1_IP $LAN_IP (a socket bound to the address; routing picks the card): 3 answered"
frames | show
only_from "$VETH1_MAC" "echo requests from $VETH1_IP"
((after - before >= 3)) || die "veth1 sent $((after - before)) packets, want the 3 requests"
say "sent from ${G}$VETH1_MAC${N} (veth1); veth1's packet counter: $before -> $after"

step "The LAN's point of view: two machines, two MACs, one cable"
say "the DHCP server's lease table:"
awk 'BEGIN {printf "%-17s  %-15s  %s\n", "MAC address", "IP address", "client"}
     {printf "%-17s  %-15s  %s\n", $2, $3, $4}' "$TMP/dnsmasq.leases" | show
grep -qi " $VETH1_MAC $VETH1_IP " "$TMP/dnsmasq.leases" || die "dnsmasq has no lease for $VETH1_MAC"
grep -qi " $ETH0_MAC $ETH0_IP " "$TMP/dnsmasq.leases"  || die "dnsmasq has no lease for $ETH0_MAC"
say "the LAN's neighbour (ARP) table on lan0:"
# One snapshot, checked with here-strings: `ip … | grep -q` under pipefail
# fails at random (grep exits at the first match and ip gets SIGPIPE).
neigh="$(ip -n "$LAN" neigh show dev lan0)"
grep -v FAILED <<<"$neigh" | show
grep -qi "^$VETH1_IP .*lladdr $VETH1_MAC" <<<"$neigh" || die "the LAN does not see $VETH1_IP at $VETH1_MAC"
grep -qi "^$ETH0_IP .*lladdr $ETH0_MAC" <<<"$neigh" || die "the LAN does not see $ETH0_IP at $ETH0_MAC"
say "$VETH1_IP lives at ${G}$VETH1_MAC${N}: to the LAN, veth1 is a separate card"

if [[ -z "$STANDIN" ]]; then
  step "Stop vethd (SIGTERM): it removes veth1 and its routing, and exits"
  kill -TERM "$VETHD_PID"
  for _ in $(seq 30); do kill -0 "$VETHD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$VETHD_PID" 2>/dev/null && die "vethd still running 3 s after SIGTERM"
  rc=0; wait "$VETHD_PID" || rc=$?
  VETHD_PID=""
  [[ $rc -eq 0 ]] || { show <"$TMP/vethd.log"; die "vethd exited with status $rc"; }
  ip -n "$HOST" link show veth1 >/dev/null 2>&1 && die "veth1 still exists after vethd exited"
  ip -n "$HOST" rule show | grep -q "proto 118" && die "vethd's rules are still there"
  grep -m1 'Detached veth1' "$TMP/vethd.log" | show
  tx="$(sed -n 's/.*Detached veth1 .* tx_packets=\([0-9]*\).*/\1/p' "$TMP/vethd.log")"
  ((${tx:-0} >= 6)) || die "vethd relayed ${tx:-0} frames from veth1, want at least the 6 above"
  say "vethd relayed $tx frames from veth1 to the cable; it exited 0, veth1 and its rules are gone"
else
  step "Remove the stand-in veth1"
  ip -n "$HOST" link del veth1
  say "veth1 is gone"
fi

printf '\n%sOK%s: one cable, two NICs, two DHCP leases (eth0 %s, veth1 %s),\neach answering and sending from its own MAC.\n' \
  "$G$B" "$N" "$ETH0_IP" "$VETH1_IP"
printf 'Cleaning up the namespaces...\n'
