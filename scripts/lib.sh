# shellcheck shell=bash
# scripts/lib.sh - shell helpers shared by demo/demo.sh and the bench/ scripts
# (sourced, not run).

# kill_wait PID [SECONDS]: SIGTERM, wait up to SECONDS (default 2), then SIGKILL.
kill_wait() {
  local pid=$1 n=$(( ${2:-2} * 10 ))
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while ((n-- > 0)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# remove_netns NS...: stop every process still inside each namespace (the
# caller started them all) and delete the namespace.
remove_netns() {
  local ns pid
  for ns in "$@"; do
    ip netns list 2>/dev/null | grep -qw -- "$ns" || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill_wait "$pid"; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

# missing_packages CMD=PACKAGE...: print the Debian packages of the commands
# that are not on PATH, one per line.
missing_packages() {
  local cp
  for cp in "$@"; do
    command -v "${cp%%=*}" >/dev/null || printf '%s\n' "${cp#*=}"
  done
}

# apt_install PACKAGE...: install with apt-get, quietly; on failure say why
# on stderr and return 1.
apt_install() {
  command -v apt-get >/dev/null || { echo "missing $* and no apt-get to install them" >&2; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || { echo "apt-get update failed" >&2; return 1; }
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null || { echo "apt-get install $* failed" >&2; return 1; }
}

# build_vethd GO ROOT OUT: build ROOT's ./cmd/vethd into OUT as the package
# builds it (debian/rules): without cgo, a PIE with BIND_NOW, so that what
# the benchmarks measure (memory above all: a PIE's relocated RELRO pages
# are about 1 MiB of it) is the package's. Says the command on stderr.
build_vethd() {
  local go=$1 root=$2 out=$3
  printf '%s\n' "build: CGO_ENABLED=0 go build -trimpath -buildmode=pie -ldflags=-bindnow -o $out ./cmd/vethd" >&2
  (cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -buildmode=pie -ldflags=-bindnow -o "$out" ./cmd/vethd) >&2
}
