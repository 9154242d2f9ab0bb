#!/usr/bin/env bash
# bench/run.sh - vethd against kernel macvlan, a plain C relay and the bare
# veth wire (issue 10's benchmark; docs/performance.md).
#
# Run as root. One run measures, on a namespace LAN this script builds and
# removes (also on failure or Ctrl-C):
#   paths       wire     the bare veth wire: the address sits on the parent
#                        eth0 itself, in the host namespace
#               macvlan  kernel macvlan (mode bridge) mv0 on eth0, moved into
#                        its own namespace vb-PID-mv
#               vethd    vethd's TAP veth1 on eth0 (--kind=tap), created by
#                        vethd in its own namespace vb-PID-tap (--netns)
#               vethd-veth  vethd's veth-pair NIC veth1 (--kind=veth) in
#                        vb-PID-veth (the peer vd-veth1 stays with eth0)
#               crelay   bench/crelay.c, a plain C relay (one blocking thread
#                        per direction, one read/send per frame, vnet headers
#                        on both sides), built with gcc into the temporary
#                        directory; its TAP cr0 is moved into vb-PID-cr
#               Each NIC sits in its own namespace, as a container's does;
#               the relays (vethd, crelay) run in the host namespace vb-PID-host
#               beside eth0, and iperf3/ping/udpping run in the NIC's namespace.
#   directions  up   = NIC -> LAN (iperf3 client sends)
#               down = LAN -> NIC (iperf3 -R)
#   conditions  default    the veth pair's default offloads
#               nic-like   like a real NIC: the LAN side sends plain MTU frames
#                          (lan0: tx, tso, gso off) and the parent eth0 has GRO
#                          on, as real drivers do
#               mtu-nogro  MTU frames and no GRO anywhere (lan0 and eth0:
#                          tx, tso, gso, gro off)
#               big-tcp    BIG TCP on the LAN side: lan0 has gso_max_size and
#                          gro_max_size 185000, so the LAN's TCP hands eth0
#                          GSO frames of up to ~180 KB (IPv6 with a jumbo
#                          header). Measured over IPv6 (2001:db8::/64), since
#                          BIG TCP for IPv4 needs gso_ipv4_max_size, which
#                          Debian 12's iproute2 cannot set. Not in the
#                          default list: BENCH_CONDITIONS=big-tcp.
# Each path is measured alone: its interface exists (and holds an address)
# only while it is measured. Per path and condition:
#   - ping -c BENCH_PINGS -i BENCH_PING_INTERVAL (average round trip; also
#     checks that the LAN sees the path's own MAC)
#   - latency with bench/udpping.c (UDP ping-pong to an echo server in the
#     LAN): back to back for BENCH_LAT_SECONDS, and BENCH_LAT_COUNT round trips
#     BENCH_LAT_INTERVAL_US apart; p50 and p99
#   - TCP, iperf3 -P N for each N in BENCH_STREAMS, both directions,
#     BENCH_SECONDS each; for vethd and crelay the CPU seconds (utime and
#     stime apart, /proc/PID/stat, all threads) per GB of TCP payload received,
#     and for every path the whole machine's busy CPU seconds (/proc/stat:
#     every process, iperf3's both ends included, and the softirqs, where an
#     in-kernel path spends its time) per GB
#   - UDP (in BENCH_UDP_CONDITIONS only): iperf3 -u -b BENCH_UDP_RATE -l SIZE
#     for each SIZE in BENCH_UDP_SIZES, both directions: datagrams per second
#     received, loss %, relay CPU per datagram
#   - VmRSS and VmHWM of vethd / crelay after the traffic
# and at the end bench/bridges.sh (64 bridges under one `vethd --all`) for
# each kind in BENCH_BRIDGES_KINDS, if it exists.
#
# Environment (all optional):
#   BENCH_SECONDS=5                        iperf3 TCP duration per measurement
#   BENCH_CONDITIONS="default nic-like mtu-nogro"   (or big-tcp)
#   BENCH_ONLY="wire macvlan vethd vethd-veth crelay"  paths (e.g. BENCH_ONLY=vethd,macvlan)
#   BENCH_STREAMS="1 4"                    TCP stream counts (iperf3 -P)
#   BENCH_UDP=1                            0: no UDP measurements
#   BENCH_UDP_SIZES="64 1400"              UDP datagram payload sizes (iperf3 -l)
#   BENCH_UDP_CONDITIONS=default           conditions that get the UDP runs
#   BENCH_UDP_SECONDS=3                    iperf3 UDP duration per measurement
#   BENCH_UDP_RATE=0                       iperf3 -b (0 = as fast as the sender can)
#   BENCH_LATENCY=1                        0: no udpping latency measurements
#   BENCH_LAT_SECONDS=1                    length of the back-to-back run
#   BENCH_LAT_COUNT=200                    round trips of the paced run...
#   BENCH_LAT_INTERVAL_US=10000            ...this far apart (10 ms)
#   BENCH_PINGS=50                         ping count per path (the MAC check)
#   BENCH_PING_INTERVAL=0.01               seconds between pings
#   BENCH_BRIDGES=1                        0: do not run bench/bridges.sh (its own
#                                          knobs, BRIDGES=64, BRIDGES_IDLE_SECONDS=30,
#                                          ..., pass through the environment)
#   BENCH_BRIDGES_KINDS="tap veth"         the kinds bench/bridges.sh runs (BRIDGES_KIND)
#   BENCH_PROFILE=DIR                      record `perf record -g` of the relay
#                                          during extra (unmeasured) transfers
#                                          into DIR, with perf report summaries
#   BENCH_PROFILE_AT="default/vethd/down"  which: COND/PATH/DIR ..., PATH vethd,
#                                          vethd-veth or crelay; one TCP stream
#   BENCH_OUT=FILE                         also write the result tables to FILE
#   VETHD=/path/to/vethd                   use this binary instead of building bin/vethd
#   BENCH_VETH_ARGS="--data-path=relay"    more vethd flags for the vethd-veth path
#                                          (its default is the kernel data path,
#                                          docs/design.md; the run fails if it was
#                                          not attached, unless these say relay)
#   VETHD_STANDIN=macvlan                  a second kernel macvlan plays vethd's
#                                          part (to develop or check this script)
#   BENCH_KEEP_LOGS=1                      keep the temporary directory with the logs
#
# Safety: every interface is created inside a namespace (vb-PID-lan,
# vb-PID-host, vb-PID-mv/-tap/-veth/-cr), addresses come only from
# 198.18.0.0/15 and 2001:db8::/32, there is no default route, and the
# servers (iperf3, udpping) listen only inside the LAN namespace.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # kill_wait, remove_netns, missing_packages, apt_install
SECS="${BENCH_SECONDS:-5}"
CONDITIONS="${BENCH_CONDITIONS:-default nic-like mtu-nogro}"
PATHS="${BENCH_ONLY:-wire macvlan vethd vethd-veth crelay}"
VETH_ARGS="${BENCH_VETH_ARGS:-}"
STREAMS="${BENCH_STREAMS:-1 4}"
UDP="${BENCH_UDP:-1}"
UDP_SIZES="${BENCH_UDP_SIZES:-64 1400}"
UDP_CONDITIONS="${BENCH_UDP_CONDITIONS:-default}"
UDP_SECS="${BENCH_UDP_SECONDS:-3}"
UDP_RATE="${BENCH_UDP_RATE:-0}"
LATENCY="${BENCH_LATENCY:-1}"
LAT_SECS="${BENCH_LAT_SECONDS:-1}"
LAT_COUNT="${BENCH_LAT_COUNT:-200}"
LAT_IV="${BENCH_LAT_INTERVAL_US:-10000}"
PINGS="${BENCH_PINGS:-50}"
PING_INTERVAL="${BENCH_PING_INTERVAL:-0.01}"
RUN_BRIDGES="${BENCH_BRIDGES:-1}"
BRIDGES_KINDS="${BENCH_BRIDGES_KINDS:-tap veth}"
for k in $BRIDGES_KINDS; do [[ "$k" == tap || "$k" == veth ]] || { echo "bench: BENCH_BRIDGES_KINDS: '$k' is not tap or veth" >&2; exit 2; }; done
PROFILE="${BENCH_PROFILE:-}"
PROFILE_AT="${BENCH_PROFILE_AT:-default/vethd/down}"
STANDIN="${VETHD_STANDIN:-}"
PATHS="${PATHS//,/ }"; CONDITIONS="${CONDITIONS//,/ }"; STREAMS="${STREAMS//,/ }"
UDP_SIZES="${UDP_SIZES//,/ }"; UDP_CONDITIONS="${UDP_CONDITIONS//,/ }"; PROFILE_AT="${PROFILE_AT//,/ }"

