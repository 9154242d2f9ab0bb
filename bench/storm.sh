#!/usr/bin/env bash
# bench/storm.sh - what a broadcast storm costs vethd, with its storm limiter
# on and off, and the kernel's macvlan for comparison.
#
# Run as root. On a namespace LAN this script builds and removes (also on
# failure or Ctrl-C), a flooder (test/internal/flood: AF_PACKET, sendmmsg)
# sends STORM_RATE broadcast/multicast frames a second out of lan0 into the
# host namespace's eth0, the parent. For each path, after a second of
# warm-up, STORM_SECONDS are measured:
#   paths    none         no virtual NIC at all (what the storm costs the host)
#            macvlan      kernel macvlan (mode bridge) mv0 on eth0
#            vethd        vethd's TAP veth1 on eth0, storm limiter at its default
#            vethd-off    the same with --broadcast-limit=off
#            vethd-veth   vethd --kind=veth, limiter at its default
# and printed: the frames/s the flooder reached, vethd's CPU (utime+stime from
# /proc/PID/stat, % of one core), the whole machine's busy CPU less the
# flooder's own (% of one core: the kernel's softirq work for the storm, the
# macvlan's included), and the frames/s that reached the virtual NIC
# (its rx_packets).
#
# Environment (all optional):
#   STORM_RATE=100000            frames per second
#   STORM_KINDS=udp4,udp6        frame kinds, round-robin (udp4: IPv4 UDP
#                                broadcast; udp6: IPv6 UDP to ff02::1; arp:
#                                ARP who-has broadcast; ns: ICMPv6 neighbour
#                                solicitations)
#   STORM_SECONDS=10             measured seconds per path
#   STORM_ONLY="none macvlan vethd vethd-off vethd-veth"
#   VETHD=/path/to/vethd         use this binary instead of building bin/vethd
#   STORM_KEEP_LOGS=1            keep the temporary directory with the logs
#
# Safety: every interface is created inside a namespace (vs-PID-lan,
# vs-PID-host); the storm's addresses are in 198.18.0.0/15 and link-local /
# 2001:db8::/32; it is sent only on lan0, inside the LAN namespace.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # kill_wait, remove_netns
RATE="${STORM_RATE:-100000}"
KINDS="${STORM_KINDS:-udp4,udp6}"
SECS="${STORM_SECONDS:-10}"
PATHS="${STORM_ONLY:-none macvlan vethd vethd-off vethd-veth}"
PATHS="${PATHS//,/ }"

LAN="vs-$$-lan"
HOST="vs-$$-host"
TMP=""
VETHD_PID=""
FLOOD_PID=""

log() { printf '%s\n' "$*" >&2; }
die() { log "storm: $*"; exit 1; }

[[ "$RATE" =~ ^[0-9]+$ && "$RATE" -ge 1 ]] || die "STORM_RATE must be a whole number >= 1"
[[ "$SECS" =~ ^[0-9]+$ && "$SECS" -ge 1 ]] || die "STORM_SECONDS must be a whole number >= 1"
for p in $PATHS; do
  case "$p" in none|macvlan|vethd|vethd-off|vethd-veth) ;; *) die "unknown path '$p' in STORM_ONLY";; esac
done
[[ $(id -u) -eq 0 ]] || die "needs root (try: sudo $0)"

