// Command demo-rp is the relying party of the Playwright example
// (examples/playwright): a small sign-up / sign-in site on loopback that
// verifies passkeys with github.com/go-webauthn/webauthn. Users sign up with
// a name (a discoverable credential, user verification required) and sign
// in without typing anything (a discoverable sign-in, UV required).
//
// POST /test/users adds a user with a credential made elsewhere — the
// fixture a test suite uses to pair an RP account with a credential it
// seeds into the key through virtkey's control API:
//
//	{"name": "bob", "userHandle": B64URL, "credentialId": B64URL, "publicKey": B64URL(SPKI DER), "signCount": N, "algorithm": -7}
//
// Usage: demo-rp -listen 127.0.0.1:8080 (the page is http://localhost:8080/).
package main

import (
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/virtkey/virtkey/cose"
)

//go:embed page.html
var page []byte

type user struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

type site struct {
	wa *webauthn.WebAuthn

	mu       sync.Mutex
	byHandle map[string]*user
	byName   map[string]*user
	regs     map[string]*webauthn.SessionData // by user name
	login    *webauthn.SessionData
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address (keep it on loopback)")
	flag.Parse()
	log.SetPrefix("demo-rp: ")
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	origin := "http://localhost:" + port
	wa, err := webauthn.New(&webauthn.Config{RPID: "localhost", RPDisplayName: "virtkey demo", RPOrigins: []string{origin}})
	if err != nil {
		log.Fatal(err)
	}
	s := &site{wa: wa, byHandle: map[string]*user{}, byName: map[string]*user{}, regs: map[string]*webauthn.SessionData{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST /register/begin", s.registerBegin)
	mux.HandleFunc("POST /register/finish", s.registerFinish)
	mux.HandleFunc("POST /login/begin", s.loginBegin)
	mux.HandleFunc("POST /login/finish", s.loginFinish)
	mux.HandleFunc("POST /test/users", s.seedUser)
	log.Printf("serving %s", origin)
	fmt.Printf("demo-rp ready %s\n", origin)
	log.Fatal(http.Serve(ln, mux))
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	var perr *protocol.Error
	msg := err.Error()
	if errors.As(err, &perr) {
		msg = perr.Details + ": " + perr.DevInfo
	}
	log.Printf("refused: %s", msg)
	reply(w, http.StatusBadRequest, map[string]string{"error": msg})
}

func (s *site) registerBegin(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		fail(w, errors.New("a name is required"))
		return
	}
	s.mu.Lock()
	u := s.byName[name]
	if u == nil {
		u = &user{id: []byte("demo-" + name), name: name}
	}
	s.mu.Unlock()
	opts, sess, err := s.wa.BeginRegistration(u,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired}),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation))
	if err != nil {
		fail(w, err)
		return
	}
	s.mu.Lock()
	s.regs[name] = sess
	s.mu.Unlock()
	reply(w, http.StatusOK, opts)
}

func (s *site) registerFinish(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	s.mu.Lock()
	sess := s.regs[name]
	delete(s.regs, name)
	u := s.byName[name]
	if u == nil {
		u = &user{id: []byte("demo-" + name), name: name}
	}
	s.mu.Unlock()
	if sess == nil {
		fail(w, errors.New("no sign-up in progress"))
		return
	}
	cred, err := s.wa.FinishRegistration(u, *sess, r)
	if err != nil {
		fail(w, err)
		return
	}
	s.mu.Lock()
	u.creds = append(u.creds, *cred)
	s.byName[name], s.byHandle[string(u.id)] = u, u
	s.mu.Unlock()
	reply(w, http.StatusOK, map[string]string{"ok": "registered " + name})
}

func (s *site) loginBegin(w http.ResponseWriter, r *http.Request) {
	opts, sess, err := s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		fail(w, err)
		return
	}
	s.mu.Lock()
	s.login = sess
	s.mu.Unlock()
	reply(w, http.StatusOK, opts)
}

func (s *site) loginFinish(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	sess := s.login
	s.login = nil
	s.mu.Unlock()
	if sess == nil {
		fail(w, errors.New("no sign-in in progress"))
		return
	}
	find := func(_, userHandle []byte) (webauthn.User, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if u := s.byHandle[string(userHandle)]; u != nil {
			return u, nil
		}
		return nil, errors.New("no such user")
	}
	u, cred, err := s.wa.FinishPasskeyLogin(find, *sess, r)
	if err != nil {
		fail(w, err)
		return
	}
	s.mu.Lock()
	for i := range u.(*user).creds {
		if string(u.(*user).creds[i].ID) == string(cred.ID) {
			u.(*user).creds[i].Authenticator.SignCount = cred.Authenticator.SignCount
		}
	}
	s.mu.Unlock()
	reply(w, http.StatusOK, map[string]string{"ok": "signed in as " + u.WebAuthnName()})
}

// seedUser adds a user whose credential a test made and seeded into the key.
func (s *site) seedUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name         string `json:"name"`
		UserHandle   string `json:"userHandle"`
		CredentialID string `json:"credentialId"`
		PublicKey    string `json:"publicKey"`
		SignCount    uint32 `json:"signCount"`
		Algorithm    int    `json:"algorithm"` // COSE; default -7 (ES256)
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil {
		fail(w, err)
		return
	}
	dec := base64.RawURLEncoding.DecodeString
	handle, err1 := dec(in.UserHandle)
	id, err2 := dec(in.CredentialID)
	spki, err3 := dec(in.PublicKey)
	if err := errors.Join(err1, err2, err3); err != nil || in.Name == "" {
		fail(w, fmt.Errorf("want name and base64url userHandle, credentialId, publicKey: %v", err))
		return
	}
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		fail(w, err)
		return
	}
	if in.Algorithm == 0 {
		in.Algorithm = int(cose.AlgES256)
	}
	coseKey, err := cose.EncodePublicKey(pub, cose.Algorithm(in.Algorithm))
	if err != nil {
		fail(w, err)
		return
	}
	u := &user{id: handle, name: in.Name, creds: []webauthn.Credential{{
		ID: id, PublicKey: coseKey, AttestationType: "none",
		Flags:         webauthn.CredentialFlags{UserPresent: true, UserVerified: true},
		Authenticator: webauthn.Authenticator{SignCount: in.SignCount},
	}}}
	s.mu.Lock()
	s.byName[in.Name], s.byHandle[string(handle)] = u, u
	s.mu.Unlock()
	reply(w, http.StatusOK, map[string]string{"ok": "seeded " + in.Name})
}
