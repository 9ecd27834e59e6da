package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// RestoreOptions configure [Restore].
type RestoreOptions struct {
	// StateDir is the state directory to restore into. It must be empty
	// or not exist, unless Force is set.
	StateDir string
	// Archive is the backup file.
	Archive string
	// Passphrase returns the backup passphrase; Restore calls it once the
	// target is found fit.
	Passphrase func() ([]byte, error)
	// KeystorePassphrase returns the passphrase of a passphrase-protected
	// key store (the archive's, and the one of the state directory being
	// replaced); it is called only for such a store, at most once.
	KeystorePassphrase func() ([]byte, error)
	// Force replaces a non-empty state directory, which is moved aside
	// (to StateDir.before-restore-TIME), not deleted.
	Force bool
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Restored is what a restore did.
type Restored struct {
	Manifest *Manifest
	StateDir string
	// Credentials is the number of discoverable credentials restored.
	Credentials int
	// PINSet reports a PIN in the restored state; PINRetries is then its
	// retry counter after the restore, and BackupPINRetries the archive's.
	PINSet                       bool
	PINRetries, BackupPINRetries uint
	// CurrentPINRetries is the count of the state directory replaced, when
	// it had a PIN and could be read (CurrentPINSet).
	CurrentPINSet     bool
	CurrentPINRetries uint
	// Epoch is the rollback reference of the restored state directory.
	Epoch uint64
	// MovedAside is where the replaced state directory went ("" if none).
	MovedAside string
	// Notes are things the user should know.
	Notes []string
}

// Restore restores the backup o.Archive into o.StateDir (see the package
// documentation). It refuses a non-empty state directory without o.Force
// ([ErrNotEmpty]), one in use by virtkey run ([ErrRunning]), a wrong
// passphrase ([ErrWrongPassphrase]) and a damaged archive ([ErrDamaged]);
// on any error the state directory is as it was.
func Restore(ctx context.Context, o RestoreOptions) (_ *Restored, err error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	dir := o.StateDir
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // restore where the link points
	}
	// The target: empty, missing, or replaced with Force.
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("state directory: %w", err)
	case len(entries) > 0 && !o.Force:
		return nil, refuse(ErrNotEmpty, "state directory %s is not empty (it holds %s): restore into a new or empty --state-dir, "+
			"or add --force to move it aside (to %s.before-restore-TIME) and restore in its place", dir, listEntries(entries), dir)
	}
	arch, err := os.Open(o.Archive)
	if err != nil {
		return nil, err
	}
	defer arch.Close()

	// The state directory being replaced: not in use, and what it holds.
	cur := &current{dir: dir}
	if len(entries) > 0 {
		if err := cur.lock(); err != nil {
			return nil, err
		}
		defer cur.close()
	}

	pass, err := o.Passphrase()
	if err != nil {
		return nil, err
	}
	ksPass := sync.OnceValues(func() ([]byte, error) {
		if o.KeystorePassphrase == nil {
			return nil, errors.New("the key store is protected by a passphrase, and none was given")
		}
		return o.KeystorePassphrase()
	})

	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".restore-*")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	m, err := extract(arch, pass, staging, o.Archive)
	if err != nil {
		return nil, err
	}
	res := &Restored{Manifest: m, StateDir: o.StateDir}
	cur.read(ctx, ksPass, res)
	if err := check(ctx, staging, m, cur, ksPass, res); err != nil {
		return nil, err
	}
	if err := install(staging, dir, len(entries) > 0, now(), res); err != nil {
		return nil, err
	}
	return res, nil
}

