package scale

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/internal/testkit"
)

// Options configure Measure.
type Options struct {
	// Spec is the large store; the baseline is 10 credentials (OneRP's,
	// 4 of BigRP, 5 over 4 RPs).
	Spec Spec
	// Bin is the virtkey binary to serve the stores with `virtkey run`.
	Bin string
	// Dir holds the two state directories (made if missing).
	Dir string
	// Samples is the number of timed calls per figure and key (default 100).
	Samples int
	// Progress receives what is being done (nil: nothing).
	Progress io.Writer
}

// BaselineSpec is the 10-credential store every figure is compared with.
var BaselineSpec = Spec{N: 10, RPs: 6, Big: 4}

// Figure is one measured quantity, for the baseline and the large store.
type Figure struct {
	Name       string
	Unit       string // "ms", "µs", "MB", "B"
	Base, Full float64
	Target     string // what it is held to, e.g. "≤ 1.2× baseline"
	// Limit, if positive, is an absolute bound on Full; Ratio, if
	// positive, a bound on Full/Base.
	Limit, Ratio float64
}

// Met reports whether f meets its target (true when it has none).
func (f Figure) Met() bool {
	if f.Limit > 0 && f.Full > f.Limit {
		return false
	}
	if f.Ratio > 0 && f.Base > 0 && f.Full/f.Base > f.Ratio {
		return false
	}
	return true
}

// Report is Measure's result.
type Report struct {
	Spec     Spec
	Generate time.Duration
	Figures  []Figure
}

// Print writes r as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "scale: %d credentials over %d RPs, %d accounts at %s (generated in %s); baseline: %d credentials\n\n",
		r.Spec.N, r.Spec.RPs, r.Spec.Big, BigRP, r.Generate.Round(time.Second), BaselineSpec.N)
	fmt.Fprintf(w, "%-50s %12s %14s %8s   %s\n", "figure", "10 creds", fmt.Sprintf("%d creds", r.Spec.N), "ratio", "target")
	for _, f := range r.Figures {
		ratio := "-"
		if f.Base > 0 {
			ratio = fmt.Sprintf("%.2f×", f.Full/f.Base)
		}
		verdict := f.Target
		switch {
		case f.Limit == 0 && f.Ratio == 0:
		case f.Met():
			verdict += "  ok"
		default:
			verdict += "  MISSED"
		}
		fmt.Fprintf(w, "%-50s %12s %14s %8s   %s\n", f.Name, format(f.Base, f.Unit), format(f.Full, f.Unit), ratio, verdict)
	}
}