LAN="vb-$$-lan"
HOST="vb-$$-host"
LAN_IP=198.18.0.1
LAN_IP6=2001:db8::1
declare -A SRC=([wire]=198.18.0.2 [macvlan]=198.18.0.3 [vethd]=198.18.0.4 [vethd-veth]=198.18.0.5 [crelay]=198.18.0.6)
declare -A SRC6=([wire]=2001:db8::2 [macvlan]=2001:db8::3 [vethd]=2001:db8::4 [vethd-veth]=2001:db8::5 [crelay]=2001:db8::6)
declare -A DEV=([wire]=eth0 [macvlan]=mv0 [vethd]=veth1 [vethd-veth]=veth1 [crelay]=cr0)
declare -A PNS=([wire]="$HOST" [macvlan]="vb-$$-mv" [vethd]="vb-$$-tap" [vethd-veth]="vb-$$-veth" [crelay]="vb-$$-cr")
declare -A KIND=([vethd]=tap [vethd-veth]=veth)
ALL_PATHS="wire macvlan vethd vethd-veth crelay"
RELAYS="vethd vethd-veth crelay"        # the paths whose process is measured
is_vethd() { [[ "$1" == vethd || "$1" == vethd-veth ]]; }
BIG_TCP_SIZE=185000
IPERF_PORT=5201
UDPPING_PORT=5202

TMP=""
RELAY_PID=""      # vethd's or crelay's PID while its path is up
PERF_PID=""       # perf record's while it records
FAILURES=0
declare -A GBPS=() RETR=() CPUU=() CPUS=() MCPU=() RTT=() LAT=() PPS=() LOSS=() UPP=() RSS=() HWM=() OFFLOADS=() LOADAVG=()

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }
fail() { log "  FAIL: $*"; FAILURES=$((FAILURES + 1)); }
in_list() { [[ " $2 " == *" $1 "* ]]; }   # WORD LIST

number() { [[ "$2" =~ ^[0-9]+$ && "$2" -ge "${3:-1}" ]] || die "$1 must be a whole number >= ${3:-1}"; }
number BENCH_SECONDS "$SECS"; number BENCH_UDP_SECONDS "$UDP_SECS"; number BENCH_LAT_SECONDS "$LAT_SECS"
number BENCH_LAT_COUNT "$LAT_COUNT"; number BENCH_LAT_INTERVAL_US "$LAT_IV" 0; number BENCH_PINGS "$PINGS"
[[ "$UDP_RATE" =~ ^[0-9]+[KMG]?$ ]] || die "BENCH_UDP_RATE must be an iperf3 -b rate (0, 500M, ...)"
[[ "$PING_INTERVAL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "BENCH_PING_INTERVAL must be a number of seconds"
for c in $CONDITIONS $UDP_CONDITIONS; do
  case "$c" in default|nic-like|mtu-nogro|big-tcp) ;; *) die "unknown condition '$c'";; esac
done
for p in $PATHS; do in_list "$p" "$ALL_PATHS" || die "unknown path '$p' in BENCH_ONLY"; done
for s in $STREAMS; do number "BENCH_STREAMS entry" "$s"; done
for s in $UDP_SIZES; do number "BENCH_UDP_SIZES entry" "$s" 16; done
for x in UDP LATENCY RUN_BRIDGES; do [[ "${!x}" == 0 || "${!x}" == 1 ]] || die "BENCH_${x#RUN_} must be 0 or 1"; done
if [[ -n "$PROFILE" ]]; then
  for a in $PROFILE_AT; do
    IFS=/ read -r c p d <<<"$a"
    in_list "$c" "$CONDITIONS" && in_list "$p" "$RELAYS" && in_list "$p" "$PATHS" && [[ "$d" == up || "$d" == down ]] ||
      die "BENCH_PROFILE_AT: '$a' is not COND/PATH/DIR of this run (PATH one of: $RELAYS)"
  done
fi
[[ -z "$STANDIN" || "$STANDIN" == macvlan ]] || die "VETHD_STANDIN must be 'macvlan'"
[[ $(id -u) -eq 0 ]] || die "needs root (try: sudo $0)"

# --------------------------------------------------------------- cleanup ---
teardown_lan() {
  kill_wait "$PERF_PID"; PERF_PID=""
  kill_wait "$RELAY_PID"; RELAY_PID=""
  local ns=() p
  for p in $ALL_PATHS; do [[ "$p" == wire ]] || ns+=("${PNS[$p]}"); done
  remove_netns "${ns[@]}" "$HOST" "$LAN"   # stops iperf3, udpping and any relay left inside
}

