// Package crash is the kill -9 campaign (scripts/crash.sh): it serves a
// state directory with `virtkey run` over UDP, drives a random stream of
// state-changing commands — resident makeCredential, getAssertion, wrong
// and right PINs, changePIN, credential deletion and renaming, large-blob
// writes, authenticatorConfig toggles, authenticatorReset — kills the
// process with SIGKILL at a random moment, checks the file with
// store.Check, restarts it and checks every invariant against what was
// acknowledged:
//
//   - every acknowledged write is present (credentials with their names, the
//     PIN, the large-blob array, the config), every acknowledged deletion
//     and reset absent;
//   - what was in flight at the kill is wholly there or wholly absent: a
//     credential either missing or complete (listed with its public key,
//     and it signs), the blob array old or new, the PIN old or new;
//   - each signature counter is strictly above the last acknowledged;
//   - the PIN retry counter is never above the last acknowledged value
//     (unless a PIN operation that resets it was in flight);
//   - the store opens (the key answers) and store.Check finds no damage.
//
// A kill -9 leaves the page cache intact, so this proves atomicity, not
// durability. The key is pluggable ([Key]): [Process] is virtkey killed with
// SIGKILL; internal/vmtest's power-cut key (scripts/powercut.sh) runs
// virtkey in a VM with its state on a virtio disk and kills qemu, which
// loses the guest's page cache, and the same campaign proves durability.
package crash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
)

// Key is the authenticator a campaign drives over UDP and cuts: [Process]
// (virtkey killed with SIGKILL) or internal/vmtest's power-cut VM (qemu
// killed, the state on a virtio disk).
type Key interface {
	// Start brings the key up on the state the last cut left and returns
	// its UDP address, and the verdict of the store's full consistency
	// check on that state, made before the key opened it (nil at the first
	// start, when there is nothing to check yet). err is for a key that
	// cannot be started at all.
	Start(ctx context.Context) (addr string, check error, err error)
	// Cut ends the key at once: the fault the campaign is about.
	Cut()
	// Stop ends the key when the campaign is over.
	Stop()
	// Output is the key's recent output, for a failure message.
	Output() string
}

// Summarizer is a [Key] with figures of its own for the report (the VM's
// journal replays, say).
type Summarizer interface {
	Summary() []string
}

// Options configure Run.
type Options struct {
	// Key is the key to cut; nil: a [Process] running Bin on Dir.
	Key   Key
	Bin   string // the virtkey binary (Key nil)
	Dir   string // the state directory, made if missing (Key nil)
	Kills int    // cuts
	Seed  uint64
	// MaxDelay bounds how long the commands run before the cut (default
	// 400 ms); the moment is uniform in [0, MaxDelay].
	MaxDelay time.Duration
	// Name and Fault label the report: "crash" and "kill -9" (the default)
	// or "powercut" and "power cuts".
	Name, Fault string
	Progress    io.Writer // nil: nothing
}

// Report is what Run did and found.
type Report struct {
	Name, Fault string
	Kills       int            // cuts
	Acked       map[string]int // acknowledged operations by kind
	InFlight    map[string]int // operations a cut interrupted, by kind
	Checks      int            // invariants checked
	Violations  []string
	Notes       []string // the key's own figures ([Summarizer])
	Elapsed     time.Duration
}

// Print writes r.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d %s in %s, %d invariant checks, %d violations\n", r.Name, r.Kills, r.Fault, r.Elapsed.Round(time.Second), r.Checks, len(r.Violations))
	acked, cut := 0, 0
	for k := range r.Acked {
		acked += r.Acked[k]
	}
	for k := range r.InFlight {
		cut += r.InFlight[k]
	}
	fmt.Fprintf(w, "  %-14s %6d acknowledged, %4d cut\n", "(all)", acked, cut)
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range r.Acked {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range kinds {
		fmt.Fprintf(w, "  %-14s %6d acknowledged, %4d cut\n", k, r.Acked[k], r.InFlight[k])
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, " ", n)
	}
	for _, v := range r.Violations {
		fmt.Fprintln(w, "  VIOLATION:", v)
	}
}

var rps = []string{"a.example", "b.example", "c.example"}

const (
	pinA = "123456"
	pinB = "654321"
)

// cred is a credential the model knows.
type cred struct {
	id      []byte
	rp      string
	user    string
	name    string
	counter uint32
}

// model is what the acknowledged commands left.
type model struct {
	pin      string // "" unset
	retries  int    // upper bound of the PIN retry counter
	creds    map[string]*cred
	blob     []byte // nil: the initial empty array
	alwaysUV bool
}

