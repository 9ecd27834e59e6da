package ctap2_test

// A Go mirror of python-fido2 2.0's WebAuthn client, for the command
// sequences in clientseq_test.go.
//
// Mirrored from Yubico/python-fido2 2.0 (fido2/client/__init__.py
// _Ctap2ClientBackend at the 2.0.0 line, commit 2d685d2; fido2/ctap2/base.py
// Ctap2, pin.py ClientPin, extensions.py and blob.py LargeBlobs of the same
// release): which commands are sent, in which order, with which
// parameters. Debian ships python-fido2 0.9.1, which cannot run these flows,
// hence the mirror. What is not mirrored (NFC reconnects, Windows, CTAP1
// fallback, enterprise attestation, timers) is never reached over USB HID
// with a CTAP 2.1 key.

import (
	"bytes"
	"compress/flate"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/rptest"
)

// recorder sends CTAP2 commands and keeps a transcript: one line per
// command, "label → STATUS".
type recorder struct {
	t    testing.TB
	d    rptest.Device
	log  []string
	reqs []map[int]any // the requests, in the transcript's order
}

// label names a request as the transcripts do.
func label(cmd byte, params map[int]any) string {
	switch cmd {
	case ctap2.CmdGetInfo:
		return "getInfo"
	case ctap2.CmdMakeCredential:
		return "makeCredential"
	case ctap2.CmdGetAssertion:
		if o, ok := params[5].(map[string]bool); ok {
			if up, set := o["up"]; set && !up {
				return "getAssertion(up=false)"
			}
		}
		return "getAssertion"
	case ctap2.CmdGetNextAssertion:
		return "getNextAssertion"
	case ctap2.CmdClientPIN:
		return "clientPIN/" + map[int]string{
			1: "getPINRetries", 2: "getKeyAgreement", 3: "setPIN", 4: "changePIN", 5: "getPinToken",
			6: "getPinUvAuthTokenUsingUvWithPermissions", 7: "getUVRetries",
			9: "getPinUvAuthTokenUsingPinWithPermissions",
		}[params[2].(int)]
	case ctap2.CmdLargeBlobs:
		if _, ok := params[1]; ok {
			return "largeBlobs/get"
		}
		return "largeBlobs/set"
	case ctap2.CmdConfig:
		return "config"
	}
	return fmt.Sprintf("%#x", cmd)
}

// call sends cmd with params (nil: none).
func (r *recorder) call(cmd byte, params map[int]any) (ctap2.StatusCode, []byte) {
	r.t.Helper()
	var p any
	if params != nil {
		p = params
	}
	st, out := rptest.Call(r.t, r.d, cmd, p)
	r.log = append(r.log, label(cmd, params)+" → "+st.Name())
	r.reqs = append(r.reqs, params)
	if st != ctap2.StatusOK && len(out) != 0 {
		r.t.Fatalf("%s: status %v with a body", label(cmd, params), st)
	}
	return st, out
}

// take returns the transcript and the requests so far, and starts anew.
func (r *recorder) take() ([]string, []map[int]any) {
	l, q := r.log, r.reqs
	r.log, r.reqs = nil, nil
	return l, q
}

// errClient is a python-fido2 ClientError raised before the authenticator
// is asked (CONFIGURATION_UNSUPPORTED, PinRequiredError, bad input).
var errClient = errors.New("python-fido2 ClientError")

// Client-side WebAuthn inputs, as PublicKeyCredentialCreationOptions /
// RequestOptions give them to Fido2Client.
type (
	pyUser struct {
		ID                []byte
		Name, DisplayName string
	}
	pyPRFValues struct{ First, Second []byte }
	pyExt       struct {
		PRF                *pyPRFValues            // prf: {eval: …}; non-nil with empty First: prf: {}
		PRFByCredential    map[string]*pyPRFValues // prf.evalByCredential (base64url ids)
		CredBlob           []byte                  // credBlob (create)
		GetCredBlob        bool                    // getCredBlob (get)
		LargeBlobSupport   string                  // largeBlob: {support} (create)
		LargeBlobRead      bool                    // largeBlob: {read: true} (get)
		LargeBlobWrite     []byte                  // largeBlob: {write} (get)
		CredProtect        string                  // credentialProtectionPolicy
		EnforceCredProtect bool                    // enforceCredentialProtectionPolicy
		MinPinLength       bool                    // minPinLength
		CredProps          bool                    // credProps
		Payment            bool                    // payment: {isPayment: true}
	}
	pyCreate struct {
		RPID, RPName     string
		User             pyUser
		Challenge        []byte
		Algs             []int
		Exclude          [][]byte
		ResidentKey      string // "required", "preferred", "discouraged" or ""
		UserVerification string // "required", "preferred", "discouraged" or ""
		Ext              pyExt
	}
	pyGet struct {
		RPID             string
		Challenge        []byte
		Allow            [][]byte
		UserVerification string
		Ext              pyExt
	}
)

