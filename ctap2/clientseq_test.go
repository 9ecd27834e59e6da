package ctap2_test

// The regression net of issue 9: the exact command sequences python-fido2
// 2.0's Fido2Client.make_credential and get_assertion send (mirrored in
// pyfido2_test.go from Yubico/python-fido2 2.0, fido2/client/__init__.py
// at commit 2d685d2), driven over CTAPHID reports into an in-process key
// (inproc: the software key store, the bbolt store, ctap2, the CTAPHID
// server). Each sequence asserts the whole transcript (every command and
// its status), the requests the client built from the key's answers, and
// the fields that came back; go-webauthn verifies every attestation and
// assertion as the relying party. Each subtest logs how many assertions it
// made.

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/rptest"
	"github.com/virtkey/virtkey/internal/vktest"
)

// seq counts the assertions a sequence makes.
type seq struct {
	*testing.T
	n int
}

func newSeq(t *testing.T) *seq {
	s := &seq{T: t}
	t.Cleanup(func() { t.Logf("%d assertions", s.n) })
	return s
}

// check is one assertion.
func (s *seq) check(ok bool, format string, args ...any) {
	s.Helper()
	s.n++
	if !ok {
		s.Errorf(format, args...)
	}
}

// transcript asserts every command and status since the last call (one
// assertion per step) and returns the requests sent.
func (s *seq) transcript(r *recorder, want ...string) []map[int]any {
	s.Helper()
	got, reqs := r.take()
	s.n += len(want)
	if !slices.Equal(got, want) {
		s.Fatalf("command sequence:\n  got:  %s\n  want: %s", strings.Join(got, "\n        "), strings.Join(want, "\n        "))
	}
	return reqs
}

// seqKey is an in-process key for one sequence, with the user-presence
// prompts it raised counted.
type seqKey struct {
	k        *inproc.Key
	r        *recorder
	rp       *rptest.RP
	presence atomic.Int32
}

func newSeqKey(t *testing.T, uv ctap2.UVMode) *seqKey {
	sk := &seqKey{}
	sk.k = vktest.InProc(t, inproc.Options{UV: uv, Presence: ctap2.PresenceFunc(func(context.Context, ctap2.PresenceRequest) error {
		sk.presence.Add(1)
		return nil
	})})
	sk.r = &recorder{t: t, d: openDevice(t, sk.k)}
	sk.rp = rptest.New(t, rpID, rpOrigin)
	return sk
}

// sequence runs f as a parallel subtest on a fresh key: with built-in UV
// (uv ctap2.UVAuto), or without and with the PIN seqPIN (ctap2.UVNone).
func sequence(t *testing.T, name string, uv ctap2.UVMode, f func(t *testing.T, s *seq, sk *seqKey)) {
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		s, sk := newSeq(t), newSeqKey(t, uv)
		if uv == ctap2.UVNone {
			sk.setPIN(t, seqPIN)
		}
		f(t, s, sk)
	})
}

// client is a new Fido2Client on the key (its constructor's getInfo is the
// first line of the transcript).
func (sk *seqKey) client(pin string) *pyClient {
	c := newPyClient(sk.r, sk.rp)
	c.pin = pin
	return c
}

// setPIN is ClientPin.set_pin (setup, not part of a transcript).
func (sk *seqKey) setPIN(t *testing.T, pin string) {
	c := sk.client("")
	p := pinProtocol(c.info)
	ka, shared, err := c.sharedSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	padded, _ := ctap2.PadPIN(pin)
	enc, _ := shared.Encrypt(padded)
	if st, _ := sk.r.call(ctap2.CmdClientPIN, map[int]any{1: int(p.Version()), 2: 3, 3: ka, 4: shared.Authenticate(enc), 5: enc}); st != ctap2.StatusOK {
		t.Fatalf("setPIN: %v", st)
	}
	sk.r.take()
}

