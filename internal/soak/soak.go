// Package soak is the soak test (scripts/soak.sh): a key served over
// hid/udp in this process, and concurrent UDP clients — each its own
// socket and CTAPHID channel — running mixed registrations, assertions,
// PIN and credential-management commands, cancels and power cycles for a
// given time. Every 10 s it samples the process's RSS, goroutines and
// open files. It fails on any error the protocol does not allow for such
// a crowd (CHANNEL_BUSY, a timeout, a cancelled request, a token another
// client or a power cycle made invalid are allowed), on a client that
// makes no progress (a hang), and on growth after the warm-up.
package soak

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/inproc"
)

// Options configure Run.
type Options struct {
	Duration time.Duration
	Clients  int
	Dir      string        // the key's state directory
	Sample   time.Duration // default 10 s
	Progress io.Writer
}

// Sample is one measurement of the process.
type Sample struct {
	At         time.Duration
	RSSMB      float64
	Goroutines int
	OpenFiles  int
	Ops        int64
}

// Report is what Run did and found.
type Report struct {
	Ops, Allowed, Credentials int64
	ByKind                    map[string]int64
	AllowedBy                 map[string]int64
	Samples                   []Sample
	Failures                  []string
}

// Print writes r.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "soak: %d operations, %d ended with an allowed error, %d failures\n", r.Ops, r.Allowed, len(r.Failures))
	for _, k := range slices.Sorted(keys(r.ByKind)) {
		fmt.Fprintf(w, "  %-16s %8d\n", k, r.ByKind[k])
	}
	for _, k := range slices.Sorted(keys(r.AllowedBy)) {
		fmt.Fprintf(w, "  allowed: %-40s %6d\n", k, r.AllowedBy[k])
	}
	fmt.Fprintf(w, "  %8s %8s %10s %10s %10s\n", "t", "RSS MB", "goroutines", "open files", "ops")
	for _, s := range r.Samples {
		fmt.Fprintf(w, "  %8s %8.1f %10d %10d %10d\n", s.At.Round(time.Second), s.RSSMB, s.Goroutines, s.OpenFiles, s.Ops)
	}
	for _, f := range r.Failures {
		fmt.Fprintln(w, "  FAILURE:", f)
	}
}

func keys(m map[string]int64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

const pin = "24681357"

// Timeouts: a command that gets no answer (a datagram the crowd made the
// kernel drop, a request a power cycle cut) is given up after
// commandTimeout; a client with no finished command for hangAfter hangs.
const (
	commandTimeout = 3 * time.Second
	hangAfter      = 30 * time.Second
)

type soak struct {
	o       Options
	addr    string
	conn    *udp.Conn
	mu      sync.Mutex
	rep     *Report
	ops     atomic.Int64
	allowed atomic.Int64
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rep.Failures) < 50 {
		s.rep.Failures = append(s.rep.Failures, fmt.Sprintf(format, args...))
	}
}

func (s *soak) count(m map[string]int64, k string) {
	s.mu.Lock()
	m[k]++
	s.mu.Unlock()
}

// Run runs the soak.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Sample <= 0 {
		o.Sample = 10 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	s := &soak{o: o, rep: &Report{ByKind: map[string]int64{}, AllowedBy: map[string]int64{}}}
	k, err := inproc.New(inproc.Options{Dir: o.Dir, Configure: func(c *ctap2.Config) { c.MaxResidentCredentials = ctap2.NoResidentLimit }})
	if err != nil {
		return nil, err
	}
	defer k.Close()
	if s.conn, err = udp.Listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	s.addr = s.conn.Addr().String()
	sctx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- s.conn.Serve(sctx, k.Authenticator, nil) }()

	// The PIN, once.
	setup, err := s.device(ctx)
	if err != nil {
		return nil, err
	}
	if err := setup.dev.SetPIN(ctx, pin); err != nil {
		return nil, fmt.Errorf("setting the PIN: %w", err)
	}
	setup.close()

	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var wg sync.WaitGroup
	progress := make([]atomic.Int64, o.Clients)
	for i := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.client(runCtx, i, &progress[i])
		}()
	}
	start := time.Now()
	tick := time.NewTicker(o.Sample)
	last := make([]int64, o.Clients)
	lastMove := make([]time.Time, o.Clients)
	for i := range lastMove {
		lastMove[i] = start
	}
	sample := func() {
		smp := Sample{At: time.Since(start), Ops: s.ops.Load()}
		smp.RSSMB, smp.Goroutines, smp.OpenFiles = processStats()
		s.rep.Samples = append(s.rep.Samples, smp)
		fmt.Fprintf(o.Progress, "soak: %s: %.1f MB, %d goroutines, %d open files, %d ops\n",
			smp.At.Round(time.Second), smp.RSSMB, smp.Goroutines, smp.OpenFiles, smp.Ops)
	}
	sample()
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-tick.C:
			sample()
			for i := range progress {
				if n := progress[i].Load(); n != last[i] {
					last[i], lastMove[i] = n, time.Now()
				} else if time.Since(lastMove[i]) > hangAfter {
					s.fail("client %d made no progress in %v (a hang)", i, time.Since(lastMove[i]).Round(time.Second))
					lastMove[i] = time.Now()
				}
			}
		}
	}
	tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.fail("clients did not stop within 30 s of the end (a hang)")
	}
	sample()
	stopServe()
	s.conn.Close()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		s.fail("Serve: %v", err)
	}
	s.rep.Ops, s.rep.Allowed = s.ops.Load(), s.allowed.Load()
	s.checkGrowth()
	return s.rep, nil
}