// op is the command in flight; the fields it needs.
type op struct {
	kind string
	user string // makeCredential, getAssertion, delete, rename
	name string // rename
	pin  string // changePIN, setPIN
	blob []byte // largeBlobs
}

type campaign struct {
	o      Options
	rng    *rand.Rand
	m      model
	rep    *Report
	seq    int
	key    Key
	conn   *udp.ClientConn
	dev    *client.Device
	flight *op
	cdh    []byte
	// wrongRun counts consecutive wrong PINs since the last right one or
	// start: a third would block PIN use until a power cycle.
	wrongRun int
}

// Run runs the campaign.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.MaxDelay <= 0 {
		o.MaxDelay = 400 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Key == nil {
		o.Key = &Process{Bin: o.Bin, Dir: o.Dir}
	}
	if o.Name == "" {
		o.Name, o.Fault = "crash", "kill -9"
	}
	c := &campaign{
		o: o, rng: rand.New(rand.NewPCG(o.Seed, 1)), key: o.Key,
		m:   model{creds: map[string]*cred{}, retries: 8},
		rep: &Report{Name: o.Name, Fault: o.Fault, Acked: map[string]int{}, InFlight: map[string]int{}},
	}
	h := sha256.Sum256([]byte("crash client data"))
	c.cdh = h[:]
	start := time.Now()
	defer c.stop()
	if err := c.start(ctx, 0); err != nil {
		return nil, err
	}
	for round := 0; round < o.Kills; round++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.drive(ctx)
		c.cut()
		c.rep.Kills++
		if err := c.start(ctx, round+1); err != nil {
			c.violate("after cut %d the key does not start: %v", round+1, err)
			break
		}
		c.check(round + 1)
		if round%50 == 49 || o.Kills <= 100 && round%10 == 9 {
			fmt.Fprintf(o.Progress, "%s: %d cuts, %d violations\n", o.Name, round+1, len(c.rep.Violations))
		}
		if len(c.rep.Violations) > 20 {
			break
		}
	}
	c.rep.Elapsed = time.Since(start)
	if s, ok := o.Key.(Summarizer); ok {
		c.rep.Notes = s.Summary()
	}
	return c.rep, nil
}

func (c *campaign) violate(format string, args ...any) {
	c.rep.Violations = append(c.rep.Violations, fmt.Sprintf(format, args...))
}

// start starts the key, records the verdict of its store check (after cut
// number round; 0 is the first start) and opens a client.
func (c *campaign) start(ctx context.Context, round int) error {
	addr, check, err := c.key.Start(ctx)
	if err != nil {
		return err
	}
	if round > 0 {
		c.rep.Checks++
		if check != nil {
			c.violate("after cut %d the store check failed: %v", round, check)
		}
	}
	if c.conn, err = udp.Dial(addr); err != nil {
		return err
	}
	c.wrongRun = 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		ictx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		c.dev, err = client.Open(ictx, c.conn, &client.Options{Timeout: 10 * time.Second})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no answer: %v\n%s", err, c.key.Output())
		}
	}
}

