package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshot: a snapshot of a bound DB, taken while it is open and
// before or after Bind, is a file that opens and binds with the same key
// and reference and holds the same records; a closed DB refuses.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	keys, g := softKeys(t, 7), &memGuard{}
	d := mustBound(t, path, keys, g)
	must(t, d.PutCredential([]byte("cred-1"), rp("example.com"), []byte("record 1")))
	must(t, d.PutSetting("state", []byte("pin state")))

	var buf bytes.Buffer
	var announced int64
	n, err := d.Snapshot(func(size int64) (io.Writer, error) { announced = size; return &buf, nil })
	must(t, err)
	if n != announced || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("snapshot: %d bytes written, %d announced, %d in the buffer", n, announced, buf.Len())
	}
	// The DB is still usable.
	must(t, d.PutCredential([]byte("cred-2"), rp("example.com"), []byte("record 2")))

	cp := filepath.Join(t.TempDir(), "state.db")
	must(t, os.WriteFile(cp, buf.Bytes(), 0o600))
	epoch, _ := g.get()
	c, err := openBound(t, cp, keys, &memGuard{v: epoch}, BindOptions{})
	if err != nil {
		t.Fatalf("binding the snapshot: %v", err)
	}
	defer c.Close()
	if rec, ok, err := c.Credential([]byte("cred-1")); err != nil || !ok || string(rec) != "record 1" {
		t.Fatalf("cred-1 in the snapshot: %q, %v, %v", rec, ok, err)
	}
	if _, ok, _ := c.Credential([]byte("cred-2")); ok {
		t.Fatal("the snapshot holds a credential written after it")
	}
	if v, err := c.Setting("state"); err != nil || string(v) != "pin state" {
		t.Fatalf("setting in the snapshot: %q, %v", v, err)
	}

	// Before Bind (what virtkey backup sees): the same bytes.
	must(t, d.Close())
	u, err := Open(path)
	must(t, err)
	var before bytes.Buffer
	_, err = u.Snapshot(func(int64) (io.Writer, error) { return &before, nil })
	must(t, err)
	if before.Len() == 0 {
		t.Fatal("empty snapshot before Bind")
	}
	// An error of open is the snapshot's error.
	boom := errors.New("boom")
	if _, err := u.Snapshot(func(int64) (io.Writer, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("open failing: %v", err)
	}
	must(t, u.Close())
	if _, err := u.Snapshot(func(int64) (io.Writer, error) { return io.Discard, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed DB: %v, want ErrClosed", err)
	}
}
