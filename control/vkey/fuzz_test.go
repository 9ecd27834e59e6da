package vkey_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/factory"
	"github.com/virtkey/virtkey/control/internal/apitest"
)

// FuzzKeyAPI sends random bodies to the routes of a real key that parse
// what the key itself interprets (credentials, props, PIN, presence):
// never a panic or a 5xx, and every 201 is a credential the key lists.
func FuzzKeyAPI(f *testing.F) {
	priv, spki := apitest.ES256Key(f)
	for _, s := range []struct{ path, body string }{
		{"/credentials", `{"rpId":"a.example","isResidentCredential":true,"userHandle":"dQ","privateKey":"` + control.Bytes(priv).String() + `","signCount":5,"largeBlob":"YmxvYg","credProtect":3,"hmacSecret":true}`},
		{"/credentials", `{"id":"MDEyMzQ1Njc4OWFiY2RlZg","rpId":"a.example","userHandle":"dQ","privateKey":"` + control.Bytes(priv).String() + `","publicKey":"` + control.Bytes(spki).String() + `"}`},
		{"/credentials", `{"rpId":"a.example","algorithm":-257}`},
		{"/credentials", `{"rpId":"a.example","privateKey":"MAA"}`},
		{"/credentials/MDEyMzQ1Njc4OWFiY2RlZg/props", `{"signCount":1,"userName":"x","backupEligibility":true}`},
		{"/pin", `{"pin":"123456"}`},
		{"/pin", `{"pin":"\u0000\u0000\u0000\u0000"}`},
		{"/presence", `{"mode":"manual"}`},
		{"/overrides", `{"isBogusSignature":true}`},
	} {
		f.Add(s.path, s.body)
	}
	srv := control.NewServer(control.Options{Factory: factory.New(factory.Options{})})
	f.Cleanup(func() { srv.Close() })
	ki, err := addKey(srv)
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, path, body string) {
		if strings.Contains(path, "events") || strings.Contains(path, "replug") {
			return
		}
		req, err := http.NewRequest("POST", "http://virtkey/v1/keys/"+ki+path, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusCreated {
			var c control.Credential
			json.Unmarshal(rec.Body.Bytes(), &c)
			g := httptest.NewRecorder()
			h.ServeHTTP(g, httptest.NewRequest("GET", "http://virtkey/v1/keys/"+ki+"/credentials/"+c.CredentialID.String(), nil))
			if g.Code != 200 {
				t.Fatalf("a 201 credential does not read back: %d %s", g.Code, g.Body)
			}
		}
		// Keep the key answering: no manual presence left behind.
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "http://virtkey/v1/keys/"+ki+"/presence", strings.NewReader(`{"mode":"auto"}`)))
	})
}

func addKey(srv *control.Server) (string, error) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "http://virtkey/v1/keys", strings.NewReader(`{"attach":"udp"}`)).WithContext(context.Background())
	srv.Handler().ServeHTTP(rec, req)
	var ki control.KeyInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &ki); err != nil || ki.ID == "" {
		return "", err
	}
	return ki.ID, nil
}