// register runs a registration the RP begins (setup or sequence) and
// returns the user, the RP's session and its challenge.
func (sk *seqKey) begin(t *testing.T, u *rptest.User, rk bool) (*webauthn.SessionData, []byte) {
	var opts []webauthn.RegistrationOption
	if rk {
		opts = append(opts, webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	}
	creation, session, err := sk.rp.BeginRegistration(u, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return session, creation.Response.Challenge
}

// accept has the RP verify a registration and keeps the credential in u.
func (sk *seqKey) accept(s *seq, u *rptest.User, session *webauthn.SessionData, reg *pyRegistration) *webauthn.Credential {
	s.Helper()
	cred, err := sk.rp.CreateCredential(u, *session, rptest.CreationResponse(s, reg.Att, reg.ClientData))
	s.check(err == nil, "RP refused the registration: %v", rptest.Describe(err))
	if err != nil {
		s.FailNow()
	}
	u.Creds = append(u.Creds, *cred)
	return cred
}

// login has the RP verify an assertion for u (allowList login).
func (sk *seqKey) login(s *seq, u *rptest.User, session *webauthn.SessionData, a *pyAssertion) {
	s.Helper()
	_, err := sk.rp.ValidateLogin(u, *session, rptest.AssertionResponse(s, a.GA, a.ClientData))
	s.check(err == nil, "RP refused the assertion: %v", rptest.Describe(err))
}

func (sk *seqKey) beginLogin(t *testing.T, u *rptest.User) (*webauthn.SessionData, []byte) {
	assertion, session, err := sk.rp.BeginLogin(u)
	if err != nil {
		t.Fatal(err)
	}
	return session, assertion.Response.Challenge
}

// create runs make_credential for u with a client that knows pin, on a
// registration the RP begins (discoverable if o requires a resident key).
func (sk *seqKey) create(t *testing.T, pin string, u *rptest.User, o pyCreate) (*pyRegistration, *webauthn.SessionData, error) {
	session, challenge := sk.begin(t, u, o.ResidentKey == "required")
	reg, err := sk.client(pin).makeCredential(createOptions(u, challenge, o))
	return reg, session, err
}

// getOne runs get_assertion for u with a client that knows pin, on a login
// the RP begins (o's RPID and challenge are filled in), and stops the test
// unless it returns one assertion.
func (sk *seqKey) getOne(s *seq, pin string, u *rptest.User, o pyGet) (*pyAssertion, *webauthn.SessionData) {
	s.Helper()
	session, challenge := sk.beginLogin(s.T, u)
	o.RPID, o.Challenge = rpID, challenge
	got, err := sk.client(pin).getAssertion(o)
	s.check(err == nil && len(got) == 1, "get_assertion: %v (%d assertions, want 1)", err, len(got))
	if err != nil || len(got) != 1 {
		s.FailNow()
	}
	return got[0], session
}

// seqUser is an RP account called name.
func seqUser(name string) *rptest.User {
	return &rptest.User{ID: []byte(name + "-id"), Name: name}
}

// registerSetup registers a credential for u through the client (setup:
// the transcript is dropped).
func (sk *seqKey) registerSetup(t *testing.T, pin string, u *rptest.User, o pyCreate) *pyRegistration {
	if o.Algs == nil {
		o.Algs = []int{-7}
	}
	reg, session, err := sk.create(t, pin, u, o)
	if err != nil {
		t.Fatalf("setup registration: %v", err)
	}
	cred, err := sk.rp.CreateCredential(u, *session, rptest.CreationResponse(t, reg.Att, reg.ClientData))
	if err != nil {
		t.Fatalf("setup registration refused by the RP: %v", rptest.Describe(err))
	}
	u.Creds = append(u.Creds, *cred)
	sk.r.take()
	sk.presence.Store(0)
	return reg
}

// createOptions fills the RP-given fields of a registration.
func createOptions(u *rptest.User, challenge []byte, o pyCreate) pyCreate {
	o.RPID, o.RPName, o.Challenge = rpID, "Example", challenge
	o.User = pyUser{ID: u.ID, Name: u.Name, DisplayName: "Display " + u.Name}
	if o.Algs == nil {
		o.Algs = []int{-7, -8}
	}
	return o
}

const seqPIN = "4711"

// Transcript lines.
const (
	lGetInfo     = "getInfo → OK"
	lKA          = "clientPIN/getKeyAgreement → OK"
	lPINToken    = "clientPIN/getPinUvAuthTokenUsingPinWithPermissions → OK"
	lUVToken     = "clientPIN/getPinUvAuthTokenUsingUvWithPermissions → OK"
	lProbeHit    = "getAssertion(up=false) → OK"
	lProbeMiss   = "getAssertion(up=false) → NO_CREDENTIALS"
	lMC          = "makeCredential → OK"
	lMCExcluded  = "makeCredential → CREDENTIAL_EXCLUDED"
	lMCPUAT      = "makeCredential → PUAT_REQUIRED"
	lGA          = "getAssertion → OK"
	lGANone      = "getAssertion → NO_CREDENTIALS"
	lGNA         = "getNextAssertion → OK"
	lBlobGet     = "largeBlobs/get → OK"
	lBlobSet     = "largeBlobs/set → OK"
	permMCGA     = int(ctap2.PermMakeCredential | ctap2.PermGetAssertion)
	flagsUPUV    = ctap2.FlagUP | ctap2.FlagUV
	flagsUPUVAT  = ctap2.FlagUP | ctap2.FlagUV | ctap2.FlagAT
	flagsUPNoUV  = ctap2.FlagUP
	tooLongIDLen = 1024 // longer than any maxCredentialIdLength: the client drops it
)

func ids(list any) [][]byte {
	var out [][]byte
	for _, d := range list.([]map[string]any) {
		out = append(out, d["id"].([]byte))
	}
	return out
}

// TestPythonFIDO2MakeCredential: Fido2Client.make_credential sequences.
func TestPythonFIDO2MakeCredential(t *testing.T) {
	t.Parallel()

	sequence(t, "PIN/uv=preferred", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("alice")
		reg, session, err := sk.create(t, seqPIN, u, pyCreate{})
		s.check(err == nil, "make_credential: %v", err)
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lKA, lPINToken, lMC)
		s.check(reqs[4][9] == int(ctap2.PermMakeCredential) && reqs[4][10] == rpID, "token request perms %v rpId %v, want mc for %s", reqs[4][9], reqs[4][10], rpID)
		s.check(reqs[5][8] != nil && reqs[5][9] == 2, "makeCredential without pinUvAuthParam/protocol 2: %v %v", reqs[5][8], reqs[5][9])
		s.check(reqs[5][7] == nil, "makeCredential options %v, want none", reqs[5][7])
		s.check(reg.AuthData.Flags&flagsUPUVAT == flagsUPUVAT, "flags %#x, want UP|UV|AT", reg.AuthData.Flags)
		s.check(reg.AuthData.SignCount == 0, "sign count %d", reg.AuthData.SignCount)
		s.check(reg.Att.Fmt == "packed", "fmt %q", reg.Att.Fmt)
		s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1", sk.presence.Load())
		sk.accept(s, u, session, reg)
	})

	sequence(t, "PIN/uv=discouraged/rk=required", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("bob")
		reg, session, err := sk.create(t, seqPIN, u, pyCreate{ResidentKey: "required", UserVerification: "discouraged"})
		s.check(err == nil, "make_credential: %v", err)
		// makeCredUvNotRqd does not cover discoverable credentials: the key
		// answers PUAT_REQUIRED and the client tries again with UV.
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lMCPUAT, lGetInfo, lKA, lPINToken, lMC)
		s.check(reqs[3][8] == nil, "first makeCredential carried a pinUvAuthParam")
		s.check(slices.Equal(reqs[3][1].([]byte), reqs[7][1].([]byte)), "the retry changed clientDataHash")
		opts, _ := reqs[7][7].(map[string]bool)
		s.check(opts["rk"] && reqs[7][8] != nil, "retry options %v param %v, want rk and a pinUvAuthParam", reqs[7][7], reqs[7][8])
		s.check(reg.AuthData.Flags&flagsUPUVAT == flagsUPUVAT, "flags %#x, want UP|UV|AT", reg.AuthData.Flags)
		s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1 (PUAT_REQUIRED comes first)", sk.presence.Load())
		sk.accept(s, u, session, reg)
	})

	sequence(t, "PIN/uv=discouraged", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("carol")
		reg, session, err := sk.create(t, seqPIN, u, pyCreate{UserVerification: "discouraged"})
		s.check(err == nil, "make_credential: %v", err)
		// makeCredUvNotRqd: no token for a non-discoverable credential.
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lMC)
		s.check(reqs[3][8] == nil && reqs[3][7] == nil, "makeCredential param %v options %v, want neither", reqs[3][8], reqs[3][7])
		s.check(reg.AuthData.Flags&(flagsUPUVAT) == ctap2.FlagUP|ctap2.FlagAT, "flags %#x, want UP|AT without UV", reg.AuthData.Flags)
		sk.accept(s, u, session, reg)
	})

	sequence(t, "PIN/excludeList/probe finds the credential", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("dave")
		old := sk.registerSetup(t, seqPIN, u, pyCreate{})
		exclude := [][]byte{bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, tooLongIDLen), old.AuthData.CredentialID, bytes.Repeat([]byte{3}, 48)}
		_, _, err := sk.create(t, seqPIN, u, pyCreate{Exclude: exclude})
		s.check(err == ctap2.ErrCredentialExcluded, "make_credential: %v, want CREDENTIAL_EXCLUDED", err)
		// The silent probe (up=false) must leave the token for the
		// makeCredential that follows: PIN_AUTH_INVALID there was the bug.
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lKA, lPINToken, lGetInfo, lProbeHit, lMCExcluded)
		s.check(reqs[4][9] == permMCGA, "token permissions %v, want mc|ga", reqs[4][9])
		probe := reqs[6]
		s.check(bytes.Equal(probe[2].([]byte), make([]byte, 32)), "probe clientDataHash %x, want 32 zero bytes", probe[2])
		s.check(len(ids(probe[3])) == 3, "probe allowList has %d ids, want 3 (the too-long id dropped)", len(ids(probe[3])))
		s.check(probe[6] != nil && probe[7] == 2, "probe without pinUvAuthParam")
		mc := reqs[7]
		s.check(len(ids(mc[5])) == 1 && bytes.Equal(ids(mc[5])[0], old.AuthData.CredentialID), "makeCredential excludeList %x, want the probe's match only", mc[5])
		s.check(mc[8] != nil, "makeCredential without pinUvAuthParam")
		s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1 (makeCredential only)", sk.presence.Load())
	})

	sequence(t, "PIN/excludeList/probe finds nothing", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("erin")
		reg, session, err := sk.create(t, seqPIN, u, pyCreate{Exclude: [][]byte{bytes.Repeat([]byte{9}, 64)}})
		s.check(err == nil, "make_credential: %v", err)
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lKA, lPINToken, lGetInfo, lProbeMiss, lMC)
		s.check(reqs[7][5] == nil, "makeCredential sent an excludeList %v", reqs[7][5])
		s.check(reg.AuthData.Flags&flagsUPUVAT == flagsUPUVAT, "flags %#x, want UP|UV|AT (the probe left the token)", reg.AuthData.Flags)
		s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1", sk.presence.Load())
		sk.accept(s, u, session, reg)
	})

	sequence(t, "PIN/excludeList/uv=discouraged", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("frank")
		old := sk.registerSetup(t, seqPIN, u, pyCreate{UserVerification: "discouraged"})
		_, _, err := sk.create(t, seqPIN, u, pyCreate{UserVerification: "discouraged", Exclude: [][]byte{old.AuthData.CredentialID}})
		s.check(err == ctap2.ErrCredentialExcluded, "make_credential: %v, want CREDENTIAL_EXCLUDED", err)
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lGetInfo, lProbeHit, lMCExcluded)
		s.check(reqs[4][6] == nil, "probe with a pinUvAuthParam but no token")
		s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1", sk.presence.Load())
	})

	sequence(t, "built-in UV/uv=required", ctap2.UVAuto, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("gina")
		reg, session, err := sk.create(t, "", u, pyCreate{ResidentKey: "required", UserVerification: "required"})
		s.check(err == nil, "make_credential: %v", err)
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lKA, lUVToken, lMC)
		s.check(reqs[4][9] == int(ctap2.PermMakeCredential) && reqs[4][10] == rpID, "UV token perms %v rpId %v", reqs[4][9], reqs[4][10])
		s.check(reqs[5][8] != nil, "makeCredential without pinUvAuthParam")
		s.check(reg.AuthData.Flags&flagsUPUVAT == flagsUPUVAT, "flags %#x, want UP|UV|AT", reg.AuthData.Flags)
		sk.accept(s, u, session, reg)
	})

	sequence(t, "PIN/uv=required/no PIN given", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("hank")
		_, _, err := sk.create(t, "", u, pyCreate{UserVerification: "required"})
		s.check(err != nil && strings.Contains(err.Error(), "PIN required"), "make_credential without a PIN: %v, want PinRequiredError", err)
		s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo)
	})
}

