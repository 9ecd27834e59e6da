// Package tpmkeys holds credential private keys (key custody) for virtkey.
//
// [Software] keeps no per-credential state: a credential ID is the
// credential's private key sealed under a 32-byte master key, bound to the
// relying party's rpIdHash. The master key lives in the state directory,
// either as a key file or derived from a passphrase with Argon2id.
// [TPM] keeps ES256 credential keys inside a TPM 2.0 (see its doc comment
// for the ID format and tpm.json); its master key is sealed by the TPM and
// keys an internal [Software] store for everything the TPM cannot hold.
//
// # Key hierarchy
//
// Three subkeys are derived from the master key with HKDF-SHA-256 (RFC 5869),
// one for wrapping credentials, one for [Software.Seal] and one for
// [Software.CredentialSecret] (HMAC-SHA-256); the master key itself is not
// kept after derivation. Wrapping and sealing use XChaCha20-Poly1305 with a
// random 24-byte nonce, so nonces never need coordination.
//
// # Credential ID format (version 1)
//
//	id        = 0x01 ‖ nonce (24) ‖ XChaCha20-Poly1305(wrapKey, nonce, plaintext, aad)
//	aad       = 0x01 ‖ rpIdHash (32)
//	plaintext = alg (int16, big-endian COSE id) ‖ private key ‖ len(meta) (1) ‖ meta, zero-padded to 16
//
// The private key is the P-256 scalar (32 bytes), the Ed25519 seed (32) or
// the P-384 scalar (48), so IDs are 92 bytes for ES256 and EdDSA and 108 for
// ES384, whatever meta holds. An ID that fails to open for any reason
// (forged, corrupted, another RP, another master key) yields the single
// error [ErrUnknownCredential].
//
// # State directory files
//
//   - master.key: the 32 raw master-key bytes (key-file mode), mode 0600.
//   - passphrase.json: Argon2id parameters, the salt, a key-check value
//     (HMAC-SHA-256 of a fixed label under a key derived from the Argon2id
//     output; not a key) so a wrong passphrase fails at open, and a key
//     generation number: the master key is HKDF(Argon2id output,
//     "… generation N").
//   - epoch: the software key store's rollback reference for state.db
//     ([EpochFile]): the decimal epoch of the newest state.db. A [TPM] key
//     store keeps it in a TPM NV counter instead (its handle is in
//     tpm.json; [TPM.RollbackReference]).
//
// The first two are created on first use through a temporary file that is
// fsynced and then hard-linked into place (never overwriting a file another
// process created first), followed by an fsync of the directory; epoch is
// replaced the same way, with a rename.
//
// # Reset
//
// [Software.ResetKeys] (authenticatorReset) switches to a new master key so
// that every earlier credential ID and sealed blob stops opening: a new
// random key file (written to a temporary file, fsynced, renamed over the
// old one, directory fsynced), or the next generation of a passphrase
// store. Old IDs of a passphrase store stay derivable by whoever knows the
// passphrase and the old generation number; a key-file store's old key is
// gone.
package tpmkeys