cleanup() {
  local rc=$?
  trap - EXIT
  trap "" INT TERM
  set +e
  kill_wait "$FLOOD_PID"
  kill_wait "$VETHD_PID"
  remove_netns "$HOST" "$LAN"
  if [[ -n "$TMP" ]]; then
    if [[ $rc -ne 0 || -n "${STORM_KEEP_LOGS:-}" ]]; then log "storm: logs kept in $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP="$(mktemp -d /tmp/vethd-storm.XXXXXX)"
CLK_TCK="$(getconf CLK_TCK)"
GO="$(command -v go || true)"
for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do [[ -z "$GO" && -x "$g" ]] && GO="$g"; done
[[ -n "$GO" ]] || die "needs a Go toolchain (to build the flooder)"
(cd "$ROOT" && "$GO" build -o "$TMP/flood" ./test/internal/flood) >&2 || die "go build flood failed"
if [[ -z "${VETHD:-}" ]]; then
  VETHD="$ROOT/bin/vethd"
  build_vethd "$GO" "$ROOT" "$VETHD" || die "go build failed"   # as the package builds it
fi
[[ -x "$VETHD" ]] || die "VETHD=$VETHD is not an executable"

# jiffies PID: utime+stime of a process
jiffies() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy: the machine's busy jiffies (all CPUs; idle and iowait excluded)
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
rx() { ip netns exec "$HOST" cat "/sys/class/net/$1/statistics/rx_packets"; }

ip netns add "$LAN"
ip netns add "$HOST"
ip -n "$HOST" link add eth0 type veth peer name lan0 netns "$LAN"
ip -n "$LAN" link set lan0 up
ip -n "$HOST" link set eth0 up

printf '%-11s %12s %12s %14s %12s\n' path "storm/s" "vethd %cpu" "kernel %cpu" "nic rx/s"
for p in $PATHS; do
  dev=""
  case "$p" in
    none) ;;
    macvlan)
      ip -n "$HOST" link add mv0 link eth0 type macvlan mode bridge
      ip -n "$HOST" link set mv0 up
      dev=mv0 ;;
    vethd*)
      args=(-v veth1 -e eth0)
      [[ "$p" == vethd-off ]] && args+=(--broadcast-limit=off)
      [[ "$p" == vethd-veth ]] && args+=(--kind=veth)
      ip netns exec "$HOST" "$VETHD" "${args[@]}" 2>"$TMP/vethd-$p.log" &
      VETHD_PID=$!
      n=100
      until grep -q "Attached veth1 into eth0" "$TMP/vethd-$p.log"; do
        ((n-- > 0)) || die "vethd did not attach: $(cat "$TMP/vethd-$p.log")"
        sleep 0.1
      done
      dev=veth1 ;;
  esac
  ip netns exec "$LAN" "$TMP/flood" -i lan0 -rate "$RATE" -kinds "$KINDS" >"$TMP/flood-$p.log" 2>&1 &
  FLOOD_PID=$!
  sleep 1
  t0=$(date +%s.%N); b0=$(busy); f0=$(jiffies "$FLOOD_PID")
  v0=0; [[ -n "$VETHD_PID" ]] && v0=$(jiffies "$VETHD_PID")
  r0=0; [[ -n "$dev" ]] && r0=$(rx "$dev")
  sleep "$SECS"
  t1=$(date +%s.%N); b1=$(busy); f1=$(jiffies "$FLOOD_PID")
  v1=0; [[ -n "$VETHD_PID" ]] && v1=$(jiffies "$VETHD_PID")
  r1=0; [[ -n "$dev" ]] && r1=$(rx "$dev")
  kill_wait "$FLOOD_PID"; wait "$FLOOD_PID" 2>/dev/null || true; FLOOD_PID=""
  sent=$(sed -n 's/.*(\([0-9]*\)\/s).*/\1/p' "$TMP/flood-$p.log")
  vcpu="-"
  [[ -n "$VETHD_PID" ]] && vcpu=$(awk -v d=$((v1 - v0)) -v t="$t1" -v s="$t0" -v h="$CLK_TCK" 'BEGIN {printf "%.1f", 100 * d / h / (t - s)}')
  kcpu=$(awk -v b=$((b1 - b0 - (f1 - f0) - (v1 - v0))) -v t="$t1" -v s="$t0" -v h="$CLK_TCK" 'BEGIN {printf "%.1f", 100 * b / h / (t - s)}')
  nrx="-"
  [[ -n "$dev" ]] && nrx=$(awk -v d=$((r1 - r0)) -v t="$t1" -v s="$t0" 'BEGIN {printf "%.0f", d / (t - s)}')
  printf '%-11s %12s %12s %14s %12s\n' "$p" "${sent:-?}" "$vcpu" "$kcpu" "$nrx"
  if [[ -n "$VETHD_PID" ]]; then
    kill_wait "$VETHD_PID"; wait "$VETHD_PID" 2>/dev/null || true; VETHD_PID=""
  fi
  if [[ "$p" == macvlan ]]; then ip -n "$HOST" link del mv0; fi
done
