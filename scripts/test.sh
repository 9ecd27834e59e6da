#!/usr/bin/env bash
# The project's one test command: provisions the test tools, vets, and runs
# every test (unit and end-to-end) with the race detector.
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

echo "== go test -race -count=1 ./..."
go test -race -count=1 -timeout 30m "$@" ./...