// extract decrypts the archive with pass into the empty directory
// staging.
func extract(arch io.Reader, pass []byte, staging, name string) (*Manifest, error) {
	id, err := age.NewScryptIdentity(string(pass))
	if err != nil {
		return nil, err
	}
	plain, err := age.Decrypt(bufio.NewReader(arch), id)
	var nm *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nm) && !slices.Equal(nm.StanzaTypes, []string{"scrypt"}):
		return nil, refuse(ErrDamaged, "%s is not encrypted with a passphrase (its age recipients: %s): not a virtkey backup; nothing was restored",
			name, strings.Join(nm.StanzaTypes, ", "))
	case errors.As(err, &nm):
		return nil, refuse(ErrWrongPassphrase, "wrong passphrase for %s (or it is not a virtkey backup); nothing was restored", name)
	case err != nil:
		return nil, refuse(ErrDamaged, "%s is damaged or not a virtkey backup (%v); nothing was restored", name, err)
	}
	m, err := readArchive(plain, func(rel string) (io.WriteCloser, error) {
		path := filepath.Join(staging, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		return syncedFile{f}, nil
	})
	if isArchiveError(err) {
		return nil, refuse(ErrDamaged, "%s is damaged or not a virtkey backup (%v); nothing was restored", name, err)
	}
	if err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Join(staging, "attestation"), staging} {
		if exists(d) {
			if err := syncDir(d); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// syncedFile syncs the file before it closes it.
type syncedFile struct{ *os.File }

func (f syncedFile) Close() error { return errors.Join(f.Sync(), f.File.Close()) }

// current is the state directory a restore replaces.
type current struct {
	dir string
	db  *store.DB // holds state.db's lock until the restore is over
	err error     // why its state cannot be read

	pinSet  bool
	retries uint
	known   bool // pinSet and retries were read
	epoch   uint64
}

// lock takes state.db's lock, refusing a running key.
func (c *current) lock() error {
	path := filepath.Join(c.dir, statedir.StateFileName)
	if !exists(path) {
		return nil
	}
	db, err := statedir.OpenStore(c.dir, nil)
	switch {
	case errors.Is(err, store.ErrLocked):
		return running(c.dir, "restore")
	case err != nil:
		c.err = err
	default:
		c.db = db
	}
	return nil
}

func (c *current) close() {
	if c.db != nil {
		c.db.Close()
	}
}

// read reads the PIN retry counter and the rollback reference of the
// current state, noting in res why not when it cannot.
func (c *current) read(ctx context.Context, ksPass func() ([]byte, error), res *Restored) {
	defer func() {
		// After the bind, which may have finished advancing it.
		if e, err := tpmkeys.NewEpochFile(c.dir).Epoch(ctx); err == nil {
			c.epoch = e
		}
	}()
	if c.db == nil && c.err == nil {
		return // no state.db
	}
	if c.err == nil {
		c.err = c.bind(ctx, ksPass)
	}
	if c.err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("the PIN retries of the state directory being replaced could not be read (%v): the backup's count is kept", c.err))
		return
	}
	c.retries, c.pinSet, c.err = ctap2.StoredPINRetries(c.db)
	c.known = c.err == nil
	if c.err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("the PIN retries of the state directory being replaced could not be read (%v): the backup's count is kept", c.err))
	}
}

// bind opens the current software key store and binds state.db to it.
func (c *current) bind(ctx context.Context, ksPass func() ([]byte, error)) error {
	switch {
	case exists(filepath.Join(c.dir, tpmkeys.TPMStateFileName)):
		return errors.New("it uses the TPM key store")
	case !exists(filepath.Join(c.dir, tpmkeys.KeyFileName)) && !exists(filepath.Join(c.dir, tpmkeys.PassphraseFileName)):
		return nil // no key store: a state.db without state
	}
	keys, err := openKeys(c.dir, ksPass)
	if errors.Is(err, tpmkeys.ErrWrongPassphrase) {
		return fmt.Errorf("the key store passphrase does not open its %s", tpmkeys.PassphraseFileName)
	}
	if err != nil {
		return err
	}
	_, err = statedir.Bind(ctx, c.dir, c.db, keys, statedir.Options{})
	return err
}

// openKeys opens the software key store of dir: its key file, or its
// passphrase file with the key store passphrase.
func openKeys(dir string, ksPass func() ([]byte, error)) (*tpmkeys.Software, error) {
	if !exists(filepath.Join(dir, tpmkeys.PassphraseFileName)) {
		return tpmkeys.OpenSoftware(dir)
	}
	p, err := ksPass()
	if err != nil {
		return nil, err
	}
	return tpmkeys.OpenSoftwarePassphrase(dir, p)
}