// pyRegistration is what make_credential returns.
type pyRegistration struct {
	Att          *rptest.Attestation
	AuthData     *ctap2.AuthData
	LargeBlobKey []byte
	ClientData   []byte
	Ext          map[string]any // client extension results
}

// pyAssertion is one AssertionSelection.get_response(i).
type pyAssertion struct {
	GA         *ctap2.GetAssertionResponse
	AuthData   *ctap2.AuthData
	ClientData []byte
	Ext        map[string]any
}

// pyClient is Fido2Client(device, DefaultClientDataCollector(origin),
// user_interaction, extensions) with the default extensions, plus
// ThirdPartyPaymentExtension when thirdPartyPayment is set.
type pyClient struct {
	r                 *recorder
	rp                *rptest.RP // the origin (and an oracle for the caller)
	info              *ctap2.GetInfoResponse
	pin               string // UserInteraction.request_pin; "" cancels
	refuseUV          bool   // UserInteraction.request_uv answers False
	thirdPartyPayment bool
}

// newPyClient constructs the client: _Ctap2ClientBackend → Ctap2(device),
// whose constructor reads getInfo once (ctap2.info).
func newPyClient(r *recorder, rp *rptest.RP) *pyClient {
	c := &pyClient{r: r, rp: rp}
	c.info = c.getInfo()
	return c
}

func (c *pyClient) getInfo() *ctap2.GetInfoResponse {
	c.r.t.Helper()
	st, out := c.r.call(ctap2.CmdGetInfo, nil)
	if st != ctap2.StatusOK {
		c.r.t.Fatalf("getInfo: %v", st)
	}
	var info ctap2.GetInfoResponse
	if err := cbor.Unmarshal(out, &info); err != nil {
		c.r.t.Fatal(err)
	}
	return &info
}

// pinProtocol negotiates as python-fido2 does: ClientPin.PROTOCOLS is
// [PinProtocolV2, PinProtocolV1]; the first the key lists wins.
func pinProtocol(info *ctap2.GetInfoResponse) ctap2.PINProtocol {
	for _, v := range []uint{2, 1} {
		if slices.Contains(info.PinUvAuthProtocols, v) {
			p, _ := ctap2.PINProtocolByVersion(v)
			return p
		}
	}
	return nil
}

// sharedSecret is ClientPin._get_shared_secret: getKeyAgreement, then
// encapsulate.
func (c *pyClient) sharedSecret(p ctap2.PINProtocol) (map[int]any, *ctap2.SharedSecret, error) {
	t := c.r.t
	st, out := c.r.call(ctap2.CmdClientPIN, map[int]any{1: int(p.Version()), 2: 2})
	if st != ctap2.StatusOK {
		return nil, nil, st
	}
	var resp struct {
		KA ctap2.KeyAgreementCOSE `cbor:"1,keyasint"`
	}
	if err := cbor.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	key, err := ctap2.ParsePlatformKey(resp.KA.X, resp.KA.Y)
	if err != nil {
		t.Fatalf("authenticator key agreement key: %v", err)
	}
	pub, shared, err := ctap2.PlatformEncapsulate(p, key)
	if err != nil {
		t.Fatal(err)
	}
	return ctap2.PublicKeyCOSE(pub), shared, nil
}

// token decrypts a clientPIN token response.
func (c *pyClient) token(p ctap2.PINProtocol, shared *ctap2.SharedSecret, out []byte) *ctap2.PINUVAuthToken {
	t := c.r.t
	var resp struct {
		Token []byte `cbor:"2,keyasint"`
	}
	if err := cbor.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	raw, err := shared.Decrypt(resp.Token)
	if err != nil {
		t.Fatalf("decrypt token: %v", err)
	}
	tok, err := ctap2.ParsePINUVAuthToken(p, raw)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return tok
}

