#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine. Idempotent: it
# only installs packages that are missing, runs `apt-get update` at most once,
# and says what it did. Run as root (CI does); otherwise it only reports.
#
# Grow the list as the harness grows (fido2-tools, swtpm, qemu-system-x86, …):
# add packages to DEBIAN_PACKAGES below.
set -euo pipefail

# Debian packages the tests use.
#   python3-fido2 (0.9.1 on Debian 12), python3-pytest: internal/e2e TestPythonFIDO2 & co.
DEBIAN_PACKAGES=(
	python3-fido2
	python3-pytest
	# internal/vmtest (the qemu/uhid harness, docs/testing.md): qemu boots Debian's
	# own kernel (fetched with apt-get download, unpacked with dpkg-deb,
	# depmod from kmod, its PVH vmlinux cut out with xz) with a busybox-static
	# initramfs; the guest runs the host's fido2-tools, openssh-client and
	# chromium over a read-only 9p root.
	qemu-system-x86
	busybox-static
	kmod
	xz-utils
	# The power-cut campaign (internal/vmtest powercut.go) formats the
	# guest's state disk with mkfs.ext4; the guest configures its NIC with
	# the host's ip.
	e2fsprogs
	iproute2
	fido2-tools
	openssh-client
	chromium
	# presence: the notify tests start a private bus with dbus-daemon.
	dbus-daemon
	# hid/uhid: TestLayoutMatchesHeader compiles a C check of the event
	# layout against linux/uhid.h.
	gcc
	linux-libc-dev
	# tpmkeys: the TPM simulator tests link go-tpm-tools' simulator (cgo,
	# -lcrypto); internal/tpmtest runs swtpm (docs/testing.md).
	libssl-dev
	swtpm
	swtpm-tools
	# internal/vmtest: pkill (procps) in the tools boot; cpio reads the
	# initramfs back in TestWriteNewc.
	procps
	cpio
	# internal/fido2tools: unmodified fido2-token/-cred/-assert and
	# ssh-keygen (fido2-tools, openssh-client above) through the LD_PRELOAD
	# UDP shim (testdata/libfido2-shim), compiled by gcc (above) against
	# fido.h from libfido2-dev (docs/testing.md).
	libfido2-dev
	# internal/e2e TestJSClient: the control API's TypeScript client
	# (clients/js) is built with tsc (npm ci) and tested with node --test;
	# the machine's nodejs package carries npm (a separate Debian npm
	# package would conflict with it).
	nodejs
	# internal/vmtest firefox group: headless Firefox ESR in the guest signs up
	# and in against internal/vmtest/rp through its own WebAuthn stack
	# (authenticator-rs on hidraw), beside chromium above.
	firefox-esr
	# internal/vmtest login group: PAM login with pam-u2f (pamu2fcfg and the
	# module; pamtester drives the PAM stack) and LUKS2 unlock with
	# systemd-cryptenroll --fido2-device (systemd; cryptsetup-bin formats the
	# volume, libfido2 comes with fido2-tools).
	libpam-u2f
	pamu2fcfg
	pamtester
	cryptsetup-bin
	# internal/backup: the age tool decrypts a virtkey backup (driven through
	# script(1) from bsdutils, as age reads a passphrase from a terminal only).
	age
	# cmd/virtkey docs_test.go: the man page is checked with groff -ww, the
	# completion scripts run in zsh and fish (bash is always there).
	groff-base
	zsh
	fish
	# internal/vmtest package group: the guest installs virtkey's .deb and
	# starts the host's systemd-udevd so that the packaged udev rule applies.
	udev
)

log() { printf 'install-test-deps: %s\n' "$*"; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
	if dpkg -s "$pkg" >/dev/null 2>&1 &&
		[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ]; then
		log "$pkg: already installed"
	else
		missing+=("$pkg")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	log "nothing to install"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	log "missing ${missing[*]} and apt-get is not available; install them by hand" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	log "missing ${missing[*]}; run as root to install: sudo $0" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -q
log "apt-get install -y ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"
for pkg in "${missing[@]}"; do
	dpkg -s "$pkg" >/dev/null 2>&1 || { log "$pkg: still not installed" >&2; exit 1; }
	log "$pkg: installed"
done