func format(v float64, unit string) string {
	switch unit {
	case "B", "MB":
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

// key is one `virtkey run` serving a store, and a CTAP client on it.
type key struct {
	name string
	dir  string
	cmd  *exec.Cmd
	dev  *client.Device
	conn *udp.ClientConn
	out  bytes.Buffer
	open time.Duration // process start → first getInfo answered
	res  *Result
	tok  *client.PINToken
	// getNextAssertion and enumeration state left on the key; cycle is
	// how many of BigRP's accounts getNextAssertion goes through before
	// starting again.
	nextLeft, rpLeft, credLeft, cycle int
	users                             int
}

// Measure generates the baseline and the large store, serves each with
// `virtkey run` over UDP, and measures every figure on both, alternating
// between the two keys in small batches so that a busy machine slows
// both alike.
func Measure(ctx context.Context, o Options) (*Report, error) {
	if o.Samples <= 0 {
		o.Samples = 100
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := &Report{Spec: o.Spec}
	keys := []*key{{name: "baseline", dir: filepath.Join(o.Dir, "base")}, {name: "large", dir: filepath.Join(o.Dir, "large")}}
	for i, spec := range []Spec{BaselineSpec, o.Spec} {
		fmt.Fprintf(progress, "generating %d credentials in %s\n", spec.N, keys[i].dir)
		start := time.Now()
		res, err := Generate(ctx, keys[i].dir, spec)
		if err != nil {
			return nil, err
		}
		keys[i].res = res
		if i == 1 {
			rep.Generate = time.Since(start)
		}
	}
	defer func() {
		for _, k := range keys {
			k.stop()
		}
	}()
	for _, k := range keys {
		fmt.Fprintf(progress, "starting virtkey run on %s\n", k.dir)
		if err := k.start(ctx, o.Bin); err != nil {
			return nil, err
		}
	}
	rep.add(Figure{Name: "open → first getInfo answered", Unit: "ms",
		Base: ms(keys[0].open), Full: ms(keys[1].open), Target: "≤ 2000 ms", Limit: 2000})

	// The first discoverable assertion of each key is checked against the
	// public key the generator reported.
	for _, k := range keys {
		if err := k.verifyOne(ctx); err != nil {
			return nil, err
		}
	}
	cdh := sha256.Sum256([]byte("scale client data"))
	type op struct {
		name, target string
		ratio        float64
		call         func(k *key) error
	}
	ops := []op{
		{"getInfo", "≤ 1.2× baseline", 1.2, func(k *key) error { return k.want(ctap2.CmdGetInfo, nil) }},
		{"getAssertion, discoverable, 1-account RP", "≤ 1.2× baseline", 1.2, func(k *key) error {
			return k.want(ctap2.CmdGetAssertion, map[int]any{1: OneRP, 2: cdh[:]})
		}},
		{"getAssertion, discoverable, " + BigRP + " (first)", "≤ 1.2× baseline", 1.2, func(k *key) error {
			return k.bigAssertion(cdh[:])
		}},
		{"getNextAssertion, " + BigRP, "≤ 1.2× baseline", 1.2, func(k *key) error { return k.nextAssertion(ctx, cdh[:]) }},
		{"makeCredential, resident, new user", "≤ 1.2× baseline", 1.2, func(k *key) error {
			k.users++
			return k.want(ctap2.CmdMakeCredential, makeCredential(cdh[:], "rp-000001.example", fmt.Sprintf("new-user-%d", k.users)))
		}},
		{"makeCredential, resident, same user at " + BigRP, "≤ 1.2× baseline", 1.2, func(k *key) error {
			return k.want(ctap2.CmdMakeCredential, makeCredential(cdh[:], BigRP, "big-user-2"))
		}},
	}
	for i, op := range ops {
		if i == 3 {
			// The first use of a credential since the start reserves its
			// counter values: one durable write. Measured apart, on the
			// accounts after the newest (the baseline has 3 of them).
			fmt.Fprintf(progress, "measuring getNextAssertion, first use\n")
			var cold [2]float64
			for j, k := range keys {
				t, err := k.coldNext(cdh[:], o.Samples)
				if err != nil {
					return nil, fmt.Errorf("getNextAssertion, first use: %w", err)
				}
				cold[j] = t
				// The warm figure cycles through the accounts just used.
				k.cycle = min(len(k.res.Big), o.Samples+1)
			}
			rep.add(Figure{Name: "getNextAssertion, " + BigRP + ", first use", Unit: "µs", Base: cold[0], Full: cold[1], Target: "(a counter reservation)"})
		}
		fmt.Fprintf(progress, "measuring %s\n", op.name)
		t, err := paired(keys, op.call, o.Samples)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op.name, err)
		}
		rep.add(Figure{Name: op.name, Unit: "µs", Base: t[0], Full: t[1], Target: op.target, Ratio: op.ratio})
	}

	// Credential management needs a PIN (set last: with a PIN, a resident
	// makeCredential needs user verification).
	for _, k := range keys {
		if err := k.dev.SetPIN(ctx, "1234"); err != nil {
			return nil, fmt.Errorf("%s: setting the PIN: %w", k.name, err)
		}
		tok, err := k.dev.GetPINToken(ctx, "1234", client.PermCredentialMgmt, "")
		if err != nil {
			return nil, fmt.Errorf("%s: PIN token: %w", k.name, err)
		}
		k.tok = tok
	}
	bigHash := sha256.Sum256([]byte(BigRP))
	cmOps := []op{
		{"credMgmt getCredsMetadata", "≤ 1.2× baseline", 1.2, func(k *key) error { _, err := k.credMgmt(0x01, nil); return err }},
		{"credMgmt enumerateRPsBegin", "O(log n)", 0, func(k *key) error {
			n, err := k.credMgmt(0x02, nil)
			k.rpLeft = n - 1
			return err
		}},
		{"credMgmt enumerateRPsGetNextRP", "O(log n)", 0, func(k *key) error { return k.nextRP() }},
		{"credMgmt enumerateCredentialsBegin, " + BigRP, "O(log n)", 0, func(k *key) error {
			n, err := k.credMgmt(0x04, map[int]any{1: bigHash[:]})
			k.credLeft = n - 1
			return err
		}},
		{"credMgmt enumerateCredentialsGetNextCredential", "O(log n)", 0, func(k *key) error { return k.nextCred(bigHash[:]) }},
	}
	for _, op := range cmOps {
		fmt.Fprintf(progress, "measuring %s\n", op.name)
		t, err := paired(keys, op.call, o.Samples)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op.name, err)
		}
		rep.add(Figure{Name: op.name, Unit: "µs", Base: t[0], Full: t[1], Target: op.target, Ratio: op.ratio})
	}

	var rss, hwm [2]float64
	for i, k := range keys {
		rss[i], hwm[i] = k.memory()
	}
	rep.add(Figure{Name: "RSS of virtkey run after the figures", Unit: "MB", Base: rss[0], Full: rss[1], Target: "≤ 500 MB", Limit: 500})
	rep.add(Figure{Name: "peak RSS (VmHWM)", Unit: "MB", Base: hwm[0], Full: hwm[1], Target: "≤ 500 MB", Limit: 500})
	for _, k := range keys {
		if err := k.stop(); err != nil {
			return nil, err
		}
	}
	var size [2]float64
	for i, k := range keys {
		fi, err := os.Stat(filepath.Join(k.dir, statedir.StateFileName))
		if err != nil {
			return nil, err
		}
		size[i] = float64(fi.Size()) / float64([]int{BaselineSpec.N, o.Spec.N}[i])
	}
	sizeFig := Figure{Name: "state.db per credential", Unit: "B", Base: size[0], Full: size[1], Target: "≤ 1024 B", Limit: 1024}
	if o.Spec.N < 100000 {
		// The file's fixed part and its growth steps (bbolt grows it by up
		// to 16 MiB at a time) dwarf a small store.
		sizeFig.Target, sizeFig.Limit = "≤ 1024 B, judged from 100,000 credentials", 0
	}
	rep.add(sizeFig)
	return rep, nil
}

