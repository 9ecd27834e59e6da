package bench_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/bench"
	"github.com/virtkey/virtkey/internal/testkit"
)

// The UDP benchmarks against the physical floor run both servers — the
// real key and the do-nothing Floor — as child processes of the test
// binary (TestMain below), on the same socket setup, and time them with
// the same client code.

const childEnv = "VIRTKEY_BENCH_CHILD" // "key" or "floor"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "floor":
		os.Exit(serveChild(func(ctx context.Context) error { return bench.ServeFloor(ctx, os.Getenv("VIRTKEY_BENCH_LENGTHS")) }))
	case "key":
		os.Exit(serveChild(serveKey))
	}
	fmt.Fprintln(os.Stderr, "bench: unknown", childEnv)
	os.Exit(2)
}

// profileEnv names a directory where each child writes a CPU profile and
// an execution trace of its life (KIND-PID.cpu.prof, KIND-PID.trace), to
// study the servers' own processes: go tool pprof, go tool trace.
const profileEnv = "VIRTKEY_BENCH_PROFILE"

// serveChild runs serve until SIGTERM or stdin closes (the parent went).
func serveChild(serve func(ctx context.Context) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if dir := os.Getenv(profileEnv); dir != "" {
		end, err := profileChild(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			return 1
		}
		defer end()
	}
	go func() { io.Copy(io.Discard, os.Stdin); stop() }()
	if err := serve(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	return 0
}

// profileChild starts a CPU profile and an execution trace in dir; the
// function it returns stops and writes both.
func profileChild(dir string) (func(), error) {
	name := filepath.Join(dir, fmt.Sprintf("%s-%d", os.Getenv(childEnv), os.Getpid()))
	cpu, err := os.Create(name + ".cpu.prof")
	if err != nil {
		return nil, err
	}
	tr, err := os.Create(name + ".trace")
	if err != nil {
		cpu.Close()
		return nil, err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return nil, err
	}
	if err := trace.Start(tr); err != nil {
		return nil, err
	}
	return func() {
		trace.Stop()
		pprof.StopCPUProfile()
		tr.Close()
		cpu.Close()
	}, nil
}

// serveKey serves an in-process key on VIRTKEY_BENCH_DIR over hid/udp, as
// virtkey run does (with --max-resident 0).
func serveKey(ctx context.Context) error {
	// No limit: the makeCredential benchmarks register a new user each call.
	k, err := inproc.New(inproc.Options{Dir: os.Getenv("VIRTKEY_BENCH_DIR"),
		Configure: func(c *ctap2.Config) { c.MaxResidentCredentials = ctap2.NoResidentLimit }})
	if err != nil {
		return err
	}
	defer k.Close()
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Printf("listening %s\n", conn.Addr())
	return conn.Serve(ctx, k.Authenticator, nil)
}

// child starts the test binary as a server and returns a CTAPHID client
// on it.
func child(b *testing.B, kind string, env ...string) *hid.Client {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+kind), env...)
	cmd.Stderr = os.Stderr
	stdin, stdout := testkit.Pipes(b, cmd)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			b.Errorf("bench child %s did not stop", kind)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		b.Fatalf("bench child %s: %q, %v", kind, line, err)
	}
	cc, err := udp.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	c := hid.NewClient(cc)
	if err := c.Init(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c
}

