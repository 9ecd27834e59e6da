package tpmkeys

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"
)

// Files in the state directory.
const (
	KeyFileName        = "master.key"
	PassphraseFileName = "passphrase.json"
)

// Argon2Params are the Argon2id (RFC 9106) cost parameters used when a
// passphrase store is created. They are recorded in the state directory, so
// an existing store always opens with the parameters it was created with.
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// defaultArgon2Params: 3 passes over 64 MiB with 2 lanes (about 0.1–0.2 s
// on a laptop): RFC 9106 §4's second recommended option (t=3, 64 MiB) with 2
// lanes instead of 4, for the 2-core machines virtkey targets.
var defaultArgon2Params = Argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// Limits on parameters read back from disk, so that a damaged or hostile
// passphrase.json cannot make us allocate without bound.
const (
	maxArgon2Time   = 64
	maxArgon2Memory = 1 << 20 // KiB: 1 GiB
	saltSize        = 32
)

func (p Argon2Params) validate() error {
	if p.Time < 1 || p.Time > maxArgon2Time || p.Threads < 1 ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2Memory {
		return fmt.Errorf("tpmkeys: Argon2id parameters %+v out of range", p)
	}
	return nil
}

// WithArgon2Params sets the Argon2id parameters for a passphrase store that
// is being created (tests use cheap ones); the default is 3 passes over
// 64 MiB with 2 lanes. An existing store keeps the parameters it was
// created with.
func WithArgon2Params(p Argon2Params) Option { return func(o *options) { o.argon2 = p } }

// OpenSoftware opens the Software store of a state directory whose master
// key is the key file dir/master.key, creating the directory (0700) and a
// random key (0600) on first use. It refuses a key file readable by group
// or others and a directory set up for a passphrase.
func OpenSoftware(dir string, opts ...Option) (*Software, error) {
	o := applyOptions(opts)
	if err := makeStateDir(dir); err != nil {
		return nil, err
	}
	if exists(filepath.Join(dir, PassphraseFileName)) {
		return nil, fmt.Errorf("tpmkeys: state directory %s is protected by a passphrase; give the passphrase", dir)
	}
	master, err := keyFile(dir)
	if err != nil {
		return nil, err
	}
	defer clear(master)
	s, err := newSoftware(master, o)
	if err != nil {
		return nil, err
	}
	s.device = deviceKeyFile(dir)
	s.rotate = func() ([]byte, error) {
		key := make([]byte, MasterKeySize)
		rand.Read(key)
		if err := writeFileAtomic(dir, KeyFileName, key, true); err != nil {
			clear(key)
			return nil, err
		}
		return key, nil
	}
	return s, nil
}

// OpenSoftwarePassphrase opens the Software store of a state directory
// whose master key is derived from passphrase with Argon2id, setting it up
// (salt, parameters, key-check value in dir/passphrase.json, 0600) on first
// use. A passphrase other than the first one fails with [ErrWrongPassphrase].
// It refuses a directory that holds a key file.
func OpenSoftwarePassphrase(dir string, passphrase []byte, opts ...Option) (*Software, error) {
	o := applyOptions(opts)
	if len(passphrase) == 0 {
		return nil, errors.New("tpmkeys: empty passphrase")
	}
	if err := makeStateDir(dir); err != nil {
		return nil, err
	}
	if exists(filepath.Join(dir, KeyFileName)) {
		return nil, fmt.Errorf("tpmkeys: state directory %s uses a key file (%s), not a passphrase", dir, KeyFileName)
	}
	root, pf, err := passphraseRoot(dir, passphrase, o.argon2)
	if err != nil {
		return nil, err
	}
	master, err := generationKey(root, pf.Generation)
	if err != nil {
		return nil, err
	}
	defer clear(master)
	s, err := newSoftware(master, o)
	if err != nil {
		return nil, err
	}
	dev, err := deriveKey(root, infoDevice)
	if err != nil {
		return nil, err
	}
	s.device = fixedDevice(dev)
	// ResetKeys moves to the next generation. The Argon2id output stays in
	// memory for that, as the master key itself would.
	s.rotate = func() ([]byte, error) {
		next := *pf
		next.Generation++
		data, err := json.MarshalIndent(&next, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("tpmkeys: %w", err)
		}
		if err := writeFileAtomic(dir, PassphraseFileName, append(data, '\n'), true); err != nil {
			return nil, err
		}
		*pf = next
		return generationKey(root, pf.Generation)
	}
	return s, nil
}

// generationKey is the master key of generation gen of a passphrase store.
func generationKey(root []byte, gen uint32) ([]byte, error) {
	return deriveKey(root, fmt.Sprintf("%s %d", infoGeneration, gen))
}

// keyFile reads dir/master.key, creating it on first use.
func keyFile(dir string) ([]byte, error) { return randomKeyFile(dir, KeyFileName) }

