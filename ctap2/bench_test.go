package ctap2_test

// Performance benchmarks (issue 2, "Performance"). The targets are ratios
// to raw crypto measured in the same run, never wall-clock limits:
//
//	GetAssertionES256  / RawSignES256        ≤ 1.25
//	MakeCredentialES256 / RawKeygenSignES256 ≤ 3
//
// The Paired benchmarks time each operation against its yardstick call by
// call and report the ratio as x-base. internal/bench/cmd/benchratio
// (scripts/bench.sh) runs them, with the UDP round trip of internal/bench,
// and prints the median ratios.

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/bench"
	"github.com/virtkey/virtkey/internal/vktest"
)

// Shared with webauthn_e2e_test.go.
const (
	rpID     = "example.com"
	rpOrigin = "https://example.com"
)

// encMode encodes requests CTAP2-canonically, as a platform does.
var encMode = func() cbor.EncMode {
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// BenchmarkRawSignES256 is the yardstick: one P-256 ECDSA signature over a
// SHA-256 digest computed beforehand.
func BenchmarkRawSignES256(b *testing.B) { bench.Loop(b, bench.RawSignOp(b)) }

// BenchmarkRawKeygenSignES256 is the yardstick for makeCredential: a P-256
// key generation and one signature.
func BenchmarkRawKeygenSignES256(b *testing.B) { bench.Loop(b, bench.RawKeygenSignOp(b)) }

// benchKey is an in-process key on a fresh state directory: the software
// key store and the bbolt store, as `virtkey run` uses them.
func benchKey(b *testing.B) *inproc.Key { return vktest.InProc(b, inproc.Options{Dir: b.TempDir()}) }

// getAssertionOp makes a resident ES256 credential on a fresh key and
// returns one in-process getAssertion with it in the allowList.
func getAssertionOp(b *testing.B) func() {
	k := benchKey(b)
	ctx := context.Background()
	st, out := k.Authenticator.Transact(ctx, ctap2.CmdMakeCredential, bench.MustCBOR(b, bench.MakeCredentialParams(true)))
	if st != ctap2.StatusOK {
		b.Fatalf("makeCredential: %v", st)
	}
	params := bench.MustCBOR(b, bench.GetAssertionParams(bench.CredentialID(b, out)))
	return func() {
		if st, _ := k.Authenticator.Transact(ctx, ctap2.CmdGetAssertion, params); st != ctap2.StatusOK {
			b.Fatalf("getAssertion: %v", st)
		}
	}
}

// makeCredentialOp returns one in-process makeCredential on a fresh key.
// The same user is registered every time, so for a resident credential
// each call replaces the previous one and the store keeps its size.
func makeCredentialOp(b *testing.B, rk bool) func() {
	k := benchKey(b)
	ctx := context.Background()
	params := bench.MustCBOR(b, bench.MakeCredentialParams(rk))
	return func() {
		if st, _ := k.Authenticator.Transact(ctx, ctap2.CmdMakeCredential, params); st != ctap2.StatusOK {
			b.Fatalf("makeCredential: %v", st)
		}
	}
}

// BenchmarkGetAssertionES256 is an in-process authenticatorGetAssertion
// (CBOR request in, CBOR response out) with an allowList of one resident
// ES256 credential: key unwrap, store lookup, durable counter, signature.
func BenchmarkGetAssertionES256(b *testing.B) { bench.Loop(b, getAssertionOp(b)) }

// BenchmarkMakeCredentialES256 is an in-process authenticatorMakeCredential
// of a resident ES256 credential with packed self attestation, stored in
// the bbolt store (the state directory is under $TMPDIR: its fsyncs count).
func BenchmarkMakeCredentialES256(b *testing.B) { bench.Loop(b, makeCredentialOp(b, true)) }

// BenchmarkMakeCredentialES256NonResident is the same without rk: no
// credential record, for comparison.
func BenchmarkMakeCredentialES256NonResident(b *testing.B) { bench.Loop(b, makeCredentialOp(b, false)) }

// BenchmarkPairedGetAssertionES256 times getAssertion against a raw
// signature call by call (bench.Paired); x-base is the target ratio (≤ 1.25).
func BenchmarkPairedGetAssertionES256(b *testing.B) {
	bench.Paired(b, bench.RawSignOp(b), getAssertionOp(b))
}

// BenchmarkPairedMakeCredentialES256 times a resident makeCredential
// against key generation + signature; x-base is the target ratio (≤ 3).
func BenchmarkPairedMakeCredentialES256(b *testing.B) {
	bench.Paired(b, bench.RawKeygenSignOp(b), makeCredentialOp(b, true))
}
