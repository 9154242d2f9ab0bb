#!/usr/bin/env bash
# Scores the systemd units' sandboxing offline (systemd-analyze security) and
# fails if either unit's overall exposure is above the limit. The limit is
# below systemd-networkd's own unit (2.8 on Debian 12); see docs/design.md.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX=${MAX_EXPOSURE:-1.5}
UNITS=(dist/systemd/vethd@.service dist/systemd/vethd.service)

command -v systemd-analyze >/dev/null || {
	echo "check-security: systemd-analyze not found (Debian package systemd)" >&2
	exit 1
}

fail=0
for u in "${UNITS[@]}"; do
	out=$(systemd-analyze security --offline=yes --no-pager "$u" 2>&1) || {
		echo "check-security: systemd-analyze security $u failed:" >&2
		echo "$out" >&2
		exit 1
	}
	line=$(grep 'Overall exposure level' <<<"$out") || {
		echo "check-security: no score for $u:" >&2
		echo "$out" >&2
		exit 1
	}
	echo "$line"
	# "→ Overall exposure level for vethd@i.service: 1.6 OK 🙂"
	score=$(sed -E 's/.*: ([0-9]+\.[0-9]+) .*/\1/' <<<"$line")
	if ! awk -v s="$score" -v m="$MAX" 'BEGIN { exit !(s <= m) }'; then
		echo "check-security: $u: exposure $score > $MAX; what is exposed:" >&2
		grep '^✗' <<<"$out" >&2 || true
		fail=1
	fi
done
exit "$fail"