func (c *campaign) cut() {
	c.key.Cut()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *campaign) stop() {
	c.key.Stop()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// drive runs random commands until the kill moment; the command running
// then is left in c.flight.
func (c *campaign) drive(ctx context.Context) {
	delay := time.Duration(c.rng.Int64N(int64(c.o.MaxDelay)))
	dctx, cancel := context.WithTimeout(ctx, delay)
	defer cancel()
	c.flight = nil
	for dctx.Err() == nil {
		o := c.pick()
		c.flight = o
		if err := c.do(dctx, o); err != nil {
			if dctx.Err() != nil {
				c.rep.InFlight[o.kind]++
				return // interrupted by the cut (the deadline)
			}
			c.violate("%s answered %v (no kill yet)", o.kind, err)
			c.flight = nil
			continue
		}
		c.flight = nil
		c.rep.Acked[o.kind]++
	}
}

// pick chooses the next command.
func (c *campaign) pick() *op {
	c.seq++
	if c.m.pin == "" {
		return &op{kind: "setPIN", pin: pinA}
	}
	users := slices.Sorted(func(yield func(string) bool) {
		for u := range c.m.creds {
			if !yield(u) {
				return
			}
		}
	})
	anyUser := func() string { return users[c.rng.IntN(len(users))] }
	r := c.rng.IntN(100)
	switch {
	case r < 25 || len(users) == 0:
		return &op{kind: "makeCredential", user: fmt.Sprintf("u%d-%d", c.o.Seed, c.seq)}
	case r < 50:
		return &op{kind: "getAssertion", user: anyUser()}
	case r < 55 && c.m.retries > 5 && c.wrongRun < 2:
		return &op{kind: "wrongPIN"}
	case r < 60:
		return &op{kind: "rightPIN"}
	case r < 64:
		next := pinA
		if c.m.pin == pinA {
			next = pinB
		}
		return &op{kind: "changePIN", pin: next}
	case r < 72:
		return &op{kind: "delete", user: anyUser()}
	case r < 80:
		return &op{kind: "rename", user: anyUser(), name: fmt.Sprintf("name-%d", c.seq)}
	case r < 90:
		blob := make([]byte, 8+c.rng.IntN(300))
		for i := range blob {
			blob[i] = byte(c.rng.Uint32())
		}
		return &op{kind: "largeBlobs", blob: largeBlobArray(blob)}
	case r < 97:
		return &op{kind: "config"}
	}
	return &op{kind: "reset"}
}

// largeBlobArray serializes a large-blob array holding payload, with its
// checksum.
func largeBlobArray(payload []byte) []byte {
	arr, _ := cbor.Marshal([][]byte{payload})
	h := sha256.Sum256(arr)
	return append(arr, h[:16]...)
}

func (c *campaign) token(ctx context.Context, perm client.Permission, rpID string) (*client.PINToken, error) {
	tok, err := c.dev.GetPINToken(ctx, c.m.pin, perm, rpID)
	if err == nil {
		c.m.retries, c.wrongRun = 8, 0
	}
	return tok, err
}

// do runs o and applies it to the model when acknowledged.
func (c *campaign) do(ctx context.Context, o *op) error {
	switch o.kind {
	case "setPIN":
		if err := c.dev.SetPIN(ctx, o.pin); err != nil {
			return err
		}
		c.m.pin, c.m.retries = o.pin, 8
	case "makeCredential":
		rp := rps[c.rng.IntN(len(rps))]
		tok, err := c.token(ctx, client.PermMakeCredential, rp)
		if err != nil {
			return err
		}
		rk, alg := true, int64(-7)
		att, err := c.dev.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
			ClientDataHash: c.cdh, RP: &ctap2.RPEntity{ID: rp},
			User:             &ctap2.UserEntity{ID: []byte(o.user), Name: o.user},
			PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
			Options:          &ctap2.RequestOptions{RK: &rk},
		}, tok)
		if err != nil {
			return err
		}
		c.m.creds[o.user] = &cred{id: att.AuthData.CredentialID, rp: rp, user: o.user, name: o.user}
	case "getAssertion":
		cr := c.m.creds[o.user]
		n, err := c.assert(ctx, cr)
		if err != nil {
			return err
		}
		cr.counter = n
	case "wrongPIN":
		_, err := c.dev.GetPINToken(ctx, "000000", client.PermMakeCredential, "a.example")
		if !errors.Is(err, ctap2.ErrPINInvalid) {
			return fmt.Errorf("a wrong PIN: %v", err)
		}
		c.wrongRun++
		n, _, err := c.dev.GetPINRetries(ctx)
		if err != nil {
			return err
		}
		c.m.retries = n
	case "rightPIN":
		_, err := c.token(ctx, client.PermMakeCredential, "a.example")
		return err
	case "changePIN":
		if err := c.dev.ChangePIN(ctx, c.m.pin, o.pin); err != nil {
			return err
		}
		c.m.pin, c.m.retries = o.pin, 8
	case "delete", "rename":
		cr := c.m.creds[o.user]
		tok, err := c.token(ctx, client.PermCredentialMgmt, "")
		if err != nil {
			return err
		}
		cm, err := c.dev.CredentialManagement(ctx, tok)
		if err != nil {
			return err
		}
		if o.kind == "delete" {
			if err := cm.DeleteCredential(ctx, cr.id); err != nil {
				return err
			}
			delete(c.m.creds, o.user)
			return nil
		}
		if err := cm.UpdateUserInformation(ctx, cr.id, ctap2.UserEntity{ID: []byte(cr.user), Name: o.name}); err != nil {
			return err
		}
		cr.name = o.name
	case "largeBlobs":
		tok, err := c.token(ctx, client.PermLargeBlobWrite, "")
		if err != nil {
			return err
		}
		msg := append(bytes.Repeat([]byte{0xFF}, 32), 0x0C, 0x00)
		msg = binary.LittleEndian.AppendUint32(msg, 0)
		h := sha256.Sum256(o.blob)
		msg = append(msg, h[:]...)
		st, _, err := c.dev.Transact(ctx, ctap2.CmdLargeBlobs, map[int]any{
			2: o.blob, 3: 0, 4: len(o.blob), 5: tok.Authenticate(msg), 6: tok.Protocol(),
		})
		if err != nil {
			return err
		}
		if st != ctap2.StatusOK {
			return st
		}
		c.m.blob = o.blob
	case "config":
		// alwaysUv on, then off again: two writes.
		for range 2 {
			tok, err := c.token(ctx, client.PermAuthenticatorCfg, "")
			if err != nil {
				return err
			}
			cfg, err := c.dev.AuthenticatorConfig(ctx, tok)
			if err != nil {
				return err
			}
			if err := cfg.ToggleAlwaysUV(ctx); err != nil {
				return err
			}
			c.m.alwaysUV = !c.m.alwaysUV
		}
	case "reset":
		if err := c.dev.Reset(ctx); err != nil {
			return err
		}
		c.m = model{creds: map[string]*cred{}, retries: 8}
	}
	return nil
}

