#!/usr/bin/env bash
# bench/run.sh - vethd against kernel macvlan and the bare veth wire.
#
# Run as root. One run measures, on a namespace LAN this script builds and
# removes (also on failure or Ctrl-C):
#   paths       wire     the bare veth wire: the address sits on the parent eth0
#               macvlan  kernel macvlan (mode bridge) mv0 on eth0
#               vethd    vethd's TAP veth1 on eth0 (--kind=tap)
#               vethd-veth  vethd's veth-pair NIC veth1 on eth0 (--kind=veth)
#   directions  up   = host -> LAN (iperf3 client sends)
#               down = LAN -> host (iperf3 -R)
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
# Each path is measured alone: only its interface holds an address in the host
# namespace, and the macvlan / vethd interface exists only while it is
# measured. One iperf3 stream, BENCH_SECONDS each. Also: vethd's CPU seconds
# (utime+stime from /proc/PID/stat) per GB of TCP payload moved, its VmRSS and
# VmHWM, and the round-trip time of ping -c 50 -i 0.01 through each path.
#
# Environment (all optional):
#   BENCH_SECONDS=5                        iperf3 duration per measurement
#   BENCH_CONDITIONS="default nic-like mtu-nogro"
#   BENCH_ONLY="wire macvlan vethd vethd-veth"  paths to measure (e.g. BENCH_ONLY=vethd)
#   BENCH_PINGS=50                         ping count per path
#   BENCH_PING_INTERVAL=0.01               seconds between pings (0 = flood-like)
#   BENCH_OUT=FILE                         also write the result tables to FILE
#   VETHD=/path/to/vethd                   use this binary instead of building bin/vethd
#   VETHD_STANDIN=macvlan                  a second kernel macvlan plays vethd's
#                                          part (to develop or check this script)
#   BENCH_KEEP_LOGS=1                      keep the temporary directory with the logs
#
# Safety: every interface is created inside a namespace (vb-PID-lan,
# vb-PID-host), addresses come only from 198.18.0.0/15, there is no default
# route, and iperf3 listens only inside the LAN namespace.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # kill_wait, remove_netns, missing_packages, apt_install
SECS="${BENCH_SECONDS:-5}"
CONDITIONS="${BENCH_CONDITIONS:-default nic-like mtu-nogro}"
PATHS="${BENCH_ONLY:-wire macvlan vethd vethd-veth}"
PATHS="${PATHS//,/ }"
CONDITIONS="${CONDITIONS//,/ }"
PINGS="${BENCH_PINGS:-50}"
PING_INTERVAL="${BENCH_PING_INTERVAL:-0.01}"
STANDIN="${VETHD_STANDIN:-}"

LAN="vb-$$-lan"
HOST="vb-$$-host"
LAN_IP=198.18.0.1
declare -A SRC=([wire]=198.18.0.2 [macvlan]=198.18.0.3 [vethd]=198.18.0.4 [vethd-veth]=198.18.0.5)
LAN_IP6=2001:db8::1
declare -A SRC6=([wire]=2001:db8::2 [macvlan]=2001:db8::3 [vethd]=2001:db8::4 [vethd-veth]=2001:db8::5)
BIG_TCP_SIZE=185000
declare -A DEV=([wire]=eth0 [macvlan]=mv0 [vethd]=veth1 [vethd-veth]=veth1)
declare -A KIND=([vethd]=tap [vethd-veth]=veth)
is_vethd() { [[ "$1" == vethd || "$1" == vethd-veth ]]; }
IPERF_PORT=5201

TMP=""
VETHD_PID=""
IPERF_PID=""
FAILURES=0
declare -A GBPS=() CPU=() RTT=() RSS=() HWM=() OFFLOADS=()

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }
fail() { log "  FAIL: $*"; FAILURES=$((FAILURES + 1)); }

