#!/usr/bin/env bash
# The power-cut campaign (README "Campaigns"; docs/testing.md): virtkey runs
# in the VM harness's guest (internal/vmtest) with its state directory on a
# virtio disk — a raw ext4 image attached with qemu's cache=none — and
# serves UDP through qemu's port forward; the kill -9 campaign's random
# commands (internal/crash) run from the host, and qemu is killed with
# SIGKILL at a random moment, taking the guest's page cache with it. The
# next boot replays the ext4 journal, checks state.db (`virtkey doctor`),
# serves again, and every invariant is checked against what was
# acknowledged. Prints the counts; exit status 1 on a broken invariant.
#
#   scripts/powercut.sh                 # 50 cuts (about 15 minutes on 2 cores)
#   scripts/powercut.sh -cuts 3         # the CI form (TestPowerCut runs it)
#   scripts/powercut.sh -seed 42        # repeat a run
#   scripts/powercut.sh -keep /tmp/pc   # keep virtkey.log and every boot's console
#
# Needs what the VM harness needs (scripts/vm-test.sh) and mkfs.ext4.
# Arguments go to internal/vmtest/cmd/powercut (see its -h).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./internal/vmtest/cmd/powercut "$@"