// assert makes an assertion with cr (allowList) and returns its counter.
func (c *campaign) assert(ctx context.Context, cr *cred) (uint32, error) {
	a, err := c.dev.GetAssertion(ctx, &ctap2.GetAssertionRequest{
		RPID: cr.rp, ClientDataHash: c.cdh, AllowList: []ctap2.CredDescriptor{{Type: "public-key", ID: cr.id}},
	}, nil)
	if err != nil {
		return 0, err
	}
	return a.AuthData.SignCount, nil
}

// check compares the restarted key with the model and the command that a
// kill cut (c.flight), then folds what it found into the model.
func (c *campaign) check(round int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fail := func(format string, args ...any) {
		c.violate("cut %d (%v in flight): "+format, append([]any{round, c.flightKind()}, args...)...)
	}
	f := c.flight
	if f == nil {
		f = &op{}
	}
	c.rep.Checks++
	info, err := c.dev.GetInfo(ctx)
	if err != nil {
		fail("getInfo: %v", err)
		return
	}
	pinSet := info.Options["clientPin"]
	// authenticatorReset: wholly done or not at all.
	if f.kind == "reset" && !pinSet && c.m.pin != "" {
		c.m = model{creds: map[string]*cred{}, retries: 8}
	}
	c.rep.Checks++
	if f.kind == "setPIN" && pinSet {
		c.m.pin, c.m.retries = f.pin, 8
	}
	if pinSet != (c.m.pin != "") {
		fail("clientPin %v, but the PIN acknowledged is %q", pinSet, c.m.pin)
		return
	}
	if !pinSet {
		c.checkEmpty(ctx, fail)
		return
	}
	// PIN retries: never above the last acknowledged value, unless a
	// command that resets them to the maximum was in flight.
	c.rep.Checks++
	retries, _, err := c.dev.GetPINRetries(ctx)
	bound := c.m.retries
	switch f.kind {
	case "rightPIN", "changePIN", "setPIN", "makeCredential", "delete", "rename", "largeBlobs", "config":
		bound = 8 // each starts with a right PIN
	}
	if err != nil || retries > bound {
		fail("PIN retries %d (%v), the last acknowledged %d", retries, err, c.m.retries)
	}
	// The PIN: the acknowledged one, or the one in flight.
	c.rep.Checks++
	candidates := []string{c.m.pin}
	if f.kind == "changePIN" {
		candidates = []string{f.pin, c.m.pin}
	}
	var tok *client.PINToken
	for _, p := range candidates {
		if tok, err = c.dev.GetPINToken(ctx, p, client.PermCredentialMgmt|client.PermAuthenticatorCfg, ""); err == nil {
			c.m.pin, c.m.retries = p, 8
			break
		}
	}
	if tok == nil {
		fail("neither PIN %q works: %v", candidates, err)
		return
	}
	// alwaysUv: the acknowledged value, or toggled by the cut command.
	c.rep.Checks++
	if uv := info.Options["alwaysUv"]; uv != c.m.alwaysUV && f.kind != "config" {
		fail("alwaysUv %v, acknowledged %v", uv, c.m.alwaysUV)
	} else if uv {
		cfg, err := c.dev.AuthenticatorConfig(ctx, tok)
		if err == nil {
			err = cfg.ToggleAlwaysUV(ctx)
		}
		if err != nil {
			fail("turning alwaysUv off: %v", err)
			return
		}
		if tok, err = c.dev.GetPINToken(ctx, c.m.pin, client.PermCredentialMgmt, ""); err != nil {
			fail("PIN token: %v", err)
			return
		}
	}
	c.m.alwaysUV = false
	c.checkCredentials(ctx, tok, f, fail)
	c.checkBlob(ctx, f, fail)
}

