#!/usr/bin/env bash
# The project's one test command: provisions the test tools, vets, checks
# that go.mod/go.sum are tidy, runs staticcheck, and runs every test (unit
# and end-to-end) with the race detector.
#
#   scripts/test.sh            # from anywhere in the repository
#   CI=true scripts/test.sh    # a missing tool fails instead of skipping
#
# Extra arguments go to `go test` (e.g. scripts/test.sh -run TestPythonFIDO2 -v).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== scripts/install-test-deps.sh"
scripts/install-test-deps.sh

echo "== go vet ./..."
go vet ./...

echo "== go mod tidy -diff"
go mod tidy -diff

# staticcheck runs as a pinned tool (fetched through the module proxy and
# cached like any module); 0.8.x knows Go 1.26.
STATICCHECK_VERSION=v0.8.2
echo "== staticcheck@$STATICCHECK_VERSION ./..."
go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./...

# The short forms of the campaigns (README "Performance" and "Tests"):
# a small store measured beside its baseline (the credentials verify, every
# figure is taken; speed is not judged here), every fuzz target for a few
# seconds, 25 kill -9 with every invariant checked, 40 s of 16 clients
# under the race detector.
echo "== scripts/scale.sh -n 2000 (short form)"
scripts/scale.sh -n 2000 -samples 20

echo "== scripts/fuzz.sh (short form)"
scripts/fuzz.sh

echo "== scripts/crash.sh -kills 25 (short form)"
scripts/crash.sh -kills 25

echo "== scripts/soak.sh -race -d 40s (short form)"
scripts/soak.sh -race -d 40s -sample 5s

echo "== go test -race -count=1 ./..."
go test -race -count=1 -timeout 50m "$@" ./...
