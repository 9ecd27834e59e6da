// Package fido2tools drives virtkey with unmodified libfido2 tools
// (fido2-token, fido2-cred, fido2-assert from Debian's fido2-tools 1.12) and
// OpenSSH's ssh-keygen, without a VM and without hidraw.
//
// The bridge is testdata/libfido2-shim/udpshim.c, an LD_PRELOAD library that
// interposes libfido2's fido_dev_open and fido_dev_info_manifest: a device
// path "udp:HOST:PORT" gets report-level I/O functions
// (fido_dev_set_io_functions) that carry each 64-byte CTAPHID report in one
// UDP datagram, and $VIRTKEY_UDP_DEVICE is appended to the device list
// (fido_dev_info_set) so `fido2-token -L` and ssh-keygen's sk middleware,
// which pick a device themselves, find it. The first test builds the shim
// with gcc into a temporary directory, and internal/vktest builds
// ./cmd/virtkey; each test starts `virtkey run --transport udp --presence
// auto` on a free 127.0.0.1 port.
//
// What the tools cannot express — fido_dev_make_cred and fido_dev_get_assert
// with excludeList and allowList of several credentials — is driven by
// testdata/libfido2-driver/listdriver.c, a small C program built against
// libfido2-dev (gcc … -lfido2) and run through the same shim.
//
// Tools that ask for a PIN read it from a terminal, so they run under
// `script -qec CMD /dev/null` and the test types the PIN when the prompt
// appears. Every tool run has a timeout.
//
// Run with `go test ./internal/fido2tools` (scripts/test.sh runs everything).
// It needs gcc, libfido2-dev (fido.h), fido2-tools, openssh-client and
// util-linux's script; scripts/install-test-deps.sh installs them. Without
// them the tests skip, except under CI=true, where they fail.
// VIRTKEY_BIN=/path/to/virtkey tests a prebuilt binary.
package fido2tools