// extSetup makes the credential of the extension sequences: PIN set, the
// RP on the minPinLength list, and a discoverable credential made with
// every extension python-fido2 2.0 knows. It returns the key, the user,
// the registration and the PRF secret.
func extSetup(t *testing.T, s *seq) (*seqKey, *rptest.User, *pyRegistration, []byte) {
	sk := newSeqKey(t, ctap2.UVNone)
	sk.setPIN(t, seqPIN)
	// authenticatorConfig setMinPINLength with minPinLengthRPIDs [rpID]
	// (setup, as `virtkey config min-pin-length --rp` does).
	c := sk.client(seqPIN)
	p := pinProtocol(c.info)
	tok, err := c.getPINToken(p, ctap2.PermAuthenticatorCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	params := map[int]any{2: []string{rpID}}
	raw, _ := encMode.Marshal(params)
	msg := append(append(bytes.Repeat([]byte{0xFF}, 32), 0x0D, 0x03), raw...)
	if st, _ := sk.r.call(ctap2.CmdConfig, map[int]any{1: 3, 2: cbor.RawMessage(raw), 3: int(p.Version()), 4: p.Authenticate(tok, msg)}); st != ctap2.StatusOK {
		t.Fatalf("setMinPINLength: %v", st)
	}
	sk.r.take()

	u := seqUser("ivy")
	session, challenge := sk.begin(t, u, true)
	secret := []byte("prf first input")
	c = sk.client(seqPIN)
	c.thirdPartyPayment = true
	reg, err := c.makeCredential(createOptions(u, challenge, pyCreate{
		ResidentKey: "required",
		Ext: pyExt{
			PRF: &pyPRFValues{First: secret}, CredBlob: bytes.Repeat([]byte("b"), 32), LargeBlobSupport: "required",
			CredProtect: "userVerificationRequired", EnforceCredProtect: true, MinPinLength: true, CredProps: true, Payment: true,
		},
	}))
	s.check(err == nil, "make_credential with extensions: %v", err)
	if err != nil {
		t.FailNow()
	}
	reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lKA, lGetInfo, lKA, lPINToken, lMC)
	ext, _ := reqs[6][6].(map[string]any)
	for _, name := range []string{"hmac-secret", "hmac-secret-mc", "credBlob", "largeBlobKey", "credProtect", "minPinLength", "thirdPartyPayment"} {
		_, ok := ext[name]
		s.check(ok, "makeCredential extension inputs lack %s: %v", name, ext)
	}
	out := extOutputs(t, reg.AuthData)
	var hmacOn, blobOn bool
	var protect, minLen int
	var mcOut []byte
	s.check(cbor.Unmarshal(out["hmac-secret"], &hmacOn) == nil && hmacOn, "hmac-secret output %x", out["hmac-secret"])
	s.check(cbor.Unmarshal(out["hmac-secret-mc"], &mcOut) == nil && len(mcOut) == 48, "hmac-secret-mc output %d bytes, want 48 (protocol 2, one salt)", len(mcOut))
	s.check(cbor.Unmarshal(out["credProtect"], &protect) == nil && protect == 3, "credProtect output %x", out["credProtect"])
	s.check(cbor.Unmarshal(out["credBlob"], &blobOn) == nil && blobOn, "credBlob output %x", out["credBlob"])
	s.check(cbor.Unmarshal(out["minPinLength"], &minLen) == nil && minLen == 4, "minPinLength output %x, want 4", out["minPinLength"])
	s.check(len(reg.LargeBlobKey) == 32, "largeBlobKey %d bytes", len(reg.LargeBlobKey))
	prf := reg.Ext["prf"].(map[string]any)
	s.check(prf["enabled"] == true, "prf.enabled %v", prf["enabled"])
	results, _ := prf["results"].(map[string][]byte)
	s.check(len(results["first"]) == 32, "prf.results.first %x", results["first"])
	s.check(reg.Ext["largeBlob"].(map[string]any)["supported"] == true, "largeBlob.supported %v", reg.Ext["largeBlob"])
	s.check(reg.Ext["credProps"].(map[string]any)["rk"] == true, "credProps.rk %v", reg.Ext["credProps"])
	s.check(reg.AuthData.Flags&(flagsUPUVAT|ctap2.FlagED) == flagsUPUVAT|ctap2.FlagED, "flags %#x, want UP|UV|AT|ED", reg.AuthData.Flags)
	sk.accept(s, u, session, reg)

	// Credential management shows what was stored: credProtect 3 and
	// thirdPartyPayment (CTAP 2.2, 0x0C).
	tok, err = c.getPINToken(p, ctap2.PermCredentialMgmt, "")
	if err != nil {
		t.Fatal(err)
	}
	cmParams, _ := encMode.Marshal(map[int]any{1: sha([]byte(rpID))})
	st, body := sk.r.call(ctap2.CmdCredentialManagement, map[int]any{1: 4, 2: cbor.RawMessage(cmParams), 3: int(p.Version()), 4: p.Authenticate(tok, append([]byte{4}, cmParams...))})
	var cm ctap2.CredentialManagementResponse
	s.check(st == ctap2.StatusOK && cbor.Unmarshal(body, &cm) == nil, "enumerateCredentialsBegin: %v", st)
	s.check(cm.CredProtect == 3, "credMgmt credProtect %d, want 3", cm.CredProtect)
	s.check(cm.ThirdPartyPayment != nil && *cm.ThirdPartyPayment, "credMgmt thirdPartyPayment %v, want true", cm.ThirdPartyPayment)
	sk.r.take()
	return sk, u, reg, secret
}