[[ "$SECS" =~ ^[0-9]+$ && "$SECS" -ge 1 ]] || die "BENCH_SECONDS must be a whole number >= 1"
[[ "$PINGS" =~ ^[0-9]+$ && "$PINGS" -ge 1 ]] || die "BENCH_PINGS must be a whole number >= 1"
[[ "$PING_INTERVAL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "BENCH_PING_INTERVAL must be a number of seconds"
for c in $CONDITIONS; do
  case "$c" in default|nic-like|mtu-nogro|big-tcp) ;; *) die "unknown condition '$c'";; esac
done
for p in $PATHS; do
  case "$p" in wire|macvlan|vethd|vethd-veth) ;; *) die "unknown path '$p' in BENCH_ONLY";; esac
done
[[ -z "$STANDIN" || "$STANDIN" == macvlan ]] || die "VETHD_STANDIN must be 'macvlan'"
[[ $(id -u) -eq 0 ]] || die "needs root (try: sudo $0)"

# --------------------------------------------------------------- cleanup ---
teardown_lan() {
  kill_wait "$VETHD_PID"; VETHD_PID=""
  kill_wait "$IPERF_PID"; IPERF_PID=""
  remove_netns "$HOST" "$LAN"
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

# ----------------------------------------------------------------- tools ---
# iperf3's debconf default: no system daemon
mapfile -t need < <(missing_packages ip=iproute2 ping=iputils-ping iperf3=iperf3 ethtool=ethtool jq=jq sysctl=procps)
if ((${#need[@]})); then
  log "bench: installing ${need[*]}"
  apt_install "${need[@]}" || die "could not install ${need[*]}"
fi

TMP="$(mktemp -d /tmp/vethd-bench.XXXXXX)"
CLK_TCK="$(getconf CLK_TCK)"

if [[ " $PATHS " == *" vethd"* && -z "$STANDIN" ]]; then
  if [[ -n "${VETHD:-}" ]]; then
    [[ -x "$VETHD" ]] || die "VETHD=$VETHD is not an executable"
  else
    GO="$(command -v go || true)"
    for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do
      [[ -z "$GO" && -x "$g" ]] && GO="$g"
    done
    VETHD="$ROOT/bin/vethd"
    if [[ -n "$GO" ]]; then
      log "bench: go build -o bin/vethd ./cmd/vethd"
      (cd "$ROOT" && "$GO" build -o bin/vethd ./cmd/vethd) >&2 || die "go build failed"
    elif [[ ! -x "$VETHD" ]]; then
      die "no Go toolchain and no bin/vethd"
    fi
  fi
fi

# ------------------------------------------------------------------ LAN ----
in_host() { ip netns exec "$HOST" "$@"; }
in_lan()  { ip netns exec "$LAN" "$@"; }
mac_in_host() { ip -n "$HOST" -o link show dev "$1" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }

feat() { # NS DEV: one-line summary of the offloads that matter here
  ip netns exec "$1" ethtool -k "$2" 2>/dev/null | awk -v d="$2" '
    /^tx-checksumming:/ {t=$2} /^tcp-segmentation-offload:/ {s=$2}
    /^generic-segmentation-offload:/ {g=$2} /^generic-receive-offload:/ {r=$2}
    END {printf "%s tx=%s tso=%s gso=%s gro=%s", d, t, s, g, r}'
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
  # No sysctls: each path holds the only address in the host namespace while
  # it is measured, and measure_ping checks that the LAN sees its MAC.
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
  local bind=$LAN_IP
  [[ "$1" == big-tcp ]] && bind=$LAN_IP6
  in_lan iperf3 -s -B "$bind" -p "$IPERF_PORT" --idle-timeout 60 >"$TMP/iperf3-server-$1.log" 2>&1 &
  IPERF_PID=$!
  local n=50
  until in_lan ss -Hltn "sport = :$IPERF_PORT" | grep -q .; do
    ((n-- > 0)) || die "iperf3 server did not start"
    kill -0 "$IPERF_PID" 2>/dev/null || die "iperf3 server exited: $(cat "$TMP/iperf3-server-$1.log")"
    sleep 0.1
  done
}

path_up() { # PATH COND: create the path's interface and give it the address
  local dev=${DEV[$1]} n
  case "$1" in
    wire) ;;
    macvlan)
      ip -n "$HOST" link add mv0 link eth0 type macvlan mode bridge || return 1
      ip -n "$HOST" link set mv0 up || return 1 ;;
    vethd|vethd-veth)
      if [[ -n "$STANDIN" ]]; then
        ip -n "$HOST" link add veth1 link eth0 type macvlan mode bridge || return 1
        ip -n "$HOST" link set veth1 up || return 1
      else
        ip netns exec "$HOST" "$VETHD" -v veth1 -e eth0 --kind="${KIND[$1]}" 2>"$TMP/vethd-$2.log" &
        VETHD_PID=$!   # `ip netns exec` execs: this is vethd's own PID
        n=100
        until grep -q 'Attached veth1 into eth0' "$TMP/vethd-$2.log"; do
          kill -0 "$VETHD_PID" 2>/dev/null || { cat "$TMP/vethd-$2.log" >&2; VETHD_PID=""; return 1; }
          ((n-- > 0)) || { cat "$TMP/vethd-$2.log" >&2; return 1; }
          sleep 0.1
        done
      fi ;;
  esac
  # (called from an `if`, so errexit is off in here: check each step)
  ip -n "$HOST" addr add "${SRC[$1]}/24" dev "$dev" || return 1
  ip -n "$HOST" addr add "${SRC6[$1]}/64" dev "$dev" nodad || return 1
  ip -n "$LAN" neigh flush dev lan0 || return 1
  # the upper interfaces' offloads, for the record
  [[ "$1" == wire ]] || OFFLOADS[$2]+="; $(feat "$HOST" "$dev")"
}

path_down() { # PATH COND
  local rc=0
  case "$1" in
    wire) ip -n "$HOST" addr del "${SRC[wire]}/24" dev eth0
          ip -n "$HOST" addr del "${SRC6[wire]}/64" dev eth0 ;;
    macvlan) ip -n "$HOST" link del mv0 ;;
    vethd|vethd-veth)
      if [[ -n "$STANDIN" ]]; then
        ip -n "$HOST" link del veth1
      elif [[ -n "$VETHD_PID" ]]; then
        kill -TERM "$VETHD_PID"
        local n=30
        while kill -0 "$VETHD_PID" 2>/dev/null && ((n-- > 0)); do sleep 0.1; done
        if kill -0 "$VETHD_PID" 2>/dev/null; then
          fail "vethd still running 3 s after SIGTERM ($2)"
          kill_wait "$VETHD_PID"
        fi
        wait "$VETHD_PID" || rc=$?
        [[ $rc -eq 0 ]] || fail "vethd exited with status $rc after SIGTERM ($2)"
        VETHD_PID=""
        local l
        for l in veth1 vd-veth1; do
          if ip -n "$HOST" link show "$l" >/dev/null 2>&1; then
            fail "$l still exists after vethd exited ($2/$1)"
            ip -n "$HOST" link del "$l" 2>/dev/null || true
          fi
        done
      fi ;;
  esac
}

