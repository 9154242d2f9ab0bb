#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs what the tests need, then
# runs every test — unit tests, the units' sandboxing score, and as root the
# integration tests in test/ (their own network namespaces) and the
# end-to-end tests in test/e2e (this OS booted in a systemd-nspawn container
# with the installed units), all of which remove what they create.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x /usr/local/go/bin/go ]] && export PATH=$PATH:/usr/local/go/bin
./scripts/deps.sh
echo "== go vet"
go vet ./...
unformatted=$(gofmt -l cmd internal pkg test)
if [[ -n $unformatted ]]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
echo "== staticcheck"
gobin=$(go env GOBIN)
[[ -n $gobin ]] || gobin=$(go env GOPATH | cut -d: -f1)/bin
"$gobin/staticcheck" ./...
echo "== systemd-analyze security (each unit's exposure must be <= 2.0)"
./scripts/check-security.sh
# The root-free tests (everything but test/, which needs root and
# namespaces) also run under the race detector.
echo "== go test -race (root-free packages)"
go test -race -count=1 -timeout 10m $(go list ./... | grep -v '^github.com/vethd/vethd/test')
if [[ $(id -u) -ne 0 ]]; then
	echo "note: not root; the integration tests in test/ will skip" >&2
fi
echo "== go test"
go test -count=1 -timeout 30m "$@" ./...