cleanup() {
  local rc=$?
  trap - EXIT
  trap "" INT TERM   # finish cleaning up even if interrupted again
  set +e
  teardown_lan
  if [[ -n "$TMP" ]]; then
    if [[ $rc -ne 0 || $FAILURES -ne 0 || -n "${BENCH_KEEP_LOGS:-}" ]]; then
      log "bench: logs kept in $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# run CMD...: CMD in the background, waited for. A Ctrl-C reaches the INT
# trap at once this way: bash runs no INT trap after a foreground child
# that caught SIGINT and exited (iperf3 and ping do), but the wait builtin
# returns as soon as a trapped signal arrives.
run() { "$@" & wait $!; }

# ----------------------------------------------------------------- tools ---
# iperf3's debconf default: no system daemon
tools=(ip=iproute2 ping=iputils-ping iperf3=iperf3 ethtool=ethtool jq=jq sysctl=procps)
if [[ " $PATHS " == *" crelay "* || "$LATENCY" == 1 ]]; then
  tools+=(gcc=gcc)
  [[ -f /usr/include/stdio.h ]] || tools+=("libc6-dev-is-missing=libc6-dev")
fi
[[ -n "$PROFILE" ]] && tools+=(perf=linux-perf)
mapfile -t need < <(missing_packages "${tools[@]}")
if ((${#need[@]})); then
  log "bench: installing ${need[*]}"
  apt_install "${need[@]}" || die "could not install ${need[*]}"
fi

TMP="$(mktemp -d /tmp/vethd-bench.XXXXXX)"
CLK_TCK="$(getconf CLK_TCK)"
for t in crelay udpping; do
  [[ "$t" == crelay && " $PATHS " != *" crelay "* ]] && continue
  [[ "$t" == udpping && "$LATENCY" == 0 ]] && continue
  gcc -O2 -Wall -pthread -o "$TMP/$t" "$ROOT/bench/$t.c" >&2 || die "gcc bench/$t.c failed"
done
if [[ -n "$PROFILE" ]]; then
  mkdir -p "$PROFILE" || die "cannot create BENCH_PROFILE=$PROFILE"
  PROFILE="$(cd "$PROFILE" && pwd)"
fi

if [[ " $PATHS " == *" vethd"* || "$RUN_BRIDGES" == 1 ]] && [[ -z "$STANDIN" ]]; then
  if [[ -n "${VETHD:-}" ]]; then
    [[ -x "$VETHD" ]] || die "VETHD=$VETHD is not an executable"
  else
    GO="$(command -v go || true)"
    for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do
      [[ -z "$GO" && -x "$g" ]] && GO="$g"
    done
    VETHD="$ROOT/bin/vethd"
    if [[ -n "$GO" ]]; then
      build_vethd "$GO" "$ROOT" "$VETHD" || die "go build failed"   # as the package builds it
    elif [[ ! -x "$VETHD" ]]; then
      die "no Go toolchain and no bin/vethd"
    fi
  fi
  VETHD="$(realpath "$VETHD")"
fi

# ------------------------------------------------------------------ LAN ----
in_host() { ip netns exec "$HOST" "$@"; }
in_lan()  { ip netns exec "$LAN" "$@"; }
mac_of() { ip -n "$1" -o link show dev "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }  # NS DEV
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

feat() { # NS DEV: one-line summary of the offloads that matter here
  ip netns exec "$1" ethtool -k "$2" 2>/dev/null | awk -v d="$2" '
    /^tx-checksumming:/ {t=$2} /^tcp-segmentation-offload:/ {s=$2}
    /^generic-segmentation-offload:/ {g=$2} /^generic-receive-offload:/ {r=$2}
    END {printf "%s tx=%s tso=%s gso=%s gro=%s", d, t, s, g, r}'
}

wait_listen() { # PROTO(t|u) PORT PID LOG
  local n=50
  until in_lan ss -Hl"$1"n "sport = :$2" | grep -q .; do
    ((n-- > 0)) || die "server on port $2 did not start"
    kill -0 "$3" 2>/dev/null || die "server on port $2 exited: $(cat "$4")"
    sleep 0.1
  done
}

setup_lan() { # CONDITION
  ip netns add "$LAN"
  ip netns add "$HOST"
  # the wire: a veth pair created inside the namespaces, never in the root one
  ip -n "$HOST" link add eth0 type veth peer name lan0 netns "$LAN"
  ip -n "$LAN"  link set lo up
  ip -n "$HOST" link set lo up
  ip -n "$LAN"  addr add "$LAN_IP/24" dev lan0
  ip -n "$LAN"  addr add "$LAN_IP6/64" dev lan0 nodad
  # No sysctls: each path holds the only address on this LAN while it is
  # measured, and measure_ping checks that the LAN sees its MAC.
  case "$1" in
    default) ;;
    nic-like)
      in_lan  ethtool -K lan0 tx off tso off gso off >/dev/null
      in_host ethtool -K eth0 gro on >/dev/null ;;
    mtu-nogro)
      in_lan  ethtool -K lan0 tx off tso off gso off gro off >/dev/null
      in_host ethtool -K eth0 tx off tso off gso off gro off >/dev/null ;;
    big-tcp)
      ip -n "$LAN" link set lan0 gso_max_size "$BIG_TCP_SIZE" gro_max_size "$BIG_TCP_SIZE" ;;
  esac
  ip -n "$LAN"  link set lan0 up
  ip -n "$HOST" link set eth0 up
  OFFLOADS[$1]="$(feat "$LAN" lan0); $(feat "$HOST" eth0)"
  local bind=$LAN_IP pid
  [[ "$1" == big-tcp ]] && bind=$LAN_IP6
  in_lan iperf3 -s -B "$bind" -p "$IPERF_PORT" --idle-timeout 120 >"$TMP/iperf3-server-$1.log" 2>&1 &
  pid=$!
  wait_listen t "$IPERF_PORT" "$pid" "$TMP/iperf3-server-$1.log"
  if [[ "$LATENCY" == 1 ]]; then
    in_lan "$TMP/udpping" -s "$LAN_IP" "$UDPPING_PORT" >"$TMP/udpping-server-$1.log" 2>&1 &
    pid=$!
    wait_listen u "$UDPPING_PORT" "$pid" "$TMP/udpping-server-$1.log"
  fi
}

wait_log() { # FILE PATTERN: until PATTERN is in FILE while RELAY_PID lives (10 s)
  local n=100
  until grep -q "$2" "$1"; do
    kill -0 "$RELAY_PID" 2>/dev/null || { cat "$1" >&2; RELAY_PID=""; return 1; }
    ((n-- > 0)) || { cat "$1" >&2; return 1; }
    sleep 0.1
  done
}

path_up() { # PATH COND: create the path's interface in its namespace and give it the address
  local p=$1 c=$2 dev=${DEV[$1]} ns=${PNS[$1]}
  # (called from an `if`, so errexit is off in here: check each step)
  if [[ "$p" != wire ]]; then
    ip netns add "$ns" || return 1
    ip -n "$ns" link set lo up || return 1
  fi
  case "$p" in
    wire) ;;
    macvlan)
      ip -n "$HOST" link add mv0 link eth0 type macvlan mode bridge || return 1
      ip -n "$HOST" link set mv0 netns "$ns" || return 1
      ip -n "$ns" link set mv0 up || return 1 ;;
    vethd|vethd-veth)
      if [[ -n "$STANDIN" ]]; then
        ip -n "$HOST" link add veth1 link eth0 type macvlan mode bridge || return 1
        ip -n "$HOST" link set veth1 netns "$ns" || return 1
        ip -n "$ns" link set veth1 up || return 1
      else
        local extra=()
        [[ "$p" == vethd-veth && -n "$VETH_ARGS" ]] && read -r -a extra <<<"$VETH_ARGS"
        ip netns exec "$HOST" "$VETHD" -v veth1 -e eth0 --kind="${KIND[$p]}" --netns "$ns" "${extra[@]}" \
          2>"$TMP/vethd-$c-$p.log" &
        RELAY_PID=$!   # `ip netns exec` execs: this is vethd's own PID
        wait_log "$TMP/vethd-$c-$p.log" 'Attached veth1 into eth0' || return 1
        if [[ "$p" == vethd-veth && "$VETH_ARGS" != *relay* ]] && grep -q 'instead of the kernel' "$TMP/vethd-$c-$p.log"; then
          cat "$TMP/vethd-$c-$p.log" >&2; return 1   # the veth kind's kernel data path was not attached
        fi
        ip -n "$ns" link set veth1 up || return 1   # (vethd creates it up)
      fi ;;
    crelay)
      ip netns exec "$HOST" "$TMP/crelay" cr0 eth0 >"$TMP/crelay-$c.log" 2>&1 &
      RELAY_PID=$!
      wait_log "$TMP/crelay-$c.log" '^ready' || return 1
      ip -n "$HOST" link set cr0 netns "$ns" || return 1
      ip -n "$ns" link set cr0 up || return 1 ;;
  esac
  ip -n "$ns" addr add "${SRC[$p]}/24" dev "$dev" || return 1
  ip -n "$ns" addr add "${SRC6[$p]}/64" dev "$dev" nodad || return 1
  ip -n "$LAN" neigh flush dev lan0 || return 1
  # the upper interfaces' offloads, for the record
  [[ "$p" == wire ]] || OFFLOADS[$c]+="; $(feat "$ns" "$dev")"
}

