package bench

import (
	"crypto/sha256"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/virtkey/virtkey/ctap2"
)

// The requests of the getAssertion and makeCredential benchmarks, in
// process (ctap2) and over a transport (this package).

// encMode encodes requests CTAP2-canonically, as a platform does.
var encMode = func() cbor.EncMode {
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// MustCBOR encodes v CTAP2-canonically or fails the benchmark.
func MustCBOR(b testing.TB, v any) []byte {
	b.Helper()
	p, err := encMode.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

var clientDataHash = sha256.Sum256([]byte("bench client data"))

// MakeCredentialParams are the benchmarks' makeCredential parameters: an
// ES256 credential on example.com, always for the same user, discoverable
// when rk.
func MakeCredentialParams(rk bool) map[int]any {
	m := map[int]any{
		1: clientDataHash[:],
		2: map[string]any{"id": "example.com", "name": "Example"},
		3: map[string]any{"id": []byte("bench-user-0001"), "name": "bench", "displayName": "Bench User"},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
	}
	if rk {
		m[7] = map[string]bool{"rk": true}
	}
	return m
}

// GetAssertionParams are the benchmarks' getAssertion parameters: credID
// in the allowList, on example.com.
func GetAssertionParams(credID []byte) map[int]any {
	return map[int]any{
		1: "example.com",
		2: clientDataHash[:],
		3: []map[string]any{{"type": "public-key", "id": credID}},
	}
}

// CredentialID is the credential ID of a makeCredential response (the
// CBOR body after the status byte).
func CredentialID(b testing.TB, body []byte) []byte {
	b.Helper()
	var resp ctap2.MakeCredentialResponse
	if err := cbor.Unmarshal(body, &resp); err != nil {
		b.Fatal(err)
	}
	ad, err := ctap2.ParseAuthData(resp.AuthData)
	if err != nil {
		b.Fatal(err)
	}
	return ad.CredentialID
}
