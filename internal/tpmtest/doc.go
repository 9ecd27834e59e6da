// Package tpmtest holds integration tests of the TPM key store
// (`virtkey run --keystore tpm`) against swtpm, the software TPM 2.0 that
// QEMU uses, and a benchmark of getAssertion with TPM keys.
//
// The tests start `swtpm socket --tpm2` on free 127.0.0.1 ports with a
// temporary state directory (stopped by pid at cleanup), build ./cmd/virtkey
// once and run it as a UDP authenticator on 127.0.0.1 (internal/vktest), and
// drive it with the Go CTAP client (ctap2/client over hid/udp); assertions
// are verified by github.com/go-webauthn/webauthn as the relying party
// (internal/rptest).
//
// They need /usr/bin/swtpm (Debian: swtpm, swtpm-tools; install with
// scripts/install-test-deps.sh). Without it they skip, except when CI=true,
// where they fail.
//
//	go test ./internal/tpmtest
//	go test ./internal/tpmtest -run '^$' -bench 'TPM' -benchtime 300x
package tpmtest
