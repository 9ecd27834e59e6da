package control_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/control"
)

// FuzzControlAPI sends random requests to the API: never a panic or a
// 5xx; every error is {"error": ...}; a body that is not JSON is a 400;
// a key exists only after a 201.
func FuzzControlAPI(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/v1/keys", ""},
		{"POST", "/v1/keys", `{"attach":"udp","protocol":"ctap2","hasUserVerification":true}`},
		{"DELETE", "/v1/keys/key-1", ""},
		{"POST", "/v1/keys/default/credentials", `{"credentialId":"MDEyMzQ1Njc4OWFiY2RlZg","rpId":"a.com","isResidentCredential":true,"userHandle":"dQ","signCount":3,"credProtect":2}`},
		{"POST", "/v1/keys/default/credentials", `{"id":"MDEyMzQ1Njc4OWFiY2RlZg","rpId":"a.com","userHandle":"dQ","privateKey":"AA","publicKey":"AA"}`},
		{"GET", "/v1/keys/default/credentials?format=playwright", ""},
		{"GET", "/v1/keys/default/credentials/MDEyMzQ1Njc4OWFiY2RlZg", ""},
		{"POST", "/v1/keys/default/credentials/MDEyMzQ1Njc4OWFiY2RlZg/props", `{"backupEligibility":true,"signCount":0,"userName":"x"}`},
		{"DELETE", "/v1/keys/default/credentials", ""},
		{"POST", "/v1/keys/default/uv", `{"isUserVerified":true}`},
		{"POST", "/v1/keys/default/presence", `{"mode":"manual"}`},
		{"GET", "/v1/keys/default/presence/pending", ""},
		{"POST", "/v1/keys/default/presence/pending/1", `{"approve":false}`},
		{"POST", "/v1/keys/default/overrides", `{"isBogusSignature":true,"isBadUV":false,"isBadUP":true}`},
		{"POST", "/v1/keys/default/pin", `{"pin":"1234"}`},
		{"DELETE", "/v1/keys/default/pin", ""},
		{"POST", "/v1/keys/default/replug", ""},
		{"POST", "/v1/keys/default/uv", `{"isUserVerified":1e999}`},
		{"POST", "/v1/keys/default/credentials", `{"rpId":"` + strings.Repeat("a", 300) + `"}`},
	} {
		f.Add(s.method, s.path, s.body)
	}
	fact := &memFactory{}
	srv := control.NewServer(control.Options{Factory: fact, MaxBody: 8192})
	srv.AddKey(control.DefaultKeyID, newMemKey(), nil)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, method, path, body string) {
		req, err := http.NewRequest(method, "http://virtkey"+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		if method == "GET" && strings.HasSuffix(strings.TrimRight(req.URL.EscapedPath(), "/"), "/events") {
			return // a stream; covered by its own tests
		}
		before := len(fact.keys)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { defer close(done); h.ServeHTTP(rec, req) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %q %q: no answer in 5 s", method, path, body)
		}
		code := rec.Code
		if code >= 500 && code != http.StatusNotImplemented {
			t.Fatalf("%s %s %q: %d %s", method, path, body, code, rec.Body)
		}
		if code >= 400 {
			var e control.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: error body %q", method, path, rec.Body)
			}
		}
		if method == "POST" && !json.Valid([]byte(body)) && code < 400 && !strings.HasSuffix(strings.TrimRight(req.URL.Path, "/"), "/replug") {
			t.Fatalf("%s %s: invalid JSON %q accepted (%d)", method, path, body, code)
		}
		if n := len(fact.keys); n != before && code != http.StatusCreated {
			t.Fatalf("%s %s: a key was made but the answer is %d", method, path, code)
		}
		if code == http.StatusCreated && strings.TrimRight(req.URL.Path, "/") == "/v1/keys" {
			srv.RemoveKey(keyID(t, rec.Body.Bytes()))
		}
	})
}

func keyID(t *testing.T, b []byte) string {
	var ki control.KeyInfo
	if err := json.Unmarshal(b, &ki); err != nil {
		t.Fatal(err)
	}
	return ki.ID
}