proc_cpu_ticks() { # PID: utime+stime in clock ticks (fields 14, 15; comm may hold spaces)
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
  s="${s##*) }"
  awk '{print $12 + $13}' <<<"$s"
}

measure_ping() { # PATH COND
  local out avg limit
  limit="$(awk -v n="$PINGS" -v i="$PING_INTERVAL" 'BEGIN {printf "%d", n * (i + 0.001) * 3 + 10}')"
  out="$(timeout --foreground "$limit" ip netns exec "$HOST" ping -q -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 \
           -I "${DEV[$1]}" "$LAN_IP" 2>&1)" || { fail "ping via $1 ($2): $out"; RTT[$2,$1]=fail; return; }
  avg="$(awk -F'/' '/^(rtt|round-trip)/ {print $5 * 1000}' <<<"$out")"
  RTT[$2,$1]="${avg:-fail}"
  # the LAN must see the path's own MAC, or the traffic did not take this path
  local mac lmac
  mac="$(mac_in_host "${DEV[$1]}")"
  lmac="$(ip -n "$LAN" neigh show "${SRC[$1]}" dev lan0 | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p')"
  [[ "$lmac" == "$mac" ]] || fail "$2/$1: the LAN sees ${SRC[$1]} at '$lmac', not at ${DEV[$1]}'s $mac"
}

