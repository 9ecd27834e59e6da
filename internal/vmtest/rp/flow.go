package main

// The flow page (/flow/): a sequence of WebAuthn steps named in the page's
// URL, each verified here with go-webauthn, for browsers that can do more
// than one ceremony per page load (testdata/vm/firefox.sh). The URL names
// the steps as ?plan=NAME:OP:ARG,NAME:OP:ARG,... where OP is
//
//	create:USER  register a passkey for USER (created on first use):
//	             residentKey and userVerification required, attestation
//	             "direct" (so the browser's attestation prompt matters)
//	get:USER     a discoverable sign-in (no allowCredentials,
//	             userVerification required) that must come back as USER
//	allow:USER   a sign-in with USER's credentials as allowCredentials
//	             (userVerification required)
//	gate:G       wait until the file G exists in -gate-dir: the scenario
//	             script changes the key (a reset, a PIN) between steps
//
// Each step's outcome is one result line named NAME: PASS only when
// go-webauthn verified the ceremony (and, for get, the user is the one the
// plan expects); the page's own failures arrive as page-NAME lines through
// /report, like the first page's.

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

//go:embed flow.html
var flowPage []byte

var gateDir = flag.String("gate-dir", "", "folder whose files open the flow page's gate:G steps")

// flowSession is one begun ceremony, waiting for its finish.
type flowSession struct {
	sess   *webauthn.SessionData
	user   string // the user it registers, or the one a sign-in must yield
	op     string
	begun  time.Time
	before map[string]uint32 // allow: credential id → signCount before
}

type flow struct {
	s *server

	mu       sync.Mutex
	users    map[string]*user
	sessions map[string]*flowSession // by step name
}

// addFlow registers the flow page's routes on mux.
func addFlow(s *server, mux *http.ServeMux) {
	f := &flow{s: s, users: map[string]*user{}, sessions: map[string]*flowSession{}}
	serve(mux, "GET /flow/{$}", "text/html; charset=utf-8", flowPage)
	mux.HandleFunc("POST /flow/begin", f.begin)
	mux.HandleFunc("POST /flow/finish", f.finish)
	mux.HandleFunc("GET /flow/gate", f.gate)
}

type flowStep struct {
	Step string `json:"step"`
	Op   string `json:"op"`
	User string `json:"user"`
}

func (f *flow) begin(w http.ResponseWriter, r *http.Request) {
	var st flowStep
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&st); err != nil || st.Step == "" || st.User == "" {
		writeError(w, 400, fmt.Sprintf("want {step, op, user}: %v", err))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var (
		opts any
		sess *webauthn.SessionData
		err  error
		fs   = &flowSession{user: st.User, op: st.Op, begun: time.Now()}
	)
	switch st.Op {
	case "create":
		u := f.users[st.User]
		if u == nil {
			u = &user{id: []byte("vk-flow-" + st.User), name: st.User + "@localhost"}
			f.users[st.User] = u
		}
		opts, sess, err = f.s.wa.BeginRegistration(u,
			webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired}),
			webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
			webauthn.WithConveyancePreference(protocol.PreferDirectAttestation),
		)
	case "get":
		opts, sess, err = f.s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	case "allow":
		u := f.users[st.User]
		if u == nil || len(u.creds) == 0 {
			writeError(w, 400, "allow: "+st.User+" has no credential")
			return
		}
		fs.before = map[string]uint32{}
		for _, c := range u.creds {
			fs.before[string(c.ID)] = c.Authenticator.SignCount
		}
		opts, sess, err = f.s.wa.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	default:
		writeError(w, 400, "unknown op "+st.Op)
		return
	}
	if err != nil {
		f.s.result(st.Step, false, "begin: "+describe(err))
		writeError(w, 500, describe(err))
		return
	}
	fs.sess = sess
	f.sessions[st.Step] = fs
	writeJSON(w, 200, opts)
}

