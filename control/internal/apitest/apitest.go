// Package apitest checks a running control API against its OpenAPI
// description: every documented route answers with a documented status,
// every answer matches its schema (no missing required field, no
// undocumented one), and every documented request field round-trips.
package apitest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/control"
)

// Doc is the parsed OpenAPI document (the parts the checks use).
type Doc struct {
	Paths      map[string]map[string]Operation `json:"paths"`
	Components struct {
		Schemas map[string]*Schema `json:"schemas"`
	} `json:"components"`
}

// Operation is one method of a path.
type Operation struct {
	Responses   map[string]Response `json:"responses"`
	RequestBody *struct {
		Content map[string]struct {
			Schema *Schema `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
}

// Response is a documented answer.
type Response struct {
	Content map[string]struct {
		Schema *Schema `json:"schema"`
	} `json:"content"`
}

// Schema is a JSON schema subset.
type Schema struct {
	Ref        string             `json:"$ref"`
	Type       string             `json:"type"`
	Format     string             `json:"format"`
	Enum       []any              `json:"enum"`
	Required   []string           `json:"required"`
	Properties map[string]*Schema `json:"properties"`
	Items      *Schema            `json:"items"`
	OneOf      []*Schema          `json:"oneOf"`
}

// Parse parses control.OpenAPI().
func Parse(t testing.TB) *Doc {
	t.Helper()
	var d Doc
	if err := json.Unmarshal(control.OpenAPI(), &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &d
}

// Resolve follows a $ref.
func (d *Doc) Resolve(s *Schema) *Schema {
	for s != nil && s.Ref != "" {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// Validate checks v (decoded JSON) against s; it returns the problems.
func (d *Doc) Validate(v any, s *Schema, at string) []string {
	s = d.Resolve(s)
	if s == nil {
		return []string{at + ": no schema"}
	}
	if len(s.OneOf) > 0 {
		var all []string
		for _, o := range s.OneOf {
			p := d.Validate(v, o, at)
			if len(p) == 0 {
				return nil
			}
			all = append(all, p...)
		}
		return append([]string{at + ": matches no oneOf branch"}, all...)
	}
	var out []string
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %T", at, v)}
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				out = append(out, at+"."+r+": required field missing")
			}
		}
		if s.Properties == nil {
			return out // free-form object
		}
		for k, fv := range m {
			ps, ok := s.Properties[k]
			if !ok {
				out = append(out, at+"."+k+": field not documented")
				continue
			}
			out = append(out, d.Validate(fv, ps, at+"."+k)...)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an array, got %T", at, v)}
		}
		for i, e := range a {
			out = append(out, d.Validate(e, s.Items, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: want a string, got %T", at, v)}
		}
		if s.Format == "base64url" {
			if _, err := base64.RawURLEncoding.Strict().DecodeString(str); err != nil {
				out = append(out, at+": not unpadded base64url")
			}
		}
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				out = append(out, at+": not an RFC 3339 time")
			}
		}
		if len(s.Enum) > 0 && !inEnum(str, s.Enum) {
			out = append(out, fmt.Sprintf("%s: %q not in %v", at, str, s.Enum))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			out = append(out, fmt.Sprintf("%s: want a boolean, got %T", at, v))
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			out = append(out, fmt.Sprintf("%s: want an integer, got %v", at, v))
		}
	}
	return out
}

func inEnum(v any, enum []any) bool {
	for _, e := range enum {
		if e == v {
			return true
		}
	}
	return false
}

// API drives a server over an HTTP client.
type API struct {
	T    testing.TB
	HC   *http.Client
	Base string // "http://virtkey" or "http://127.0.0.1:PORT"
	// Token, if set, is sent as a bearer token.
	Token string
	Doc   *Doc
	// Seen records the operations that answered ("GET /v1/keys").
	Seen map[string]bool
}

// Do sends a request for the documented operation (method, pattern) on
// path, checks the status is documented and the body matches the schema,
// and returns the status and decoded body.
func (a *API) Do(method, pattern, path string, body any) (int, any) {
	t := a.T
	t.Helper()
	op, ok := a.Doc.Paths[pattern][strings.ToLower(method)]
	if !ok {
		t.Fatalf("%s %s: not documented", method, pattern)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
		if op.RequestBody != nil {
			var v any
			json.Unmarshal(b, &v)
			if p := a.Doc.Validate(v, op.RequestBody.Content["application/json"].Schema, method+" "+pattern+" request"); len(p) > 0 {
				t.Errorf("request does not match the documentation: %v", p)
			}
		}
	}
	req, err := http.NewRequest(method, a.Base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	resp, err := a.HC.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	code := strconv.Itoa(resp.StatusCode)
	r, ok := op.Responses[code]
	if !ok {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %s is not documented (%s)", method, path, code, b)
	}
	if a.Seen == nil {
		a.Seen = map[string]bool{}
	}
	a.Seen[method+" "+pattern] = true
	var v any
	for ctype, c := range r.Content {
		if ctype == "application/x-ndjson" {
			if got := resp.Header.Get("Content-Type"); got != ctype {
				t.Errorf("%s %s: Content-Type %q, want %q", method, path, got, ctype)
			}
			return resp.StatusCode, nil // a stream: the caller reads it
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		if p := a.Doc.Validate(v, c.Schema, method+" "+pattern); len(p) > 0 {
			t.Errorf("answer does not match the documentation:\n  %s", strings.Join(p, "\n  "))
		}
	}
	return resp.StatusCode, v
}

// Want fails unless code is want.
func (a *API) Want(code, want int, what string, body any) {
	a.T.Helper()
	if code != want {
		a.T.Fatalf("%s: status %d, want %d (%v)", what, code, want, body)
	}
}

// RoundTrip checks that every field of sent is in got with the same JSON
// value (fields in skip excepted).
func RoundTrip(t testing.TB, what string, sent any, got any, skip ...string) {
	t.Helper()
	b, _ := json.Marshal(sent)
	var m map[string]any
	json.Unmarshal(b, &m)
	g, _ := got.(map[string]any)
	for k, v := range m {
		if contains(skip, k) {
			continue
		}
		if gv, ok := g[k]; !ok || fmt.Sprint(gv) != fmt.Sprint(v) {
			t.Errorf("%s: field %s sent %v, got back %v", what, k, v, g[k])
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// ES256Key returns a fresh P-256 key as PKCS#8 DER and its SPKI DER.
func ES256Key(t testing.TB) (pkcs8, spki []byte) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ = x509.MarshalPKCS8PrivateKey(k)
	spki, _ = x509.MarshalPKIXPublicKey(&k.PublicKey)
	return pkcs8, spki
}

// Options tune Exercise to the server under test.
type Options struct {
	// AddKey is the KeyConfig used for POST /v1/keys (default: attach udp).
	AddKey map[string]any
	// CheckCounts: sign counts set through the API must read back (a real key).
	Strict bool
}

// Exercise calls every documented operation once, in a sensible order,
// on a key added for the purpose, and checks the round trips. It fails
// the test for any route the document lists that was not exercised.
func (a *API) Exercise(opts Options) {
	t := a.T
	t.Helper()
	code, _ := a.Do("GET", "/v1/openapi.json", "/v1/openapi.json", nil)
	a.Want(code, 200, "openapi", nil)
	code, keys := a.Do("GET", "/v1/keys", "/v1/keys", nil)
	a.Want(code, 200, "keys", keys)

	cfg := opts.AddKey
	if cfg == nil {
		cfg = map[string]any{
			"protocol": "ctap2_1", "transport": "usb", "hasResidentKey": true, "hasUserVerification": true,
			"isUserConsenting": true, "isUserVerified": true, "extensions": []string{}, "defaultBackupEligibility": true,
			"defaultBackupState": false, "attach": "udp", "udpListen": "127.0.0.1:0", "presence": "auto",
		}
	}
	code, ki := a.Do("POST", "/v1/keys", "/v1/keys", cfg)
	a.Want(code, 201, "add key", ki)
	RoundTrip(t, "POST /v1/keys", cfg, ki, "udpListen", "presence", "extensions", "stateDir")
	id := ki.(map[string]any)["id"].(string)
	kp := "/v1/keys/" + id
	code, got := a.Do("GET", "/v1/keys/{id}", kp, nil)
	a.Want(code, 200, "get key", got)

	priv, spki := ES256Key(t)
	credID := []byte("apitest-credential-0001")
	params := map[string]any{
		"credentialId": control.Bytes(credID), "isResidentCredential": true, "rpId": "example.com",
		"privateKey": control.Bytes(priv), "userHandle": control.Bytes("user-1"), "signCount": 41,
		"largeBlob": control.Bytes("large blob"), "backupEligibility": true, "backupState": true,
		"userName": "alice", "userDisplayName": "Alice A.", "credProtect": 2, "hmacSecret": true,
	}
	code, c := a.Do("POST", "/v1/keys/{id}/credentials", kp+"/credentials", params)
	a.Want(code, 201, "add credential", c)
	RoundTrip(t, "POST credentials", params, c)
	if pk := c.(map[string]any)["publicKey"]; pk != control.Bytes(spki).String() {
		t.Errorf("publicKey %v is not the private key's SPKI", pk)
	}
	// Playwright's shape, and a generated key.
	pw := map[string]any{"id": control.Bytes("apitest-credential-0002"), "rpId": "example.org", "userHandle": control.Bytes("user-2"), "privateKey": control.Bytes(priv), "publicKey": control.Bytes(spki)}
	code, c2 := a.Do("POST", "/v1/keys/{id}/credentials", kp+"/credentials", pw)
	a.Want(code, 201, "add Playwright credential", c2)
	if c2.(map[string]any)["isResidentCredential"] != true {
		t.Error("a Playwright credential is not resident")
	}
	gen := map[string]any{"rpId": "example.net", "isResidentCredential": false, "algorithm": -7}
	code, c3 := a.Do("POST", "/v1/keys/{id}/credentials", kp+"/credentials", gen)
	a.Want(code, 201, "add generated credential", c3)

	code, list := a.Do("GET", "/v1/keys/{id}/credentials", kp+"/credentials", nil)
	a.Want(code, 200, "list", list)
	if n := len(list.([]any)); n != 3 {
		t.Errorf("%d credentials listed, want 3", n)
	}
	code, pwl := a.Do("GET", "/v1/keys/{id}/credentials", kp+"/credentials?format=playwright", nil)
	a.Want(code, 200, "list playwright", pwl)
	cp := kp + "/credentials/" + control.Bytes(credID).String()
	code, one := a.Do("GET", "/v1/keys/{id}/credentials/{credentialId}", cp, nil)
	a.Want(code, 200, "get credential", one)
	RoundTrip(t, "GET credential", params, one)
	code, onepw := a.Do("GET", "/v1/keys/{id}/credentials/{credentialId}", cp+"?format=playwright", nil)
	a.Want(code, 200, "get credential playwright", onepw)

	props := map[string]any{"backupEligibility": true, "backupState": false, "signCount": 3, "userName": "bob", "userDisplayName": "Bob B."}
	code, after := a.Do("POST", "/v1/keys/{id}/credentials/{credentialId}/props", cp+"/props", props)
	a.Want(code, 200, "props", after)
	RoundTrip(t, "POST props", props, after)

	code, k := a.Do("POST", "/v1/keys/{id}/uv", kp+"/uv", map[string]any{"isUserVerified": false})
	a.Want(code, 200, "uv", k)
	RoundTrip(t, "POST uv", map[string]any{"isUserVerified": false}, k)
	code, k = a.Do("POST", "/v1/keys/{id}/presence", kp+"/presence", map[string]any{"mode": "manual"})
	a.Want(code, 200, "presence", k)
	RoundTrip(t, "POST presence", map[string]any{"presence": "manual"}, k)
	code, pend := a.Do("GET", "/v1/keys/{id}/presence/pending", kp+"/presence/pending", nil)
	a.Want(code, 200, "pending", pend)
	code, e := a.Do("POST", "/v1/keys/{id}/presence/pending/{requestId}", kp+"/presence/pending/999999", map[string]any{"approve": true})
	a.Want(code, 404, "answer unknown request", e)
	a.Do("POST", "/v1/keys/{id}/presence", kp+"/presence", map[string]any{"mode": "auto"})
	ov := map[string]any{"isBogusSignature": true, "isBadUV": true, "isBadUP": true}
	code, k = a.Do("POST", "/v1/keys/{id}/overrides", kp+"/overrides", ov)
	a.Want(code, 200, "overrides", k)
	RoundTrip(t, "POST overrides", ov, k.(map[string]any)["overrides"])
	a.Do("POST", "/v1/keys/{id}/overrides", kp+"/overrides", map[string]any{})
	code, k = a.Do("POST", "/v1/keys/{id}/pin", kp+"/pin", map[string]any{"pin": "123456"})
	a.Want(code, 200, "pin", k)
	if k.(map[string]any)["pinSet"] != true {
		t.Error("pinSet false after POST pin")
	}
	code, k = a.Do("DELETE", "/v1/keys/{id}/pin", kp+"/pin", nil)
	a.Want(code, 200, "remove pin", k)
	if k.(map[string]any)["pinSet"] != false {
		t.Error("pinSet true after DELETE pin")
	}
	code, k = a.Do("POST", "/v1/keys/{id}/replug", kp+"/replug", nil)
	a.Want(code, 200, "replug", k)
	code, _ = a.Do("GET", "/v1/keys/{id}/events", kp+"/events", nil)
	a.Want(code, 200, "events", nil)

	code, _ = a.Do("DELETE", "/v1/keys/{id}/credentials/{credentialId}", cp, nil)
	a.Want(code, 204, "delete credential", nil)
	code, e = a.Do("GET", "/v1/keys/{id}/credentials/{credentialId}", cp, nil)
	a.Want(code, 404, "deleted credential", e)
	code, _ = a.Do("DELETE", "/v1/keys/{id}/credentials", kp+"/credentials", nil)
	a.Want(code, 204, "delete credentials", nil)
	code, list = a.Do("GET", "/v1/keys/{id}/credentials", kp+"/credentials", nil)
	if code != 200 || len(list.([]any)) != 0 {
		t.Errorf("after delete all: %d %v", code, list)
	}
	code, _ = a.Do("DELETE", "/v1/keys/{id}", kp, nil)
	a.Want(code, 204, "delete key", nil)
	code, e = a.Do("GET", "/v1/keys/{id}", kp, nil)
	a.Want(code, 404, "deleted key", e)

	for p, ops := range a.Doc.Paths {
		for m := range ops {
			if !a.Seen[strings.ToUpper(m)+" "+p] {
				t.Errorf("%s %s is documented but was not exercised", strings.ToUpper(m), p)
			}
		}
	}
}
