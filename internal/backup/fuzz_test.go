package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
	"time"
)

// sampleArchive is a small valid archive (plaintext tar): a key file, an
// epoch file and a state.db of a few bytes.
func sampleArchive(t testing.TB) []byte {
	t.Helper()
	files := []struct{ name, data string }{
		{"state/master.key", "0123456789abcdef0123456789abcdef"},
		{"state/epoch", "3\n"},
		{"state/attestation/ca.pem", "-----BEGIN CERTIFICATE-----\n"},
		{"state/state.db", "not really a database"},
	}
	m := &Manifest{Format: FormatName, Version: FormatVersion, Created: time.Unix(1_700_000_000, 0).UTC(), Keystore: KeystoreKeyFile, Epoch: 3}
	for _, f := range files {
		m.Files = append(m.Files, File{Name: f.name, Size: int64(len(f.data)), SHA256: sha256Hex([]byte(f.data))})
	}
	var buf bytes.Buffer
	aw := newArchiveWriter(&buf, m.Created, 1000, 1000)
	if err := aw.manifest(m); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		w, err := aw.file(f.name, int64(len(f.data)))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, f.data)
	}
	if err := aw.close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// collector records what readArchive hands out.
type collector struct {
	files map[string]*bytes.Buffer
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (c *collector) create(name string) (io.WriteCloser, error) {
	b := new(bytes.Buffer)
	c.files[name] = b
	return nopCloser{b}, nil
}

func TestReadArchive(t *testing.T) {
	t.Parallel()
	c := &collector{files: map[string]*bytes.Buffer{}}
	m, err := readArchive(bytes.NewReader(sampleArchive(t)), c.create)
	if err != nil {
		t.Fatal(err)
	}
	if m.Epoch != 3 || len(c.files) != 4 || c.files["attestation/ca.pem"] == nil || c.files["state.db"].String() != "not really a database" {
		t.Fatalf("manifest %+v, files %v", m, c.files)
	}
	// Trailing zeros (tar padding) are fine; anything else is not.
	if _, err := readArchive(bytes.NewReader(append(sampleArchive(t), make([]byte, 10240)...)), c.create); err != nil {
		t.Fatalf("zero padding: %v", err)
	}
	if _, err := readArchive(bytes.NewReader(append(sampleArchive(t), 'x')), c.create); !isArchiveError(err) {
		t.Fatalf("trailing data: %v", err)
	}
}

// FuzzReadArchive: any plaintext is refused with an archive error or read
// whole — then the manifest checks out and every file it lists was handed
// out once, with its size and digest. Never a panic.
func FuzzReadArchive(f *testing.F) {
	good := sampleArchive(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:512])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &collector{files: map[string]*bytes.Buffer{}}
		m, err := readArchive(bytes.NewReader(data), c.create)
		if err != nil {
			if !isArchiveError(err) {
				t.Fatalf("not an archive error: %v", err)
			}
			return
		}
		if err := m.check(); err != nil {
			t.Fatalf("accepted a manifest that does not check: %v", err)
		}
		if len(c.files) != len(m.Files) {
			t.Fatalf("%d files handed out, %d listed", len(c.files), len(m.Files))
		}
		for _, f := range m.Files {
			b := c.files[f.Name[len(stateDir)+1:]]
			if b == nil || int64(b.Len()) != f.Size {
				t.Fatalf("%s: not handed out whole", f.Name)
			}
			s := sha256.Sum256(b.Bytes())
			if hex.EncodeToString(s[:]) != f.SHA256 {
				t.Fatalf("%s: digest differs", f.Name)
			}
		}
	})
}