// getPINToken is ClientPin.get_pin_token: 0x09 with permissions when the
// key says pinUvAuthToken, else the legacy 0x05.
func (c *pyClient) getPINToken(p ctap2.PINProtocol, perms ctap2.Permission, rpID string) (*ctap2.PINUVAuthToken, error) {
	ka, shared, err := c.sharedSecret(p)
	if err != nil {
		return nil, err
	}
	hashEnc, err := shared.Encrypt(ctap2.PINHash(c.pin))
	if err != nil {
		c.r.t.Fatal(err)
	}
	req := map[int]any{1: int(p.Version()), 2: 5, 3: ka, 6: hashEnc}
	if c.info.Options["pinUvAuthToken"] {
		req[2], req[9] = 9, int(perms)
		if rpID != "" {
			req[10] = rpID
		}
	}
	st, out := c.r.call(ctap2.CmdClientPIN, req)
	if st != ctap2.StatusOK {
		return nil, st
	}
	return c.token(p, shared, out), nil
}

// getUVToken is ClientPin.get_uv_token (0x06).
func (c *pyClient) getUVToken(p ctap2.PINProtocol, perms ctap2.Permission, rpID string) (*ctap2.PINUVAuthToken, error) {
	ka, shared, err := c.sharedSecret(p)
	if err != nil {
		return nil, err
	}
	st, out := c.r.call(ctap2.CmdClientPIN, map[int]any{1: int(p.Version()), 2: 6, 3: ka, 9: int(perms), 10: rpID})
	if st != ctap2.StatusOK {
		return nil, st
	}
	return c.token(p, shared, out), nil
}

// shouldUseUV is _Ctap2ClientBackend._should_use_uv.
func shouldUseUV(info *ctap2.GetInfoResponse, uv string, perms ctap2.Permission) (bool, error) {
	_, hasUV := info.Options["uv"]
	_, hasPIN := info.Options["clientPin"]
	_, hasBio := info.Options["bioEnroll"]
	supported := hasUV || hasPIN || hasBio
	configured := info.Options["uv"] || info.Options["clientPin"] || info.Options["bioEnroll"]
	mc := perms&ctap2.PermMakeCredential != 0
	additional := perms &^ (ctap2.PermMakeCredential | ctap2.PermGetAssertion)
	switch {
	case uv == "required" || ((uv == "preferred" || uv == "") && supported) || info.Options["alwaysUv"]:
		if !configured {
			return false, fmt.Errorf("%w: user verification not configured/supported", errClient)
		}
		return true, nil
	case mc && configured && !info.Options["makeCredUvNotRqd"]:
		return true, nil
	case configured && additional != 0:
		return true, nil
	}
	return false, nil
}

// authParams is _get_auth_params (with _get_token): a fresh getInfo, then
// a token by built-in UV or PIN when UV is to be used. internalUV means
// options.uv=true without a token.
func (c *pyClient) authParams(p ctap2.PINProtocol, rpID, uv string, perms ctap2.Permission) (tok *ctap2.PINUVAuthToken, internalUV bool, err error) {
	info := c.getInfo()
	use, err := shouldUseUV(info, uv, perms)
	if err != nil || !use {
		return nil, false, err
	}
	allowInternal := perms&^(ctap2.PermMakeCredential|ctap2.PermGetAssertion) == 0
	switch {
	case info.Options["uv"] && info.Options["pinUvAuthToken"] && !c.refuseUV:
		tok, err = c.getUVToken(p, perms, rpID)
	case info.Options["uv"] && !info.Options["pinUvAuthToken"] && allowInternal && !c.refuseUV:
		return nil, true, nil
	case info.Options["clientPin"]:
		if c.pin == "" {
			return nil, false, fmt.Errorf("%w: PIN required but not provided", errClient)
		}
		tok, err = c.getPINToken(p, perms, rpID)
	default:
		return nil, false, fmt.Errorf("%w: user verification not configured", errClient)
	}
	return tok, tok == nil && err == nil, err
}

func descriptors(ids [][]byte) []map[string]any {
	var out []map[string]any
	for _, id := range ids {
		out = append(out, map[string]any{"type": "public-key", "id": id})
	}
	return out
}

// getAssertions is Ctap2.get_assertions: getAssertion, then
// getNextAssertion for every further credential.
func (c *pyClient) getAssertions(req map[int]any) ([]*ctap2.GetAssertionResponse, error) {
	st, out := c.r.call(ctap2.CmdGetAssertion, req)
	if st != ctap2.StatusOK {
		return nil, st
	}
	first := rptest.DecodeAssertion(c.r.t, out)
	all := []*ctap2.GetAssertionResponse{first}
	for i := 1; i < int(first.NumberOfCredentials); i++ {
		st, out := c.r.call(ctap2.CmdGetNextAssertion, nil)
		if st != ctap2.StatusOK {
			return nil, st
		}
		all = append(all, rptest.DecodeAssertion(c.r.t, out))
	}
	return all, nil
}

