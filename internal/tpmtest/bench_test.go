package tpmtest

// getAssertion with TPM keys against the raw TPM work it cannot avoid. Both
// run on swtpm over the same raw TCP transport, each on its own swtpm:
//
//	go test ./internal/tpmtest -run '^$' -bench 'TPM' -benchtime 500x
//
// BenchmarkGetAssertionTPM is one in-process authenticatorGetAssertion
// (ctap2.Authenticator.Transact: CBOR decode, credential lookup, counter, authData,
// Load+Sign+Flush, CBOR encode) with an allowList of one non-resident
// credential. BenchmarkRawTPMSign is TPM2_Load + TPM2_Sign + TPM2_FlushContext
// with go-tpm and nothing else. The target is a ratio ≤ 1.2.

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

func BenchmarkGetAssertionTPM(b *testing.B) {
	tmp := b.TempDir()
	open := opener(b, startSwtpm(b, filepath.Join(tmp, "swtpm")))
	ctx := context.Background()
	state := filepath.Join(tmp, "state")
	keys, err := tpmkeys.OpenTPM(ctx, state, open)
	if err != nil {
		b.Fatal(err)
	}
	defer keys.Close()
	db, err := store.Open(filepath.Join(state, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	auth, err := ctap2.New(ctap2.Config{KeyStore: keys, Store: db, Attestation: ctap2.AttestationNone})
	if err != nil {
		b.Fatal(err)
	}
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		b.Fatal(err)
	}
	cdh := sha([]byte("client data"))
	mc, _ := em.Marshal(map[int]any{
		1: cdh, 2: map[string]any{"id": rpID}, 3: map[string]any{"id": []byte("user")},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
	})
	st, out := auth.Transact(ctx, ctap2.CmdMakeCredential, mc)
	if st != ctap2.StatusOK {
		b.Fatalf("makeCredential: %v", st)
	}
	var mcr struct {
		AuthData []byte `cbor:"2,keyasint"`
	}
	if err := cbor.Unmarshal(out, &mcr); err != nil {
		b.Fatal(err)
	}
	ad, err := ctap2.ParseAuthData(mcr.AuthData)
	if err != nil {
		b.Fatal(err)
	}
	ga, _ := em.Marshal(map[int]any{
		1: rpID, 2: cdh, 3: []map[string]any{{"type": "public-key", "id": ad.CredentialID}},
	})
	for b.Loop() {
		if st, _ := auth.Transact(ctx, ctap2.CmdGetAssertion, ga); st != ctap2.StatusOK {
			b.Fatalf("getAssertion: %v", st)
		}
	}
}

func BenchmarkRawTPMSign(b *testing.B) {
	tpm := dialTPM(b, startSwtpm(b, filepath.Join(b.TempDir(), "swtpm")))
	defer tpm.Close()
	srk := createSRK(b, tpm)
	parent := tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
	key, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, NoDA: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
		}),
	})}.Execute(tpm)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha([]byte("data"))
	for b.Loop() {
		l, err := tpm2.Load{ParentHandle: parent, InPrivate: key.OutPrivate, InPublic: key.OutPublic}.Execute(tpm)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := (tpm2.Sign{
			KeyHandle:  tpm2.AuthHandle{Handle: l.ObjectHandle, Name: l.Name, Auth: tpm2.PasswordAuth(nil)},
			Digest:     tpm2.TPM2BDigest{Buffer: digest},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}).Execute(tpm); err != nil {
			b.Fatal(err)
		}
		if _, err := (tpm2.FlushContext{FlushHandle: l.ObjectHandle}).Execute(tpm); err != nil {
			b.Fatal(err)
		}
	}
}
