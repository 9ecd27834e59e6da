package crash

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }

// A few kill -9 of the real key: nothing is lost, every round is checked.
func TestProcessCampaign(t *testing.T) {
	bin := vktest.Binary(t)
	rep, err := Run(context.Background(), Options{Bin: bin, Dir: filepath.Join(t.TempDir(), "state"), Kills: 4, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Describe())
	for _, v := range rep.Violations {
		t.Error(v)
	}
	if rep.Kills != 4 || rep.Checks < 4*5 || len(rep.Acked) == 0 || rep.Name != "crash" {
		t.Errorf("report %+v", rep)
	}
}

// faultyKey is a Process with a fault of its own, to show that the
// campaign sees what a broken store would do.
type faultyKey struct {
	*Process
	forget   bool   // each cut rolls the state directory back to the last cut's
	badCheck bool   // every store check after the first start fails
	snap     string // the state directory at the last cut
	started  bool
}

func (k *faultyKey) Start(ctx context.Context) (string, error, error) {
	addr, check, err := k.Process.Start(ctx)
	if k.badCheck && k.started {
		check = errors.New("damaged on purpose")
	}
	k.started = true
	return addr, check, err
}

func (k *faultyKey) Cut() {
	k.Process.Cut()
	if !k.forget {
		return
	}
	if k.snap != "" {
		if err := os.RemoveAll(k.Dir); err != nil {
			panic(err)
		}
		if err := copyDir(k.snap, k.Dir); err != nil {
			panic(err)
		}
		return
	}
	k.snap = k.Dir + ".snap"
	if err := copyDir(k.Dir, k.snap); err != nil {
		panic(err)
	}
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
}

// A key that loses what it acknowledged (its state rolled back at each cut,
// as a disk that never made the writes durable would) breaks invariants,
// and the campaign says which.
func TestDetectsLostWrites(t *testing.T) {
	bin := vktest.Binary(t)
	key := &faultyKey{Process: &Process{Bin: bin, Dir: filepath.Join(t.TempDir(), "state")}, forget: true}
	rep, err := Run(context.Background(), Options{Key: key, Kills: 4, Seed: 5, MaxDelay: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) == 0 {
		t.Fatalf("a key that forgets every acknowledged write since the last cut broke no invariant:\n%s", rep.Describe())
	}
	t.Logf("%d violations, the first: %s", len(rep.Violations), rep.Violations[0])
}

// A failed store check is a violation.
func TestCheckFailureIsViolation(t *testing.T) {
	bin := vktest.Binary(t)
	key := &faultyKey{Process: &Process{Bin: bin, Dir: filepath.Join(t.TempDir(), "state")}, badCheck: true}
	rep, err := Run(context.Background(), Options{Key: key, Kills: 2, Seed: 7, Name: "test", Fault: "cuts"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range rep.Violations {
		if strings.Contains(v, "store check failed: damaged on purpose") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d store-check violations in %q, want 2", n, rep.Violations)
	}
	if !strings.HasPrefix(rep.Describe(), "test: 2 cuts in ") {
		t.Errorf("report %q", rep.Describe())
	}
}
