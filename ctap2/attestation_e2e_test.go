package ctap2_test

// Attestation and U2F end to end: an in-process key (inproc, software key
// store with every algorithm) with virtkey's own attestation CA, driven
// through CTAPHID reports, verified by go-webauthn as the relying party —
// with a metadata entry that makes it check the x5c chain up to the CA.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/metadata/providers/memory"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap1"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/attca"
	"github.com/virtkey/virtkey/internal/rptest"
	"github.com/virtkey/virtkey/internal/vktest"
)

// attKey starts a key whose attestation CA lives in its state directory,
// as `virtkey run` has it.
func attKey(t testing.TB, mode ctap2.Attestation, rps ...string) (*inproc.Key, *attca.Set) {
	t.Helper()
	dir := t.TempDir()
	set, err := attca.Open(dir, ctap2.DefaultAAGUID, time.Now(), vktest.DeviceSealer(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	k := vktest.InProc(t, inproc.Options{Dir: dir, Configure: func(c *ctap2.Config) {
		c.Attestation = mode
		c.Batch = &ctap2.AttestationIdentity{Signer: set.Batch.Signer, Chain: set.Batch.Chain}
		c.Enterprise = &ctap2.AttestationIdentity{Signer: set.Enterprise.Signer, Chain: set.Enterprise.Chain}
		c.EnterpriseRPIDs = rps
	}})
	return k, set
}

// trustingRP is a relying party whose metadata says: virtkey's AAGUID,
// basic (full) or self attestation, trust anchor root. It verifies every
// x5c chain against root.
func trustingRP(t testing.TB, root *x509.Certificate) *rptest.RP {
	t.Helper()
	entry := &metadata.Entry{
		AaGUID: uuid.UUID(ctap2.DefaultAAGUID),
		MetadataStatement: metadata.Statement{
			AaGUID:                      uuid.UUID(ctap2.DefaultAAGUID),
			Description:                 "virtkey",
			AttestationTypes:            metadata.AuthenticatorAttestationTypes{metadata.BasicFull, metadata.BasicSurrogate},
			AttestationRootCertificates: []*x509.Certificate{root},
		},
	}
	mds, err := memory.New(
		memory.WithMetadata(map[uuid.UUID]*metadata.Entry{uuid.UUID(ctap2.DefaultAAGUID): entry}),
		memory.WithValidateEntry(true),
		memory.WithValidateTrustAnchor(true),
		memory.WithValidateAttestationTypes(true),
		memory.WithValidateStatus(false),
	)
	if err != nil {
		t.Fatal(err)
	}
	return rptest.NewWithConfig(t, &webauthn.Config{
		RPID: rpID, RPDisplayName: "Example", RPOrigins: []string{rpOrigin}, MDS: mds,
	})
}

// Every algorithm × every attestation mode, registered and logged in with
// go-webauthn; batch attestation verified up to the CA.
func TestWebAuthnAttestationModesAndAlgorithms(t *testing.T) {
	t.Parallel()
	algs := []struct {
		name string
		alg  int
	}{{"ES256", -7}, {"EdDSA", -8}, {"ES384", -35}, {"RS256", -257}}
	modes := []struct {
		mode     ctap2.Attestation
		fmt      string
		attType  string
		trusting bool
	}{
		{ctap2.AttestationBatch, "packed", "basic_full", true},
		{ctap2.AttestationSelf, "packed", "basic_surrogate", true},
		{ctap2.AttestationNone, "none", "none", false},
	}
	for _, m := range modes {
		t.Run(string(m.mode), func(t *testing.T) {
			t.Parallel()
			k, set := attKey(t, m.mode)
			info, err := k.Authenticator.Info()
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, a := range info.Algorithms {
				got = append(got, a.Alg)
			}
			if !slices.Equal(got, []int64{-7, -8, -35, -257}) {
				t.Fatalf("getInfo algorithms %v", got)
			}
			d := openDevice(t, k)
			rp := rptest.New(t, rpID, rpOrigin)
			if m.trusting {
				rp = trustingRP(t, set.Root)
			}
			for _, a := range algs {
				u := &rptest.User{ID: []byte("user-" + a.name), Name: "alice-" + a.name}
				cred := rp.Register(t, d, u, rptest.RegisterOptions{Alg: a.alg, WantFmt: m.fmt})
				if cred.AttestationType != m.attType {
					t.Errorf("%s: attestation type %q, want %q", a.name, cred.AttestationType, m.attType)
				}
				if ck, err := cose.ParseKey(cred.PublicKey); err != nil || int(ck.Alg) != a.alg {
					t.Errorf("%s: credential public key %v %v", a.name, ck, err)
				}
				rp.Login(t, d, u)
				rp.Login(t, d, u)
			}
		})
	}
}

// A relying party that trusts another root refuses the batch attestation:
// the chain really is checked.
func TestWebAuthnBatchAttestationUntrustedRoot(t *testing.T) {
	t.Parallel()
	k, _ := attKey(t, ctap2.AttestationBatch)
	other, err := attca.NewAuthority(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rp := trustingRP(t, other.Root)
	d := openDevice(t, k)
	u := &rptest.User{ID: []byte("u"), Name: "alice"}
	creation, session, err := rp.BeginRegistration(u)
	if err != nil {
		t.Fatal(err)
	}
	cdj := rp.ClientData("webauthn.create", creation.Response.Challenge)
	att := makeCredential(t, d, cdj, u, nil)
	_, err = rp.CreateCredential(u, *session, rptest.CreationResponse(t, att.Attestation, cdj))
	if err == nil {
		t.Fatal("registration accepted by an RP trusting another root")
	}
	if !strings.Contains(rptest.Describe(err).Error(), "trust chain") {
		t.Fatalf("refused for another reason: %v", rptest.Describe(err))
	}
}

// The batch certificate as a relying party sees it: the FIDO subject,
// basic constraints, and the AAGUID extension 04 12 04 10 ‖ aaguid.
func TestBatchCertificateFields(t *testing.T) {
	t.Parallel()
	k, set := attKey(t, ctap2.AttestationBatch)
	d := openDevice(t, k)
	u := &rptest.User{ID: []byte("u"), Name: "alice"}
	cdj := rptest.New(t, rpID, rpOrigin).ClientData("webauthn.create", []byte("challenge-challenge-challenge-00"))
	att := makeCredential(t, d, cdj, u, nil)
	x5c, _ := att.stmt["x5c"].([]any)
	if len(x5c) != 1 {
		t.Fatalf("x5c of %d certificates", len(x5c))
	}
	leaf, err := x509.ParseCertificate(x5c[0].([]byte))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(set.Root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	s := leaf.Subject
	if leaf.Version != 3 || leaf.IsCA || !leaf.BasicConstraintsValid || len(s.Country) != 1 || s.Organization[0] == "" ||
		len(s.OrganizationalUnit) != 1 || s.OrganizationalUnit[0] != "Authenticator Attestation" || s.CommonName == "" {
		t.Fatalf("certificate v%d CA=%v subject %v", leaf.Version, leaf.IsCA, s)
	}
	want := append([]byte{0x04, 0x12, 0x04, 0x10}, ctap2.DefaultAAGUID[:]...)
	if !bytes.Contains(leaf.Raw, want) {
		t.Fatal("no AAGUID extension 04 12 04 10 ‖ aaguid")
	}
	for _, e := range leaf.Extensions {
		if e.Id.Equal(attca.OIDAAGUID) && e.Critical {
			t.Fatal("AAGUID extension is critical")
		}
	}
}

// Enterprise attestation, enabled with authenticatorConfig, verified by
// the RP up to the CA; the certificate is the per-device one.
func TestWebAuthnEnterpriseAttestation(t *testing.T) {
	t.Parallel()
	k, set := attKey(t, ctap2.AttestationBatch, rpID)
	d := openDevice(t, k)
	rp := trustingRP(t, set.Root)
	u := &rptest.User{ID: []byte("u"), Name: "alice"}
	creation, session, err := rp.BeginRegistration(u)
	if err != nil {
		t.Fatal(err)
	}
	cdj := rp.ClientData("webauthn.create", creation.Response.Challenge)
	if st, _ := rptest.Call(t, d, ctap2.CmdMakeCredential, mcMap(cdj, u, map[int]any{10: 1})); st != ctap2.ErrInvalidParameter {
		t.Fatalf("enterpriseAttestation before enabling: %v", st)
	}
	if st, _ := rptest.Call(t, d, ctap2.CmdConfig, map[int]any{1: 1}); st != ctap2.StatusOK {
		t.Fatalf("enableEnterpriseAttestation: %v", st)
	}
	att := makeCredential(t, d, cdj, u, map[int]any{10: 1})
	if att.EPAtt == nil || !*att.EPAtt {
		t.Fatal("no epAtt")
	}
	x5c, _ := att.stmt["x5c"].([]any)
	if len(x5c) != 1 || !bytes.Equal(x5c[0].([]byte), set.Enterprise.Chain[0]) {
		t.Fatal("not the enterprise certificate")
	}
	cred, err := rp.CreateCredential(u, *session, rptest.CreationResponse(t, att.Attestation, cdj))
	if err != nil {
		t.Fatalf("CreateCredential: %v", rptest.Describe(err))
	}
	if cred.AttestationType != "basic_full" {
		t.Fatalf("attestation type %q", cred.AttestationType)
	}
}

// U2F over CTAPHID_MSG: register, build the fido-u2f attestation object a
// browser would, have go-webauthn verify it (and the certificate chain),
// check-only, authenticate, and log in with CTAP2 getAssertion.
func TestU2FRegistrationVerifiedByRP(t *testing.T) {
	t.Parallel()
	k, set := attKey(t, ctap2.AttestationBatch)
	d := openDevice(t, k)
	if d.c.Info().Capabilities&hid.CapNMSG != 0 {
		t.Fatal("CTAPHID INIT says NMSG")
	}
	msg := func(ins, p1 byte, data []byte) ([]byte, ctap1.StatusWord) {
		t.Helper()
		apdu, err := (&ctap1.Command{INS: ins, P1: p1, Data: data, Ne: 65536}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := d.c.MSG(ctx, apdu)
		if err != nil {
			t.Fatalf("CTAPHID_MSG: %v", err)
		}
		out, sw, err := ctap1.SplitResponse(resp)
		if err != nil {
			t.Fatal(err)
		}
		return out, sw
	}
	if v, sw := msg(ctap1.InsVersion, 0, nil); sw != ctap1.SWNoError || string(v) != "U2F_V2" {
		t.Fatalf("U2F_VERSION: %q %v", v, sw)
	}

	rp := rptest.New(t, rpID, rpOrigin)
	u := &rptest.User{ID: []byte("u2f-user"), Name: "alice"}
	creation, session, err := rp.BeginRegistration(u)
	if err != nil {
		t.Fatal(err)
	}
	cdj := rp.ClientData("webauthn.create", creation.Response.Challenge)
	app := sha256.Sum256([]byte(rpID))
	data, sw := msg(ctap1.InsRegister, 0, append(sha(cdj), app[:]...))
	if sw != ctap1.SWNoError {
		t.Fatalf("U2F_REGISTER: %v", sw)
	}
	reg, err := ctap1.ParseRegisterResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reg.Certificate, set.Batch.Chain[0]) {
		t.Fatal("registration not certified by the batch certificate")
	}

	// What a browser makes of it (WebAuthn §8.6, CTAP 2.1 §10.2).
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), reg.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	coseKey, err := cose.EncodePublicKey(pub, cose.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	ad := ctap2.AuthData{RPIDHash: app, Flags: ctap2.FlagUP, CredentialID: reg.KeyHandle, PublicKey: coseKey}
	stmt, err := encMode.Marshal(map[string]any{"sig": reg.Signature, "x5c": [][]byte{reg.Certificate}})
	if err != nil {
		t.Fatal(err)
	}
	att := &rptest.Attestation{Fmt: "fido-u2f", AuthData: ad.Marshal(), AttStmt: stmt}
	cred, err := rp.CreateCredential(u, *session, rptest.CreationResponse(t, att, cdj))
	if err != nil {
		t.Fatalf("CreateCredential (fido-u2f): %v", rptest.Describe(err))
	}
	if cred.AttestationFormat != "fido-u2f" || cred.AttestationType != "basic_full" {
		t.Fatalf("RP saw %q / %q", cred.AttestationFormat, cred.AttestationType)
	}
	cert, _ := x509.ParseCertificate(reg.Certificate)
	roots := x509.NewCertPool()
	roots.AddCert(set.Root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("U2F attestation certificate does not chain to the CA: %v", err)
	}
	u.Creds = append(u.Creds, *cred)

	// Check-only, then a U2F authentication verified by hand.
	challenge := bytes.Repeat([]byte{0x5A}, 32)
	authData := append(append(append(bytes.Clone(challenge), app[:]...), byte(len(reg.KeyHandle))), reg.KeyHandle...)
	if _, sw := msg(ctap1.InsAuthenticate, ctap1.ControlCheckOnly, authData); sw != ctap1.SWConditionsNotSatisfied {
		t.Fatalf("check-only: %v", sw)
	}
	out, sw := msg(ctap1.InsAuthenticate, ctap1.ControlEnforceUserPresence, authData)
	if sw != ctap1.SWNoError {
		t.Fatalf("U2F_AUTHENTICATE: %v", sw)
	}
	a, err := ctap1.ParseAuthenticateResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	signed := append(append(bytes.Clone(app[:]), out[:5]...), challenge...)
	h := sha256.Sum256(signed)
	if a.UserPresence != 1 || !ecdsa.VerifyASN1(pub, h[:], a.Signature) {
		t.Fatal("U2F authentication signature does not verify")
	}
	// The RP logs in with CTAP2 (rpId hashes to the appId): counters keep growing.
	u.Creds[0].Authenticator.SignCount = a.Counter
	rp.Login(t, d, u)
	rp.Login(t, d, u)
}

// mcResult is a makeCredential answer kept as the authenticator encoded
// it, with its attestation statement decoded.
type mcResult struct {
	*rptest.Attestation
	stmt map[string]any
}

func mcMap(cdj []byte, u *rptest.User, extra map[int]any) map[int]any {
	p := map[int]any{
		1: sha(cdj),
		2: map[string]any{"id": rpID, "name": "Example"},
		3: map[string]any{"id": u.ID, "name": u.Name, "displayName": "Display " + u.Name},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
	}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func makeCredential(t testing.TB, d *device, cdj []byte, u *rptest.User, extra map[int]any) *mcResult {
	t.Helper()
	st, out := rptest.Call(t, d, ctap2.CmdMakeCredential, mcMap(cdj, u, extra))
	if st != ctap2.StatusOK {
		t.Fatalf("makeCredential: %v", st)
	}
	r := &mcResult{Attestation: rptest.DecodeAttestation(t, out)}
	if err := cbor.Unmarshal(r.AttStmt, &r.stmt); err != nil {
		t.Fatal(err)
	}
	if _, err := ctap2.ParseAuthData(r.AuthData); err != nil {
		t.Fatal(err)
	}
	return r
}
