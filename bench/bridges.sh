#!/usr/bin/env bash
# bench/bridges.sh - what many idle bridges cost in one `vethd --all`.
#
# Run as root. On a namespace LAN this script builds and removes (also on
# failure or Ctrl-C):
#   1. single  `vethd --all` with ONE configuration file (veth1, Parent=eth0):
#              iperf3 through veth1, both directions (BRIDGES_REPEAT times
#              each, medians); CPU s/GB, RSS under load.
#   2. many    `vethd --all` with BRIDGES files (veth1..vethN, all Parent=eth0,
#              all in one process): once every bridge is attached and the
#              start-up chatter (IPv6 router solicitations, MLD reports of N
#              new interfaces, each seen by the N-1 others) has died down
#              (BRIDGES_SETTLE seconds), the process's CPU (utime+stime from
#              /proc/PID/stat) and wake-ups (voluntary context switches of
#              all its threads) over BRIDGES_IDLE_SECONDS, and its VmRSS and
#              VmHWM; then the same iperf3 transfers through veth1 (the only
#              interface with an address) while the other N-1 bridges idle,
#              and the RSS under that load.
# The single bridge runs first and is gone before the many start; both use
# the same binary, the same LAN and the same persistent MAC for veth1.
#
# Output: a table for people on stderr (with progress), and ONE line on
# stdout for bench/run.sh (key=value, numbers without units, "-" if missing):
#   bridges n=64 kind=tap idle_seconds=30 idle_cpu_pct=… user_pct=… sys_pct=…
#           wakeups_per_s=… wire_fps=… rss_mib=… rss_per_bridge_mib=… hwm_mib=…
#           single_gbps=… loaded_gbps=… loaded_ratio=…            (up: host -> LAN)
#           single_down_gbps=… loaded_down_gbps=… loaded_down_ratio=…  (down: LAN -> host)
#           single_rss_mib=… loaded_rss_mib=… loaded_hwm_mib=…
#   idle_cpu_pct is % of ONE CPU for the whole process (all N bridges);
#   wire_fps the frames a second on the parent during the idle window (the
#   new interfaces' IPv6 router solicitations and MLD reports, which every
#   other bridge relays: the idle figure includes that traffic).
#
# Environment (all optional):
#   BRIDGES=64                 bridges in the `vethd --all` (alias BENCH_BRIDGES_N)
#   BRIDGES_KIND=tap           tap or veth (Kind= of every file)
#   BRIDGES_IDLE_SECONDS=30    idle window (alias BENCH_IDLE_SECONDS)
#   BRIDGES_SETTLE=10          seconds between "all attached" and the idle window
#   BRIDGES_NO_LOAD=1          only the idle figures (no iperf3, no single bridge)
#   BENCH_SECONDS=5            iperf3 duration per transfer
#   BRIDGES_REPEAT=3           transfers each way per phase (alternating up
#                              and down); the figures are their medians
#   VETHD=/path/to/vethd       the binary (default: bin/vethd, built as the package builds it)
#   BENCH_KEEP_LOGS=1          keep the temporary directory with logs and configs
#   BRIDGES_LOCKED=1           the caller holds /tmp/vethd-bench.lock and
#                              /tmp/vethd-root-tests.lock (bench/run.sh does;
#                              also detected when an ancestor process holds
#                              both). Otherwise this script takes them itself,
#                              the bench lock first.
#
# Safety: every interface is created inside a namespace (vbb-PID-lan,
# vbb-PID-host), addresses come only from 198.18.0.0/15, there is no default
# route, and iperf3 listens only inside the LAN namespace.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # kill_wait, remove_netns, missing_packages, apt_install

N="${BRIDGES:-${BENCH_BRIDGES_N:-64}}"
KIND="${BRIDGES_KIND:-tap}"
IDLE="${BRIDGES_IDLE_SECONDS:-${BENCH_IDLE_SECONDS:-30}}"
SETTLE="${BRIDGES_SETTLE:-10}"
SECS="${BENCH_SECONDS:-5}"
NO_LOAD="${BRIDGES_NO_LOAD:-}"
REPEAT="${BRIDGES_REPEAT:-3}"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "bridges: BRIDGES_REPEAT must be a positive number, not '$REPEAT'" >&2; exit 2; }

