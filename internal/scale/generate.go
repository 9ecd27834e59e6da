// Package scale fills a state directory with many real resident
// credentials, fast, and measures how virtkey serves it (scripts/scale.sh,
// cmd/scale). The credentials are made the way makeCredential makes them —
// keys from the state directory's own software key store, records from
// ctap2.NewResident, sealed and indexed by the store in bulk transactions —
// so a key started on the directory signs with them and an RP verifies
// the assertions (scale_test.go checks that with go-webauthn).
package scale

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/tpmkeys"
)

// The RPs of a generated store.
const (
	// OneRP has exactly one account.
	OneRP = "one.example"
	// BigRP has Spec.Big accounts.
	BigRP = "big.example"
)

// Spec describes a store to generate: N credentials in all — one for
// OneRP, Big for BigRP, and the rest spread evenly over RPs-2 RPs named
// rp-NNNNNN.example.
type Spec struct {
	N, RPs, Big int
	// Workers make keys in parallel (default GOMAXPROCS).
	Workers int
	// Batch is the number of credentials per transaction (default 1000:
	// a transaction touches about as many leaf pages, and bbolt frees the
	// old copies only after it commits, so large batches leave the file
	// with a long freelist that every later commit writes again).
	Batch int
	// Log receives progress (nil: none).
	Log *slog.Logger
}

func (s *Spec) check() error {
	switch {
	case s.N < 3 || s.RPs < 3:
		return fmt.Errorf("scale: want at least 3 credentials over 3 RPs, got %d over %d", s.N, s.RPs)
	case s.Big < 1 || s.Big > s.N-1-(s.RPs-2):
		return fmt.Errorf("scale: %d accounts for %s do not fit %d credentials over %d RPs", s.Big, BigRP, s.N, s.RPs)
	}
	return nil
}

// Account is one generated credential, as an RP knows it.
type Account struct {
	RPID      string
	UserID    []byte
	UserName  string
	ID        []byte // credential ID
	PublicKey []byte // COSE_Key
}

// Result is what Generate made: every account of OneRP and BigRP (the
// ones the benchmarks and tests sign in with), and how long it took.
type Result struct {
	One     Account
	Big     []Account // newest first, as the key lists them
	Elapsed time.Duration
}

// rpOf is the RP and the user name of credential i: 0 is OneRP's, 1…Big
// are BigRP's, the rest go round the other RPs.
func (s *Spec) rpOf(i int) (rpID, user string) {
	switch {
	case i == 0:
		return OneRP, "one-user"
	case i <= s.Big:
		return BigRP, fmt.Sprintf("big-user-%d", i)
	}
	j := i - 1 - s.Big
	return fmt.Sprintf("rp-%06d.example", j%(s.RPs-2)), fmt.Sprintf("user-%d", j/(s.RPs-2))
}

// Generate adds spec's credentials to the state directory dir (made if
// missing; software key store), as `virtkey run` opens it. Creation times
// are one microsecond apart, ending now.
func Generate(ctx context.Context, dir string, spec Spec) (*Result, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	if spec.Workers <= 0 {
		spec.Workers = runtime.GOMAXPROCS(0)
	}
	if spec.Batch <= 0 {
		spec.Batch = 1000
	}
	log := spec.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	db, err := statedir.OpenStore(dir, nil)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	soft, err := tpmkeys.OpenSoftware(dir)
	if err != nil {
		return nil, err
	}
	keys, err := statedir.Bind(ctx, dir, db, soft, statedir.Options{})
	if err != nil {
		return nil, err
	}
	base := start.Add(-time.Duration(spec.N) * time.Microsecond)

	type made struct {
		i       int
		r       *ctap2.Resident
		account *Account
		err     error
	}
	jobs := make(chan int, spec.Workers*64)
	out := make(chan made, spec.Workers*64)
	var wg sync.WaitGroup
	for range spec.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				rpID, name := spec.rpOf(i)
				user := ctap2.UserEntity{ID: []byte(name), Name: name, DisplayName: name}
				r, err := ctap2.NewResident(ctx, keys, ctap2.RPEntity{ID: rpID, Name: rpID}, user, cose.AlgES256, base.Add(time.Duration(i)*time.Microsecond))
				m := made{i: i, r: r, err: err}
				if err == nil && (rpID == OneRP || rpID == BigRP) {
					m.account = &Account{RPID: rpID, UserID: user.ID, UserName: name, ID: r.ID, PublicKey: r.PublicKey}
				}
				out <- m
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range spec.N {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(out) }()

	res := &Result{Big: make([]Account, spec.Big)}
	var ids, rps, recs [][]byte
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		err := db.PutCredentials(ids, rps, recs)
		ids, rps, recs = ids[:0], rps[:0], recs[:0]
		return err
	}
	done := 0
	for m := range out {
		if m.err != nil {
			err = m.err
			continue
		}
		if err != nil {
			continue // drain the workers
		}
		if m.account != nil {
			if m.i == 0 {
				res.One = *m.account
			} else {
				res.Big[spec.Big-m.i] = *m.account // newest (largest i) first
			}
		}
		ids, rps, recs = append(ids, m.r.ID), append(rps, m.r.RPIDHash), append(recs, m.r.Record)
		if len(ids) >= spec.Batch {
			err = flush()
			done += spec.Batch
			if done%50000 < spec.Batch {
				log.Info("scale: generating", "credentials", done, "of", spec.N, "elapsed", time.Since(start).Round(time.Second))
			}
		}
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