stop_relay() { # PATH COND: SIGTERM the relay, check it ends in time and cleanly
  local rc=0 n=30
  [[ -n "$RELAY_PID" ]] || return 0
  kill -TERM "$RELAY_PID" 2>/dev/null || true   # (wait says how it ended)
  while kill -0 "$RELAY_PID" 2>/dev/null && ((n-- > 0)); do sleep 0.1; done
  if kill -0 "$RELAY_PID" 2>/dev/null; then
    fail "$1 still running 3 s after SIGTERM ($2)"
    kill_wait "$RELAY_PID"
  fi
  wait "$RELAY_PID" || rc=$?
  # crelay has no signal handler: SIGTERM (143) is its normal end
  [[ $rc -eq 0 || ( "$1" == crelay && $rc -eq 143 ) ]] || fail "$1 exited with status $rc after SIGTERM ($2)"
  RELAY_PID=""
}

path_down() { # PATH COND
  local p=$1 c=$2 ns=${PNS[$1]} l
  case "$p" in
    wire) ip -n "$HOST" addr del "${SRC[wire]}/24" dev eth0
          ip -n "$HOST" addr del "${SRC6[wire]}/64" dev eth0
          return 0 ;;
    macvlan) ip -n "$ns" link del mv0 ;;
    vethd|vethd-veth)
      if [[ -n "$STANDIN" ]]; then
        ip -n "$ns" link del veth1
      else
        stop_relay "$p" "$c"
        # vethd removes what it made: veth1 in its namespace, vd-veth1 at home
        ip -n "$ns" link show veth1 >/dev/null 2>&1 && fail "veth1 still exists in $ns after vethd exited ($c/$p)"
        ip -n "$HOST" link show vd-veth1 >/dev/null 2>&1 && fail "vd-veth1 still exists after vethd exited ($c/$p)"
        ip -n "$HOST" link show veth1 >/dev/null 2>&1 && fail "veth1 exists in the host namespace ($c/$p)"
      fi ;;
    crelay)
      stop_relay "$p" "$c"
      ip -n "$ns" link show cr0 >/dev/null 2>&1 && fail "cr0 still exists after crelay exited ($c)" ;;
  esac
  # the namespace must be empty but for lo now
  l="$(ip -n "$ns" -o link show 2>/dev/null | awk -F': ' '$2 != "lo" {print $2}')"
  [[ -z "$l" ]] || fail "left in $ns after $p ($c): $l"
  remove_netns "$ns"
  return 0
}

proc_cpu_ticks() { # PID: "utime stime" in clock ticks (fields 14, 15; comm may hold spaces)
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo "0 0"; return; }
  s="${s##*) }"
  awk '{print $12, $13}' <<<"$s"
}
machine_ticks() { # the whole machine's busy clock ticks (/proc/stat: all but idle and iowait)
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}
relay_ticks() { if [[ -n "$RELAY_PID" ]]; then proc_cpu_ticks "$RELAY_PID"; else echo "0 0"; fi; }

measure_ping() { # PATH COND
  local p=$1 c=$2 out avg limit ns=${PNS[$1]}
  limit="$(awk -v n="$PINGS" -v i="$PING_INTERVAL" 'BEGIN {printf "%d", n * (i + 0.001) * 3 + 10}')"
  if ! run timeout --foreground "$limit" ip netns exec "$ns" ping -q -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 \
         -I "${DEV[$p]}" "$LAN_IP" >"$TMP/ping.out" 2>&1; then
    fail "ping via $p ($c): $(cat "$TMP/ping.out")"; RTT[$c,$p]=fail; return
  fi
  out="$(cat "$TMP/ping.out")"
  avg="$(awk -F'/' '/^(rtt|round-trip)/ {printf "%.0f", $5 * 1000}' <<<"$out")"
  RTT[$c,$p]="${avg:-fail}"
  # the LAN must see the path's own MAC, or the traffic did not take this path
  local mac lmac
  mac="$(mac_of "$ns" "${DEV[$p]}")"
  lmac="$(ip -n "$LAN" neigh show "${SRC[$p]}" dev lan0 | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p')"
  [[ "$lmac" == "$mac" ]] || fail "$c/$p: the LAN sees ${SRC[$p]} at '$lmac', not at ${DEV[$p]}'s $mac"
}

