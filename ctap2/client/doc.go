// Package client is the host side of CTAP2: a client that talks to any FIDO2
// authenticator — virtkey over UDP or an in-memory pipe, or a hardware key
// over hidraw — the way a platform (browser, libfido2, python-fido2) does.
// The virtkey management CLI is built on it, and tests use it to drive the
// authenticator.
//
// # Shape
//
// A [Device] sends CTAP2 commands through a one-method [Conn] (a
// [hid.Client] is one; [Open] sets it up on a [hid.ReportDevice]).
// [Device.Transact] is the raw call; typed helpers cover
// authenticatorGetInfo, authenticatorClientPIN (PIN set/change, PIN and UV
// tokens with permissions), authenticatorCredentialManagement (through
// [CredentialManagement]), authenticatorConfig (through [AuthenticatorConfig]),
// authenticatorReset, authenticatorSelection, and makeCredential /
// getAssertion requests signed with a [PINToken].
//
// The PIN/UV auth protocols themselves (key agreement, encryption, PIN
// padding and hashing) are the platform side of ctap2's implementation; this
// package only composes them.
//
// # Errors
//
// A non-zero CTAP status is returned as a [ctap2.StatusCode] wrapped with
// the operation ("clientPIN getPinUvAuthTokenUsingPinWithPermissions: CTAP
// PIN_INVALID (0x31)"); use errors.As or errors.Is to test for it. A wrong
// PIN is a [*PINError] carrying the retries left.
//
// # Choices
//
//   - The PIN/UV auth protocol is 2 when the authenticator lists it in
//     pinUvAuthProtocols, else 1 (also when the list is absent, as on CTAP 2.0
//     keys). [Device.SetPINProtocol] overrides it.
//   - A PIN token comes from getPinUvAuthTokenUsingPinWithPermissions (0x09)
//     when getInfo has the option pinUvAuthToken, else from the legacy
//     getPinToken (0x05), which ignores permissions and rpId.
//   - Credential management uses command 0x0A when getInfo has the option
//     credMgmt, else the preview command 0x41 when it has
//     credentialMgmtPreview.
package client
