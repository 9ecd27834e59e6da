#!/usr/bin/env bash
# Runs the VM harness alone (internal/vmtest, TestVM): boots Debian's kernel
# under qemu (TCG) with the host root read-only, and runs virtkey on the
# guest's /dev/uhid against fido2-tools, OpenSSH, virtkey's own CLI and
# headless Chromium, and with its keys in a TPM (a swtpm attached to the
# guest). The kernel and initramfs are cached in $VIRTKEY_VM_CACHE, else
# $XDG_CACHE_HOME/virtkey-vm, else ~/.cache/virtkey-vm.
#
#   scripts/vm-test.sh                                  # every group (tools, chromium, playwright, firefox, login, tpm, package: about 25 min on 2 busy cores)
#   VIRTKEY_VM_GROUPS=tools scripts/vm-test.sh          # one boot: libfido2, OpenSSH, CLI, robustness
#   VIRTKEY_VM_GROUPS=chromium scripts/vm-test.sh       # one boot: the browser
#   VIRTKEY_VM_GROUPS=tpm scripts/vm-test.sh            # one boot: swtpm as the guest's TPM, --keystore tpm
#   VIRTKEY_VM_GROUPS=firefox scripts/vm-test.sh        # one boot: headless Firefox ESR
#   VIRTKEY_VM_GROUPS=login scripts/vm-test.sh          # one boot: pam-u2f login, LUKS2 unlock
#   VIRTKEY_VM_GROUPS=package scripts/vm-test.sh        # one boot: the .deb (scripts/package.sh) installed and used by a non-root user
#   VIRTKEY_VM_GROUPS=playwright scripts/vm-test.sh     # one boot: the Playwright example against keys the control API adds
#   (the power-cut campaign is TestPowerCut and scripts/powercut.sh, not a group)
#   VIRTKEY_VM_KEEP=/tmp/vk scripts/vm-test.sh          # keep the guest's logs and consoles in /tmp/vk
#   scripts/vm-test.sh -run 'TestVM/tools/ssh'          # report only some scenarios (the group still boots whole)
#   CI=true scripts/vm-test.sh                          # a missing qemu/busybox/kernel/swtpm fails instead of skipping
#
# Extra arguments go to `go test`. As root, missing Debian packages are
# installed first (scripts/install-test-deps.sh); otherwise it only reports them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== scripts/install-test-deps.sh"
if ! scripts/install-test-deps.sh; then
	echo "vm-test: some test packages are missing (see above); TestVM skips what it cannot run unless CI=true" >&2
fi

echo "== go test -count=1 -v -run '^TestVM\$' ./internal/vmtest/"
exec go test -count=1 -v -timeout 30m -run '^TestVM$' "$@" ./internal/vmtest/