LAN="vbb-$$-lan"
HOST="vbb-$$-host"
LAN_IP=198.18.0.1
SRC_IP=198.18.0.4
IPERF_PORT=5201
BENCH_LOCK=/tmp/vethd-bench.lock
ROOT_LOCK=/tmp/vethd-root-tests.lock

TMP=""
VETHD_PID=""
IPERF_PID=""
FAILURES=0
declare -A R=()   # the figures, by the key of the stdout line

log() { printf '%s\n' "$*" >&2; }
die() { log "bridges: $*"; exit 1; }
fail() { log "  FAIL: $*"; FAILURES=$((FAILURES + 1)); }

for v in N IDLE SETTLE SECS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
((N >= 1 && N <= 4000)) || die "BRIDGES must be 1..4000"
((IDLE >= 1)) || die "BRIDGES_IDLE_SECONDS must be >= 1"
((SECS >= 1)) || die "BENCH_SECONDS must be >= 1"
[[ "$KIND" == tap || "$KIND" == veth ]] || die "BRIDGES_KIND must be tap or veth"
[[ $(id -u) -eq 0 ]] || die "needs root (try: sudo $0)"

# ----------------------------------------------------------------- locks ---
# ancestor_holds FILE: whether a process above this one holds a lock on FILE
# (flock FILE bench/run.sh …: flock is an ancestor).
ancestor_holds() {
  local ino pid holders
  [[ -e "$1" ]] || return 1
  ino="$(stat -c %i "$1")"
  holders=" $(awk -v i=":$ino\$" '$0 ~ /FLOCK/ && $6 ~ i {print $5}' /proc/locks | tr '\n' ' ') "
  pid=$PPID
  while [[ -n "$pid" && "$pid" -gt 1 ]]; do
    [[ "$holders" == *" $pid "* ]] && return 0
    pid="$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
  done
  return 1
}
if [[ -z "${BRIDGES_LOCKED:-}" ]] && ! { ancestor_holds "$BENCH_LOCK" && ancestor_holds "$ROOT_LOCK"; }; then
  exec 8>>"$BENCH_LOCK"
  log "bridges: waiting for $BENCH_LOCK"
  flock 8
  exec 9>>"$ROOT_LOCK"
  log "bridges: waiting for $ROOT_LOCK"
  flock 9
fi

