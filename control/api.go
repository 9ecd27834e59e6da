package control

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3 description of /v1.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func (s *Server) routes() *router {
	rt := &router{}
	rt.handle("GET", "/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request, _ params) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	rt.handle("GET", "/v1/keys", func(w http.ResponseWriter, _ *http.Request, _ params) {
		writeJSON(w, http.StatusOK, s.infos())
	})
	rt.handle("POST", "/v1/keys", func(w http.ResponseWriter, r *http.Request, _ params) {
		var cfg KeyConfig
		if !s.decode(w, r, &cfg) {
			return
		}
		ki, err := s.addKey(r.Context(), cfg)
		s.respond(w, r, http.StatusCreated, ki, err)
	})
	rt.handle("GET", "/v1/keys/{id}", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		writeJSON(w, http.StatusOK, info(e))
	}))
	rt.handle("DELETE", "/v1/keys/{id}", func(w http.ResponseWriter, r *http.Request, p params) {
		s.mu.Lock()
		e, ok := s.keys[p["id"]]
		if ok && e.closeKey == nil {
			s.mu.Unlock()
			s.fail(w, r, fmt.Errorf("key %q is the key this process serves; stop the process to remove it: %w", e.id, ErrConflict))
			return
		}
		s.mu.Unlock()
		if err := s.RemoveKey(p["id"]); err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("control: key removed", "id", p["id"])
		w.WriteHeader(http.StatusNoContent)
	})

	rt.handle("POST", "/v1/keys/{id}/credentials", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		var cp CredentialParams
		if !s.decode(w, r, &cp) {
			return
		}
		c, err := e.key.AddCredential(r.Context(), cp)
		s.respond(w, r, http.StatusCreated, c, err)
	}))
	rt.handle("GET", "/v1/keys/{id}/credentials", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		pw, err := playwrightFormat(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		cs, err := e.key.Credentials(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if cs == nil {
			cs = []Credential{}
		}
		if !pw {
			writeJSON(w, http.StatusOK, cs)
			return
		}
		out := make([]PlaywrightCredential, 0, len(cs))
		for _, c := range cs {
			p, err := toPlaywright(e, c)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			out = append(out, p)
		}
		writeJSON(w, http.StatusOK, out)
	}))
	rt.handle("DELETE", "/v1/keys/{id}/credentials", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		if err := e.key.DeleteCredentials(r.Context()); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	rt.handle("GET", "/v1/keys/{id}/credentials/{credentialId}", s.withCred(func(w http.ResponseWriter, r *http.Request, e *entry, id []byte) {
		pw, err := playwrightFormat(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		c, err := e.key.Credential(r.Context(), id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !pw {
			writeJSON(w, http.StatusOK, c)
			return
		}
		p, err := toPlaywright(e, c)
		s.respond(w, r, http.StatusOK, p, err)
	}))
	rt.handle("DELETE", "/v1/keys/{id}/credentials/{credentialId}", s.withCred(func(w http.ResponseWriter, r *http.Request, e *entry, id []byte) {
		if err := e.key.DeleteCredential(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	rt.handle("POST", "/v1/keys/{id}/credentials/{credentialId}/props", s.withCred(func(w http.ResponseWriter, r *http.Request, e *entry, id []byte) {
		var p CredentialProps
		if !s.decode(w, r, &p) {
			return
		}
		if p.BackupState != nil && *p.BackupState && p.BackupEligibility != nil && !*p.BackupEligibility {
			s.fail(w, r, badRequest("backupState needs backupEligibility"))
			return
		}
		c, err := e.key.SetCredentialProps(r.Context(), id, p)
		s.respond(w, r, http.StatusOK, c, err)
	}))

	rt.handle("POST", "/v1/keys/{id}/uv", keySetter(s, func(k Key, ctx context.Context, req UVRequest) error {
		if req.IsUserVerified == nil {
			return badRequest("isUserVerified (a boolean) is required")
		}
		return k.SetUserVerified(ctx, *req.IsUserVerified)
	}))
	rt.handle("POST", "/v1/keys/{id}/presence", keySetter(s, func(k Key, ctx context.Context, req PresenceRequest) error {
		if !req.Mode.valid() {
			return badRequest("mode %q: want auto, deny, manual or timeout", req.Mode)
		}
		return k.SetPresence(ctx, req.Mode)
	}))
	rt.handle("GET", "/v1/keys/{id}/presence/pending", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		ps := e.key.PendingPresence()
		if ps == nil {
			ps = []PendingPresence{}
		}
		writeJSON(w, http.StatusOK, ps)
	}))
	rt.handle("POST", "/v1/keys/{id}/presence/pending/{requestId}", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, p params) {
		var req PresenceAnswer
		if !s.decode(w, r, &req) {
			return
		}
		if req.Approve == nil {
			s.fail(w, r, badRequest("approve (a boolean) is required"))
			return
		}
		if err := e.key.AnswerPresence(p["requestId"], *req.Approve); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	rt.handle("POST", "/v1/keys/{id}/overrides", keySetter(s, Key.SetOverrides))
	rt.handle("POST", "/v1/keys/{id}/pin", keySetter(s, func(k Key, ctx context.Context, req PINRequest) error {
		if req.PIN == "" {
			return badRequest("pin is required")
		}
		return k.SetPIN(ctx, req.PIN)
	}))
	rt.handle("DELETE", "/v1/keys/{id}/pin", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		s.keyInfoAfter(w, r, e, e.key.RemovePIN(r.Context()))
	}))
	rt.handle("POST", "/v1/keys/{id}/replug", s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		s.keyInfoAfter(w, r, e, e.key.Replug(r.Context()))
	}))
	rt.handle("GET", "/v1/keys/{id}/events", s.events)
	return rt
}

// withKey resolves {id} and holds the key for the handler's duration.
func (s *Server) withKey(h func(http.ResponseWriter, *http.Request, *entry, params)) func(http.ResponseWriter, *http.Request, params) {
	return func(w http.ResponseWriter, r *http.Request, p params) {
		e, err := s.acquire(p["id"])
		if err != nil {
			s.fail(w, r, err)
			return
		}
		defer e.inflight.Done()
		h(w, r, e, p)
	}
}

// withCred also decodes {credentialId}.
func (s *Server) withCred(h func(http.ResponseWriter, *http.Request, *entry, []byte)) func(http.ResponseWriter, *http.Request, params) {
	return s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, p params) {
		id, err := DecodeBase64(p["credentialId"])
		if err != nil || len(id) == 0 {
			s.fail(w, r, badRequest("credential id %q: want base64url", p["credentialId"]))
			return
		}
		h(w, r, e, id)
	})
}