measure_latency() { # PATH COND MODE(b2b|paced)
  local p=$1 c=$2 m=$3 out count=1000000 iv=0 secs=$LAT_SECS
  [[ "$m" == paced ]] && { count=$LAT_COUNT; iv=$LAT_IV; secs=$(( LAT_COUNT * (LAT_IV / 1000 + 1) / 1000 * 2 + 5 )); }
  if ! run timeout --foreground $((secs + 10)) ip netns exec "${PNS[$p]}" "$TMP/udpping" -c "$LAN_IP" "$UDPPING_PORT" \
         "$count" "$iv" "$secs" >"$TMP/udpping.out" 2>&1; then
    fail "udpping $m via $p ($c): $(cat "$TMP/udpping.out")"; LAT[$c,$p,$m]=fail; return
  fi
  out="$(cat "$TMP/udpping.out")"
  # "n=N lost=L min= p50= p99= max= avg="
  LAT[$c,$p,$m]="$(awk '{for (i = 1; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
                          printf "%s %s %s %s", v["p50"], v["p99"], v["n"], v["lost"]}' <<<"$out")"
  log "  $(printf '%-9s %-10s %-5s' "$c" "$p" "$m") udpping $out"
}

run_iperf() { # PATH COND JSON ARGS...: iperf3 client in the path's namespace
  local p=$1 c=$2 json=$3 dst=$LAN_IP src=${SRC[$1]}
  shift 3
  [[ "$c" == big-tcp ]] && { dst=$LAN_IP6; src=${SRC6[$p]}; }
  run timeout --foreground $((SECS + UDP_SECS + 20)) ip netns exec "${PNS[$p]}" iperf3 -c "$dst" -p "$IPERF_PORT" \
    -B "$src" --connect-timeout 3000 -J "$@" >"$json" 2>&1 || true
}

iperf_error() { # JSON: iperf3's error, or empty
  jq -r '.error // empty' "$1" 2>/dev/null || echo "no JSON from iperf3"
}

# per_gb TICKS BYTES: CPU seconds per GB
per_gb() { awk -v t="$1" -v hz="$CLK_TCK" -v by="$2" 'BEGIN {printf "%.2f", (t / hz) / (by / 1e9)}'; }

measure_tcp() { # PATH COND DIR STREAMS
  local p=$1 c=$2 d=$3 s=$4 k="$2,$1,$3,$4" json="$TMP/iperf3-$2-$1-$3-P$4.json" rev=() bps bytes err u0 s0 u1 s1 m0 m1
  [[ "$d" == down ]] && rev=(-R)
  read -r u0 s0 < <(relay_ticks)
  m0="$(machine_ticks)"
  run_iperf "$p" "$c" "$json" -t "$SECS" -P "$s" "${rev[@]}"
  m1="$(machine_ticks)"
  read -r u1 s1 < <(relay_ticks)
  err="$(iperf_error "$json")"
  bps="$(jq -r '.end.sum_received.bits_per_second // empty' "$json" 2>/dev/null || true)"
  bytes="$(jq -r '.end.sum_received.bytes // empty' "$json" 2>/dev/null || true)"
  RETR[$k]="$(jq -r '.end.sum_sent.retransmits // "?"' "$json" 2>/dev/null || true)"
  if [[ -n "$err" || -z "$bps" || -z "$bytes" || "$bytes" == 0 ]]; then
    fail "iperf3 $c/$p/$d/P$s: ${err:-no bytes received} (see $json)"
    GBPS[$k]=fail
    return
  fi
  GBPS[$k]="$(awk -v b="$bps" 'BEGIN {printf "%.2f", b / 1e9}')"
  MCPU[$k]="$(per_gb $((m1 - m0)) "$bytes")"
  if [[ -n "$RELAY_PID" ]]; then
    CPUU[$k]="$(per_gb $((u1 - u0)) "$bytes")"
    CPUS[$k]="$(per_gb $((s1 - s0)) "$bytes")"
  fi
  log "  $(printf '%-9s %-10s %-4s P%-2s %6s Gbit/s %7s retransmits' "$c" "$p" "$d" "$s" "${GBPS[$k]}" "${RETR[$k]}")  machine CPU s/GB ${MCPU[$k]}${CPUU[$k]:+  relay CPU s/GB user ${CPUU[$k]} sys ${CPUS[$k]}}"
}

measure_udp() { # PATH COND DIR SIZE
  local p=$1 c=$2 d=$3 l=$4 k="$2,$1,$3,$4" json="$TMP/iperf3-udp-$2-$1-$3-$4.json" rev=() err u0 s0 u1 s1 r
  [[ "$d" == down ]] && rev=(-R)
  read -r u0 s0 < <(relay_ticks)
  run_iperf "$p" "$c" "$json" -u -b "$UDP_RATE" -l "$l" -t "$UDP_SECS" "${rev[@]}"
  read -r u1 s1 < <(relay_ticks)
  err="$(iperf_error "$json")"
  # the receiver's view: sum_received (iperf3 >= 3.13) or sum (3.12: the
  # receiver's figures, the server's report for -c, the client's own for -R)
  r="$(jq -r '(.end.sum_received // .end.sum) as $r | "\($r.packets // empty) \($r.lost_packets // 0) \($r.seconds // empty)"' \
         "$json" 2>/dev/null || true)"
  local pk lost sec
  read -r pk lost sec <<<"$r"
  if [[ -n "$err" || -z "$pk" || -z "$sec" || "$pk" -le "$lost" ]]; then
    fail "iperf3 -u $c/$p/$d/$l: ${err:-nothing received} (see $json)"
    PPS[$k]=fail
    return
  fi
  PPS[$k]="$(awk -v n="$pk" -v x="$lost" -v t="$sec" 'BEGIN {printf "%.0f", (n - x) / t / 1000}')"
  LOSS[$k]="$(awk -v n="$pk" -v x="$lost" 'BEGIN {printf "%.1f", 100 * x / n}')"
  if [[ -n "$RELAY_PID" ]]; then   # CPU µs per datagram received
    UPP[$k]="$(awk -v t=$((u1 - u0 + s1 - s0)) -v hz="$CLK_TCK" -v n="$pk" -v x="$lost" \
                'BEGIN {printf "%.2f", t / hz * 1e6 / (n - x)}')"
  fi
  log "  $(printf '%-9s %-10s %-4s UDP %-4s %7s kpps %5s %% lost' "$c" "$p" "$d" "$l" "${PPS[$k]}" "${LOSS[$k]}")${UPP[$k]:+  relay ${UPP[$k]} CPU us/datagram}"
}