# --------------------------------------------------------------- cleanup ---
stop_vethd() { # quietly; vethd removes its interfaces on SIGTERM
  if [[ -n "$VETHD_PID" ]]; then
    kill_wait "$VETHD_PID" 5
    wait "$VETHD_PID" 2>/dev/null || true
    VETHD_PID=""
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT
  trap "" INT TERM   # finish cleaning up even if interrupted again
  set +e
  stop_vethd
  kill_wait "$IPERF_PID"; IPERF_PID=""
  remove_netns "$HOST" "$LAN"
  if [[ -n "$TMP" ]]; then
    if [[ $rc -ne 0 || $FAILURES -ne 0 || -n "${BENCH_KEEP_LOGS:-}" ]]; then
      log "bridges: logs kept in $TMP"
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
mapfile -t need < <(missing_packages ip=iproute2 iperf3=iperf3 jq=jq ping=iputils-ping)
if ((${#need[@]})); then
  log "bridges: installing ${need[*]}"
  apt_install "${need[@]}" || die "could not install ${need[*]}"
fi

TMP="$(mktemp -d /tmp/vethd-bridges.XXXXXX)"
CLK_TCK="$(getconf CLK_TCK)"

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

# ------------------------------------------------------------------ LAN ----
in_host() { ip netns exec "$HOST" "$@"; }
in_lan()  { ip netns exec "$LAN" "$@"; }

setup_lan() {
  ip netns add "$LAN"
  ip netns add "$HOST"
  # the wire: a veth pair created inside the namespaces, never in the root one
  ip -n "$HOST" link add eth0 type veth peer name lan0 netns "$LAN"
  ip -n "$LAN"  link set lo up
  ip -n "$HOST" link set lo up
  ip -n "$LAN"  addr add "$LAN_IP/24" dev lan0
  ip -n "$LAN"  link set lan0 up
  ip -n "$HOST" link set eth0 up
  [[ -n "$NO_LOAD" ]] && return
  in_lan iperf3 -s -B "$LAN_IP" -p "$IPERF_PORT" --idle-timeout 300 >"$TMP/iperf3-server.log" 2>&1 &
  IPERF_PID=$!
  local n=50
  until in_lan ss -Hltn "sport = :$IPERF_PORT" | grep -q .; do
    ((n-- > 0)) || die "iperf3 server did not start"
    kill -0 "$IPERF_PID" 2>/dev/null || die "iperf3 server exited: $(cat "$TMP/iperf3-server.log")"
    sleep 0.1
  done
}

# write_configs DIR COUNT: veth1.conf … vethCOUNT.conf
write_configs() {
  local i
  mkdir -p "$1"
  for ((i = 1; i <= $2; i++)); do
    printf '[Bridge]\nParent=eth0\nKind=%s\n' "$KIND" >"$1/veth$i.conf"
  done
}

# start_all DIR COUNT TAG: `vethd --all --config-dir DIR` in the host
# namespace, waiting until COUNT bridges are attached.
start_all() {
  local dir=$1 count=$2 logf="$TMP/vethd-$3.log" n=$(( 60 + $2 )) got=0
  ip netns exec "$HOST" "$VETHD" --all --config-dir "$dir" 2>"$logf" 8>&- 9>&- &
  VETHD_PID=$!   # `ip netns exec` execs: this is vethd's own PID
  n=$((n * 5))
  while :; do
    got="$(grep -c 'Attached veth[0-9]* into eth0 mac=.* mtu=' "$logf" || true)"
    ((got >= count)) && break
    kill -0 "$VETHD_PID" 2>/dev/null || { tail -20 "$logf" >&2; VETHD_PID=""; return 1; }
    ((n-- > 0)) || { log "  only $got of $count bridges attached"; tail -20 "$logf" >&2; return 1; }
    sleep 0.2
  done
  local missing=0 i
  for ((i = 1; i <= count; i++)); do
    ip -n "$HOST" link show "veth$i" >/dev/null 2>&1 || missing=$((missing + 1))
  done
  ((missing == 0)) || { log "  $missing of $count interfaces missing"; return 1; }
}

proc_ticks() { # PID: "utime stime" in clock ticks (fields 14, 15; comm may hold spaces)
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo "0 0"; return; }
  s="${s##*) }"
  awk '{print $12, $13}' <<<"$s"
}

proc_wakeups() { # PID: voluntary context switches summed over its threads
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches:/ {s += $2} END {print s + 0}'
}

proc_mem() { # PID KEY: VmRSS or VmHWM in MiB
  awk -v k="$2:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true
}

wire_frames() { # frames the parent eth0 received and sent
  ip -n "$HOST" -s -j link show dev eth0 | jq '.[0].stats64 | .rx.packets + .tx.packets'
}

# measure_idle PID: CPU and wake-ups over IDLE seconds, and the frames on
# the wire meanwhile (the interfaces' own IPv6 chatter: router
# solicitations and MLD reports, each relayed to the N-1 other bridges)
measure_idle() {
  local pid=$1 u0 s0 u1 s1 w0 w1 t0 t1 wall f0 f1
  read -r u0 s0 < <(proc_ticks "$pid")
  w0="$(proc_wakeups "$pid")"
  f0="$(wire_frames)"
  t0="$(date +%s.%N)"
  sleep "$IDLE"
  read -r u1 s1 < <(proc_ticks "$pid")
  w1="$(proc_wakeups "$pid")"
  f1="$(wire_frames)"
  t1="$(date +%s.%N)"
  kill -0 "$pid" 2>/dev/null || { fail "vethd exited during the idle window"; return 1; }
  wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')"
  R[idle_cpu_pct]="$(awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN {printf "%.2f", (u + s) / hz / w * 100}')"
  R[user_pct]="$(awk -v u=$((u1 - u0)) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN {printf "%.2f", u / hz / w * 100}')"
  R[sys_pct]="$(awk -v s=$((s1 - s0)) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN {printf "%.2f", s / hz / w * 100}')"
  R[wakeups_per_s]="$(awk -v a="$w0" -v b="$w1" -v w="$wall" 'BEGIN {printf "%.1f", (b - a) / w}')"
  R[wire_fps]="$(awk -v a="$f0" -v b="$f1" -v w="$wall" 'BEGIN {printf "%.1f", (b - a) / w}')"
  R[threads]="$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")"
  R[rss_mib]="$(proc_mem "$pid" VmRSS)"
  R[hwm_mib]="$(proc_mem "$pid" VmHWM)"
  R[rss_per_bridge_mib]="$(awk -v r="${R[rss_mib]}" -v n="$N" 'BEGIN {printf "%.2f", r / n}')"
}

# iperf PID DIR TAG: one transfer through veth1 (up = host -> LAN, -R =
# down); sets GB (Gbit/s) and CPU_S_GB (vethd's CPU seconds per GB), "-" if
# it failed
iperf() {
  GB=-; CPU_S_GB=-
  local pid=$1 d=$2 json="$TMP/iperf3-$3-$2.json" rev=() t0 t1 u s bps bytes err
  [[ "$d" == down ]] && rev=(-R)
  read -r u s < <(proc_ticks "$pid"); t0=$((u + s))
  timeout --foreground $((SECS + 20)) ip netns exec "$HOST" iperf3 -c "$LAN_IP" -p "$IPERF_PORT" \
    -B "$SRC_IP" -t "$SECS" -P 1 --connect-timeout 3000 -J "${rev[@]}" >"$json" 2>&1 || true
  read -r u s < <(proc_ticks "$pid"); t1=$((u + s))
  err="$(jq -r '.error // empty' "$json" 2>/dev/null || echo "no JSON from iperf3")"
  bps="$(jq -r '.end.sum_received.bits_per_second // empty' "$json" 2>/dev/null || true)"
  bytes="$(jq -r '.end.sum_received.bytes // empty' "$json" 2>/dev/null || true)"
  if [[ -n "$err" || -z "$bps" || -z "$bytes" || "$bytes" == 0 ]]; then
    fail "iperf3 $3/$d: ${err:-no bytes received} (see $json)"
    return
  fi
  CPU_S_GB="$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v by="$bytes" 'BEGIN {printf "%.2f", (t / hz) / (by / 1e9)}')"
  GB="$(awk -v b="$bps" 'BEGIN {printf "%.2f", b / 1e9}')"
}

# median V...: the middle of the numbers (the lower middle of an even
# count), "-" if any is missing
median() {
  local v
  for v in "$@"; do [[ "$v" == - || -z "$v" ]] && { echo -; return; }; done
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

# load TAG: address on veth1, iperf3 up and down, RSS afterwards; the LAN
# must have seen veth1's MAC (the traffic took veth1)
load() {
  local tag=$1 up down mac lmac
  ip -n "$HOST" addr add "$SRC_IP/24" dev veth1 || { fail "$tag: address on veth1"; return; }
  ip -n "$LAN" neigh flush dev lan0
  # REPEAT transfers each way, alternating; the median of each (the
  # single figure is as noisy as the loaded one, ±15 % between runs).
  local ups=() downs=() cups=() cdowns=() i
  for ((i = 0; i < REPEAT; i++)); do
    iperf "$VETHD_PID" up "$tag-$i"; ups+=("$GB"); cups+=("$CPU_S_GB")
    iperf "$VETHD_PID" down "$tag-$i"; downs+=("$GB"); cdowns+=("$CPU_S_GB")
  done
  up="$(median "${ups[@]}")"; local cpu_up; cpu_up="$(median "${cups[@]}")"
  down="$(median "${downs[@]}")"; local cpu_down; cpu_down="$(median "${cdowns[@]}")"
  ((REPEAT > 1)) && log "  $tag: up ${ups[*]}, down ${downs[*]} Gbit/s (medians below)"
  mac="$(ip -n "$HOST" -o link show dev veth1 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')"
  lmac="$(ip -n "$LAN" neigh show "$SRC_IP" dev lan0 | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p')"
  [[ -n "$mac" && "$lmac" == "$mac" ]] || fail "$tag: the LAN sees $SRC_IP at '$lmac', not at veth1's $mac"
  if [[ "$tag" == single ]]; then
    R[single_gbps]=$up; R[single_down_gbps]=$down
    R[single_rss_mib]="$(proc_mem "$VETHD_PID" VmRSS)"; R[single_hwm_mib]="$(proc_mem "$VETHD_PID" VmHWM)"
    R[single_cpu_s_gb]=$cpu_up; R[single_down_cpu_s_gb]=$cpu_down
  else
    R[loaded_gbps]=$up; R[loaded_down_gbps]=$down
    R[loaded_rss_mib]="$(proc_mem "$VETHD_PID" VmRSS)"; R[loaded_hwm_mib]="$(proc_mem "$VETHD_PID" VmHWM)"
    R[loaded_cpu_s_gb]=$cpu_up; R[loaded_down_cpu_s_gb]=$cpu_down
  fi
  log "  $tag: up $up Gbit/s ($cpu_up CPU s/GB), down $down Gbit/s ($cpu_down CPU s/GB), RSS $(proc_mem "$VETHD_PID" VmRSS) MiB"
}

stop_checked() { # TAG: SIGTERM, and every interface must be gone
  local i left=0 rc=0 n=100
  kill -TERM "$VETHD_PID"
  while kill -0 "$VETHD_PID" 2>/dev/null && ((n-- > 0)); do sleep 0.1; done
  kill -0 "$VETHD_PID" 2>/dev/null && fail "$1: vethd still running 10 s after SIGTERM"
  kill_wait "$VETHD_PID"
  wait "$VETHD_PID" || rc=$?
  VETHD_PID=""
  [[ $rc -eq 0 ]] || fail "$1: vethd exited with status $rc after SIGTERM"
  for l in $(ip -n "$HOST" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    [[ "$l" == veth* || "$l" == vd-veth* ]] && left=$((left + 1))
  done
  ((left == 0)) || fail "$1: $left interfaces left after vethd exited"
}

# ------------------------------------------------------------------- run ---
START=$SECONDS
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
log "bridges: $(nproc) cores, kernel $(uname -r), load average $LOAD0"
log "bridges: $N bridges of Kind=$KIND, idle ${IDLE}s after ${SETTLE}s, ${SECS}s per iperf3 run, $VETHD"
setup_lan

if [[ -z "$NO_LOAD" ]]; then
  write_configs "$TMP/conf-1" 1
  if start_all "$TMP/conf-1" 1 single; then
    load single
    stop_checked single
  else
    fail "single: vethd did not attach veth1"
    stop_vethd
  fi
fi

write_configs "$TMP/conf-$N" "$N"
T0=$SECONDS
if start_all "$TMP/conf-$N" "$N" many; then
  R[start_seconds]=$((SECONDS - T0))
  log "  $N bridges attached in ${R[start_seconds]}s; settling ${SETTLE}s"
  sleep "$SETTLE"
  measure_idle "$VETHD_PID" || true
  log "  idle: ${R[idle_cpu_pct]:--} % of one CPU (user ${R[user_pct]:--}, sys ${R[sys_pct]:--}), ${R[wakeups_per_s]:--} wake-ups/s, ${R[wire_fps]:--} frames/s on eth0, RSS ${R[rss_mib]:--} MiB (${R[rss_per_bridge_mib]:--} per bridge), peak ${R[hwm_mib]:--} MiB, ${R[threads]:--} threads"
  [[ -z "$NO_LOAD" ]] && load many
  stop_checked many
else
  fail "many: not all $N bridges attached (see $TMP/vethd-many.log)"
  stop_vethd
fi
LOAD1="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report ---
ratio() {
  if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'
  else echo -; fi
}
R[loaded_ratio]="$(ratio "${R[loaded_gbps]:-}" "${R[single_gbps]:-}")"
R[loaded_down_ratio]="$(ratio "${R[loaded_down_gbps]:-}" "${R[single_down_gbps]:-}")"
g() { echo "${R[$1]:--}"; }

{
  printf '\n%s idle bridges (Kind=%s) in one `vethd --all`, idle window %ss (after %ss to settle)\n\n' "$N" "$KIND" "$IDLE" "$SETTLE"
  printf '| %-34s | %-28s |\n' figure value
  printf '|%s|%s|\n' ------------------------------------ ------------------------------
  printf '| %-34s | %-28s |\n' "idle CPU, % of one CPU (all $N)" "$(g idle_cpu_pct) (user $(g user_pct), sys $(g sys_pct))"
  printf '| %-34s | %-28s |\n' "wake-ups/s (voluntary switches)" "$(g wakeups_per_s)"
  printf '| %-34s | %-28s |\n' "frames/s on the parent meanwhile" "$(g wire_fps)"
  printf '| %-34s | %-28s |\n' "RSS idle (per bridge), peak" "$(g rss_mib) MiB ($(g rss_per_bridge_mib)), $(g hwm_mib) MiB"
  printf '| %-34s | %-28s |\n' "threads" "$(g threads)"
  if [[ -z "$NO_LOAD" ]]; then
    printf '| %-34s | %-28s |\n' "single bridge up / down, Gbit/s" "$(g single_gbps) / $(g single_down_gbps)"
    printf '| %-34s | %-28s |\n' "one of $N loaded up / down" "$(g loaded_gbps) / $(g loaded_down_gbps)"
    printf '| %-34s | %-28s |\n' "ratio up / down" "$(g loaded_ratio) / $(g loaded_down_ratio)"
    printf '| %-34s | %-28s |\n' "CPU s/GB single up / down" "$(g single_cpu_s_gb) / $(g single_down_cpu_s_gb)"
    printf '| %-34s | %-28s |\n' "CPU s/GB loaded up / down" "$(g loaded_cpu_s_gb) / $(g loaded_down_cpu_s_gb)"
    printf '| %-34s | %-28s |\n' "RSS under load single, peak" "$(g single_rss_mib) MiB, $(g single_hwm_mib) MiB"
    printf '| %-34s | %-28s |\n' "RSS under load $N, peak" "$(g loaded_rss_mib) MiB, $(g loaded_hwm_mib) MiB"
  fi
  printf '\n%s cores, kernel %s, load average %s at the start, %s at the end, %ss in all\n' \
    "$(nproc)" "$(uname -r)" "$LOAD0" "$LOAD1" "$((SECONDS - START))"
} >&2

line="bridges n=$N kind=$KIND idle_seconds=$IDLE"
for k in idle_cpu_pct user_pct sys_pct wakeups_per_s wire_fps threads rss_mib rss_per_bridge_mib hwm_mib \
         single_gbps loaded_gbps loaded_ratio single_down_gbps loaded_down_gbps loaded_down_ratio \
         single_rss_mib loaded_rss_mib loaded_hwm_mib; do
  line+=" $k=$(g "$k")"
done
printf '%s\n' "$line"

[[ -n "${R[idle_cpu_pct]:-}" ]] || FAILURES=$((FAILURES + 1))
if ((FAILURES)); then
  log "bridges: $FAILURES measurement(s) failed"
  exit 1
fi