func (c *campaign) flightKind() string {
	if c.flight == nil {
		return "nothing"
	}
	return c.flight.kind
}

// checkEmpty: after a reset nothing is left.
func (c *campaign) checkEmpty(ctx context.Context, fail func(string, ...any)) {
	c.rep.Checks++
	c.m = model{creds: map[string]*cred{}, retries: 8}
	if arr, err := c.readBlob(ctx); err != nil || len(arr) != 17 {
		fail("after a reset the large-blob array is %x (%v), want the initial one", arr, err)
	}
}

// checkCredentials lists the credentials and compares them with the model.
func (c *campaign) checkCredentials(ctx context.Context, tok *client.PINToken, f *op, fail func(string, ...any)) {
	cm, err := c.dev.CredentialManagement(ctx, tok)
	if err != nil {
		fail("credMgmt: %v", err)
		return
	}
	seen := map[string]client.Credential{}
	seenRP := map[string]string{}
	for _, rp := range rps {
		creds, err := cm.EnumerateCredentials(ctx, client.RPIDHash(rp))
		if err != nil {
			fail("enumerating %s: %v", rp, err)
			return
		}
		for _, cr := range creds {
			seen[string(cr.User.ID)], seenRP[string(cr.User.ID)] = cr, rp
		}
	}
	c.rep.Checks++
	for user, cr := range c.m.creds {
		got, ok := seen[user]
		switch {
		case !ok && f.kind == "delete" && f.user == user:
			delete(c.m.creds, user) // the cut deletion happened
		case !ok:
			fail("acknowledged credential of %s is gone", user)
			delete(c.m.creds, user)
		case !bytes.Equal(got.ID, cr.id):
			fail("credential of %s has another ID", user)
		case got.User.Name == cr.name:
		case f.kind == "rename" && f.user == user && got.User.Name == f.name:
			cr.name = f.name
		default:
			fail("credential of %s is named %q, acknowledged %q", user, got.User.Name, cr.name)
		}
	}
	for user, got := range seen {
		if _, ok := c.m.creds[user]; ok {
			continue
		}
		if f.kind != "makeCredential" || f.user != user {
			fail("credential of %s is there but was never acknowledged (or was deleted)", user)
			continue
		}
		// The cut registration happened: it must be whole (listed with its
		// public key here, and it signs below).
		if len(got.PublicKey) == 0 || got.Algorithm() != -7 {
			fail("credential of %s is there without its public key", user)
		}
		c.m.creds[user] = &cred{id: got.ID, rp: seenRP[user], user: user, name: got.User.Name}
	}
	// Counters: strictly above the last acknowledged (a sample, and the
	// one in flight); a credential that appeared must sign.
	c.rep.Checks++
	var sample []*cred
	for _, cr := range c.m.creds {
		if cr.counter > 0 && len(sample) < 3 || (f.user == cr.user && (f.kind == "getAssertion" || f.kind == "makeCredential")) {
			sample = append(sample, cr)
		}
	}
	for _, cr := range sample {
		n, err := c.assert(ctx, cr)
		if err != nil {
			fail("getAssertion with %s's credential: %v", cr.user, err)
			continue
		}
		if n <= cr.counter {
			fail("counter of %s's credential %d, the last acknowledged %d", cr.user, n, cr.counter)
		}
		cr.counter = n
	}
}

func (c *campaign) readBlob(ctx context.Context) ([]byte, error) {
	st, out, err := c.dev.Transact(ctx, ctap2.CmdLargeBlobs, map[int]any{1: 1024, 3: 0})
	if err != nil {
		return nil, err
	}
	if st != ctap2.StatusOK {
		return nil, st
	}
	var resp struct {
		Config []byte `cbor:"1,keyasint"`
	}
	if err := cbor.Unmarshal(out, &resp); err != nil {
		return nil, err
	}
	return resp.Config, nil
}

// checkBlob: the acknowledged array, or the one in flight.
func (c *campaign) checkBlob(ctx context.Context, f *op, fail func(string, ...any)) {
	c.rep.Checks++
	arr, err := c.readBlob(ctx)
	if err != nil {
		fail("reading the large-blob array: %v", err)
		return
	}
	want := c.m.blob
	switch {
	case want == nil && len(arr) == 17, bytes.Equal(arr, want):
	case f.kind == "largeBlobs" && bytes.Equal(arr, f.blob):
		c.m.blob = f.blob
	default:
		fail("large-blob array of %d bytes is neither the acknowledged one nor the one in flight", len(arr))
	}
}

// Describe is the one-line form of a report for logs.
func (r *Report) Describe() string {
	var b strings.Builder
	r.Print(&b)
	return b.String()
}