# the kernel and runtime entry points profile() picks out of the call graph
PROFILE_SYMS='entry_SYSCALL_64_after_hwframe|tun_chr_write_iter|tun_chr_read_iter|tun_get_user|netif_receive_skb|packet_sendmsg|packet_recvmsg|packet_rcv|__sys_sendmmsg|do_recvmmsg|__x64_sys_recvfrom|__x64_sys_sendto|__x64_sys_write|__x64_sys_read|dev_queue_xmit|__dev_queue_xmit|validate_xmit_skb|skb_segment|__skb_gso_segment|skb_copy_datagram_iter|_copy_to_iter|_copy_from_iter|csum_partial|do_csum|__schedule|try_to_wake_up|handle_softirqs|net_rx_action|do_epoll_wait|__x64_sys_epoll_pwait|__x64_sys_futex|__x64_sys_nanosleep|pvm_irq_enable|runtime\.schedule|runtime\.findRunnable|runtime\.netpoll|runtime\.mallocgc|runtime\.gcBgMarkWorker|runtime\.sysmon|runtime\.futexsleep|runtime\.usleep|runtime\.entersyscall|runtime\.exitsyscall|internal/poll\.\(\*FD\)\.RawRead|internal/poll\.\(\*FD\)\.RawWrite|internal/poll\.\(\*pollDesc\)\.waitRead|github\.com/vethd/vethd/pkg/bridge\..*'

profile() { # PATH COND DIR: perf record -g of the relay during one extra transfer
  local p=$1 c=$2 d=$3 name="perf-$2-$1-$3" rev=() u0 s0 u1 s1 rp bytes gbps
  [[ -n "$RELAY_PID" ]] || return 0
  [[ "$d" == down ]] && rev=(-R)
  log "  profiling $c/$p/$d: perf record -g -p $RELAY_PID -> $PROFILE/$name.data"
  read -r u0 s0 < <(relay_ticks)
  perf record -q -g -p "$RELAY_PID" -o "$PROFILE/$name.data" -- sleep "$SECS" >"$PROFILE/$name.record.log" 2>&1 &
  rp=$!
  PERF_PID=$rp
  run_iperf "$p" "$c" "$TMP/iperf3-profile-$c-$p-$d.json" -t "$SECS" -P 1 "${rev[@]}"
  read -r u1 s1 < <(relay_ticks)
  wait "$rp" || fail "perf record $c/$p/$d failed: $(tail -3 "$PROFILE/$name.record.log")"
  PERF_PID=""
  bytes="$(jq -r '.end.sum_received.bytes // 0' "$TMP/iperf3-profile-$c-$p-$d.json" 2>/dev/null || echo 0)"
  gbps="$(jq -r '.end.sum_received.bits_per_second // 0' "$TMP/iperf3-profile-$c-$p-$d.json" 2>/dev/null || echo 0)"
  {
    printf '# %s/%s/%s: %s, one TCP stream, %ss, %.2f Gbit/s under perf\n' "$c" "$p" "$d" \
      "$([[ "$p" == crelay ]] && echo crelay || echo "$VETHD")" "$SECS" "$(awk -v b="$gbps" 'BEGIN {print b / 1e9}')"
    if [[ "$bytes" != 0 ]]; then
      printf '# /proc/PID/stat over the transfer: user %.2f s, system %.2f s = %s + %s CPU s/GB\n' \
        "$(awk -v t=$((u1 - u0)) -v hz="$CLK_TCK" 'BEGIN {print t / hz}')" \
        "$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" 'BEGIN {print t / hz}')" \
        "$(per_gb $((u1 - u0)) "$bytes")" "$(per_gb $((s1 - s0)) "$bytes")"
    fi
    echo '# samples by where they ran (kernel = [kernel.kallsyms])'
    perf report -i "$PROFILE/$name.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep . | head -8
    echo '# top symbols, self time'
    perf report -i "$PROFILE/$name.data" --stdio --no-children --sort dso,sym -g none --percent-limit 0.7 2>/dev/null |
      grep -v '^#' | grep . | head -45
    perf report -i "$PROFILE/$name.data" --stdio --children --sort sym -g none 2>/dev/null |
      grep -v '^#' | grep . >"$PROFILE/$name.children"
    echo '# top symbols, with callees (children, self)'
    awk '$1 + 0 >= 4' "$PROFILE/$name.children" | head -45
    echo '# where the time goes: selected entries, with callees (children, self)'
    grep -E "\] ($PROFILE_SYMS)\$" "$PROFILE/$name.children" || true
  } >"$PROFILE/$name.txt"
  log "  profile summary: $PROFILE/$name.txt"
}

# ------------------------------------------------------------------- run ---
START=$SECONDS
LOAD_START="$(loadavg)"
log "bench: $(nproc) cores, kernel $(uname -r), load average $LOAD_START"
log "bench: conditions: $CONDITIONS; paths: $PATHS; TCP streams: $STREAMS, ${SECS}s each; UDP ($UDP): $UDP_SIZES in $UDP_CONDITIONS, ${UDP_SECS}s each"
[[ -n "$STANDIN" ]] && log "bench: VETHD_STANDIN=macvlan: kernel macvlan plays vethd's part"
[[ -n "${VETHD:-}" ]] && log "bench: vethd binary $VETHD"
[[ -n "$VETH_ARGS" ]] && log "bench: the vethd-veth path runs with $VETH_ARGS"
for c in $CONDITIONS; do
  LOADAVG[$c]="$(loadavg)"
  setup_lan "$c"
  for p in $PATHS; do
    if ! path_up "$p" "$c"; then
      fail "$c/$p: could not bring the path up"
      path_down "$p" "$c" || true
      kill_wait "$RELAY_PID"; RELAY_PID=""
      continue
    fi
    measure_ping "$p" "$c"
    if [[ "$LATENCY" == 1 ]]; then
      measure_latency "$p" "$c" b2b
      measure_latency "$p" "$c" paced
    fi
    for s in $STREAMS; do
      for d in up down; do measure_tcp "$p" "$c" "$d" "$s"; done
    done
    if [[ "$UDP" == 1 ]] && in_list "$c" "$UDP_CONDITIONS"; then
      for l in $UDP_SIZES; do
        for d in up down; do measure_udp "$p" "$c" "$d" "$l"; done
      done
    fi
    if [[ -n "$PROFILE" ]]; then
      for d in up down; do in_list "$c/$p/$d" "$PROFILE_AT" && profile "$p" "$c" "$d"; done
    fi
    if [[ -n "$RELAY_PID" ]]; then
      RSS[$c,$p]="$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$RELAY_PID/status" 2>/dev/null || true)"
      HWM[$c,$p]="$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$RELAY_PID/status" 2>/dev/null || true)"
    fi
    path_down "$p" "$c"
  done
  log "  offloads ($c): ${OFFLOADS[$c]}"
  teardown_lan
