#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian/Ubuntu:
# Debian packages (only those missing) and the Go modules.
# dnsmasq-base, not dnsmasq: the binary without a system DNS service.
# systemd, systemd-container (systemd-nspawn) and dbus: the end-to-end test
# (test/e2e) boots this OS in a container with the installed units.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(iproute2 dnsmasq-base isc-dhcp-client iperf3 ethtool iputils-ping iputils-arping tcpdump procps python3 make
	systemd systemd-container dbus)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps: missing packages ${missing[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
	[[ -x /usr/local/go/bin/go ]] && export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null || { echo "deps: Go is not installed (https://go.dev/doc/install)" >&2; exit 1; }
go mod download
# staticcheck, pinned (scripts/test.sh runs it); built from the module proxy
# into the Go bin directory once.
STATICCHECK_VERSION=v0.8.2
gobin=$(go env GOBIN)
[[ -n $gobin ]] || gobin=$(go env GOPATH | cut -d: -f1)/bin
if [[ "$("$gobin/staticcheck" -version 2>/dev/null)" != *"${STATICCHECK_VERSION#v}"* ]]; then
	echo "deps: installing staticcheck $STATICCHECK_VERSION"
	go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
