// Package e2e holds end-to-end tests that build cmd/virtkey, run it as a UDP
// authenticator on 127.0.0.1 and drive it with independent clients
// (python-fido2 0.9.1 from testdata/python).
//
// Run them with `go test ./internal/e2e` (or scripts/test.sh for everything).
// They need /usr/bin/python3 with Debian's python3-fido2 and python3-pytest
// (scripts/install-test-deps.sh installs them); without those the tests skip,
// except when CI=true, where they fail.
//
// The keys are started by internal/vktest, which builds ./cmd/virtkey once
// (with -race when the tests run with -race; VIRTKEY_E2E_RACE=0 disables
// that). VIRTKEY_BIN=/path/to/virtkey tests a prebuilt binary instead.
package e2e
