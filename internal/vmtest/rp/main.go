// Command rp is the VM harness's relying party for the Chromium scenario
// (internal/vmtest, testdata/vm/chromium.sh): a small HTTP server on
// 127.0.0.1 that serves a test page and verifies, with
// github.com/go-webauthn/webauthn, the passkey registration
// (navigator.credentials.create, residentKey and userVerification
// required), a second registration with that credential in
// excludeCredentials (which must not produce a credential), and the
// discoverable sign-in (navigator.credentials.get with no allowCredentials)
// the page performs in headless Chromium.
//
// Every outcome is appended to -results as "NAME PASS|FAIL detail" lines:
// chromium-create, chromium-exclude and chromium-get from the server's own
// verification, page-* lines from what the page reports (its errors, e.g.
// a NotAllowedError or its own timeout). The server exits after the page
// reports "done", or after -timeout.
//
// The flow page (/flow/?plan=..., flow.go) runs a longer sequence of
// sign-ups and sign-ins with several users, each verified the same way
// (testdata/vm/firefox.sh).
//
//	rp -listen 127.0.0.1:8080 -origin http://localhost:8080 -results /tmp/rp.results
package main

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

//go:embed page.html
var page []byte

//go:embed common.js
var commonJS []byte // the pages' shared helpers

type user struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return "Alice Example" }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

type server struct {
	wa      *webauthn.WebAuthn
	results *os.File
	done    chan struct{}

	mu       sync.Mutex
	alice    *user
	regSess  *webauthn.SessionData
	loginSes *webauthn.SessionData
	// excluding: the registration in progress lists alice's credentials in
	// excludeCredentials; excludedMade: a browser finished one anyway.
	excluding, excludedMade bool
	doneOnce                sync.Once
	t0                      time.Time
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on (keep it on loopback)")
	origin := flag.String("origin", "", "the page's origin (default http://localhost:PORT)")
	results := flag.String("results", "rp.results", "file receiving the result lines")
	timeout := flag.Duration("timeout", 10*time.Minute, "exit after this long")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("rp: ")

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *origin == "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		*origin = "http://localhost:" + port
	}
	u, err := url.Parse(*origin)
	if err != nil {
		log.Fatal(err)
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          u.Hostname(),
		RPDisplayName: "virtkey VM test",
		RPOrigins:     []string{*origin},
	})
	if err != nil {
		log.Fatal(err)
	}
	rf, err := os.OpenFile(*results, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	s := &server{
		wa: wa, results: rf, done: make(chan struct{}), t0: time.Now(),
		alice: &user{id: []byte("vk-alice-0001"), name: "alice@localhost"},
	}
	mux := http.NewServeMux()
	serve(mux, "GET /{$}", "text/html; charset=utf-8", page)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	serve(mux, "GET /common.js", "text/javascript; charset=utf-8", commonJS)
	mux.HandleFunc("POST /register/begin", s.registerBegin)
	mux.HandleFunc("POST /register/finish", s.registerFinish)
	mux.HandleFunc("POST /login/begin", s.loginBegin)
	mux.HandleFunc("POST /login/finish", s.loginFinish)
	mux.HandleFunc("POST /report", s.report)
	addFlow(s, mux)
	srv := &http.Server{Handler: logRequests(mux), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	log.Printf("listening on %s, origin %s, rp id %s", ln.Addr(), *origin, u.Hostname())
	s.result("rp-ready", true, "listening on "+ln.Addr().String())
	select {
	case <-s.done:
		time.Sleep(200 * time.Millisecond) // let the last response go out
	case <-time.After(*timeout):
		s.result("rp-timeout", false, fmt.Sprintf("the page did not finish within %v", *timeout))
	}
	srv.Close()
	rf.Close()
}

func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s", r.Method, r.URL.Path)
		h.ServeHTTP(w, r)
	})
}

// result appends one line to the results file.
func (s *server) result(name string, ok bool, detail string) {
	st := "PASS"
	if !ok {
		st = "FAIL"
	}
	detail = strings.Join(strings.Fields(detail), " ")
	line := fmt.Sprintf("%s %s %s\n", name, st, detail)
	log.Print(strings.TrimSpace(line))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results.WriteString(line)
	s.results.Sync()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError answers code with {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// writeBegun answers the begin of a ceremony: its options, or 500 with
// go-webauthn's err.
func writeBegun(w http.ResponseWriter, opts any, err error) {
	if err != nil {
		writeError(w, 500, describe(err))
		return
	}
	writeJSON(w, 200, opts)
}

// keepBody reads r's body (up to 1 MiB), to log it if verification fails,
// and leaves it in r for go-webauthn to read again.
func keepBody(r *http.Request) []byte {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body
}

// describe renders an error with go-webauthn's DevInfo, which says what
// failed.
func describe(err error) string {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return fmt.Sprintf("%v (%s; %s)", err, perr.Type, perr.DevInfo)
	}
	return err.Error()
}

func (s *server) registerBegin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := []webauthn.RegistrationOption{
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			UserVerification: protocol.VerificationRequired,
		}),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
	}
	// ?exclude=1: alice registers again with her credentials excluded, as
	// an RP does to keep one credential per authenticator.
	s.excluding = r.URL.Query().Get("exclude") == "1"
	if s.excluding {
		var ex []protocol.CredentialDescriptor
		for _, c := range s.alice.creds {
			ex = append(ex, c.Descriptor())
		}
		if len(ex) == 0 {
			writeError(w, 409, "nothing to exclude: no credential registered")
			return
		}
		opts = append(opts, webauthn.WithExclusions(ex))
	}
	creation, sess, err := s.wa.BeginRegistration(s.alice, opts...)
	if err == nil {
		s.regSess = sess
	}
	writeBegun(w, creation, err)
}