measure_iperf() { # PATH COND DIR
  local p=$1 c=$2 d=$3 json="$TMP/iperf3-$2-$1-$3.json" t0=0 t1=0 rev=() bps bytes err retr
  local dst=$LAN_IP src=${SRC[$p]}
  [[ "$c" == big-tcp ]] && { dst=$LAN_IP6; src=${SRC6[$p]}; }
  [[ "$d" == down ]] && rev=(-R)
  is_vethd "$p" && [[ -n "$VETHD_PID" ]] && t0="$(proc_cpu_ticks "$VETHD_PID")"
  timeout --foreground $((SECS + 20)) ip netns exec "$HOST" iperf3 -c "$dst" -p "$IPERF_PORT" \
    -B "$src" -t "$SECS" -P 1 --connect-timeout 3000 -J "${rev[@]}" >"$json" 2>&1 || true
  is_vethd "$p" && [[ -n "$VETHD_PID" ]] && t1="$(proc_cpu_ticks "$VETHD_PID")"
  err="$(jq -r '.error // empty' "$json" 2>/dev/null || echo "no JSON from iperf3")"
  bps="$(jq -r '.end.sum_received.bits_per_second // empty' "$json" 2>/dev/null || true)"
  bytes="$(jq -r '.end.sum_received.bytes // empty' "$json" 2>/dev/null || true)"
  retr="$(jq -r '.end.sum_sent.retransmits // "?"' "$json" 2>/dev/null || true)"
  if [[ -n "$err" || -z "$bps" || -z "$bytes" || "$bytes" == 0 ]]; then
    fail "iperf3 $c/$p/$d: ${err:-no bytes received} (see $json)"
    GBPS[$c,$p,$d]=fail
    return
  fi
  GBPS[$c,$p,$d]="$(awk -v b="$bps" 'BEGIN {printf "%.2f", b / 1e9}')"
  if is_vethd "$p" && [[ -n "$VETHD_PID" ]]; then
    CPU[$c,$p,$d]="$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v by="$bytes" \
                   'BEGIN {printf "%.2f", (t / hz) / (by / 1e9)}')"
  fi
  log "  $(printf '%-9s %-7s %-4s %6s Gbit/s %6s retransmits' "$c" "$p" "$d" "${GBPS[$c,$p,$d]}" "$retr")${CPU[$c,$p,$d]:+  vethd ${CPU[$c,$p,$d]} CPU s/GB}"
}

# ------------------------------------------------------------------- run ---
START=$SECONDS
log "bench: $(nproc) cores, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "bench: conditions: $CONDITIONS; paths: $PATHS; ${SECS}s per iperf3 run"
[[ -n "$STANDIN" ]] && log "bench: VETHD_STANDIN=macvlan: kernel macvlan plays vethd's part"
for c in $CONDITIONS; do
  setup_lan "$c"
  for p in $PATHS; do
    if ! path_up "$p" "$c"; then
      fail "$c/$p: could not bring the path up"
      for d in up down; do GBPS[$c,$p,$d]=fail; done
      RTT[$c,$p]=fail
      path_down "$p" "$c" || true
      continue
    fi
    measure_ping "$p" "$c"
    measure_iperf "$p" "$c" up
    measure_iperf "$p" "$c" down
    if is_vethd "$p" && [[ -n "$VETHD_PID" ]]; then
      RSS[$c,$p]="$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$VETHD_PID/status" 2>/dev/null || true)"
      HWM[$c,$p]="$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$VETHD_PID/status" 2>/dev/null || true)"
    fi
    path_down "$p" "$c"
  done
  log "  offloads ($c): ${OFFLOADS[$c]}"
  teardown_lan