// TestPythonFIDO2Extensions: make_credential with every extension, then
// get_assertion with prf, credBlob, largeBlob write and read and
// thirdPartyPayment on the same credential.
func TestPythonFIDO2Extensions(t *testing.T) {
	t.Parallel()
	s := newSeq(t)
	sk, u, reg, secret := extSetup(t, s)
	credID := reg.AuthData.CredentialID
	mcPRF := reg.Ext["prf"].(map[string]any)["results"].(map[string][]byte)["first"]
	blob := []byte(strings.Repeat("large blob data for ivy; ", 40))

	// get_assertion: prf, getCredBlob, largeBlob write, payment.
	session, challenge := sk.beginLogin(t, u)
	c := sk.client(seqPIN)
	c.thirdPartyPayment = true
	got, err := c.getAssertion(pyGet{RPID: rpID, Challenge: challenge, Allow: [][]byte{bytes.Repeat([]byte{7}, 32), credID},
		Ext: pyExt{PRF: &pyPRFValues{First: secret}, GetCredBlob: true, LargeBlobWrite: blob, Payment: true}})
	s.check(err == nil && len(got) == 1, "get_assertion: %v (%d assertions)", err, len(got))
	if err != nil {
		t.FailNow()
	}
	// The token keeps lbw after the getAssertion with UP, for the write.
	reqs := s.transcript(sk.r, lGetInfo, lKA, lGetInfo, lKA, lPINToken, lGetInfo, lProbeHit, lGA, lBlobGet, lBlobSet)
	s.check(reqs[4][9] == int(ctap2.PermGetAssertion|ctap2.PermLargeBlobWrite), "token permissions %v, want ga|lbw", reqs[4][9])
	s.check(len(ids(reqs[6][3])) == 2, "probe allowList %d ids, want 2", len(ids(reqs[6][3])))
	s.check(len(ids(reqs[7][3])) == 1 && bytes.Equal(ids(reqs[7][3])[0], credID), "getAssertion allowList: want the probe's match only")
	a := got[0]
	s.check(a.AuthData.Flags&flagsUPUV == flagsUPUV, "flags %#x, want UP|UV", a.AuthData.Flags)
	out := extOutputs(t, a.AuthData)
	var cb []byte
	var tpp bool
	s.check(cbor.Unmarshal(out["credBlob"], &cb) == nil && bytes.Equal(cb, bytes.Repeat([]byte("b"), 32)), "credBlob %q", cb)
	s.check(cbor.Unmarshal(out["thirdPartyPayment"], &tpp) == nil && tpp, "thirdPartyPayment output %x, want true", out["thirdPartyPayment"])
	prf := a.Ext["prf"].(map[string]any)["results"].(map[string][]byte)
	s.check(bytes.Equal(prf["first"], mcPRF), "prf at get %x differs from prf at create %x (same salt, both with UV)", prf["first"], mcPRF)
	s.check(bytes.Equal(a.GA.LargeBlobKey, reg.LargeBlobKey), "largeBlobKey at get differs from create")
	s.check(a.Ext["largeBlob"].(map[string]any)["written"] == true, "largeBlob.written %v", a.Ext["largeBlob"])
	s.check(a.GA.User != nil && a.GA.User.Name == "ivy", "user %+v, want ivy's name (UV)", a.GA.User)
	sk.login(s, u, session, a)

	// get_assertion: largeBlob read, a fresh token with ga only.
	a, session = sk.getOne(s, seqPIN, u, pyGet{Allow: [][]byte{credID}, Ext: pyExt{LargeBlobRead: true}})
	reqs = s.transcript(sk.r, lGetInfo, lGetInfo, lKA, lPINToken, lGetInfo, lProbeHit, lGA, lBlobGet)
	s.check(reqs[3][9] == int(ctap2.PermGetAssertion), "token permissions %v, want ga", reqs[3][9])
	s.check(bytes.Equal(a.Ext["largeBlob"].(map[string]any)["blob"].([]byte), blob), "largeBlob read back %q", a.Ext["largeBlob"])
	sk.login(s, u, session, a)

	// credProtect 3 without UV: the probe finds nothing, and neither does
	// the real call with the client's dummy id.
	_, challenge = sk.beginLogin(t, u)
	sk.presence.Store(0)
	_, err = sk.client(seqPIN).getAssertion(pyGet{RPID: rpID, Challenge: challenge, Allow: [][]byte{credID}, UserVerification: "discouraged"})
	s.check(err == ctap2.ErrNoCredentials, "get_assertion of a credProtect=3 credential without UV: %v, want NO_CREDENTIALS", err)
	reqs = s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lProbeMiss, lGANone)
	s.check(bytes.Equal(ids(reqs[4][3])[0], []byte{0}), "getAssertion allowList %x, want the dummy id 00", reqs[4][3])
	s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1 (the real call)", sk.presence.Load())
}

