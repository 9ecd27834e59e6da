package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/virtkey/virtkey/internal/attca"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/tpmkeys"
)

// The archive's format (see the package documentation).
const (
	// ManifestName is the archive's first entry.
	ManifestName = "virtkey-backup.json"
	// FormatName is the manifest's "format".
	FormatName = "virtkey-backup"
	// FormatVersion is the manifest's "version" this package writes and reads.
	FormatVersion = 1
	// stateDir is the directory of the state directory's files.
	stateDir = "state"
)

// Values of Manifest.Keystore.
const (
	KeystoreKeyFile    = "key-file"   // master.key
	KeystorePassphrase = "passphrase" // passphrase.json
)

// Manifest describes an archive.
type Manifest struct {
	Format   string    `json:"format"`
	Version  int       `json:"version"`
	Created  time.Time `json:"created"`
	Virtkey  string    `json:"virtkey"`
	Keystore string    `json:"keystore"`
	Epoch    uint64    `json:"epoch"`
	Files    []File    `json:"files"`
}

// File is one file of the state directory in the archive.
type File struct {
	Name   string `json:"name"` // "state/master.key"
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// Size limits of what a reader accepts.
const (
	maxManifest  = 64 << 10
	maxKeyFile   = 4 << 10
	maxAttFile   = 64 << 10
	maxStateDB   = 1 << 30
	maxArchFiles = 16
)

// member is a file of the state directory an archive may hold.
type member struct {
	name string // relative to the state directory
	max  int64
}

// members are the files an archive may hold, in the order they are
// written: the key material first, state.db last.
var members = func() []member {
	m := []member{
		{tpmkeys.KeyFileName, maxKeyFile},
		{tpmkeys.PassphraseFileName, maxKeyFile},
		{tpmkeys.DeviceKeyFileName, maxKeyFile},
		{tpmkeys.EpochFileName, maxKeyFile},
	}
	for _, f := range []string{attca.RootKeyFile, attca.RootCertFile, attca.BatchKeyFile, attca.BatchCertFile,
		attca.EnterpriseKeyFile, attca.EnterpriseCertFile} {
		m = append(m, member{attca.DirName + "/" + f, maxAttFile})
	}
	return append(m, member{statedir.StateFileName, maxStateDB})
}()

// memberOf returns the member an archive name ("state/…") stands for.
func memberOf(name string) (member, bool) {
	rel, ok := strings.CutPrefix(name, stateDir+"/")
	if !ok {
		return member{}, false
	}
	i := slices.IndexFunc(members, func(m member) bool { return m.name == rel })
	if i < 0 {
		return member{}, false
	}
	return members[i], true
}

// dirs are the directory entries an archive may hold.
var dirs = []string{stateDir + "/", stateDir + "/" + attca.DirName + "/"}

// check reports what is wrong with a manifest, or nil.
func (m *Manifest) check() error {
	switch {
	case m.Format != FormatName:
		return fmt.Errorf("manifest format %q, want %q", m.Format, FormatName)
	case m.Version > FormatVersion:
		return fmt.Errorf("archive version %d was written by a newer virtkey (this one reads version %d): restore it with that virtkey", m.Version, FormatVersion)
	case m.Version != FormatVersion:
		return fmt.Errorf("archive version %d, want %d", m.Version, FormatVersion)
	case len(m.Files) > maxArchFiles:
		return fmt.Errorf("manifest lists %d files", len(m.Files))
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		mem, ok := memberOf(f.Name)
		switch {
		case !ok:
			return fmt.Errorf("manifest lists %q, which is not a file of a state directory", f.Name)
		case seen[f.Name]:
			return fmt.Errorf("manifest lists %q twice", f.Name)
		case f.Size < 0 || f.Size > mem.max:
			return fmt.Errorf("manifest: %s has %d bytes (at most %d)", f.Name, f.Size, mem.max)
		case len(f.SHA256) != 2*sha256.Size || strings.ToLower(f.SHA256) != f.SHA256:
			return fmt.Errorf("manifest: %s: malformed sha256 %q", f.Name, f.SHA256)
		}
		if _, err := hex.DecodeString(f.SHA256); err != nil {
			return fmt.Errorf("manifest: %s: malformed sha256 %q", f.Name, f.SHA256)
		}
		seen[f.Name] = true
	}
	has := func(name string) bool { return seen[stateDir+"/"+name] }
	switch {
	case !has(statedir.StateFileName):
		return fmt.Errorf("manifest lists no %s", statedir.StateFileName)
	case m.Keystore == KeystoreKeyFile && (!has(tpmkeys.KeyFileName) || has(tpmkeys.PassphraseFileName)):
		return fmt.Errorf("manifest: a %s key store must hold %s and no %s", m.Keystore, tpmkeys.KeyFileName, tpmkeys.PassphraseFileName)
	case m.Keystore == KeystorePassphrase && (!has(tpmkeys.PassphraseFileName) || has(tpmkeys.KeyFileName) || has(tpmkeys.DeviceKeyFileName)):
		return fmt.Errorf("manifest: a %s key store must hold %s and no %s or %s", m.Keystore, tpmkeys.PassphraseFileName, tpmkeys.KeyFileName, tpmkeys.DeviceKeyFileName)
	case m.Keystore != KeystoreKeyFile && m.Keystore != KeystorePassphrase:
		return fmt.Errorf("manifest: key store %q, want %q or %q", m.Keystore, KeystoreKeyFile, KeystorePassphrase)
	}
	return nil
}

// archiveWriter writes the tar archive: the manifest, then the files in
// the manifest's order.
type archiveWriter struct {
	tw      *tar.Writer
	created time.Time
	uid     int
	gid     int
	dirs    map[string]bool
}

func newArchiveWriter(w io.Writer, created time.Time, uid, gid int) *archiveWriter {
	return &archiveWriter{tw: tar.NewWriter(w), created: created.Truncate(time.Second), uid: uid, gid: gid, dirs: map[string]bool{}}
}

func (a *archiveWriter) header(name string, typ byte, mode, size int64) error {
	return a.tw.WriteHeader(&tar.Header{
		Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: a.created,
		Uid: a.uid, Gid: a.gid, Format: tar.FormatUSTAR,
	})
}

// manifest writes the manifest entry.
func (a *archiveWriter) manifest(m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := a.header(ManifestName, tar.TypeReg, 0o600, int64(len(b))); err != nil {
		return err
	}
	_, err = a.tw.Write(b)
	return err
}

// file writes the header of a file of size bytes (and of its directories)
// and returns the writer of its content.
func (a *archiveWriter) file(name string, size int64) (io.Writer, error) {
	for _, d := range dirs {
		if strings.HasPrefix(name, d) && !a.dirs[d] {
			if err := a.header(d, tar.TypeDir, 0o700, 0); err != nil {
				return nil, err
			}
			a.dirs[d] = true
		}
	}
	if err := a.header(name, tar.TypeReg, 0o600, size); err != nil {
		return nil, err
	}
	return a.tw, nil
}

func (a *archiveWriter) close() error { return a.tw.Close() }

// errArchive marks what is wrong inside an archive.
type errArchive struct{ what string }

func (e errArchive) Error() string { return e.what }

func archiveErrorf(format string, a ...any) error { return errArchive{fmt.Sprintf(format, a...)} }

// readArchive reads a tar archive of this format from r: the manifest,
// then each file, whose content it copies to the writer create returns
// for its name relative to the state directory ("attestation/ca.pem"),
// checking size and digest. It returns the manifest once every file the
// manifest lists was read, and reads r to its end (so that age
// authenticates all of it), which may hold only zeros past the archive. An
// error about the archive itself is an errArchive; an error of create or
// of the writer is returned as it is.
func readArchive(r io.Reader, create func(name string) (io.WriteCloser, error)) (*Manifest, error) {
	tr := tar.NewReader(r)
	next := func() (*tar.Header, error) {
		h, err := tr.Next()
		if err != nil && err != io.EOF {
			return nil, archiveErrorf("reading the archive: %v", err)
		}
		return h, err
	}
	h, err := next()
	if err == io.EOF {
		return nil, archiveErrorf("empty archive")
	}
	if err != nil {
		return nil, err
	}
	if h.Name != ManifestName || h.Typeflag != tar.TypeReg {
		return nil, archiveErrorf("the first entry is %q, not the manifest %s", h.Name, ManifestName)
	}
	if h.Size > maxManifest {
		return nil, archiveErrorf("manifest of %d bytes", h.Size)
	}
	raw, err := io.ReadAll(tr)
	if err != nil {
		return nil, archiveErrorf("reading the manifest: %v", err)
	}
	m := new(Manifest)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, archiveErrorf("manifest: %v", err)
	}
	if dec.More() {
		return nil, archiveErrorf("manifest: data after the JSON object")
	}
	if err := m.check(); err != nil {
		return nil, errArchive{err.Error()}
	}
	listed := map[string]File{}
	for _, f := range m.Files {
		listed[f.Name] = f
	}
	done := map[string]bool{}
	for {
		h, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeDir {
			if !slices.Contains(dirs, h.Name) {
				return nil, archiveErrorf("unexpected directory %q", h.Name)
			}
			continue
		}
		f, ok := listed[h.Name]
		switch {
		case h.Typeflag != tar.TypeReg:
			return nil, archiveErrorf("%q is not a regular file (type %q)", h.Name, h.Typeflag)
		case !ok:
			return nil, archiveErrorf("%q is not in the manifest", h.Name)
		case done[h.Name]:
			return nil, archiveErrorf("%q appears twice", h.Name)
		case h.Size != f.Size:
			return nil, archiveErrorf("%s has %d bytes, the manifest says %d", h.Name, h.Size, f.Size)
		}
		done[h.Name] = true
		w, err := create(strings.TrimPrefix(h.Name, stateDir+"/"))
		if err != nil {
			return nil, err
		}
		sum := sha256.New()
		n, err := io.Copy(io.MultiWriter(errWriter{w}, sum), tr)
		if cerr := w.Close(); err == nil && cerr != nil {
			return nil, cerr
		}
		var werr writeError
		switch {
		case errors.As(err, &werr):
			return nil, werr.err
		case err != nil:
			return nil, archiveErrorf("reading %s: %v", h.Name, err)
		case n != f.Size:
			return nil, archiveErrorf("%s: %d bytes, the manifest says %d", h.Name, n, f.Size)
		case hex.EncodeToString(sum.Sum(nil)) != f.SHA256:
			return nil, archiveErrorf("%s does not match its SHA-256 in the manifest", h.Name)
		}
	}
	for _, f := range m.Files {
		if !done[f.Name] {
			return nil, archiveErrorf("%s is in the manifest but not in the archive", f.Name)
		}
	}
	if err := drainZeros(r); err != nil {
		return nil, err
	}
	return m, nil
}

// writeError marks an error of a writer create returned, so that it is
// not taken for damage of the archive.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }

// errWriter marks w's errors as writeErrors.
type errWriter struct{ w io.Writer }

func (e errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		err = writeError{err}
	}
	return n, err
}

// drainZeros reads r to its end, which may hold only zero bytes (tar
// padding).
func drainZeros(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if bytes.ContainsFunc(buf[:n], func(c rune) bool { return c != 0 }) {
			return archiveErrorf("data after the end of the archive")
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return archiveErrorf("reading the archive: %v", err)
		}
	}
}

// epochOf parses the content of an epoch file.
func epochOf(b []byte) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimSuffix(string(b), "\n"), 10, 64)
	if err != nil {
		return 0, archiveErrorf("the epoch file holds %q", b)
	}
	return v, nil
}

// sha256Hex is the manifest's digest of b.
func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// isArchiveError reports whether err is about the archive's content.
func isArchiveError(err error) bool {
	var a errArchive
	return errors.As(err, &a)
}