// filterCreds is _filter_creds: a fresh getInfo, ids longer than
// maxCredentialIdLength dropped, chunks of maxCredentialCountInList, and a
// silent getAssertion (up=false) over 32 zero bytes per chunk, with a
// pinUvAuthParam made with the token when there is one. It returns the
// first match (nil: none).
func (c *pyClient) filterCreds(rpID string, ids [][]byte, p ctap2.PINProtocol, tok *ctap2.PINUVAuthToken) ([]byte, error) {
	info := c.getInfo()
	if n := int(info.MaxCredentialIDLength); n > 0 {
		ids = slices.DeleteFunc(slices.Clone(ids), func(id []byte) bool { return len(id) > n })
	}
	chunkLen := max(int(info.MaxCredentialCountInList), 1)
	zero := make([]byte, 32)
	for chunk := range slices.Chunk(ids, chunkLen) {
		req := map[int]any{1: rpID, 2: zero, 3: descriptors(chunk), 5: map[string]bool{"up": false}}
		if tok != nil {
			req[6], req[7] = p.Authenticate(tok, zero), int(p.Version())
		}
		got, err := c.getAssertions(req)
		switch {
		case err == nil && len(chunk) == 1:
			return chunk[0], nil
		case err == nil:
			return got[0].Credential.ID, nil
		case errors.Is(err, ctap2.ErrNoCredentials):
			continue
		default:
			return nil, err
		}
	}
	return nil, nil
}

// prfSalt is _prf_salt: SHA-256("WebAuthn PRF" ‖ 0x00 ‖ secret).
func prfSalt(secret []byte) []byte {
	return sha(append([]byte("WebAuthn PRF\x00"), secret...))
}

// prfSalts is _hmac_prepare_salts for prf (nil: no salts).
func prfSalts(e *pyExt, selected []byte) []byte {
	v := e.PRF
	if selected != nil && e.PRFByCredential != nil {
		if b, ok := e.PRFByCredential[base64.RawURLEncoding.EncodeToString(selected)]; ok {
			v = b
		}
	}
	if v == nil || v.First == nil {
		return nil
	}
	salts := prfSalt(v.First)
	if v.Second != nil {
		salts = append(salts, prfSalt(v.Second)...)
	}
	return salts
}

// hmacInput is the hmac-secret / hmac-secret-mc input map.
func (c *pyClient) hmacInput(p ctap2.PINProtocol, ka map[int]any, shared *ctap2.SharedSecret, salts []byte) map[int]any {
	enc, err := shared.Encrypt(salts)
	if err != nil {
		c.r.t.Fatal(err)
	}
	return map[int]any{1: ka, 2: enc, 3: shared.Authenticate(enc), 4: int(p.Version())}
}

// prfResults decrypts an hmac-secret output into prf results.
func (c *pyClient) prfResults(shared *ctap2.SharedSecret, value []byte) map[string][]byte {
	out, err := shared.Decrypt(value)
	if err != nil {
		c.r.t.Fatalf("decrypt hmac-secret output: %v", err)
	}
	res := map[string][]byte{"first": out[:32]}
	if len(out) > 32 {
		res["second"] = out[32:]
	}
	return res
}