// randomKeyFile reads the 32-byte key in dir/name, creating a random one on
// first use.
func randomKeyFile(dir, name string) ([]byte, error) {
	path := filepath.Join(dir, name)
	for range 2 {
		b, err := readSecretFile(path)
		if err == nil {
			if len(b) != MasterKeySize {
				clear(b)
				return nil, fmt.Errorf("tpmkeys: %s holds %d bytes, want %d", path, len(b), MasterKeySize)
			}
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		key := make([]byte, MasterKeySize)
		rand.Read(key)
		err = writeFileAtomic(dir, name, key, false)
		if err == nil {
			return key, nil
		}
		clear(key)
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// Another process created it first: read theirs.
	}
	return nil, fmt.Errorf("tpmkeys: %s appears and disappears", path)
}

// passphraseFile is the JSON form of dir/passphrase.json.
type passphraseFile struct {
	Version   int    `json:"version"`
	KDF       string `json:"kdf"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
	// Check is HMAC-SHA-256(HKDF(root, infoCheck), checkLabel), where root
	// is the Argon2id output.
	Check []byte `json:"check"`
	// Generation counts ResetKeys calls: the master key is
	// HKDF(root, infoGeneration ‖ " " ‖ generation).
	Generation uint32 `json:"generation"`
}

const checkLabel = "virtkey passphrase check"

func (p *passphraseFile) params() Argon2Params {
	return Argon2Params{Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads}
}

// passphraseRoot derives the root secret from passphrase with Argon2id,
// creating dir/passphrase.json on first use and checking the passphrase
// otherwise.
func passphraseRoot(dir string, passphrase []byte, create Argon2Params) ([]byte, *passphraseFile, error) {
	path := filepath.Join(dir, PassphraseFileName)
	for range 2 {
		b, err := readSecretFile(path)
		if err == nil {
			return openPassphraseFile(path, b, passphrase)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		if err := create.validate(); err != nil {
			return nil, nil, err
		}
		pf := passphraseFile{Version: 1, KDF: "argon2id", Time: create.Time, MemoryKiB: create.MemoryKiB, Threads: create.Threads,
			Salt: make([]byte, saltSize)}
		rand.Read(pf.Salt)
		root := argon2.IDKey(passphrase, pf.Salt, pf.Time, pf.MemoryKiB, pf.Threads, MasterKeySize)
		if pf.Check, err = keyCheck(root); err != nil {
			return nil, nil, err
		}
		data, err := json.MarshalIndent(&pf, "", "  ")
		if err != nil {
			return nil, nil, fmt.Errorf("tpmkeys: %w", err)
		}
		err = writeFileAtomic(dir, PassphraseFileName, append(data, '\n'), false)
		if err == nil {
			return root, &pf, nil
		}
		clear(root)
		if !errors.Is(err, fs.ErrExist) {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("tpmkeys: %s appears and disappears", path)
}

func openPassphraseFile(path string, data, passphrase []byte) ([]byte, *passphraseFile, error) {
	var pf passphraseFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pf); err != nil {
		return nil, nil, fmt.Errorf("tpmkeys: %s: %w", path, err)
	}
	if pf.Version != 1 || pf.KDF != "argon2id" {
		return nil, nil, fmt.Errorf("tpmkeys: %s: unsupported version %d / kdf %q", path, pf.Version, pf.KDF)
	}
	if err := pf.params().validate(); err != nil {
		return nil, nil, fmt.Errorf("%w (in %s)", err, path)
	}
	if len(pf.Salt) < 16 || len(pf.Check) != sha256.Size {
		return nil, nil, fmt.Errorf("tpmkeys: %s: bad salt or check value", path)
	}
	root := argon2.IDKey(passphrase, pf.Salt, pf.Time, pf.MemoryKiB, pf.Threads, MasterKeySize)
	check, err := keyCheck(root)
	if err != nil {
		clear(root)
		return nil, nil, err
	}
	if !hmac.Equal(check, pf.Check) {
		clear(root)
		return nil, nil, ErrWrongPassphrase
	}
	return root, &pf, nil
}

// keyCheck is HMAC-SHA-256 of a fixed label under a key derived from the
// passphrase's root secret: it confirms a passphrase without revealing a key.
func keyCheck(root []byte) ([]byte, error) {
	k, err := deriveKey(root, infoCheck)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	m := hmac.New(sha256.New, k)
	m.Write([]byte(checkLabel))
	return m.Sum(nil), nil
}

// readSecretFile reads a regular file that only its owner may access.
func readSecretFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err // fs.ErrNotExist passes through
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("tpmkeys: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("tpmkeys: %s is accessible by group or others (mode %04o); run chmod 600 on it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tpmkeys: %w", err)
	}
	return b, nil
}

// makeStateDir creates the state directory dir (0700) if it is missing.
func makeStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tpmkeys: state directory: %w", err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// writeFileAtomic writes dir/name holding data, mode 0600, all or
// nothing: the data goes to a temporary file that is fsynced, then moved to
// its name, and the directory is fsynced. With replace the move is a
// rename. Without it the move is a hard link, which fails with fs.ErrExist
// rather than replace a file another process created first (on file
// systems without hard links it falls back to a rename after a check).
func writeFileAtomic(dir, name string, data []byte, replace bool) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("tpmkeys: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("tpmkeys: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("tpmkeys: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tpmkeys: %w", err)
	}
	final := filepath.Join(dir, name)
	if replace {
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("tpmkeys: %w", err)
		}
	} else if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		if exists(final) {
			return fmt.Errorf("tpmkeys: %s: %w", final, fs.ErrExist)
		}
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("tpmkeys: %w", err)
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tpmkeys: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("tpmkeys: syncing %s: %w", dir, err)
	}
	return nil
}