// checkGrowth compares the samples after the warm-up (the first third):
// goroutines and open files must not grow, RSS not by more than a quarter
// (plus 16 MB of allocator slack).
func (s *soak) checkGrowth() {
	smp := s.rep.Samples
	if len(smp) < 4 {
		return
	}
	warm := smp[len(smp)/3]
	tail := smp[len(smp)/3:]
	for _, t := range tail[1:] {
		switch {
		case t.Goroutines > warm.Goroutines+s.o.Clients+8:
			s.fail("goroutines grew from %d to %d", warm.Goroutines, t.Goroutines)
		case t.OpenFiles > warm.OpenFiles+4:
			s.fail("open files grew from %d to %d", warm.OpenFiles, t.OpenFiles)
		case t.RSSMB > warm.RSSMB*1.25+16:
			s.fail("RSS grew from %.1f MB to %.1f MB", warm.RSSMB, t.RSSMB)
		default:
			continue
		}
		return
	}
}

// processStats reads this process's RSS (MB), goroutines and open files.
func processStats() (rss float64, goroutines, files int) {
	goroutines = runtime.NumGoroutine()
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		files = len(ents)
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, goroutines, files
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			rss = kb / 1024
		}
	}
	return rss, goroutines, files
}

// dev is one client: its socket, CTAPHID channel and CTAP client.
type dev struct {
	conn *udp.ClientConn
	dev  *client.Device
}

func (d *dev) close() { d.conn.Close() }

func (s *soak) device(ctx context.Context) (*dev, error) {
	cc, err := udp.Dial(s.addr)
	if err != nil {
		return nil, err
	}
	for range 50 {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		d, err := client.Open(ictx, cc, &client.Options{Timeout: commandTimeout})
		cancel()
		if err == nil {
			return &dev{conn: cc, dev: d}, nil
		}
		if ctx.Err() != nil || !allowedErr(err) {
			cc.Close()
			return nil, err
		}
	}
	cc.Close()
	return nil, errors.New("CTAPHID INIT kept failing")
}

// allowed are the errors a crowd of clients may see: the channel busy, a
// timeout, a cancelled request, a token replaced by another client's or
// dropped by a power cycle, a getNextAssertion or enumeration state
// another command ended, a channel a power cycle dropped — and the right
// PIN answered PIN_INVALID (then PIN_AUTH_BLOCKED after three): a client
// encrypts its PIN for the key-agreement key it fetched, which a power
// cycle or another client's mismatch replaces before its request arrives
// (CTAP 2.1 §6.5.5.7 regenerates it after every mismatch). PIN_BLOCKED
// (no retries left) is not allowed: every right PIN resets the count.
var allowed = []error{
	hid.ErrChannelBusy, hid.ErrInvalidChannel, hid.ErrMsgTimeout, context.DeadlineExceeded, context.Canceled,
	ctap2.ErrKeepaliveCancel, ctap2.ErrPINAuthInvalid, ctap2.ErrNotAllowed, ctap2.ErrPUATRequired,
	ctap2.ErrPINInvalid, ctap2.ErrPINAuthBlocked,
}

func allowedErr(err error) bool { return allowedName(err) != "" }