func (r *Report) add(f Figure) { r.Figures = append(r.Figures, f) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pairBatch is how many calls one key gets before the other's turn.
const pairBatch = 10

// paired times n calls of call on each key, alternating batches, and
// returns each key's median in µs.
func paired(keys []*key, call func(*key) error, n int) ([2]float64, error) {
	var times [2][]time.Duration
	for b := 0; b*pairBatch < n; b++ {
		order := []int{0, 1}
		if b%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			for range min(pairBatch, n-b*pairBatch) {
				t0 := time.Now()
				if err := call(keys[i]); err != nil {
					return [2]float64{}, fmt.Errorf("%s: %w", keys[i].name, err)
				}
				times[i] = append(times[i], time.Since(t0))
			}
		}
	}
	var out [2]float64
	for i := range out {
		slices.Sort(times[i])
		out[i] = float64(times[i][len(times[i])/2]) / float64(time.Microsecond)
	}
	return out, nil
}

func makeCredential(cdh []byte, rpID, user string) map[int]any {
	return map[int]any{
		1: cdh,
		2: map[string]any{"id": rpID},
		3: map[string]any{"id": []byte(user), "name": user},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
		7: map[string]bool{"rk": true},
	}
}

// start runs `virtkey run` on k.dir and times it up to the first getInfo
// answer.
func (k *key) start(ctx context.Context, bin string) error {
	addr, err := testkit.FreeUDP()
	if err != nil {
		return err
	}
	k.cmd = exec.Command(bin, "run", "--transport", "udp", "--udp-listen", addr, "--state-dir", k.dir,
		"--presence", "auto", "--reset-window", "0", "--max-resident", "0")
	k.cmd.Stdout, k.cmd.Stderr = &k.out, &k.out
	start := time.Now()
	if err := k.cmd.Start(); err != nil {
		return err
	}
	if k.conn, err = udp.Dial(addr); err != nil {
		return err
	}
	deadline := start.Add(60 * time.Second)
	for {
		ictx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		k.dev, err = client.Open(ictx, k.conn, &client.Options{Timeout: 30 * time.Second})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || k.cmd.ProcessState != nil {
			return fmt.Errorf("%s: virtkey run did not answer: %v\n%s", k.name, err, k.out.String())
		}
	}
	if _, err := k.dev.GetInfo(ctx); err != nil {
		return fmt.Errorf("%s: getInfo: %w", k.name, err)
	}
	k.open = time.Since(start)
	return nil
}

// stop ends the key with SIGTERM (once).
func (k *key) stop() error {
	if k.cmd == nil || k.cmd.Process == nil {
		return nil
	}
	cmd := k.cmd
	k.cmd = nil
	if k.conn != nil {
		k.conn.Close()
	}
	cmd.Process.Signal(syscall.SIGTERM)
	switch killed, err := testkit.WaitOrKill(cmd, 10*time.Second); {
	case killed:
		return fmt.Errorf("%s: virtkey run did not stop", k.name)
	case err != nil:
		return fmt.Errorf("%s: virtkey run: %v\n%s", k.name, err, k.out.String())
	}
	return nil
}

// want sends a command and requires success.
func (k *key) want(cmd byte, params any) error {
	_, err := k.call(cmd, params)
	return err
}

func (k *key) call(cmd byte, params any) ([]byte, error) {
	st, out, err := k.dev.Transact(context.Background(), cmd, params)
	if err != nil {
		return nil, err
	}
	if st != ctap2.StatusOK {
		return nil, fmt.Errorf("command %#x: %v", cmd, st)
	}
	return out, nil
}

