#!/usr/bin/env bash
# virtkey with many passkeys (README "Performance"): generates a store of
# n resident credentials (default 1,000,000: n/10 RPs, one with 10,000
# accounts, one with a single account) and a 10-credential baseline, serves
# each with `virtkey run` over UDP, and prints every figure — first getInfo
# after start, getInfo, discoverable getAssertion, getNextAssertion,
# resident makeCredential, credential management, RSS, state.db per
# credential — beside its baseline and target.
#
#   scripts/scale.sh                 # 1,000,000 credentials
#   scripts/scale.sh -n 200000       # fewer
#   scripts/scale.sh -n 2000 -samples 20   # the CI form (seconds)
#   scripts/scale.sh -dir /work/x    # keep the state directories there
#
# Arguments go to internal/scale/cmd/scale (see its -h). The state lives
# under $TMPDIR unless -dir says otherwise: its file system's fsyncs count.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./internal/scale/cmd/scale "$@"
