#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs what the tests need, then
# runs every test — unit tests, the units' sandboxing score, and as root the
# integration tests in test/ (their own network namespaces) and the
# end-to-end tests in test/e2e (this OS booted in a systemd-nspawn container
# with the installed units), all of which remove what they create; before
# those, every fuzz target for a bounded time (20 s each: about 8 minutes
# for the 20 targets). The 30-minute soak (scripts/soak.sh) is not part of
# it: run it by hand (docs/reliability.md).
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
echo "== systemd-analyze security (each unit's exposure must be <= 1.5)"
./scripts/check-security.sh
# The root-free tests (everything but test/, which needs root and
# namespaces) also run under the race detector.
echo "== go test -race (root-free packages)"
go test -race -count=1 -timeout 10m $(go list ./... | grep -v '^github.com/vethd/vethd/test')
# Fuzzing: every Fuzz target of every package, found with go test -list
# (so a new target runs without editing this script), one per
# invocation, for VETHD_FUZZ_TIME seconds each (default 20, the figure of
# issue 9). A crash, or a failing input, fails the run; the input is
# written to the package's testdata/fuzz/NAME/ (check it in as a
# regression seed once fixed).
echo "== go test -fuzz (each target, bounded)"
fuzz_targets=()
for dir in $(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' cmd internal pkg | xargs -r -n1 dirname | sort -u); do
	for name in $(go test -list '^Fuzz' "./$dir" | grep '^Fuzz'); do
		fuzz_targets+=("./$dir $name")
	done
done
fuzz_each=${VETHD_FUZZ_TIME:-20}
fuzz_start=$SECONDS
echo "${#fuzz_targets[@]} targets, ${fuzz_each} s each"
for target in "${fuzz_targets[@]}"; do
	read -r pkg name <<<"$target"
	echo "-- $pkg $name"
	if ! fuzz_out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "${fuzz_each}s" "$pkg" 2>&1); then
		# Go 1.26's fuzz coordinator can report its own -fuzztime
		# deadline as a failure (golang/go#75804: "context deadline
		# exceeded", no input written) when a worker is slow to stop on
		# a loaded machine. That is no crash; anything else is.
		if grep -q 'context deadline exceeded' <<<"$fuzz_out" && ! grep -qE 'Failing input written|failure while testing seed corpus|panic:' <<<"$fuzz_out"; then
			echo "note: $name stopped with the fuzz coordinator's deadline race (golang/go#75804), not a crash" >&2
			continue
		fi
		echo "$fuzz_out" | grep -v '^fuzz: elapsed' >&2
		echo "fuzz target $name in $pkg failed" >&2
		exit 1
	fi
	echo "$fuzz_out" | grep '^fuzz: elapsed' | tail -n 1
done
echo "fuzzing took $((SECONDS - fuzz_start)) s"
if [[ $(id -u) -ne 0 ]]; then
	echo "note: not root; the integration tests in test/ will skip" >&2
fi
echo "== go test"
# The output is kept, and the failing tests' messages are restated at the
# end (scripts/restate-failures.awk): a CI report shows a failing run's
# last lines, and a failing end-to-end test's journal dump would push
# the reason out of them.
out=$(mktemp /tmp/vethd-test-output.XXXXXX)
trap 'rm -f "$out"' EXIT
status=0
go test -count=1 -timeout 30m "$@" ./... 2>&1 | tee "$out" || status=$?
if [[ $status -ne 0 ]]; then
	awk -f scripts/restate-failures.awk "$out"
fi
exit "$status"
