// Package vmtest is virtkey's end-to-end harness in a real Linux kernel: it
// boots Debian's own kernel under qemu (TCG, no KVM needed) with a tiny
// busybox initramfs and the host's root file system mounted read-only over
// 9p with a tmpfs overlay, so the guest runs the host's fido2-tools,
// OpenSSH and Chromium against `virtkey run --transport uhid` on the
// guest's /dev/uhid — the kernel path the build machines themselves lack.
//
// The recipe and its pitfalls are in docs/testing.md (the VM harness); in
// short:
//
//   - The kernel is not installed: `apt-get download` fetches Debian's
//     linux-image package (the one linux-image-amd64 depends on), and only
//     the boot image and the dozen modules the guest needs are unpacked
//     (dpkg-deb --fsys-tarfile), then depmod'ed. The uncompressed ELF
//     vmlinux is cut out of the bzImage (xz) because qemu boots its PVH
//     entry point directly, ~5 s faster per boot under TCG.
//   - The initramfs (gzip'ed newc cpio written here) holds busybox-static,
//     testdata/vm/init and the modules, loaded in the order uhid, hidraw and
//     9p need (hid-generic is required for a /dev/hidraw node).
//   - Both are cached under $VIRTKEY_VM_CACHE, else $XDG_CACHE_HOME/virtkey-vm,
//     else ~/.cache/virtkey-vm, keyed by the kernel package version and a
//     hash of everything that goes into the initramfs.
//   - Each boot gets a shared folder (a second, writable 9p mount at
//     /vkshare in the guest) holding the freshly built virtkey, the helper
//     programs (internal/vmtest/hidtool, internal/vmtest/rp) and the
//     scenario scripts from testdata/vm; the guest writes its logs there.
//   - Every boot runs under timeout(1); the guest prints one line
//     "VKTEST <scenario> PASS|FAIL|SKIP <detail>" per scenario, and
//     TestVM turns each into a subtest. The scenarios a group must report
//     are read from its script (its `scenario NAME SECONDS` lines), so a
//     scenario that never reports fails too.
//
// The groups are tools (libfido2, OpenSSH, virtkey's CLI, robustness),
// chromium (headless Chromium's WebAuthn), firefox (headless Firefox ESR's
// own WebAuthn stack), login (pam-u2f and LUKS2 unlock with
// systemd-cryptenroll) and tpm: a fresh swtpm on the
// host, started by the test and stopped by its pid, is attached as the
// guest's TPM 2.0 (qemu tpm-tis; see [Boot.Machine] for why that boot has
// no ACPI and one vCPU), and virtkey runs with --keystore tpm on the
// guest's /dev/tpmrm0. The package group installs virtkey's .deb (built
// first by scripts/package.sh) with dpkg in a guest without udev, starts
// udev and runs the installed binary as a non-root member of the group
// virtkey. VIRTKEY_VM_GROUPS=tools,tpm picks groups.
//
// The power-cut campaign (powercut.go, TestPowerCut, scripts/powercut.sh)
// boots the same VM again and again with virtkey's state on a virtio disk
// (a raw ext4 image, qemu cache=none) and its UDP port forwarded to the
// host, runs internal/crash's commands and invariant checks, and cuts each
// boot by killing qemu.
//
// TestVM skips when qemu, busybox-static or the kernel cannot be had,
// unless CI=true, where that fails; likewise the tpm group without swtpm. VIRTKEY_VM=0 (or -short) skips it on
// purpose; scripts/vm-test.sh runs it alone.
package vmtest
