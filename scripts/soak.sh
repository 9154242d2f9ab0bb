#!/usr/bin/env bash
# soak.sh — run the real vethd for a while under bulk traffic and a loop of
# faults from docs/reliability.md, and watch it for leaks.
#
#   sudo ./scripts/soak.sh [--duration 30m] [--interval 5] [--recover 10]
#                          [--rss-growth-kb 16384] [--rss-max-kb 98304] [--fd-growth 4]
#                          [--vethd PATH] [--keep]
#
# It builds a LAN out of two network namespaces (vsoak-PID-lan with lan0,
# a DHCP-less router at 198.19.250.1, and vsoak-PID-host with its parent
# eth0), a private dbus-daemon, and three vethd:
#
#   veth1  Kind=tap  --instance (long-lived: sampled)     198.19.250.51
#   veth2  Kind=veth --instance (long-lived: sampled)     198.19.250.52
#   veth3  Kind=tap  seed flags (restarted by the loop)   198.19.250.53
#
# iperf3 runs from veth1 and veth2 to the LAN the whole time (TCP, bit rate
# capped at 50 Mbit/s each so that the faults, not the CPU, set the
# recovery times and the soak leaves the machine to others), plus a UDP
# flow of small datagrams from veth3 (mixed frame sizes), a poller
# reads every property of both bus objects five times a second, and the
# fault loop goes round: parent down/up, far-end carrier loss, parent MTU
# change, parent renamed and back, parent deleted and re-created, SIGHUP
# with a new MTU, SIGHUP with a broken file (vethd must keep running),
# the bus daemon restarted, veth3's vethd restarted. After each fault it
# waits for a ping through veth1, veth2 and veth3 and records how long that
# took. Every --interval seconds it samples RSS, open fds and threads of
# the two long-lived vethd, and once a minute it sends them SIGUSR1 and
# prints, from the line each then logs (docs/vethd.8), one line per vethd:
#
#   minute 3 veth1 fds=14 goroutines=21 threads=9 rss=12.1MiB heap-inuse=4.2MiB heap-released=1.0MiB gc=88
#
# It fails (exit 1) if a long-lived vethd dies, if connectivity is not
# back within --recover seconds after a fault, if RSS ever exceeds
# --rss-max-kb, or if after the warm-up (the first fifth of the run, at
# least 30 s) RSS rises more than --rss-growth-kb, or open fds more than
# --fd-growth, above the highest figure of the warm-up. (RSS does rise
# during the warm-up: each parent socket re-opened gets new relay
# buffers, and the Go heap settles at about twice what is live; see
# docs/reliability.md.) It prints a summary table at the end. Everything it creates is
# removed on exit (trap; --keep keeps its directory of logs and samples).
#
# It is not part of CI (scripts/test.sh) and takes no lock: its namespaces
# are named vsoak-PID-*, which the leak checks of test/ (vt-PID-*) and
# test/e2e (vethd-e2e-*) leave alone, its bus is private, and it creates
# nothing in the root namespace, so the root tests can run beside it.
#
# Addresses: only 198.19.250.0/24 inside the namespaces; the machine's own
# interfaces are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x /usr/local/go/bin/go ]] && export PATH=$PATH:/usr/local/go/bin

duration=30m interval=5 recover=10 rss_growth_kb=16384 rss_max_kb=98304 fd_growth=4 vethd="" keep=0
while (($#)); do
	case $1 in
	--duration) duration=$2; shift 2 ;;
	--interval) interval=$2; shift 2 ;;
	--recover) recover=$2; shift 2 ;;
	--rss-growth-kb) rss_growth_kb=$2; shift 2 ;;
	--rss-max-kb) rss_max_kb=$2; shift 2 ;;
	--fd-growth) fd_growth=$2; shift 2 ;;
	--vethd) vethd=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak: unknown argument $1" >&2; exit 2 ;;
	esac
done
secs() { # 90, 90s, 10m, 1h → seconds
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}
total=$(secs "$duration")
warmup=$((total / 5 > 30 ? total / 5 : 30))
((warmup < total)) || warmup=$((total / 2))

if [[ $(id -u) -ne 0 ]]; then
	echo "soak: needs root (network namespaces)" >&2
	exit 2