// verifyOne checks a discoverable assertion of OneRP against the
// generator's public key.
func (k *key) verifyOne(ctx context.Context) error {
	cdh := sha256.Sum256([]byte("verify"))
	out, err := k.call(ctap2.CmdGetAssertion, map[int]any{1: OneRP, 2: cdh[:]})
	if err != nil {
		return fmt.Errorf("%s: %w", k.name, err)
	}
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(out, &ga); err != nil {
		return err
	}
	pub, _, err := cose.DecodePublicKey(k.res.One.PublicKey)
	if err != nil {
		return err
	}
	d := sha256.Sum256(append(bytes.Clone(ga.AuthData), cdh[:]...))
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(ec, d[:], ga.Signature) || !bytes.Equal(ga.Credential.ID, k.res.One.ID) {
		return fmt.Errorf("%s: the assertion of %s does not verify with the generated public key", k.name, OneRP)
	}
	return nil
}

func (k *key) bigAssertion(cdh []byte) error {
	out, err := k.call(ctap2.CmdGetAssertion, map[int]any{1: BigRP, 2: cdh})
	if err != nil {
		return err
	}
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(out, &ga); err != nil {
		return err
	}
	if int(ga.NumberOfCredentials) != len(k.res.Big) {
		return fmt.Errorf("numberOfCredentials %d, want %d", ga.NumberOfCredentials, len(k.res.Big))
	}
	k.nextLeft = len(k.res.Big) - 1
	if k.cycle > 0 {
		k.nextLeft = k.cycle - 1
	}
	return nil
}

// coldNext times getNextAssertion through the accounts after the newest,
// each used for the first time since the key started (at most n), and
// returns the median in µs.
func (k *key) coldNext(cdh []byte, n int) (float64, error) {
	if err := k.bigAssertion(cdh); err != nil {
		return 0, err
	}
	var times []time.Duration
	for range min(n, len(k.res.Big)-1) {
		t0 := time.Now()
		if err := k.want(ctap2.CmdGetNextAssertion, nil); err != nil {
			return 0, fmt.Errorf("%s: %w", k.name, err)
		}
		times = append(times, time.Since(t0))
	}
	k.nextLeft = 0 // the next figure starts again with getAssertion
	slices.Sort(times)
	return float64(times[len(times)/2]) / float64(time.Microsecond), nil
}

// nextAssertion times one getNextAssertion; when the list is used up, an
// untimed getAssertion starts it again (the timer includes it: rare).
func (k *key) nextAssertion(ctx context.Context, cdh []byte) error {
	if k.nextLeft == 0 {
		if err := k.bigAssertion(cdh); err != nil {
			return err
		}
	}
	k.nextLeft--
	return k.want(ctap2.CmdGetNextAssertion, nil)
}

// credMgmt sends an authenticated credMgmt subcommand and returns the
// total it reports (RPs or credentials), if any.
func (k *key) credMgmt(sub byte, params map[int]any) (int, error) {
	req := map[int]any{1: sub}
	msg := []byte{sub}
	if params != nil {
		p, err := cbor.Marshal(params)
		if err != nil {
			return 0, err
		}
		req[2] = cbor.RawMessage(p)
		msg = append(msg, p...)
	}
	req[3], req[4] = k.tok.Protocol(), k.tok.Authenticate(msg)
	out, err := k.call(ctap2.CmdCredentialManagement, req)
	if err != nil {
		return 0, err
	}
	var resp ctap2.CredentialManagementResponse
	if err := cbor.Unmarshal(out, &resp); err != nil {
		return 0, err
	}
	switch {
	case resp.TotalRPs != nil:
		return int(*resp.TotalRPs), nil
	case resp.TotalCredentials != nil:
		return int(*resp.TotalCredentials), nil
	}
	return 0, nil
}

func (k *key) nextRP() error {
	if k.rpLeft <= 0 {
		n, err := k.credMgmt(0x02, nil)
		if err != nil {
			return err
		}
		k.rpLeft = n - 1
	}
	k.rpLeft--
	return k.want(ctap2.CmdCredentialManagement, map[int]any{1: 0x03})
}

func (k *key) nextCred(rpIDHash []byte) error {
	if k.credLeft <= 0 {
		n, err := k.credMgmt(0x04, map[int]any{1: rpIDHash})
		if err != nil {
			return err
		}
		k.credLeft = n - 1
	}
	k.credLeft--
	return k.want(ctap2.CmdCredentialManagement, map[int]any{1: 0x05})
}

// memory reads VmRSS and VmHWM of the key's process, in MB.
func (k *key) memory() (rss, hwm float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", k.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v / 1024
		case "VmHWM:":
			hwm = v / 1024
		}
	}
	return rss, hwm
}
