package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// Options configure [Create].
type Options struct {
	// StateDir is the state directory to back up.
	StateDir string
	// Keystore is run's --keystore: "" or "software"; "tpm" and
	// "tpm+eddsa" are refused with [ErrTPMKeystore].
	Keystore string
	// Out is the archive to write. It must not exist: Create writes a
	// temporary file beside it and links it into place.
	Out string
	// Passphrase returns the backup passphrase. Create calls it once the
	// state directory is found fit and locked.
	Passphrase func() ([]byte, error)
	// WorkFactor is scrypt's log2(N); 0 is age's default (18, about a
	// second). Tests lower it.
	WorkFactor int
	// Virtkey is the version of the virtkey writing the archive, for the
	// manifest.
	Virtkey string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Create writes a backup of the software key store in o.StateDir to
// o.Out (see the package documentation for the format) and returns its
// manifest. It refuses the TPM key store ([ErrTPMKeystore]), a state
// directory in use by virtkey run ([ErrRunning]) and one with nothing to
// back up ([ErrNoState]); it holds state.db's lock while it reads.
func Create(ctx context.Context, o Options) (*Manifest, error) {
	dir := o.StateDir
	if o.Keystore != "" && o.Keystore != "software" {
		return nil, tpmRefusal("--keystore " + o.Keystore)
	}
	if exists(filepath.Join(dir, tpmkeys.TPMStateFileName)) {
		return nil, tpmRefusal(fmt.Sprintf("state directory %s belongs to the TPM key store (it has %s)", dir, tpmkeys.TPMStateFileName))
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, refuse(ErrNoState, "there is no state directory %s: nothing to back up (is --state-dir right?)", dir)
	}
	if err := statedir.CheckOwner(dir); err != nil {
		return nil, err
	}
	dbPath := filepath.Join(dir, statedir.StateFileName)
	if !exists(dbPath) {
		return nil, refuse(ErrNoState, "state directory %s has no %s: nothing to back up (is --state-dir right?)", dir, statedir.StateFileName)
	}
	m := &Manifest{Format: FormatName, Version: FormatVersion, Virtkey: o.Virtkey}
	hasKey, hasPass := exists(filepath.Join(dir, tpmkeys.KeyFileName)), exists(filepath.Join(dir, tpmkeys.PassphraseFileName))
	switch {
	case hasKey && hasPass:
		return nil, fmt.Errorf("state directory %s has both %s and %s: virtkey run refuses it, and so does backup; remove the one run does not use",
			dir, tpmkeys.KeyFileName, tpmkeys.PassphraseFileName)
	case hasKey:
		m.Keystore = KeystoreKeyFile
	case hasPass:
		m.Keystore = KeystorePassphrase
	default:
		return nil, refuse(ErrNoState, "state directory %s has a %s but no key store file (%s, or %s with a passphrase): "+
			"its passkeys cannot be used without it, so a backup could not restore them", dir, statedir.StateFileName,
			tpmkeys.KeyFileName, tpmkeys.PassphraseFileName)
	}
	if _, err := os.Lstat(o.Out); err == nil {
		return nil, fmt.Errorf("--out %s exists: remove it or choose another name (backup never overwrites a file)", o.Out)
	}

	db, err := store.Open(dbPath)
	if errors.Is(err, store.ErrLocked) {
		return nil, running(dir, "backup")
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	pass, err := o.Passphrase()
	if err != nil {
		return nil, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	m.Created = now().UTC().Truncate(time.Second)

	// The files, read while state.db is locked: nothing changes them.
	type content struct {
		name string
		data []byte
	}
	var files []content
	defer func() {
		for _, f := range files {
			clear(f.data)
		}
	}()
	for _, mem := range members {
		if mem.name == statedir.StateFileName || (mem.name == tpmkeys.DeviceKeyFileName && m.Keystore != KeystoreKeyFile) {
			continue
		}
		data, err := readStateFile(filepath.Join(dir, mem.name), mem.max)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if mem.name == tpmkeys.EpochFileName {
			if m.Epoch, err = epochOf(data); err != nil {
				return nil, fmt.Errorf("%s: %v", filepath.Join(dir, mem.name), err)
			}
		}
		files = append(files, content{stateDir + "/" + mem.name, data})
	}
	var snap bytes.Buffer
	_, err = db.Snapshot(func(size int64) (io.Writer, error) {
		if size > maxStateDB {
			return nil, fmt.Errorf("%s has %d bytes, more than a backup holds (%d)", dbPath, size, int64(maxStateDB))
		}
		snap.Grow(int(size))
		return &snap, nil
	})
	if err != nil {
		return nil, err
	}
	files = append(files, content{stateDir + "/" + statedir.StateFileName, snap.Bytes()})
	for _, f := range files {
		m.Files = append(m.Files, File{Name: f.name, Size: int64(len(f.data)), SHA256: sha256Hex(f.data)})
	}

	err = writeNew(o.Out, func(w io.Writer) error {
		r, err := age.NewScryptRecipient(string(pass))
		if err != nil {
			return err
		}
		if o.WorkFactor > 0 {
			r.SetWorkFactor(o.WorkFactor)
		}
		enc, err := age.Encrypt(w, r)
		if err != nil {
			return err
		}
		aw := newArchiveWriter(enc, m.Created, os.Getuid(), os.Getgid())
		if err := aw.manifest(m); err != nil {
			return err
		}
		for _, f := range files {
			fw, err := aw.file(f.name, int64(len(f.data)))
			if err != nil {
				return err
			}
			if _, err := fw.Write(f.data); err != nil {
				return err
			}
		}
		if err := aw.close(); err != nil {
			return err
		}
		return enc.Close()
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// readStateFile reads a regular file of the state directory of at most
// max bytes.
func readStateFile(path string, max int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s has %d bytes, more than it should (%d)", path, fi.Size(), max)
	}
	return os.ReadFile(path)
}

// writeNew writes a new file at path, mode 0600, all or nothing: write
// fills a temporary file beside it, which is synced and then linked to
// path, failing if path exists by then.
func writeNew(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) || exists(path) {
			return fmt.Errorf("--out %s exists: remove it or choose another name (backup never overwrites a file)", path)
		}
		// A file system without hard links.
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
