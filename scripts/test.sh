#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs what the tests need, then
# runs every test — unit tests, and as root the integration tests in test/,
# which build their own network namespaces and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x /usr/local/go/bin/go ]] && export PATH=$PATH:/usr/local/go/bin
./scripts/deps.sh
echo "== go vet"
go vet ./...
unformatted=$(gofmt -l cmd pkg test)
if [[ -n $unformatted ]]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
echo "== go test"
if [[ $(id -u) -ne 0 ]]; then
	echo "note: not root; the integration tests in test/ will skip" >&2
fi
go test -count=1 -timeout 30m "$@" ./...
