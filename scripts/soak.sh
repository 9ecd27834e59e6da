#!/usr/bin/env bash
# The soak test (README "Tests"; package internal/soak): 16 concurrent UDP
# clients run mixed registrations, assertions, PIN and credential-management
# commands, cancels and power cycles against one key for 10 minutes, while
# the process's RSS, goroutines and open files are sampled every 10 s. It
# fails on an error the protocol does not allow for such a crowd, a hang, or
# growth after the warm-up.
#
#   scripts/soak.sh                          # 10 minutes, 16 clients
#   scripts/soak.sh -race -d 40s -sample 5s  # the CI form, under the race detector
#
# -race builds with the race detector; other arguments go to
# internal/soak/cmd/soak (see its -h).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
race=()
args=()
for a in "$@"; do
	if [ "$a" = -race ]; then race=(-race); else args+=("$a"); fi
done
exec go run "${race[@]+"${race[@]}"}" ./internal/soak/cmd/soak "${args[@]+"${args[@]}"}"
