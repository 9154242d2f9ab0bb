#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian/Ubuntu:
# Debian packages (only those missing) and the Go modules.
# dnsmasq-base, not dnsmasq: the binary without a system DNS service.
# zsh: the syntax check of the zsh completion (cmd/vethctl). udhcpc (busybox):
# the source-routing test with its Debian script (test/udhcpc_test.go).
# systemd, systemd-container (systemd-nspawn) and dbus: the end-to-end test
# (test/e2e) boots this OS in a container with the installed units.
# network-manager (Debian 12: 1.42, which pulls in udev): the e2e test of
# NetworkManager runs it in that container, and test/udev_test.go runs
# `udevadm test` with its udev rules. It is installed without ever being
# started on this machine: see install_network_manager.
# debhelper (with dpkg-dev), lintian and mmdebstrap: `make deb` and its test
# (test/e2e/deb_test.go), which builds the package, runs lintian and boots
# a minimal Debian tree made by mmdebstrap to install it with apt.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(iproute2 dnsmasq-base isc-dhcp-client iperf3 ethtool iputils-ping iputils-arping tcpdump procps python3 make
	systemd systemd-container dbus zsh udhcpc debhelper lintian mmdebstrap)

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

# nm_units are the units of network-manager (and of what it pulls in, udev)
# that would start something; masked on this machine before the package
# arrives. (udev's systemd-udevd.service needs a writable /sys: it never
# starts in the e2e container, and on this machine PID 1 is not systemd;
# udev's SysV script, which would run udevd and `udevadm trigger`, is held
# back by policy-rc.d.)
nm_units=(NetworkManager.service NetworkManager-wait-online.service
	NetworkManager-dispatcher.service nm-priv-helper.service)

# net_state prints this machine's links, addresses and routes (without the
# lifetimes, which count down).
net_state() {
	{ ip -o link; ip -o addr; ip route; ip -6 route; } | sed -E 's/ (valid_lft|preferred_lft|expires) [^ ]+//g'
}

# install_network_manager installs network-manager with no recommends and
# without starting anything: a policy-rc.d that forbids every service start
# (invoke-rc.d, which udev's postinst calls, honours it; an existing one is
# kept and left alone) and NM's units masked in /etc/systemd/system (what
# `systemctl --root=/ mask` does; PID 1 here is not systemd). NM's postinst
# `deb-systemd-helper unmask` removes only masks it made itself, so these
# stay. Then it checks that nothing of NM or udev runs and that the
# machine's links, addresses and routes are what they were.
install_network_manager() {
	local u p made_policy="" before after
	for u in "${nm_units[@]}"; do
		[[ -e /etc/systemd/system/$u || -L /etc/systemd/system/$u ]] || ln -s /dev/null "/etc/systemd/system/$u"
	done
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# scripts/deps.sh (vethd): no service starts while it installs packages.\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		made_policy=/usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	before=$(net_state)
	echo "deps: installing network-manager (masked, never started here)"
	apt-get install -y -qq --no-install-recommends network-manager >/dev/null
	if [[ -n $made_policy ]]; then
		rm -f "$made_policy"
		trap - EXIT
	fi
	for p in NetworkManager nm-dispatcher nm-priv-helper systemd-udevd; do
		if pgrep -a -x "$p"; then
			echo "deps: $p is running on this machine after the install of network-manager" >&2
			exit 1
		fi
	done
	after=$(net_state)
	if [[ $before != "$after" ]]; then
		echo "deps: this machine's network changed while network-manager was installed:" >&2
		diff <(echo "$before") <(echo "$after") >&2 || true
		exit 1
	fi
}

if ! dpkg-query -W -f='${Status}' network-manager 2>/dev/null | grep -q "install ok installed"; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps: missing package network-manager; run as root to install it" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	((${#missing[@]})) || apt-get update -qq
	install_network_manager
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