// check makes the extracted state directory ready: the rollback reference
// continues from the higher of the archive's and the current one, the
// store binds to the archive's key store (accepting the restored epoch),
// and the PIN retry counter is the lower of the two.
func check(ctx context.Context, staging string, m *Manifest, cur *current, ksPass func() ([]byte, error), res *Restored) error {
	damaged := func(format string, a ...any) error {
		return refuse(ErrDamaged, "the backup's state does not check out: "+format+"; nothing was restored", a...)
	}
	if b, err := os.ReadFile(filepath.Join(staging, tpmkeys.EpochFileName)); err == nil {
		if v, err := epochOf(b); err != nil || v != m.Epoch {
			return damaged("its epoch file holds %q, its manifest says %d", b, m.Epoch)
		}
	}
	res.Epoch = max(m.Epoch, cur.epoch)
	if err := tpmkeys.NewEpochFile(staging).SetEpoch(ctx, res.Epoch); err != nil {
		return err
	}
	db, err := statedir.OpenStore(staging, nil)
	if err != nil {
		return damaged("%v", err)
	}
	defer db.Close()
	keys, err := openKeys(staging, ksPass)
	if errors.Is(err, tpmkeys.ErrWrongPassphrase) {
		return refuse(ErrWrongPassphrase, "wrong key store passphrase: it does not open the backup's %s (give the passphrase virtkey run was given for this key store); nothing was restored",
			tpmkeys.PassphraseFileName)
	}
	if err != nil {
		return err
	}
	if _, err := statedir.Bind(ctx, staging, db, keys, statedir.Options{AcceptRollback: true}); err != nil {
		return damaged("%v", err)
	}
	if e, err := tpmkeys.NewEpochFile(staging).Epoch(ctx); err == nil {
		res.Epoch = e
	}
	if res.Credentials, err = db.CountCredentials(); err != nil {
		return damaged("%v", err)
	}
	retries, pinSet, err := ctap2.StoredPINRetries(db)
	if err != nil {
		return damaged("%v", err)
	}
	res.PINSet, res.PINRetries, res.BackupPINRetries = pinSet, retries, retries
	if cur.known && cur.pinSet {
		res.CurrentPINSet, res.CurrentPINRetries = true, cur.retries
	}
	if pinSet && res.CurrentPINSet && cur.retries < retries {
		if _, err := ctap2.LowerStoredPINRetries(db, cur.retries); err != nil {
			return err
		}
		res.PINRetries = cur.retries
	}
	return db.Close()
}

// install moves the checked staging directory to dir, moving a non-empty
// dir aside first (replace).
func install(staging, dir string, replace bool, now time.Time, res *Restored) error {
	parent := filepath.Dir(dir)
	switch {
	case replace:
		aside := dir + ".before-restore-" + now.Format("20060102-150405")
		for i := 2; exists(aside); i++ {
			aside = fmt.Sprintf("%s.before-restore-%s-%d", dir, now.Format("20060102-150405"), i)
		}
		if err := os.Rename(dir, aside); err != nil {
			return fmt.Errorf("moving the state directory aside: %w", err)
		}
		if err := os.Rename(staging, dir); err != nil {
			if rerr := os.Rename(aside, dir); rerr != nil {
				return fmt.Errorf("moving the restored state directory into place: %w; and moving %s back: %v", err, aside, rerr)
			}
			return fmt.Errorf("moving the restored state directory into place: %w", err)
		}
		res.MovedAside = aside
	default:
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state directory: %w", err)
		}
		if err := os.Rename(staging, dir); err != nil {
			return fmt.Errorf("moving the restored state directory into place: %w", err)
		}
	}
	return syncDir(parent)
}

// listEntries names a few of a directory's entries.
func listEntries(entries []fs.DirEntry) string {
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) > 4 {
		names = append(names[:4], "…")
	}
	return strings.Join(names, ", ")
}