done
# UDP conditions that were not measured
for c in $UDP_CONDITIONS; do in_list "$c" "$CONDITIONS" || log "bench: UDP condition $c is not in BENCH_CONDITIONS: skipped"; done

declare -A BRIDGES_LINE=()
if [[ "$RUN_BRIDGES" == 1 && -f "$ROOT/bench/bridges.sh" && -z "$STANDIN" ]]; then
  for kind in $BRIDGES_KINDS; do
    log "bench: bench/bridges.sh, Kind=$kind (BENCH_BRIDGES=0 skips it)"
    LOADAVG[bridges-$kind]="$(loadavg)"
    # in the foreground (not run): it traps SIGINT itself and cleans up
    rc=0
    BRIDGES_LOCKED=1 BRIDGES_KIND="$kind" VETHD="$VETHD" BENCH_SECONDS="$SECS" bash "$ROOT/bench/bridges.sh" >"$TMP/bridges-$kind.out" \
      2> >(tee "$TMP/bridges-$kind.log" >&2) || rc=$?
    [[ $rc -eq 130 || $rc -eq 143 ]] && exit "$rc"   # interrupted
    BRIDGES_LINE[$kind]="$(grep -m1 '^bridges ' "$TMP/bridges-$kind.out" || true)"
    if [[ $rc -ne 0 ]]; then
      fail "bench/bridges.sh (Kind=$kind) failed, status $rc (see $TMP/bridges-$kind.log)"
    elif [[ -z "${BRIDGES_LINE[$kind]}" ]]; then
      fail "bench/bridges.sh (Kind=$kind) printed no 'bridges ...' line (see $TMP/bridges-$kind.out)"
    fi
  done
elif [[ "$RUN_BRIDGES" == 1 && -z "$STANDIN" ]]; then
  log "bench: no bench/bridges.sh: no 64-bridge figures"
fi
ELAPSED=$((SECONDS - START))

# ---------------------------------------------------------------- report ---
# ratio A B: A/B to two places, or - when either is not a number
ratio() {
  if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'
  else echo -; fi
}
# delta A B: A-B in whole units with a sign, or -
delta() {
  if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]]; then awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.0f", a - b}'
  else echo -; fi
}
# cpu KEY: "total (user+sys)" CPU s/GB, or -
cpu() {
  if [[ -n "${CPUU[$1]:-}" ]]; then
    awk -v u="${CPUU[$1]}" -v s="${CPUS[$1]}" 'BEGIN {printf "%.2f (%.2f+%.2f)", u + s, u, s}'
  else echo -; fi
}
# mem COND PATH: "RSS (peak)" MiB of the relay on that path, or -
mem() { if [[ -n "${RSS[$1,$2]:-}" ]]; then echo "${RSS[$1,$2]} (${HWM[$1,$2]:-?})"; else echo -; fi; }
# lat COND PATH MODE FIELD(1 p50, 2 p99): the figure, or -
lat() { local v="${LAT[$1,$2,$3]:-}"; [[ -n "$v" && "$v" != fail ]] && awk -v f="$4" '{print $f}' <<<"$v" || echo -; }
# pps KEY: "kpps (loss %)", or -
pps() { if [[ "${PPS[$1]:-}" =~ ^[0-9]+$ ]]; then echo "${PPS[$1]} (${LOSS[$1]}%)"; else echo "${PPS[$1]:--}"; fi; }
# g KEY: Gbit/s, or -
g() { echo "${GBPS[$1]:--}"; }