func (f *flow) finish(w http.ResponseWriter, r *http.Request) {
	step := r.URL.Query().Get("step")
	body := keepBody(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := f.sessions[step]
	if fs == nil {
		f.s.result(step, false, "finish without begin")
		writeError(w, 400, "no ceremony in progress for "+step)
		return
	}
	delete(f.sessions, step)
	ok, detail, err := f.verify(fs, r)
	if err != nil {
		log.Printf("%s body: %s", step, body)
		f.s.result(step, false, detail+describe(err))
		writeError(w, 400, describe(err))
		return
	}
	f.s.result(step, ok, detail+fmt.Sprintf(" (%v after begin)", time.Since(fs.begun).Round(time.Millisecond)))
	writeJSON(w, 200, map[string]any{"ok": ok, "detail": detail})
}

// verify checks one finished ceremony with go-webauthn and records what it
// made or used. ok is false when go-webauthn accepted something the plan
// did not want (the wrong user).
func (f *flow) verify(fs *flowSession, r *http.Request) (ok bool, detail string, err error) {
	switch fs.op {
	case "create":
		u := f.users[fs.user]
		cred, err := f.s.wa.FinishRegistration(u, *fs.sess, r)
		if err != nil {
			return false, "go-webauthn rejected the registration: ", err
		}
		u.creds = append(u.creds, *cred)
		return cred.Flags.UserPresent && cred.Flags.UserVerified, fmt.Sprintf(
			"registration verified by go-webauthn: %s, credential %s… fmt=%s aaguid=%s UP=%v UV=%v",
			u.name, shortHex(cred.ID), cred.AttestationFormat, hex.EncodeToString(cred.Authenticator.AAGUID),
			cred.Flags.UserPresent, cred.Flags.UserVerified), nil
	case "get":
		var got *user
		handler := func(rawID, userHandle []byte) (webauthn.User, error) {
			for _, u := range f.users {
				if bytes.Equal(u.id, userHandle) {
					got = u
					return u, nil
				}
			}
			return nil, fmt.Errorf("unknown user handle %q", userHandle)
		}
		_, cred, err := f.s.wa.FinishPasskeyLogin(handler, *fs.sess, r)
		if err != nil {
			return false, "go-webauthn rejected the discoverable sign-in: ", err
		}
		prev := got.update(cred)
		detail := fmt.Sprintf("discoverable sign-in verified by go-webauthn: user %s (want %s), credential %s…, signCount %d (+%d), UV=%v",
			got.name, fs.user+"@localhost", shortHex(cred.ID), cred.Authenticator.SignCount, cred.Authenticator.SignCount-prev,
			cred.Flags.UserVerified)
		return got == f.users[fs.user], detail, nil
	case "allow":
		u := f.users[fs.user]
		cred, err := f.s.wa.FinishLogin(u, *fs.sess, r)
		if err != nil {
			return false, "go-webauthn rejected the allowList sign-in: ", err
		}
		prev := fs.before[string(cred.ID)]
		u.update(cred)
		return true, fmt.Sprintf("allowList sign-in verified by go-webauthn: user %s, credential %s…, signCount %d (+%d), UV=%v",
			u.name, shortHex(cred.ID), cred.Authenticator.SignCount, cred.Authenticator.SignCount-prev, cred.Flags.UserVerified), nil
	}
	return false, "", fmt.Errorf("unknown op %q", fs.op)
}

// update stores a used credential's new state and returns its signCount
// before.
func (u *user) update(c *webauthn.Credential) uint32 {
	for i := range u.creds {
		if bytes.Equal(u.creds[i].ID, c.ID) {
			prev := u.creds[i].Authenticator.SignCount
			u.creds[i] = *c
			return prev
		}
	}
	return 0
}

// gate answers whether the scenario script has opened gate ?name=G (made
// the file G in -gate-dir).
func (f *flow) gate(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if *gateDir == "" || name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		writeError(w, 400, "no -gate-dir, or a bad gate name")
		return
	}
	_, err := os.Stat(filepath.Join(*gateDir, name))
	writeJSON(w, 200, map[string]bool{"open": err == nil})
}

// serve answers pattern with a fixed body.
func serve(mux *http.ServeMux, pattern, contentType string, body []byte) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Write(body)
	})
}

func shortHex(b []byte) string { return hex.EncodeToString(b[:min(6, len(b))]) }