func allowedName(err error) string {
	for _, e := range allowed {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return ""
}

// client runs mixed commands until ctx ends.
func (s *soak) client(ctx context.Context, i int, progress *atomic.Int64) {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	rp := fmt.Sprintf("rp%d.example", i%4)
	cdh := sha256.Sum256([]byte("soak"))
	var d *dev
	var mine [][]byte // this client's credentials at rp
	seq := 0
	for ctx.Err() == nil {
		if d == nil {
			var err error
			if d, err = s.device(ctx); err != nil {
				if ctx.Err() == nil {
					s.fail("client %d: INIT: %v", i, err)
				}
				return
			}
		}
		seq++
		kind, err := s.one(ctx, d, rng, rp, cdh[:], &mine, i, seq)
		s.ops.Add(1)
		progress.Add(1)
		s.count(s.rep.ByKind, kind)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case allowedErr(err):
			s.allowed.Add(1)
			s.count(s.rep.AllowedBy, kind+": "+allowedName(err))
			if errors.Is(err, hid.ErrChannelBusy) {
				time.Sleep(time.Duration(1+rng.IntN(4)) * time.Millisecond) // back off, as a platform does
			}
			if errors.Is(err, hid.ErrInvalidChannel) {
				d.close()
				d = nil // a power cycle dropped the channel: INIT again
			}
		default:
			s.fail("client %d: %s: %v", i, kind, err)
		}
	}
	if d != nil {
		d.close()
	}
}

// one runs one random command.
func (s *soak) one(ctx context.Context, d *dev, rng *rand.Rand, rp string, cdh []byte, mine *[][]byte, i, seq int) (string, error) {
	octx, cancel := context.WithTimeout(ctx, 2*commandTimeout)
	defer cancel()
	switch r := rng.IntN(100); {
	case r < 20:
		tok, err := d.dev.GetPINToken(octx, pin, client.PermMakeCredential, rp)
		if err != nil {
			return "getPINToken", err
		}
		rk, alg := true, int64(-7)
		att, err := d.dev.MakeCredential(octx, &ctap2.MakeCredentialRequest{
			ClientDataHash: cdh, RP: &ctap2.RPEntity{ID: rp},
			User:             &ctap2.UserEntity{ID: fmt.Appendf(nil, "c%d-%d", i, seq%8), Name: "soak"},
			PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
			Options:          &ctap2.RequestOptions{RK: &rk},
		}, tok)
		if err != nil {
			return "makeCredential", err
		}
		*mine = append(*mine, att.AuthData.CredentialID)
		if len(*mine) > 8 {
			*mine = (*mine)[1:] // replaced by the same user's newer one
		}
		return "makeCredential", nil
	case r < 50 && len(*mine) > 0:
		id := (*mine)[rng.IntN(len(*mine))]
		_, err := d.dev.GetAssertion(octx, &ctap2.GetAssertionRequest{RPID: rp, ClientDataHash: cdh,
			AllowList: []ctap2.CredDescriptor{{Type: "public-key", ID: id}}}, nil)
		if errors.Is(err, ctap2.ErrNoCredentials) {
			return "getAssertion", nil // replaced meanwhile by another registration of the same user
		}
		return "getAssertion", err
	case r < 60:
		_, err := d.dev.GetAssertion(octx, &ctap2.GetAssertionRequest{RPID: rp, ClientDataHash: cdh}, nil)
		if errors.Is(err, ctap2.ErrNoCredentials) {
			err = nil
		}
		return "getAssertion rk", err
	case r < 70:
		_, err := d.dev.GetInfo(octx)
		return "getInfo", err
	case r < 78:
		_, _, err := d.dev.GetPINRetries(octx)
		return "getPINRetries", err
	case r < 88:
		tok, err := d.dev.GetPINToken(octx, pin, client.PermCredentialMgmt, "")
		if err != nil {
			return "getPINToken", err
		}
		cm, err := d.dev.CredentialManagement(octx, tok)
		if err != nil {
			return "credMgmt", err
		}
		if _, err := cm.Metadata(octx); err != nil {
			return "credMgmt", err
		}
		_, err = cm.EnumerateCredentials(octx, client.RPIDHash(rp))
		return "credMgmt", err
	case r < 96:
		// A cancel: a registration whose context ends right after it is
		// sent (CTAPHID_CANCEL follows); either outcome is fine.
		tok, err := d.dev.GetPINToken(octx, pin, client.PermMakeCredential, rp)
		if err != nil {
			return "getPINToken", err
		}
		cctx, ccancel := context.WithTimeout(octx, time.Duration(rng.IntN(3000))*time.Microsecond)
		defer ccancel()
		rk, alg := true, int64(-7)
		_, err = d.dev.MakeCredential(cctx, &ctap2.MakeCredentialRequest{
			ClientDataHash: cdh, RP: &ctap2.RPEntity{ID: rp},
			User:             &ctap2.UserEntity{ID: []byte("cancelled"), Name: "soak"},
			PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
			Options:          &ctap2.RequestOptions{RK: &rk},
		}, tok)
		if err != nil && cctx.Err() != nil {
			err = context.Canceled
		}
		return "cancel", err
	case r < 97:
		// A power cycle (the UDP magic reboot): every client's tokens,
		// channels and follow-up states go.
		return "powerCycle", d.conn.Reboot()
	}
	_, err := d.dev.GetInfo(octx)
	return "getInfo", err
}