// keySetter is the handler of a key-level setter: it decodes the body into
// a T, calls set (which checks it; a method expression such as
// Key.SetOverrides serves) and answers with the key's info.
func keySetter[T any](s *Server, set func(k Key, ctx context.Context, req T) error) func(http.ResponseWriter, *http.Request, params) {
	return s.withKey(func(w http.ResponseWriter, r *http.Request, e *entry, _ params) {
		var req T
		if !s.decode(w, r, &req) {
			return
		}
		s.keyInfoAfter(w, r, e, set(e.key, r.Context(), req))
	})
}

// respond answers v with status, or err when it is not nil.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

func (s *Server) keyInfoAfter(w http.ResponseWriter, r *http.Request, e *entry, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info(e))
}

func playwrightFormat(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "", "webdriver":
		return false, nil
	case "playwright":
		return true, nil
	default:
		return false, badRequest("format %q: want webdriver or playwright", f)
	}
}

func toPlaywright(e *entry, c Credential) (PlaywrightCredential, error) {
	if c.PrivateKey == nil {
		if e.key.Info().KeyStore == "tpm" {
			return PlaywrightCredential{}, fmt.Errorf("the private keys of this key cannot leave its TPM: %w", ErrConflict)
		}
		return PlaywrightCredential{}, fmt.Errorf("private keys may not leave this key (run virtkey with --control-allow-export): %w", ErrForbidden)
	}
	return PlaywrightCredential{ID: c.CredentialID, RPID: c.RPID, UserHandle: c.UserHandle, PrivateKey: c.PrivateKey, PublicKey: c.PublicKey}, nil
}

// decode reads a JSON body into v and, for a type with a Normalize method
// (KeyConfig, CredentialParams), checks it, answering the error itself when
// either fails.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, e := dec.Token(); e != io.EOF {
			err = errors.New("trailing data after the JSON value")
		}
	}
	if err != nil {
		s.fail(w, r, &BadRequestError{Msg: describeJSONError(err, s.opts.MaxBody)})
		return false
	}
	if n, ok := v.(interface{ Normalize() error }); ok {
		if err := n.Normalize(); err != nil {
			s.fail(w, r, err)
			return false
		}
	}
	return true
}

func describeJSONError(err error, limit int64) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case errors.As(err, &big):
		return fmt.Sprintf("request body too large (limit %d bytes)", limit)
	case errors.Is(err, io.EOF):
		return "empty body: want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "bad JSON: unexpected end of input"
	case errors.As(err, &syn):
		return fmt.Sprintf("bad JSON at offset %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %s: want %s, got JSON %s", typ.Field, typeName(typ.Type.Kind().String()), typ.Value)
		}
		return fmt.Sprintf("want a JSON object, got %s", typ.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return "bad request: " + msg
}

func typeName(kind string) string {
	switch kind {
	case "ptr", "struct":
		return "an object"
	case "slice":
		return "an array or base64 string"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	}
	return "a number"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg})
}

// fail answers err with the status its kind calls for.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := httpStatus(err)
	if code >= 500 {
		s.log.Error("control: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, code, err.Error())
}

func httpStatus(err error) int {
	var br *BadRequestError
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, errShuttingDown), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// events streams key {id}'s events as NDJSON until the client leaves, the
// key is removed or the server closes.
func (s *Server) events(w http.ResponseWriter, r *http.Request, p params) {
	e, err := s.acquire(p["id"])
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sub := &subscriber{ch: make(chan Event, s.opts.EventBuffer)}
	cancel := e.key.Subscribe(sub.push)
	defer cancel()
	// A stream is long-lived: it does not hold the key against removal,
	// it ends when the key goes.
	e.inflight.Done()

	stop := streamsStopped(r)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	write := func(ev Event) bool {
		b, err := json.Marshal(ev)
		if err != nil {
			return false
		}
		rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		if _, err := w.Write(append(b, '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		select {
		case ev := <-sub.ch:
			if !write(ev) {
				return
			}
			if len(sub.ch) == 0 {
				if n := sub.takeDropped(); n > 0 && !write(Event{Type: EventsDropped, Time: time.Now().UTC(), Dropped: n}) {
					return
				}
			}
		case <-e.gone:
			return
		case <-s.quit:
			return
		case <-stop:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// subscriber is one event stream's bounded buffer. Once it overflows it
// drops every event until the reader has drained the buffer and been told
// how many it lost, so the notice sits where the lost events were.
type subscriber struct {
	ch      chan Event
	mu      sync.Mutex
	dropped uint64
}

func (s *subscriber) push(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped > 0 {
		s.dropped++
		return
	}
	select {
	case s.ch <- ev:
	default:
		s.dropped = 1
	}
}

// takeDropped returns and clears the count of lost events; call it when
// the buffer is empty.
func (s *subscriber) takeDropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}