done
ELAPSED=$((SECONDS - START))

# ---------------------------------------------------------------- report ---
report() {
  local c d w m v x
  printf '\nThroughput, Gbit/s, one TCP stream, %ss each (up = host->LAN, down = LAN->host);\n' "$SECS"
  printf 'vethd = the TAP kind, vethd-veth = the veth-pair kind; ratios against macvlan\n\n'
  printf '| %-9s | %-4s | %7s | %7s | %7s | %10s | %7s | %7s | %8s | %9s |\n' \
    condition dir wire macvlan vethd vethd-veth tap/mv veth/mv "tap s/GB" "veth s/GB"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------ --------: --------: --------: -----------: --------: --------: ---------: ----------:
  for c in $CONDITIONS; do
    for d in up down; do
      w="${GBPS[$c,wire,$d]:--}"; m="${GBPS[$c,macvlan,$d]:--}"
      v="${GBPS[$c,vethd,$d]:--}"; x="${GBPS[$c,vethd-veth,$d]:--}"
      printf '| %-9s | %-4s | %7s | %7s | %7s | %10s | %7s | %7s | %8s | %9s |\n' "$c" "$d" "$w" "$m" "$v" "$x" \
        "$(ratio "$v" "$m")" "$(ratio "$x" "$m")" "${CPU[$c,vethd,$d]:--}" "${CPU[$c,vethd-veth,$d]:--}"
    done
  done
  printf '\nLatency: ping -c %s -i %s, average round trip in microseconds; vethd memory\n\n' "$PINGS" "$PING_INTERVAL"
  printf '| %-9s | %6s | %7s | %6s | %10s | %8s | %9s | %16s | %16s |\n' \
    condition wire macvlan vethd vethd-veth "tap - mv" "veth - mv" "tap RSS (peak)" "veth RSS (peak)"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- -------: --------: -------: -----------: ---------: ----------: -----------------: -----------------:
  for c in $CONDITIONS; do
    w="${RTT[$c,wire]:--}"; m="${RTT[$c,macvlan]:--}"; v="${RTT[$c,vethd]:--}"; x="${RTT[$c,vethd-veth]:--}"
    printf '| %-9s | %6s | %7s | %6s | %10s | %8s | %9s | %16s | %16s |\n' "$c" "$w" "$m" "$v" "$x" \
      "$(delta "$v" "$m")" "$(delta "$x" "$m")" "$(mem "$c" vethd)" "$(mem "$c" vethd-veth)"
  done
  printf '\nWire offloads per condition (ethtool -k; veth1/mv0 as created):\n'
  for c in $CONDITIONS; do printf '  %-9s %s\n' "$c" "${OFFLOADS[$c]}"; done
  printf '\n%s cores, kernel %s, load average at the end %s, %ss in all%s\n' \
    "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$ELAPSED" \
    "$([[ -n "$STANDIN" ]] && echo ', VETHD_STANDIN=macvlan')"
}
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
# mem COND PATH: "RSS MiB (peak)" of vethd on that path, or -
mem() { if [[ -n "${RSS[$1,$2]:-}" ]]; then echo "${RSS[$1,$2]} MiB (${HWM[$1,$2]:-?})"; else echo -; fi; }
if [[ -n "${BENCH_OUT:-}" ]]; then report | tee "$BENCH_OUT"; else report; fi

if ((FAILURES)); then
  log "bench: $FAILURES measurement(s) failed"
  exit 1
fi