fi
for tool in ip iperf3 dbus-daemon busctl ping; do
	command -v "$tool" >/dev/null || { echo "soak: $tool is missing" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/vethd-soak.XXXXXX)
lanns=vsoak-$$-lan hostns=vsoak-$$-host
pids=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	# vethd first (SIGTERM removes its interface), then the rest.
	for f in "$dir"/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; done
	sleep 0.5
	for ns in "$hostns" "$lanns"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
	done
	[[ -n ${buspid:-} ]] && kill "$buspid" 2>/dev/null
	for f in "$dir"/*.pid; do [[ -f $f ]] && kill -9 "$(cat "$f")" 2>/dev/null; done
	sleep 0.2
	ip netns del "$hostns" 2>/dev/null
	ip netns del "$lanns" 2>/dev/null
	if ((keep)); then
		echo "soak: logs kept in $dir" >&2
	else
		rm -rf "$dir"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z $vethd ]]; then
	CGO_ENABLED=0 go build -o "$dir/vethd" ./cmd/vethd
	vethd=$dir/vethd
fi

H() { ip netns exec "$hostns" "$@" 9>&-; }
L() { ip netns exec "$lanns" "$@" 9>&-; }
log() { printf '%s %s\n' "$(date -u +%T)" "$*"; }

# --- the LAN -----------------------------------------------------------
ip netns add "$lanns"
ip netns add "$hostns"
H ip link set lo up
L ip link set lo up
wire() { # the parent pair, created inside the namespaces
	ip -n "$hostns" link add eth0 type veth peer name lan0 netns "$lanns"
	ip -n "$lanns" link set lan0 address 02:7e:00:00:fa:01
	ip -n "$lanns" addr add 198.19.250.1/24 dev lan0
	ip -n "$lanns" link set lan0 up
	ip -n "$hostns" link set eth0 up
}
wire
L iperf3 -s -D -p 5201 --pidfile "$dir/iperf3-s1.pid" >/dev/null
L iperf3 -s -D -p 5202 --pidfile "$dir/iperf3-s2.pid" >/dev/null
L iperf3 -s -D -p 5203 --pidfile "$dir/iperf3-s3.pid" >/dev/null

# --- a private system bus ----------------------------------------------
cat >"$dir/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
startbus() {
	rm -f "$dir/bus"
	dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile >"$dir/bus.log" 2>&1 9>&- &
	buspid=$!
	for _ in $(seq 50); do [[ -S $dir/bus ]] && return; sleep 0.1; done
	echo "soak: dbus-daemon did not start" >&2
	exit 1
}
startbus
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$dir/bus

# --- vethd ---------------------------------------------------------------
mkdir -p "$dir/conf"
conf() { # conf NAME KIND MTU
	printf '[Bridge]\nParent=eth0\nKind=%s\nMTU=%s\n' "$2" "$3" >"$dir/conf/$1.conf"
}
conf veth1 tap inherit
conf veth2 veth inherit
startvethd() { # startvethd NAME ARGS...
	local name=$1
	shift
	# ip netns exec execs vethd: $! is vethd's pid (not a subshell's).
	ip netns exec "$hostns" "$vethd" "$@" >>"$dir/$name.log" 2>&1 9>&- &
	echo $! >"$dir/$name.pid"
}
startvethd veth1 --instance veth1 --config-dir "$dir/conf"
startvethd veth2 --instance veth2 --config-dir "$dir/conf"
startvethd veth3 -v veth3 -e eth0 -m random
addr() { # addr NAME HOST: wait for the link (30 s), give it its address
	local i
	for ((i = 0; i < 300; i++)); do H ip link show "$1" >/dev/null 2>&1 && break; sleep 0.1; done
	if ((i == 300)); then
		echo "soak: $1 did not appear within 30 s" >&2
		tail -n 20 "$dir/$1.log" >&2
		return 1
	fi
	H ip addr replace "198.19.250.$2/24" dev "$1"
}
addr veth1 51
addr veth2 52
addr veth3 53

reach() { # reach NAME HOST: one ping from NAME's address to the router
	H ping -n -q -c 1 -W 0.3 -I "$1" 198.19.250.1 >/dev/null 2>&1
}
# waitall: wait until veth1, veth2 and veth3 reach the LAN; prints the
# seconds it took (fractional), fails after $recover s.
waitall() {
	local start now
	start=$(date +%s.%N)
	for n in veth1 veth2 veth3; do
		until reach "$n"; do
			now=$(date +%s.%N)
			if awk -v a="$now" -v b="$start" -v r="$recover" 'BEGIN { exit !(a - b > r) }'; then
				echo "FAIL"
				return 1
			fi
			sleep 0.1
		done
	done
	now=$(date +%s.%N)
	awk -v a="$now" -v b="$start" 'BEGIN { printf "%.2f", a - b }'
}
if ! waitall >/dev/null; then
	echo "soak: the LAN is not reachable through veth1/2/3 at start" >&2
	tail -n 20 "$dir"/veth*.log >&2
	exit 1
fi

# --- load ----------------------------------------------------------------
traffic() { # traffic NAME HOST PORT IPERF3-ARGS...: iperf3 from NAME, restarted when it ends
	local name=$1 host=$2 port=$3
	shift 3
	while :; do
		H iperf3 -c 198.19.250.1 -p "$port" -B "198.19.250.$host" -t 3600 "$@" >>"$dir/iperf3-$name.log" 2>&1 || sleep 0.5
		echo restart >>"$dir/iperf3-$name.runs"
	done
}
traffic veth1 51 5201 -b 50M -l 16K &
pids+=($!)
traffic veth2 52 5202 -b 50M -l 16K &
pids+=($!)
traffic veth3 53 5203 -u -b 5M -l 200 &
pids+=($!)
poller() { # every property of both objects, five times a second
	local n=0 errs=0
	while :; do
		for name in veth1 veth2; do
			busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" --timeout=2 call "io.github.vethd.Bridge1.$name" \
				"/io/github/vethd/Bridge1/$name" org.freedesktop.DBus.Properties GetAll s io.github.vethd.Bridge1 \
				>/dev/null 2>&1 || errs=$((errs + 1))
			n=$((n + 1))
		done
		echo "$n $errs" >"$dir/poller.count"
		sleep 0.2
	done
}
poller &
pids+=($!)

# --- sampling --------------------------------------------------------------
sample() { # sample PID → "rss_kb fds threads"
	local rss thr fds
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
	thr=$(awk '/^Threads:/ {print $2}' "/proc/$1/status")
	fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l)
	echo "$rss $fds $thr"
}
sampler() {
	local t0=$SECONDS
	while :; do
		for name in veth1 veth2; do
			local p
			p=$(cat "$dir/$name.pid")
			if [[ -d /proc/$p ]]; then
				echo "$((SECONDS - t0)) $name $(sample "$p")" >>"$dir/samples"
			else
				echo "$((SECONDS - t0)) $name dead" >>"$dir/samples"
			fi
		done
		sleep "$interval"
	done
}
sampler &
pids+=($!)
# minutely: SIGUSR1 to both long-lived vethd, then one line each from
# what they logged (goroutines, threads, heap, RSS) and their open fds.
minutely() {
	local m=0 name p line fds
	while :; do
		for name in veth1 veth2; do
			p=$(cat "$dir/$name.pid")
			[[ -d /proc/$p ]] || { echo "minute $m $name dead" | tee -a "$dir/minutes"; continue; }
			kill -USR1 "$p"
		done
		sleep 0.5
		for name in veth1 veth2; do
			p=$(cat "$dir/$name.pid")
			[[ -d /proc/$p ]] || continue
			fds=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l)
			line=$(grep -o 'runtime: goroutines=.*' "$dir/$name.log" | tail -n 1 | sed 's/^runtime: //; s/["\\]//g')
			printf '%s minute %d %s fds=%d %s\n' "$(date -u +%T)" "$m" "$name" "$fds" "$line" | tee -a "$dir/minutes"
		done
		m=$((m + 1))
		sleep 59.5
	done
}
minutely &
pids+=($!)

# --- faults ----------------------------------------------------------------
declare -A count maxrec sumrec
failures=() busback=()
mtu=1500
fault() { # fault NAME: apply one fault
	case $1 in
	flap)
		H ip link set eth0 down; sleep 0.3; H ip link set eth0 up ;;
	carrier)
		L ip link set lan0 down; sleep 0.3; L ip link set lan0 up ;;
	mtu)
		mtu=$((mtu == 1500 ? 1400 : 1500))
		H ip link set eth0 mtu "$mtu"; L ip link set lan0 mtu "$mtu" ;;
	rename)
		H ip link set eth0 down; H ip link set eth0 name wan0; H ip link set wan0 up
		sleep 0.5
		H ip link set wan0 down; H ip link set wan0 name eth0; H ip link set eth0 up ;;
	recreate)
		H ip link del eth0; sleep 0.5; wire
		H ip link set eth0 mtu "$mtu"; L ip link set lan0 mtu "$mtu" ;;
	reload)
		local m=$((RANDOM % 2 ? 1400 : 1280))
		conf veth1 tap "$m"; conf veth2 veth "$m"
		kill -HUP "$(cat "$dir/veth1.pid")" "$(cat "$dir/veth2.pid")"
		sleep 0.5
		conf veth1 tap inherit; conf veth2 veth inherit
		kill -HUP "$(cat "$dir/veth1.pid")" "$(cat "$dir/veth2.pid")" ;;
	badreload)
		printf '[Bridge]\nParent=eth0\nMTU=huge\n' >"$dir/conf/veth1.conf"
		kill -HUP "$(cat "$dir/veth1.pid")"
		sleep 0.5
		conf veth1 tap inherit
		kill -HUP "$(cat "$dir/veth1.pid")" ;;
	bus)
		kill "$buspid"; wait "$buspid" 2>/dev/null || true; sleep 0.5; startbus
		# Until both objects answer again (vethd reconnects by itself).
		local t0 t1 n
		t0=$(date +%s.%N)
		for n in veth1 veth2; do
			until busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" --timeout=1 get-property "io.github.vethd.Bridge1.$n" \
				"/io/github/vethd/Bridge1/$n" io.github.vethd.Bridge1 State >/dev/null 2>&1; do
				t1=$(date +%s.%N)
				if awk -v a="$t1" -v b="$t0" -v r="$recover" 'BEGIN { exit !(a - b > r) }'; then
					failures+=("bus #$((${count[bus]:-0} + 1)): $n not back on the bus after $recover s")
					break
				fi
				sleep 0.1
			done
		done
		t1=$(date +%s.%N)
		busback+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')") ;;
	restart)
		local p
		p=$(cat "$dir/veth3.pid")
		kill -TERM "$p"
		wait "$p" 2>/dev/null || true
		startvethd veth3 -v veth3 -e eth0 -m random
		addr veth3 53 ;;
	esac
}
faults=(flap carrier mtu rename recreate reload badreload bus restart)
log "soak: $total s (warm-up $warmup s), vethd $vethd, bus $DBUS_SYSTEM_BUS_ADDRESS"
txbytes() { H cat "/sys/class/net/$1/statistics/tx_bytes" 2>/dev/null || echo 0; }
tx1=$(txbytes veth1) tx2=$(txbytes veth2)
start=$SECONDS
i=0
while ((SECONDS - start < total)); do
	f=${faults[i % ${#faults[@]}]}
	i=$((i + 1))
	fault "$f"
	rec=$(waitall) || {
		failures+=("$f #$((${count[$f]:-0} + 1)): no connectivity after $recover s")
		rec=$recover
	}
	count[$f]=$((${count[$f]:-0} + 1))
	sumrec[$f]=$(awk -v a="${sumrec[$f]:-0}" -v b="$rec" 'BEGIN { print a + b }')
	if awk -v a="$rec" -v b="${maxrec[$f]:-0}" 'BEGIN { exit !(a > b) }'; then maxrec[$f]=$rec; fi
	for name in veth1 veth2; do
		if [[ ! -d /proc/$(cat "$dir/$name.pid") ]]; then
			failures+=("$name's vethd died after fault $f")
			break 2
		fi
	done
	sleep 1
done
elapsed=$((SECONDS - start))
tx1=$(($(txbytes veth1) - tx1)) tx2=$(($(txbytes veth2) - tx2))
for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
pids=()
sleep 0.3

# --- summary ----------------------------------------------------------------
echo
echo "== soak summary: $elapsed s, $i faults, samples every $interval s, warm-up $warmup s"
printf '%-10s %6s %10s %10s\n' fault count "max rec s" "mean rec s"
for f in "${faults[@]}"; do
	n=${count[$f]:-0}
	((n)) || continue
	printf '%-10s %6d %10s %10.2f\n' "$f" "$n" "${maxrec[$f]}" "$(awk -v a="${sumrec[$f]}" -v n="$n" 'BEGIN { print a / n }')"
done
echo
printf '%-6s %-28s %-22s %-18s\n' vethd "RSS kB: start warm after end" "fds: start warm after end" "threads: min max"
for name in veth1 veth2; do
	if grep -q " $name dead" "$dir/samples"; then
		failures+=("$name's vethd died")
	fi
	read -r rs rw rm re fs fw fm fe tmin tmax rx < <(awk -v n="$name" -v w="$warmup" '
		$2 == n && $3 != "dead" {
			if (!seen) { rs = $3; fs = $4; tmin = $5; seen = 1 }
			if ($1 <= w && $3 > rw) rw = $3
			if ($1 <= w && $4 > fw) fw = $4
			if ($3 > rx) rx = $3
			if ($1 > w && $3 > rm) rm = $3
			if ($1 > w && $4 > fm) fm = $4
			if ($5 < tmin) tmin = $5
			if ($5 > tmax) tmax = $5
			re = $3; fe = $4
		}
		END { if (!rm) rm = re; if (!fm) fm = fe; print rs+0, rw+0, rm+0, re+0, fs+0, fw+0, fm+0, fe+0, tmin+0, tmax+0, rx+0 }' "$dir/samples")
	printf '%-6s %-28s %-22s %-18s\n' "$name" "$rs $rw $rm $re" "$fs $fw $fm $fe" "$tmin $tmax"
	# (A run shorter than 5 minutes ends before RSS settles: it checks
	# only --rss-max-kb.)
	if ((total >= 300 && rm - rw > rss_growth_kb)); then
		failures+=("$name: RSS rose $((rm - rw)) kB above the warm-up's highest after it (bound $rss_growth_kb)")
	fi
	if ((rx > rss_max_kb)); then
		failures+=("$name: RSS reached $rx kB (bound $rss_max_kb)")
	fi
	if ((fm - fw > fd_growth)); then
		failures+=("$name: open fds grew by $((fm - fw)) after the warm-up (bound $fd_growth)")
	fi
done
echo
echo "per minute (SIGUSR1):"
cat "$dir/minutes"
echo
echo "RSS (kB) by minute:"
awk -v s=60 '$3 != "dead" { m = int($1 / s); v[$2, m] = $3; if (m > mx) mx = m; names[$2] = 1 }
	END { for (n in names) { line = n ":"; for (i = 0; i <= mx; i++) line = line " " v[n, i]; print line } }' "$dir/samples" | sort
read -r polls pollerrs <"$dir/poller.count" || true
echo "bus polls: ${polls:-0} (${pollerrs:-0} failed, mostly while the bus was down)"
if ((${#busback[@]})); then
	echo "bus restarts: both objects answered again after ${busback[*]} s"
fi
for n in veth1 veth2; do
	runs=0
	[[ -f $dir/iperf3-$n.runs ]] && runs=$(wc -l <"$dir/iperf3-$n.runs")
	tx=$tx1
	[[ $n == veth2 ]] && tx=$tx2
	echo "iperf3 from $n: $runs restarts; $n sent $((tx / 1048576)) MiB, $(awk -v b="$tx" -v s="$elapsed" 'BEGIN { printf "%.0f", b * 8 / s / 1e6 }') Mbit/s on average through the faults"
done
if grep -qiE 'panic|fatal error' "$dir"/veth*.log; then
	failures+=("a vethd log has a panic: $(grep -liE 'panic|fatal error' "$dir"/veth*.log | xargs -n1 basename)")
fi
if ((${#failures[@]})); then
	echo
	printf 'FAIL: %s\n' "${failures[@]}"
	for n in veth1 veth2 veth3; do
		echo "--- $n.log (last lines)"
		tail -n 15 "$dir/$n.log"
	done
	exit 1
fi
echo "PASS"