func (s *server) registerFinish(w http.ResponseWriter, r *http.Request) {
	body := keepBody(r)
	s.mu.Lock()
	sess, excluding := s.regSess, s.excluding
	if excluding {
		s.excludedMade = true
	}
	s.mu.Unlock()
	if excluding {
		s.result("chromium-exclude", false, "the browser finished a registration whose excludeCredentials list the credential on the key")
		writeError(w, 400, "excluded")
		return
	}
	if sess == nil {
		s.result("chromium-create", false, "finish without begin")
		writeError(w, 400, "no registration in progress")
		return
	}
	cred, err := s.wa.FinishRegistration(s.alice, *sess, r)
	if err != nil {
		s.result("chromium-create", false, "go-webauthn rejected the registration: "+describe(err))
		log.Printf("registration body: %s", body)
		writeError(w, 400, describe(err))
		return
	}
	var rk string
	var cp struct {
		ClientExtensionResults struct {
			CredProps *struct {
				RK *bool `json:"rk"`
			} `json:"credProps"`
		} `json:"clientExtensionResults"`
		AuthenticatorAttachment string `json:"authenticatorAttachment"`
	}
	if json.Unmarshal(body, &cp) == nil && cp.ClientExtensionResults.CredProps != nil && cp.ClientExtensionResults.CredProps.RK != nil {
		rk = fmt.Sprintf(" credProps.rk=%v", *cp.ClientExtensionResults.CredProps.RK)
	}
	s.mu.Lock()
	s.alice.creds = append(s.alice.creds, *cred)
	s.regSess = nil
	s.mu.Unlock()
	if !cred.Flags.UserVerified || !cred.Flags.UserPresent {
		s.result("chromium-create", false, fmt.Sprintf("verified, but flags UP=%v UV=%v", cred.Flags.UserPresent, cred.Flags.UserVerified))
	} else {
		s.result("chromium-create", true, fmt.Sprintf("verified by go-webauthn: credential %s… fmt=%s aaguid=%s UP UV%s attachment=%s after %v",
			hex.EncodeToString(cred.ID[:min(6, len(cred.ID))]), cred.AttestationFormat,
			hex.EncodeToString(cred.Authenticator.AAGUID), rk, cp.AuthenticatorAttachment, time.Since(s.t0).Round(time.Second)))
	}
	writeJSON(w, 200, map[string]any{"ok": true})
}

func (s *server) loginBegin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	assertion, sess, err := s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err == nil {
		s.loginSes = sess
	}
	writeBegun(w, assertion, err)
}

func (s *server) loginFinish(w http.ResponseWriter, r *http.Request) {
	body := keepBody(r)
	s.mu.Lock()
	sess := s.loginSes
	s.mu.Unlock()
	if sess == nil {
		s.result("chromium-get", false, "finish without begin")
		writeError(w, 400, "no login in progress")
		return
	}
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		if !bytes.Equal(userHandle, s.alice.id) {
			return nil, fmt.Errorf("unknown user handle %q", userHandle)
		}
		return s.alice, nil
	}
	u, cred, err := s.wa.FinishPasskeyLogin(handler, *sess, r)
	if err != nil {
		s.result("chromium-get", false, "go-webauthn rejected the sign-in: "+describe(err))
		log.Printf("login body: %s", body)
		writeError(w, 400, describe(err))
		return
	}
	s.mu.Lock()
	s.loginSes = nil
	s.mu.Unlock()
	s.result("chromium-get", true, fmt.Sprintf("discoverable sign-in verified by go-webauthn: user %s, credential %s…, signCount %d, after %v",
		u.WebAuthnName(), hex.EncodeToString(cred.ID[:min(6, len(cred.ID))]), cred.Authenticator.SignCount, time.Since(s.t0).Round(time.Second)))
	writeJSON(w, 200, map[string]any{"ok": true, "user": u.WebAuthnName()})
}

// report takes the page's own progress and errors.
func (s *server) report(w http.ResponseWriter, r *http.Request) {
	var rep struct {
		Step    string `json:"step"`
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&rep); err != nil {
		writeError(w, 400, err.Error())
		return
	}
	s.result("page-"+rep.Step, rep.OK, rep.Message+fmt.Sprintf(" (at %v)", time.Since(s.t0).Round(time.Second)))
	if rep.Step == "exclude" {
		s.mu.Lock()
		made, n := s.excludedMade, len(s.alice.creds)
		s.excluding, s.regSess = false, nil
		s.mu.Unlock()
		switch {
		case made || n != 1:
			s.result("chromium-exclude", false, fmt.Sprintf("%d credentials registered for alice, want 1", n))
		case rep.OK:
			s.result("chromium-exclude", true, "no second credential: "+rep.Message)
		}
	}
	writeJSON(w, 200, map[string]any{"ok": true})
	if rep.Step == "done" {
		s.doneOnce.Do(func() { close(s.done) })
	}
}
