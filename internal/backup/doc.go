// Package backup is "virtkey backup" and "virtkey restore": a passphrase-
// encrypted copy of a software key store's state directory — the key
// material and a consistent snapshot of state.db — and its restore into
// another (or the same) state directory, with the PIN retry counter and the
// rollback reference handled as a restore must.
//
// # The archive
//
// A backup is an age file (https://age-encryption.org/v1) with one scrypt
// recipient — the backup passphrase — whose plaintext is a POSIX tar
// (ustar) archive:
//
//	virtkey-backup.json        the manifest (first entry)
//	state/                     directory, mode 0700
//	state/master.key           the key store: master.key (a key file) or
//	state/passphrase.json        passphrase.json (salt and check value of a passphrase)
//	state/device.key           the device key (key-file stores; sealed the attestation keys)
//	state/epoch                the rollback reference (when the store has one)
//	state/attestation/         directory, mode 0700, and the attestation CA's files
//	state/attestation/ca.key   (ca.*, batch.*, enterprise.*: keys sealed by the device key)
//	state/state.db             a snapshot of the store (bbolt Tx.WriteTo), last
//
// Files are mode 0600. The manifest is JSON:
//
//	{
//	  "format": "virtkey-backup",
//	  "version": 1,
//	  "created": "2025-01-02T03:04:05Z",
//	  "virtkey": "v0.1.0",                    // the virtkey that wrote it (informational)
//	  "keystore": "key-file" | "passphrase",  // which of master.key / passphrase.json is there
//	  "epoch": 12,                            // the epoch file's value (0: none)
//	  "files": [{"name": "state/master.key", "size": 32, "sha256": "<hex>"}, ...]
//	}
//
// listing every file under state/ with its size and SHA-256. A reader
// refuses another format or version, unknown manifest fields, an entry the
// manifest does not list or that is not one of the names above, a
// duplicate, a size or digest that differs, and anything but regular files
// and those two directories. age authenticates the whole plaintext, so a
// damaged or truncated archive fails before anything is restored.
//
// Because the tar's state/ is a state directory, the age tool alone can
// restore one by hand (the restored key then needs --accept-rollback
// if the epoch file is not in place):
//
//	age -d backup.age | tar -x -C DIR --strip-components=1 state
//
// # What is not in it
//
// The TPM key store (tpm.json, tpm-device.json): its passkeys were made
// inside the TPM and cannot leave it; backup refuses it ([ErrTPMKeystore]).
// A passphrase store's passphrase is not in the archive either: restoring
// it needs the passphrase as virtkey run does.
//
// # The running key
//
// virtkey run holds state.db's exclusive lock. Backup and restore refuse
// while it runs ([ErrRunning]) rather than ask the running process for a
// snapshot: with the lock held for the whole copy, the store, the key files
// (which authenticatorReset replaces) and the epoch file are read as one
// consistent set with no help from the serving process, and a key that
// starts meanwhile waits for the lock instead of seeing a half-made copy.
// Stopping the key for the second a backup takes is the price.
//
// # Restore
//
// Restore decrypts the archive into a new directory beside the target,
// checks it there — the key store opens state.db's binding record, the
// PIN retry counter is set to the lower of the backed-up count and the
// count of the state directory it replaces (when both have a PIN), and the
// rollback reference continues from the higher of the two directories'
// references (a restore is a deliberate rollback: the restored state.db
// starts without --accept-rollback, while older copies are still
// refused) — and only then moves it into place. A non-empty target is
// refused unless Force is set; it is then moved aside, not deleted.
package backup
