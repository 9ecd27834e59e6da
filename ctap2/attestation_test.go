package ctap2

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/internal/attca"
)

// testCA is one attestation root shared by the package's tests.
var testCA = sync.OnceValues(func() (*attca.Authority, error) { return attca.NewAuthority(time.Now()) })

// testIdentity is a fresh P-256 attestation identity under testCA for
// DefaultAAGUID.
func testIdentity(t testing.TB) *AttestationIdentity {
	t.Helper()
	ca, err := testCA()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.NewIdentity("test attestation", DefaultAAGUID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &AttestationIdentity{Signer: id.Signer, Chain: id.Chain}
}

// checkX5C verifies a packed x5c statement: signed by the first
// certificate, which chains to testCA and is the one of want.
func checkX5C(t testing.TB, resp *MakeCredentialResponse, want *AttestationIdentity) {
	t.Helper()
	if resp.Fmt != "packed" || resp.AttStmt["alg"] != int64(cose.AlgES256) {
		t.Fatalf("fmt %q alg %v", resp.Fmt, resp.AttStmt["alg"])
	}
	x5c, ok := resp.AttStmt["x5c"].([]any)
	if !ok || len(x5c) != len(want.Chain) {
		t.Fatalf("x5c %T of %d certificates", resp.AttStmt["x5c"], len(x5c))
	}
	der, _ := x5c[0].([]byte)
	if !bytes.Equal(der, want.Chain[0]) {
		t.Fatal("x5c holds another certificate")
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := resp.AttStmt["sig"].([]byte)
	if err := leaf.CheckSignature(x509.ECDSAWithSHA256, append(bytes.Clone(resp.AuthData), cdh...), sig); err != nil {
		t.Fatalf("attestation signature: %v", err)
	}
	ca, _ := testCA()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("x5c does not chain to the CA: %v", err)
	}
}

// makeCredAny decodes makeCredential's response with the attestation
// statement in generic form (as a relying party sees it).
func (tk *testKey) makeCredAny(t testing.TB, params map[int]any) (StatusCode, *MakeCredentialResponse) {
	t.Helper()
	st, out := tk.call(t, CmdMakeCredential, params)
	if st != StatusOK {
		return st, nil
	}
	var resp MakeCredentialResponse
	if err := decode(out, &resp); err != nil {
		t.Fatal(err)
	}
	return st, &resp
}

func TestAttestationFormats(t *testing.T) {
	t.Parallel()
	batch := testIdentity(t)
	type want struct {
		fmt   string
		batch bool // x5c with the batch certificate
	}
	for _, tc := range []struct {
		name string
		mode Attestation
		pref []string
		alg  int
		want want
	}{
		{"batch default", AttestationBatch, nil, -7, want{"packed", true}},
		{"batch EdDSA", AttestationBatch, nil, -8, want{"packed", true}},
		{"batch prefers packed", AttestationBatch, []string{"packed"}, -7, want{"packed", true}},
		{"batch prefers none", AttestationBatch, []string{"none", "packed"}, -7, want{"none", false}},
		{"batch skips unknown formats", AttestationBatch, []string{"tpm", "apple", "packed"}, -7, want{"packed", true}},
		{"batch prefers fido-u2f", AttestationBatch, []string{"fido-u2f", "packed"}, -7, want{"fido-u2f", true}},
		{"fido-u2f needs ES256", AttestationBatch, []string{"fido-u2f", "none"}, -8, want{"none", false}},
		{"self default", AttestationSelf, nil, -7, want{"packed", false}},
		{"self prefers packed", AttestationSelf, []string{"packed"}, -7, want{"packed", false}},
		{"self has no fido-u2f", AttestationSelf, []string{"fido-u2f"}, -7, want{"packed", false}},
		{"none default", AttestationNone, nil, -7, want{"none", false}},
		{"none prefers packed: self", AttestationNone, []string{"packed"}, -8, want{"packed", false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tk := newTestKey(t, func(c *Config) { c.Attestation, c.Batch = tc.mode, batch })
			p := mcParams("example.com", []byte("u"), "n", false, tc.alg)
			if tc.pref != nil {
				p[11] = tc.pref
			}
			st, resp := tk.makeCredAny(t, p)
			if st != StatusOK {
				t.Fatalf("makeCredential: %v", st)
			}
			ad := mustParseAuthData(t, resp.AuthData)
			if resp.Fmt != tc.want.fmt || (resp.AttStmt["x5c"] != nil) != tc.want.batch || resp.EPAtt != nil {
				t.Fatalf("fmt %q, attStmt keys %v, epAtt %v", resp.Fmt, keys(resp.AttStmt), resp.EPAtt)
			}
			switch {
			case resp.Fmt == "none":
				if len(resp.AttStmt) != 0 {
					t.Fatalf("none with attStmt %v", resp.AttStmt)
				}
			case resp.Fmt == "fido-u2f":
				checkFIDOU2F(t, resp, ad, batch)
			case tc.want.batch:
				checkX5C(t, resp, batch)
			default: // self
				if resp.AttStmt["alg"] != int64(tc.alg) {
					t.Fatalf("self attestation alg %v", resp.AttStmt["alg"])
				}
				verifySig(t, ad.PublicKey, append(bytes.Clone(resp.AuthData), cdh...), resp.AttStmt["sig"].([]byte))
			}
		})
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// checkFIDOU2F verifies a fido-u2f statement (WebAuthn §8.6 steps 2–6).
func checkFIDOU2F(t testing.TB, resp *MakeCredentialResponse, ad *AuthData, batch *AttestationIdentity) {
	t.Helper()
	x5c, _ := resp.AttStmt["x5c"].([]any)
	if len(x5c) != 1 || !bytes.Equal(x5c[0].([]byte), batch.Chain[0]) || len(resp.AttStmt) != 2 {
		t.Fatalf("fido-u2f attStmt %v", keys(resp.AttStmt))
	}
	pub, _, err := cose.DecodePublicKey(ad.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	point, _ := pub.(*ecdsa.PublicKey).Bytes()
	msg := append([]byte{0}, ad.RPIDHash[:]...)
	msg = append(msg, cdh...)
	msg = append(msg, ad.CredentialID...)
	msg = append(msg, point...)
	leaf, _ := x509.ParseCertificate(batch.Chain[0])
	if err := leaf.CheckSignature(x509.ECDSAWithSHA256, msg, resp.AttStmt["sig"].([]byte)); err != nil {
		t.Fatalf("fido-u2f signature: %v", err)
	}
}

// A batch mode without a batch identity is a configuration error, loud
// at makeCredential.
func TestAttestationBatchWithoutIdentity(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t, func(c *Config) { c.Attestation = AttestationBatch })
	if st, _ := tk.makeCredAny(t, mcParams("example.com", []byte("u"), "n", true)); st != ErrOther {
		t.Fatalf("makeCredential: %v, want OTHER", st)
	}
	if n, _ := tk.store.CountCredentials(); n != 0 {
		t.Fatal("a failed makeCredential stored its credential")
	}
}

func TestEnterpriseAttestation(t *testing.T) {
	t.Parallel()
	batch, enterprise := testIdentity(t), testIdentity(t)
	mc := func(rp string, ep any, pref ...string) map[int]any {
		p := mcParams(rp, []byte("u"), "n", true)
		if ep != nil {
			p[10] = ep
		}
		if pref != nil {
			p[11] = pref
		}
		return p
	}
	enable := func(tk *testKey) StatusCode { return tk.config(t, map[int]any{1: ConfigEnableEnterpriseAttestation}) }

	// Not enterprise-attestation capable: no "ep", the subcommand and the
	// parameter are refused.
	plain := newTestKey(t, func(c *Config) { c.Attestation, c.Batch = AttestationBatch, batch })
	if info, _ := plain.Info(); hasKey(info.Options, "ep") {
		t.Fatal(`"ep" without an enterprise identity`)
	}
	if st := enable(plain); st != ErrInvalidSubcommand {
		t.Fatalf("enableEnterpriseAttestation: %v", st)
	}
	for _, v := range []uint{1, 2} {
		if st, _ := plain.makeCredAny(t, mc("example.com", v)); st != ErrInvalidParameter {
			t.Fatalf("enterpriseAttestation %d without ep: %v", v, st)
		}
	}

	tk := newTestKey(t, func(c *Config) {
		c.Attestation, c.Batch, c.Enterprise = AttestationBatch, batch, enterprise
		c.EnterpriseRPIDs = []string{"corp.example"}
	})
	info := tk.info(t)
	if ep, ok := info.Options["ep"]; !ok || ep {
		t.Fatalf(`"ep" = %v, %v before enabling`, ep, ok)
	}
	// Disabled: the parameter is refused whatever its value.
	for _, v := range []uint{0, 1, 2, 3} {
		if st, _ := tk.makeCredAny(t, mc("corp.example", v)); st != ErrInvalidParameter {
			t.Fatalf("enterpriseAttestation %d while disabled: %v", v, st)
		}
	}
	if st := enable(tk); st != StatusOK {
		t.Fatalf("enableEnterpriseAttestation: %v", st)
	}
	tk.PowerCycle()
	if info := tk.info(t); !info.Options["ep"] {
		t.Fatal(`"ep" not true after enabling and a power cycle`)
	}
	for _, tc := range []struct {
		name string
		rp   string
		ep   any
		pref []string
		want StatusCode
		fmt  string
		ent  bool
	}{
		{"vendor-facilitated, listed RP", "corp.example", uint(1), nil, StatusOK, "packed", true},
		{"vendor-facilitated, other RP", "example.com", uint(1), nil, StatusOK, "packed", false},
		{"platform-managed", "example.com", uint(2), nil, StatusOK, "packed", true},
		{"platform-managed, packed preferred", "example.com", uint(2), []string{"packed"}, StatusOK, "packed", true},
		{"platform-managed, none preferred", "example.com", uint(2), []string{"none"}, StatusOK, "none", false},
		{"absent", "corp.example", nil, nil, StatusOK, "packed", false},
		{"value 0", "corp.example", uint(0), nil, ErrInvalidOption, "", false},
		{"value 3", "corp.example", uint(3), nil, ErrInvalidOption, "", false},
		{"not an integer", "corp.example", "1", nil, ErrCBORUnexpectedType, "", false},
	} {
		st, resp := tk.makeCredAny(t, mc(tc.rp, tc.ep, tc.pref...))
		if st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
			continue
		}
		if st != StatusOK {
			continue
		}
		if resp.Fmt != tc.fmt || (resp.EPAtt != nil) != tc.ent || (resp.EPAtt != nil && !*resp.EPAtt) {
			t.Errorf("%s: fmt %q epAtt %v", tc.name, resp.Fmt, resp.EPAtt)
			continue
		}
		switch {
		case tc.ent:
			checkX5C(t, resp, enterprise)
		case resp.Fmt == "packed":
			checkX5C(t, resp, batch)
		}
	}
	// Enterprise attestation overrides a configured default of none.
	none := newTestKey(t, func(c *Config) { c.Attestation, c.Enterprise = AttestationNone, enterprise })
	enable(none)
	if _, resp := none.makeCredAny(t, mc("example.com", uint(2))); resp == nil || resp.Fmt != "packed" || resp.EPAtt == nil {
		t.Fatalf("enterprise attestation with a default of none: %+v", resp)
	}
	// authenticatorReset disables it again.
	if st, _ := tk.call(t, CmdReset, nil); st != StatusOK {
		t.Fatalf("reset: %v", st)
	}
	if info := tk.info(t); info.Options["ep"] {
		t.Fatal(`"ep" still true after reset`)
	}
}

func hasKey(m map[string]bool, k string) bool { _, ok := m[k]; return ok }

// The AAGUID extension is exactly 04 12 04 10 ‖ aaguid, non-critical.
func TestAttestationCertificateAAGUID(t *testing.T) {
	t.Parallel()
	leaf, err := x509.ParseCertificate(testIdentity(t).Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x04, 0x10}, DefaultAAGUID[:]...)
	found := false
	for _, e := range leaf.Extensions {
		if e.Id.Equal(attca.OIDAAGUID) {
			found = true
			if e.Critical || !bytes.Equal(e.Value, want) {
				t.Fatalf("AAGUID extension critical=%v value % x", e.Critical, e.Value)
			}
		}
	}
	if !found {
		t.Fatal("no AAGUID extension")
	}
	// Its DER encoding inside the certificate: OCTET STRING (18) wrapping
	// OCTET STRING (16).
	if !bytes.Contains(leaf.Raw, append([]byte{0x04, 0x12}, want...)) {
		t.Fatal("extnValue is not 04 12 04 10 ‖ aaguid")
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatal("batch key is not P-256")
	}
}