// extOutputs decodes authenticator extension outputs (empty map: none).
func extOutputs(t testing.TB, ad *ctap2.AuthData) map[string]cbor.RawMessage {
	t.Helper()
	m := map[string]cbor.RawMessage{}
	if len(ad.Extensions) > 0 {
		if err := cbor.Unmarshal(ad.Extensions, &m); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// processor is a RegistrationExtensionProcessor or
// AuthenticationExtensionProcessor.
type processor struct {
	perms   ctap2.Permission
	inputs  func(selected []byte, tok *ctap2.PINUVAuthToken) map[string]any
	outputs func(ad *ctap2.AuthData, largeBlobKey []byte, tok *ctap2.PINUVAuthToken) (map[string]any, error)
}

// mcProcessors is Ctap2Extension.make_credential of each extension in the
// client's list (_DEFAULT_EXTENSIONS order: hmac-secret/prf, largeBlob,
// credBlob, credProtect, minPinLength, credProps; then thirdPartyPayment).
// Only hmac-secret talks to the key here (getKeyAgreement, for
// hmac-secret-mc).
func (c *pyClient) mcProcessors(o *pyCreate, p ctap2.PINProtocol) ([]processor, error) {
	info, e := c.info, &o.Ext
	var ps []processor
	fixed := func(in map[string]any) processor {
		return processor{inputs: func([]byte, *ctap2.PINUVAuthToken) map[string]any { return in }}
	}
	if p != nil && slices.Contains(info.Extensions, "hmac-secret") && e.PRF != nil {
		in := map[string]any{"hmac-secret": true}
		var shared *ctap2.SharedSecret
		if slices.Contains(info.Extensions, "hmac-secret-mc") {
			if salts := prfSalts(e, nil); salts != nil {
				ka, s, err := c.sharedSecret(p)
				if err != nil {
					return nil, err
				}
				shared = s
				in["hmac-secret-mc"] = c.hmacInput(p, ka, shared, salts)
			}
		}
		ps = append(ps, processor{
			inputs: func([]byte, *ctap2.PINUVAuthToken) map[string]any { return in },
			outputs: func(ad *ctap2.AuthData, _ []byte, _ *ctap2.PINUVAuthToken) (map[string]any, error) {
				ext := extOutputs(c.r.t, ad)
				enabled := false
				if raw, ok := ext["hmac-secret"]; ok {
					if err := cbor.Unmarshal(raw, &enabled); err != nil {
						return nil, err
					}
				}
				prf := map[string]any{"enabled": enabled}
				if raw, ok := ext["hmac-secret-mc"]; ok {
					var v []byte
					if err := cbor.Unmarshal(raw, &v); err != nil {
						return nil, err
					}
					prf["results"] = c.prfResults(shared, v)
				}
				return map[string]any{"prf": prf}, nil
			},
		})
	}
	lbSupported := slices.Contains(info.Extensions, "largeBlobKey") && info.Options["largeBlobs"]
	if e.LargeBlobSupport != "" {
		if e.LargeBlobSupport == "required" && !lbSupported {
			return nil, fmt.Errorf("%w: no large blob storage", errClient)
		}
		ps = append(ps, processor{
			inputs: func([]byte, *ctap2.PINUVAuthToken) map[string]any { return map[string]any{"largeBlobKey": true} },
			outputs: func(_ *ctap2.AuthData, key []byte, _ *ctap2.PINUVAuthToken) (map[string]any, error) {
				return map[string]any{"largeBlob": map[string]any{"supported": key != nil}}, nil
			},
		})
	}
	if slices.Contains(info.Extensions, "credBlob") && len(e.CredBlob) > 0 && len(e.CredBlob) <= int(info.MaxCredBlobLength) {
		ps = append(ps, fixed(map[string]any{"credBlob": e.CredBlob}))
	}
	if e.CredProtect != "" {
		i := slices.Index([]string{"userVerificationOptional", "userVerificationOptionalWithCredentialIDList", "userVerificationRequired"}, e.CredProtect)
		if i < 0 {
			return nil, fmt.Errorf("%w: bad credentialProtectionPolicy", errClient)
		}
		if e.EnforceCredProtect && !slices.Contains(info.Extensions, "credProtect") && i > 0 {
			return nil, fmt.Errorf("%w: no credProtect", errClient)
		}
		ps = append(ps, fixed(map[string]any{"credProtect": i + 1}))
	}
	if _, ok := info.Options["setMinPINLength"]; ok && e.MinPinLength {
		ps = append(ps, fixed(map[string]any{"minPinLength": true}))
	}
	if e.CredProps {
		rk := o.ResidentKey == "required" || (o.ResidentKey == "preferred" && info.Options["rk"])
		ps = append(ps, processor{outputs: func(*ctap2.AuthData, []byte, *ctap2.PINUVAuthToken) (map[string]any, error) {
			return map[string]any{"credProps": map[string]any{"rk": rk}}, nil
		}})
	}
	if c.thirdPartyPayment && slices.Contains(info.Extensions, "thirdPartyPayment") && e.Payment {
		ps = append(ps, fixed(map[string]any{"thirdPartyPayment": true}))
	}
	return ps, nil
}

// prepare is what _do_make and _do_auth share: the token for perms and
// the extensions' permissions (_get_auth_params), the list filtered with it
// (_filter_creds; nil match: none), and the extension inputs
// (prepare_inputs, given the match when withMatch, as get_assertion does).
func (c *pyClient) prepare(p ctap2.PINProtocol, rpID, uv string, perms ctap2.Permission, procs []processor, list [][]byte, withMatch bool) (tok *ctap2.PINUVAuthToken, internalUV bool, match []byte, inputs map[string]any, err error) {
	for _, pr := range procs {
		perms |= pr.perms
	}
	if tok, internalUV, err = c.authParams(p, rpID, uv, perms); err != nil {
		return nil, false, nil, nil, err
	}
	if len(list) > 0 {
		if match, err = c.filterCreds(rpID, list, p, tok); err != nil {
			return nil, false, nil, nil, err
		}
	}
	inputs = map[string]any{}
	var selected []byte
	if withMatch {
		selected = match
	}
	for _, pr := range procs {
		if pr.inputs != nil {
			for k, v := range pr.inputs(selected, tok) {
				inputs[k] = v
			}
		}
	}
	return tok, internalUV, match, inputs, nil
}

// outputs runs every processor's prepare_outputs: the client extension
// results.
func outputs(procs []processor, ad *ctap2.AuthData, largeBlobKey []byte, tok *ctap2.PINUVAuthToken) (map[string]any, error) {
	ext := map[string]any{}
	for _, pr := range procs {
		if pr.outputs == nil {
			continue
		}
		outs, err := pr.outputs(ad, largeBlobKey, tok)
		if err != nil {
			return nil, err
		}
		for k, v := range outs {
			ext[k] = v
		}
	}
	return ext, nil
}

// makeCredential is Fido2Client.make_credential (do_make_credential).
func (c *pyClient) makeCredential(o pyCreate) (*pyRegistration, error) {
	t := c.r.t
	cdj := c.rp.ClientData("webauthn.create", o.Challenge)
	cdh := sha(cdj)
	info := c.getInfo()
	p := pinProtocol(info)
	uv := o.UserVerification
	for {
		perms := ctap2.PermMakeCredential
		if len(o.Exclude) > 0 {
			perms |= ctap2.PermGetAssertion // for filtering the exclude list
		}
		procs, err := c.mcProcessors(&o, p)
		if err != nil {
			return nil, err
		}
		// A match still goes to makeCredential: the user must touch.
		tok, internalUV, excluded, inputs, err := c.prepare(p, o.RPID, uv, perms, procs, o.Exclude, false)
		if err != nil {
			return nil, err
		}
		rk := o.ResidentKey == "required" || (o.ResidentKey == "preferred" && info.Options["rk"])
		var params []map[string]any
		for _, a := range o.Algs {
			params = append(params, map[string]any{"type": "public-key", "alg": a})
		}
		req := map[int]any{
			1: cdh,
			2: map[string]any{"id": o.RPID, "name": o.RPName},
			3: map[string]any{"id": o.User.ID, "name": o.User.Name, "displayName": o.User.DisplayName},
			4: params,
		}
		if excluded != nil {
			req[5] = descriptors([][]byte{excluded})
		}
		if len(inputs) > 0 {
			req[6] = inputs
		}
		if rk || internalUV {
			opts := map[string]bool{}
			if rk {
				opts["rk"] = true
			}
			if internalUV {
				opts["uv"] = true
			}
			req[7] = opts
		}
		if p != nil && tok != nil {
			req[8], req[9] = p.Authenticate(tok, cdh), int(p.Version())
		}
		st, out := c.r.call(ctap2.CmdMakeCredential, req)
		if st == ctap2.ErrPUATRequired && uv == "discouraged" {
			uv = "required" // the authenticator may still require UV: try again
			continue
		}
		if st != ctap2.StatusOK {
			return nil, st
		}
		att := rptest.DecodeAttestation(t, out)
		var typed ctap2.MakeCredentialResponse
		if err := cbor.Unmarshal(out, &typed); err != nil {
			t.Fatal(err)
		}
		ad, err := ctap2.ParseAuthData(att.AuthData)
		if err != nil {
			t.Fatal(err)
		}
		ext, err := outputs(procs, ad, typed.LargeBlobKey, tok)
		if err != nil {
			return nil, err
		}
		return &pyRegistration{Att: att, AuthData: ad, LargeBlobKey: typed.LargeBlobKey, ClientData: cdj, Ext: ext}, nil
	}
}

// gaProcessors is Ctap2Extension.get_assertion of each extension in the
// client's list. hmac-secret/prf asks for the key agreement key here,
// before the token.
func (c *pyClient) gaProcessors(o *pyGet, p ctap2.PINProtocol) ([]processor, error) {
	info, e := c.info, &o.Ext
	var ps []processor
	if p != nil && slices.Contains(info.Extensions, "hmac-secret") && (e.PRF != nil || e.PRFByCredential != nil) {
		ka, shared, err := c.sharedSecret(p)
		if err != nil {
			return nil, err
		}
		ps = append(ps, processor{
			inputs: func(selected []byte, _ *ctap2.PINUVAuthToken) map[string]any {
				salts := prfSalts(e, selected)
				if salts == nil {
					return nil
				}
				return map[string]any{"hmac-secret": c.hmacInput(p, ka, shared, salts)}
			},
			outputs: func(ad *ctap2.AuthData, _ []byte, _ *ctap2.PINUVAuthToken) (map[string]any, error) {
				raw, ok := extOutputs(c.r.t, ad)["hmac-secret"]
				if !ok {
					return nil, nil
				}
				var v []byte
				if err := cbor.Unmarshal(raw, &v); err != nil {
					return nil, err
				}
				return map[string]any{"prf": map[string]any{"results": c.prfResults(shared, v)}}, nil
			},
		})
	}
	if e.LargeBlobRead || e.LargeBlobWrite != nil {
		if e.LargeBlobRead && e.LargeBlobWrite != nil {
			return nil, fmt.Errorf("%w: invalid set of largeBlob parameters", errClient)
		}
		if !slices.Contains(info.Extensions, "largeBlobKey") || !info.Options["largeBlobs"] {
			return nil, fmt.Errorf("%w: no large blob storage", errClient)
		}
		var perms ctap2.Permission
		if e.LargeBlobWrite != nil {
			perms = ctap2.PermLargeBlobWrite
		}
		ps = append(ps, processor{
			perms:  perms,
			inputs: func([]byte, *ctap2.PINUVAuthToken) map[string]any { return map[string]any{"largeBlobKey": true} },
			outputs: func(_ *ctap2.AuthData, key []byte, tok *ctap2.PINUVAuthToken) (map[string]any, error) {
				if key == nil {
					return nil, nil
				}
				lb := &pyLargeBlobs{c: c, p: p, tok: tok}
				if e.LargeBlobRead {
					blob, err := lb.getBlob(key)
					if err != nil {
						return nil, err
					}
					return map[string]any{"largeBlob": map[string]any{"blob": blob}}, nil
				}
				if err := lb.putBlob(key, e.LargeBlobWrite); err != nil {
					return nil, err
				}
				return map[string]any{"largeBlob": map[string]any{"written": true}}, nil
			},
		})
	}
	if slices.Contains(info.Extensions, "credBlob") && e.GetCredBlob {
		ps = append(ps, processor{inputs: func([]byte, *ctap2.PINUVAuthToken) map[string]any { return map[string]any{"credBlob": true} }})
	}
	if c.thirdPartyPayment && slices.Contains(info.Extensions, "thirdPartyPayment") && e.Payment {
		ps = append(ps, processor{inputs: func([]byte, *ctap2.PINUVAuthToken) map[string]any {
			return map[string]any{"thirdPartyPayment": true}
		}})
	}
	return ps, nil
}

// getAssertion is Fido2Client.get_assertion (do_get_assertion) followed by
// AssertionSelection.get_response(i) for every assertion, which runs the
// extension outputs (a largeBlob read or write talks to the key there).
func (c *pyClient) getAssertion(o pyGet) ([]*pyAssertion, error) {
	t := c.r.t
	cdj := c.rp.ClientData("webauthn.get", o.Challenge)
	cdh := sha(cdj)
	p := pinProtocol(c.info) // do_get_assertion negotiates with self.info
	uv := o.UserVerification
	for {
		procs, err := c.gaProcessors(&o, p)
		if err != nil {
			return nil, err
		}
		// No match still goes to getAssertion: the user must touch.
		tok, internalUV, selected, inputs, err := c.prepare(p, o.RPID, uv, ctap2.PermGetAssertion, procs, o.Allow, true)
		if err != nil {
			return nil, err
		}
		req := map[int]any{1: o.RPID, 2: cdh}
		if len(o.Allow) > 0 && selected == nil {
			selected = []byte{0} // a dummy credential when nothing matched
		}
		if selected != nil {
			req[3] = descriptors([][]byte{selected})
		}
		if len(inputs) > 0 {
			req[4] = inputs
		}
		if internalUV {
			req[5] = map[string]bool{"uv": true}
		}
		if p != nil && tok != nil {
			req[6], req[7] = p.Authenticate(tok, cdh), int(p.Version())
		}
		got, err := c.getAssertions(req)
		if errors.Is(err, ctap2.ErrPUATRequired) && uv == "discouraged" {
			uv = "required"
			continue
		}
		if err != nil {
			return nil, err
		}
		var out []*pyAssertion
		for _, ga := range got {
			ad, err := ctap2.ParseAuthData(ga.AuthData)
			if err != nil {
				t.Fatal(err)
			}
			ext, err := outputs(procs, ad, ga.LargeBlobKey, tok)
			if err != nil {
				return nil, err
			}
			out = append(out, &pyAssertion{GA: ga, AuthData: ad, ClientData: cdj, Ext: ext})
		}
		return out, nil
	}
}

// pyLargeBlobs is fido2.ctap2.blob.LargeBlobs.
type pyLargeBlobs struct {
	c   *pyClient
	p   ctap2.PINProtocol
	tok *ctap2.PINUVAuthToken
}

// readArray is read_blob_array: fragments of maxMsgSize-64 bytes until a
// short one; a bad checksum reads as an empty array.
func (lb *pyLargeBlobs) readArray() ([]map[int]any, error) {
	frag := int(lb.c.info.MaxMsgSize) - 64
	var buf []byte
	for offset := 0; ; offset += frag {
		st, out := lb.c.r.call(ctap2.CmdLargeBlobs, map[int]any{1: frag, 3: offset})
		if st != ctap2.StatusOK {
			return nil, st
		}
		var resp ctap2.LargeBlobsResponse
		if err := cbor.Unmarshal(out, &resp); err != nil {
			return nil, err
		}
		buf = append(buf, resp.Config...)
		if len(resp.Config) < frag {
			break
		}
	}
	if len(buf) < 16 {
		return nil, errors.New("large-blob array shorter than its checksum")
	}
	data, check := buf[:len(buf)-16], buf[len(buf)-16:]
	if !bytes.Equal(check, sha(data)[:16]) {
		return nil, nil
	}
	var arr []map[int]any
	if err := cbor.Unmarshal(data, &arr); err != nil {
		return nil, err
	}
	return arr, nil
}

// writeArray is write_blob_array: length on the first fragment only, and
// pinUvAuthParam = authenticate(token, 32×0xFF ‖ 0x0C 0x00 ‖
// uint32LE(offset) ‖ SHA-256(fragment)).
func (lb *pyLargeBlobs) writeArray(arr []map[int]any) error {
	data, err := encMode.Marshal(arr)
	if err != nil {
		return err
	}
	data = append(data, sha(data)[:16]...)
	frag := int(lb.c.info.MaxMsgSize) - 64
	for offset := 0; offset < len(data); offset += frag {
		part := data[offset:min(offset+frag, len(data))]
		req := map[int]any{2: part, 3: offset}
		if offset == 0 {
			req[4] = len(data)
		}
		if lb.tok != nil {
			msg := append(bytes.Repeat([]byte{0xFF}, 32), 0x0C, 0x00)
			msg = binary.LittleEndian.AppendUint32(msg, uint32(offset))
			msg = append(msg, sha(part)...)
			req[5], req[6] = lb.p.Authenticate(lb.tok, msg), int(lb.p.Version())
		}
		if st, _ := lb.c.r.call(ctap2.CmdLargeBlobs, req); st != ctap2.StatusOK {
			return st
		}
	}
	return nil
}

// blobAD is _lb_ad: "blob" ‖ uint64LE(origSize).
func blobAD(n int) []byte { return binary.LittleEndian.AppendUint64([]byte("blob"), uint64(n)) }

func blobGCM(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

// unpack is _lb_unpack and _decompress (raw deflate); ok is false for an
// entry of another credential.
func unpackBlob(key []byte, e map[int]any) ([]byte, bool) {
	ct, _ := e[1].([]byte)
	nonce, _ := e[2].([]byte)
	size, _ := e[3].(uint64)
	if len(nonce) != 12 {
		return nil, false
	}
	compressed, err := blobGCM(key).Open(nil, nonce, ct, blobAD(int(size)))
	if err != nil {
		return nil, false
	}
	plain, err := io.ReadAll(flate.NewReader(bytes.NewReader(compressed)))
	if err != nil || len(plain) != int(size) {
		return nil, false
	}
	return plain, true
}

func (lb *pyLargeBlobs) getBlob(key []byte) ([]byte, error) {
	arr, err := lb.readArray()
	if err != nil {
		return nil, err
	}
	for _, e := range arr {
		if b, ok := unpackBlob(key, e); ok {
			return b, nil
		}
	}
	return nil, nil
}

// putBlob is put_blob: read, drop this credential's entry, append the new
// one (_lb_pack: raw deflate, AES-256-GCM with a random nonce), write.
func (lb *pyLargeBlobs) putBlob(key, data []byte) error {
	arr, err := lb.readArray()
	if err != nil {
		return err
	}
	entries := []map[int]any{}
	for _, e := range arr {
		if _, ok := unpackBlob(key, e); !ok {
			entries = append(entries, e)
		}
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.DefaultCompression)
	w.Write(data)
	w.Close()
	nonce := make([]byte, 12)
	rand.Read(nonce)
	entries = append(entries, map[int]any{1: blobGCM(key).Seal(nil, nonce, z.Bytes(), blobAD(len(data))), 2: nonce, 3: len(data)})
	return lb.writeArray(entries)
}