// roundTrip sends req and requires status OK; it returns the answer.
func roundTrip(b *testing.B, c *hid.Client, req []byte) []byte {
	out, err := c.CBOR(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	if len(out) == 0 || ctap2.StatusCode(out[0]) != ctap2.StatusOK {
		b.Fatalf("command %#x: % x", req[0], out[:min(len(out), 1)])
	}
	return out
}

// makeCredentialRequest is a resident ES256 makeCredential for a new user
// (n numbers it; every request has the same length).
func makeCredentialRequest(b *testing.B, n int) []byte {
	p := bench.MakeCredentialParams(true)
	p[3] = map[string]any{"id": fmt.Appendf(nil, "bench-user-%08d", n), "name": "bench", "displayName": "Bench User"}
	return append([]byte{ctap2.CmdMakeCredential}, bench.MustCBOR(b, p)...)
}

// udpFloorSetup starts the real key and the floor (answering with the
// lengths of the key's own answers) as child processes. It returns the
// clients, the getAssertion request, and a fresh makeCredential request
// each call.
type udpFloorSetup struct {
	key, floor *hid.Client
	ga         []byte
	users      int
	dir        string
}

func newUDPFloor(b *testing.B) *udpFloorSetup {
	b.Helper()
	s := &udpFloorSetup{dir: b.TempDir()}
	s.key = child(b, "key", "VIRTKEY_BENCH_DIR="+s.dir)
	s.ga = residentCredential(b, context.Background(), s.key)
	gaLen := len(roundTrip(b, s.key, s.ga))
	mcLen := len(roundTrip(b, s.key, s.nextMC(b)))
	s.floor = child(b, "floor", "VIRTKEY_BENCH_LENGTHS="+bench.FloorLengths(map[byte]int{
		ctap2.CmdGetAssertion: gaLen, ctap2.CmdMakeCredential: mcLen,
	}))
	return s
}

func (s *udpFloorSetup) nextMC(b *testing.B) []byte {
	s.users++
	return makeCredentialRequest(b, s.users)
}

// BenchmarkGetAssertionUDPProc is a getAssertion round trip over UDP with
// the key in another process (allowList, ES256).
func BenchmarkGetAssertionUDPProc(b *testing.B) {
	s := newUDPFloor(b)
	bench.Loop(b, func() { roundTrip(b, s.key, s.ga) })
}

// BenchmarkFloorSignUDP is the getAssertion yardstick: a raw P-256
// signature plus the floor's round trip of the same request and answer
// lengths.
func BenchmarkFloorSignUDP(b *testing.B) {
	s := newUDPFloor(b)
	sign := bench.RawSignOp(b)
	bench.Loop(b, func() { sign(); roundTrip(b, s.floor, s.ga) })
}

// BenchmarkPairedGetAssertionUDPFloor times the two call by call; x-base
// is the target ratio (≤ 1.15).
func BenchmarkPairedGetAssertionUDPFloor(b *testing.B) {
	s := newUDPFloor(b)
	sign := bench.RawSignOp(b)
	bench.Paired(b, func() { sign(); roundTrip(b, s.floor, s.ga) }, func() { roundTrip(b, s.key, s.ga) })
}

// BenchmarkMakeCredentialUDPProc is a resident makeCredential over UDP
// with the key in another process, its state in $TMPDIR: a new user each
// time, so each call stores a credential durably.
func BenchmarkMakeCredentialUDPProc(b *testing.B) {
	s := newUDPFloor(b)
	bench.Loop(b, func() { roundTrip(b, s.key, s.nextMC(b)) })
}

// BenchmarkFloorMakeCredentialUDP is the makeCredential yardstick: P-256
// key generation, a signature, a 512-byte append made durable with
// fdatasync in the key's file system, and the floor's round trip.
func BenchmarkFloorMakeCredentialUDP(b *testing.B) {
	s := newUDPFloor(b)
	base := bench.RawKeygenSignSyncOp(b, s.dir)
	bench.Loop(b, func() { base(); roundTrip(b, s.floor, s.nextMC(b)) })
}

// BenchmarkPairedMakeCredentialUDPFloor times the two call by call; x-base
// is the target ratio (≤ 2.0).
func BenchmarkPairedMakeCredentialUDPFloor(b *testing.B) {
	s := newUDPFloor(b)
	base := bench.RawKeygenSignSyncOp(b, s.dir)
	bench.Paired(b, func() { base(); roundTrip(b, s.floor, s.nextMC(b)) }, func() { roundTrip(b, s.key, s.nextMC(b)) })
}

// BenchmarkFloorUDP is the floor alone: the getAssertion round trip of
// the do-nothing server.
func BenchmarkFloorUDP(b *testing.B) {
	s := newUDPFloor(b)
	bench.Loop(b, func() { roundTrip(b, s.floor, s.ga) })
}