// TestPythonFIDO2GetAssertion: Fido2Client.get_assertion sequences.
func TestPythonFIDO2GetAssertion(t *testing.T) {
	t.Parallel()

	sequence(t, "PIN/allowList", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("jack")
		reg := sk.registerSetup(t, seqPIN, u, pyCreate{})
		allow := [][]byte{bytes.Repeat([]byte{5}, 32), reg.AuthData.CredentialID, bytes.Repeat([]byte{6}, tooLongIDLen)}
		a, session := sk.getOne(s, seqPIN, u, pyGet{Allow: allow})
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lKA, lPINToken, lGetInfo, lProbeHit, lGA)
		s.check(reqs[3][9] == int(ctap2.PermGetAssertion) && reqs[3][10] == rpID, "token perms %v rpId %v", reqs[3][9], reqs[3][10])
		s.check(len(ids(reqs[5][3])) == 2 && reqs[5][6] != nil, "probe: %d ids (want 2), param %v", len(ids(reqs[5][3])), reqs[5][6])
		s.check(reqs[6][6] != nil && reqs[6][5] == nil, "getAssertion param %v options %v", reqs[6][6], reqs[6][5])
		s.check(bytes.Equal(a.GA.Credential.ID, reg.AuthData.CredentialID), "credential %x", a.GA.Credential.ID)
		s.check(a.AuthData.Flags&flagsUPUV == flagsUPUV, "flags %#x, want UP|UV", a.AuthData.Flags)
		s.check(a.AuthData.SignCount >= 2, "sign count %d: the probe and the call both count", a.AuthData.SignCount)
		s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1", sk.presence.Load())
		sk.login(s, u, session, a)
	})

	sequence(t, "PIN/allowList/no match", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		_, err := sk.client(seqPIN).getAssertion(pyGet{RPID: rpID, Challenge: []byte("challenge-challenge"), Allow: [][]byte{bytes.Repeat([]byte{5}, 32)}})
		s.check(err == ctap2.ErrNoCredentials, "get_assertion: %v, want NO_CREDENTIALS", err)
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lKA, lPINToken, lGetInfo, lProbeMiss, lGANone)
		s.check(bytes.Equal(ids(reqs[6][3])[0], []byte{0}) && reqs[6][6] != nil, "getAssertion allowList %x param %v: want the dummy id and the token", reqs[6][3], reqs[6][6])
		s.check(sk.presence.Load() == 1, "user presence asked %d times, want 1 (before NO_CREDENTIALS)", sk.presence.Load())
	})

	sequence(t, "PIN/discoverable/uv=required", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		users := []*rptest.User{{ID: []byte("kim-id"), Name: "kim"}, {ID: []byte("lee-id"), Name: "lee"}}
		for _, u := range users {
			sk.registerSetup(t, seqPIN, u, pyCreate{ResidentKey: "required"})
		}
		assertion, session, err := sk.rp.BeginDiscoverableLogin()
		if err != nil {
			t.Fatal(err)
		}
		got, err := sk.client(seqPIN).getAssertion(pyGet{RPID: rpID, Challenge: assertion.Response.Challenge, UserVerification: "required"})
		s.check(err == nil && len(got) == 2, "get_assertion: %v, %d assertions, want 2", err, len(got))
		if err != nil || len(got) != 2 {
			t.FailNow()
		}
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lKA, lPINToken, lGA, lGNA)
		s.check(reqs[4][3] == nil, "discoverable getAssertion with an allowList")
		s.check(got[0].GA.NumberOfCredentials == 2, "numberOfCredentials %d", got[0].GA.NumberOfCredentials)
		seen := map[string]bool{}
		for i, a := range got {
			s.check(a.AuthData.Flags&flagsUPUV == flagsUPUV, "assertion %d flags %#x", i, a.AuthData.Flags)
			s.check(a.GA.User != nil && a.GA.User.Name != "" && a.GA.User.DisplayName != "", "assertion %d user %+v: want name and displayName (UV)", i, a.GA.User)
			var u *rptest.User
			for _, c := range users {
				if a.GA.User != nil && bytes.Equal(c.ID, a.GA.User.ID) {
					u = c
				}
			}
			s.check(u != nil, "assertion %d for an unknown user", i)
			if u == nil {
				continue
			}
			seen[u.Name] = true
			_, err := sk.rp.ValidateDiscoverableLogin(func(_, _ []byte) (webauthn.User, error) { return u, nil }, *session, rptest.AssertionResponse(t, a.GA, a.ClientData))
			s.check(err == nil, "RP refused assertion %d: %v", i, rptest.Describe(err))
		}
		s.check(len(seen) == 2, "accounts %v, want both", seen)
	})

	sequence(t, "PIN/uv=discouraged", ctap2.UVNone, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("max")
		reg := sk.registerSetup(t, seqPIN, u, pyCreate{})
		a, session := sk.getOne(s, seqPIN, u, pyGet{Allow: [][]byte{reg.AuthData.CredentialID}, UserVerification: "discouraged"})
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lGetInfo, lProbeHit, lGA)
		s.check(reqs[3][6] == nil && reqs[4][6] == nil, "pinUvAuthParam sent without a token")
		s.check(a.AuthData.Flags&flagsUPUV == flagsUPNoUV, "flags %#x, want UP without UV", a.AuthData.Flags)
		s.check(a.GA.User == nil, "user %+v for a non-discoverable credential", a.GA.User)
		sk.login(s, u, session, a)
	})

	sequence(t, "built-in UV/allowList", ctap2.UVAuto, func(t *testing.T, s *seq, sk *seqKey) {
		u := seqUser("nina")
		reg := sk.registerSetup(t, "", u, pyCreate{UserVerification: "required"})
		a, session := sk.getOne(s, "", u, pyGet{Allow: [][]byte{reg.AuthData.CredentialID}})
		reqs := s.transcript(sk.r, lGetInfo, lGetInfo, lKA, lUVToken, lGetInfo, lProbeHit, lGA)
		s.check(reqs[3][9] == int(ctap2.PermGetAssertion) && reqs[3][10] == rpID, "UV token perms %v rpId %v", reqs[3][9], reqs[3][10])
		s.check(a.AuthData.Flags&flagsUPUV == flagsUPUV, "flags %#x, want UP|UV", a.AuthData.Flags)
		sk.login(s, u, session, a)
	})
}
