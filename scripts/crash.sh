#!/usr/bin/env bash
# The kill -9 campaign (README "Tests"; package internal/crash): serves a
# state directory with `virtkey run` over UDP, drives random commands —
# resident makeCredential, getAssertion, wrong and right PINs, changePIN,
# credential deletion and renaming, large-blob writes, authenticatorConfig,
# authenticatorReset —, kills the process at a random moment, checks
# state.db, restarts it and checks every invariant against what was
# acknowledged. Prints the counts; exit status 1 on a broken invariant.
#
#   scripts/crash.sh                 # 500 kills (about 10 minutes)
#   scripts/crash.sh -kills 25       # the CI form
#   scripts/crash.sh -seed 42        # repeat a run
#
# Arguments go to internal/crash/cmd/crash (see its -h).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./internal/crash/cmd/crash "$@"