report() {
  local c d s k m l
  printf '\n1. TCP throughput, Gbit/s (iperf3 receiver), %ss each; up = NIC -> LAN, down = LAN -> NIC;\n' "$SECS"
  printf '   P = parallel streams; vethd = TAP kind, vethd-veth = veth-pair kind, crelay = bench/crelay.c\n\n'
  printf '| %-9s | %-4s | %2s | %7s | %7s | %7s | %10s | %7s |\n' condition dir P wire macvlan vethd vethd-veth crelay
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------ ---: --------: --------: --------: -----------: --------:
  for c in $CONDITIONS; do for s in $STREAMS; do for d in up down; do
    printf '| %-9s | %-4s | %2s | %7s | %7s | %7s | %10s | %7s |\n' "$c" "$d" "$s" "$(g "$c,wire,$d,$s")" \
      "$(g "$c,macvlan,$d,$s")" "$(g "$c,vethd,$d,$s")" "$(g "$c,vethd-veth,$d,$s")" "$(g "$c,crelay,$d,$s")"
  done; done; done

  printf '\n2. TCP ratios in this run, and the relay'"'"'s CPU seconds per GB received: total (user+system)\n\n'
  printf '| %-9s | %-4s | %2s | %6s | %7s | %9s | %8s | %10s | %-17s | %-17s | %-17s |\n' \
    condition dir P tap/mv veth/mv crelay/mv tap/crel veth/crel "vethd s/GB" "vethd-veth s/GB" "crelay s/GB"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------ ---: -------: --------: ----------: ---------: -----------: ------------------- ------------------- -------------------
  for c in $CONDITIONS; do for s in $STREAMS; do for d in up down; do
    k="$d,$s"
    m="$(g "$c,macvlan,$k")"
    printf '| %-9s | %-4s | %2s | %6s | %7s | %9s | %8s | %10s | %-17s | %-17s | %-17s |\n' "$c" "$d" "$s" \
      "$(ratio "$(g "$c,vethd,$k")" "$m")" "$(ratio "$(g "$c,vethd-veth,$k")" "$m")" "$(ratio "$(g "$c,crelay,$k")" "$m")" \
      "$(ratio "$(g "$c,vethd,$k")" "$(g "$c,crelay,$k")")" "$(ratio "$(g "$c,vethd-veth,$k")" "$(g "$c,crelay,$k")")" \
      "$(cpu "$c,vethd,$k")" "$(cpu "$c,vethd-veth,$k")" "$(cpu "$c,crelay,$k")"
  done; done; done

  printf '\n2b. The whole machine'"'"'s busy CPU seconds per GB received (/proc/stat: all processes,\n'
  printf '    iperf3'"'"'s both ends, softirqs; where an in-kernel path spends its time), and the ratio to macvlan\n\n'
  printf '| %-9s | %-4s | %2s | %7s | %7s | %10s | %7s | %6s | %7s | %9s |\n' condition dir P macvlan vethd vethd-veth crelay tap/mv veth/mv crelay/mv
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------ ---: --------: --------: -----------: --------: -------: --------: ----------:
  for c in $CONDITIONS; do for s in $STREAMS; do for d in up down; do
    k="$d,$s"
    m="${MCPU[$c,macvlan,$k]:--}"
    printf '| %-9s | %-4s | %2s | %7s | %7s | %10s | %7s | %6s | %7s | %9s |\n' "$c" "$d" "$s" "$m" \
      "${MCPU[$c,vethd,$k]:--}" "${MCPU[$c,vethd-veth,$k]:--}" "${MCPU[$c,crelay,$k]:--}" \
      "$(ratio "${MCPU[$c,vethd,$k]:-}" "$m")" "$(ratio "${MCPU[$c,vethd-veth,$k]:-}" "$m")" "$(ratio "${MCPU[$c,crelay,$k]:-}" "$m")"
  done; done; done

  if [[ "$UDP" == 1 ]]; then
    printf '\n3. UDP, iperf3 -u -b %s -l SIZE, %ss each: thousands of datagrams per second received (loss %%),\n' "$UDP_RATE" "$UDP_SECS"
    printf '   ratios vs macvlan, the relay'"'"'s CPU microseconds per datagram received\n\n'
    printf '| %-9s | %4s | %-4s | %13s | %13s | %13s | %13s | %13s | %6s | %7s | %9s | %6s | %6s | %6s |\n' \
      condition size dir wire macvlan vethd vethd-veth crelay tap/mv veth/mv crelay/mv "tap us" "veth us" "cr us"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- -----: ------ --------------: --------------: --------------: --------------: --------------: -------: --------: ----------: -------: -------: -------:
    for c in $UDP_CONDITIONS; do in_list "$c" "$CONDITIONS" || continue; for l in $UDP_SIZES; do for d in up down; do
      k="$d,$l"
      printf '| %-9s | %4s | %-4s | %13s | %13s | %13s | %13s | %13s | %6s | %7s | %9s | %6s | %6s | %6s |\n' "$c" "$l" "$d" \
        "$(pps "$c,wire,$k")" "$(pps "$c,macvlan,$k")" "$(pps "$c,vethd,$k")" "$(pps "$c,vethd-veth,$k")" "$(pps "$c,crelay,$k")" \
        "$(ratio "${PPS[$c,vethd,$k]:-}" "${PPS[$c,macvlan,$k]:-}")" "$(ratio "${PPS[$c,vethd-veth,$k]:-}" "${PPS[$c,macvlan,$k]:-}")" \
        "$(ratio "${PPS[$c,crelay,$k]:-}" "${PPS[$c,macvlan,$k]:-}")" \
        "${UPP[$c,vethd,$k]:--}" "${UPP[$c,vethd-veth,$k]:--}" "${UPP[$c,crelay,$k]:--}"
    done; done; done
  fi

  if [[ "$LATENCY" == 1 ]]; then
    printf '\n4. Latency, bench/udpping round trips in microseconds: p50/p99 for wire and macvlan,\n'
    printf '   the others as added over macvlan (+p50/+p99); b2b = back to back for %ss, paced = %s round trips %s us apart\n\n' \
      "$LAT_SECS" "$LAT_COUNT" "$LAT_IV"
    printf '| %-9s | %-6s | %11s | %11s | %11s | %11s | %11s | %9s |\n' condition mode wire macvlan "vethd +" "vethd-veth +" "crelay +" "n (mv)"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- -------- ------------: ------------: ------------: -------------: ------------: ----------:
    for c in $CONDITIONS; do for m in b2b paced; do
      local row=() pth
      for pth in wire macvlan; do row+=("$(lat "$c" "$pth" "$m" 1)/$(lat "$c" "$pth" "$m" 2)"); done
      for pth in vethd vethd-veth crelay; do
        row+=("$(delta "$(lat "$c" "$pth" "$m" 1)" "$(lat "$c" macvlan "$m" 1)")/$(delta "$(lat "$c" "$pth" "$m" 2)" "$(lat "$c" macvlan "$m" 2)")")
      done
      printf '| %-9s | %-6s | %11s | %11s | %11s | %11s | %11s | %9s |\n' "$c" "$m" "${row[@]}" "$(lat "$c" macvlan "$m" 3)"
    done; done
  fi

  printf '\n5. ping -c %s -i %s average round trip (us), and the relays'"'"' memory: VmRSS (VmHWM) MiB after the traffic\n\n' "$PINGS" "$PING_INTERVAL"
  printf '| %-9s | %5s | %7s | %5s | %10s | %6s | %13s | %13s | %13s |\n' condition wire macvlan vethd vethd-veth crelay "vethd RSS" "vethd-veth RSS" "crelay RSS"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------: --------: ------: -----------: -------: --------------: --------------: --------------:
  for c in $CONDITIONS; do
    printf '| %-9s | %5s | %7s | %5s | %10s | %6s | %13s | %13s | %13s |\n' "$c" "${RTT[$c,wire]:--}" "${RTT[$c,macvlan]:--}" \
      "${RTT[$c,vethd]:--}" "${RTT[$c,vethd-veth]:--}" "${RTT[$c,crelay]:--}" "$(mem "$c" vethd)" "$(mem "$c" vethd-veth)" "$(mem "$c" crelay)"
  done

  for kind in $BRIDGES_KINDS; do
    [[ -n "${BRIDGES_LINE[$kind]:-}" ]] || continue
    printf '\n6%s. Many bridges of Kind=%s in one vethd --all (bench/bridges.sh; load average before it %s)\n\n' \
      "$([[ $kind == veth ]] && echo b)" "$kind" "${LOADAVG[bridges-$kind]}"
    awk '{printf "| %-20s | %s |\n|----------------------|------:|\n", "figure", "value";
          for (i = 2; i <= NF; i++) {split($i, kv, "="); printf "| %-20s | %s |\n", kv[1], kv[2]}}' <<<"${BRIDGES_LINE[$kind]}"
  done

  printf '\nWire offloads per condition (ethtool -k; the upper interfaces as created):\n'
  for c in $CONDITIONS; do printf '  %-9s %s\n' "$c" "${OFFLOADS[$c]}"; done
  printf '\nLoad average: at the start %s;' "$LOAD_START"
  for c in $CONDITIONS; do printf ' before %s %s;' "$c" "${LOADAVG[$c]}"; done
  printf ' at the end %s\n' "$(loadavg)"
  printf '%s cores, kernel %s, vethd %s, %ss in all%s\n' "$(nproc)" "$(uname -r)" "${VETHD:--}" "$ELAPSED" \
    "$([[ -n "$STANDIN" ]] && echo ', VETHD_STANDIN=macvlan')"
  if [[ -n "$PROFILE" ]]; then printf 'Profiles: %s\n' "$PROFILE"; fi
}
if [[ -n "${BENCH_OUT:-}" ]]; then report | tee "$BENCH_OUT"; else report; fi

if ((FAILURES)); then
  log "bench: $FAILURES measurement(s) failed"
  exit 1
fi
