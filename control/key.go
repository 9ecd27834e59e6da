package control

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Key is one running key as the control plane drives it. Every method is
// safe for concurrent use and with the key's CTAP traffic; changes are what
// CTAP clients see at once and are stored like a CTAP-made change.
//
// Errors: wrap [ErrNotFound], [ErrForbidden], [ErrConflict] or a
// [BadRequestError] to choose the HTTP status; anything else is a 500.
type Key interface {
	// Info describes the key (its ID field is filled by the registry).
	Info() KeyInfo

	// AddCredential stores a credential (resident or not) from
	// WebDriver-style parameters, already normalized.
	AddCredential(ctx context.Context, p CredentialParams) (Credential, error)
	// Credentials lists the stored credentials with their current sign counts.
	Credentials(ctx context.Context) ([]Credential, error)
	// Credential reads one stored credential.
	Credential(ctx context.Context, id []byte) (Credential, error)
	// DeleteCredential removes one stored credential.
	DeleteCredential(ctx context.Context, id []byte) error
	// DeleteCredentials removes every stored credential.
	DeleteCredentials(ctx context.Context) error
	// SetCredentialProps changes the properties present in p.
	SetCredentialProps(ctx context.Context, id []byte, p CredentialProps) (Credential, error)

	// SetUserVerified makes built-in UV succeed or fail from now on.
	SetUserVerified(ctx context.Context, verified bool) error
	// SetPresence changes how presence requests are answered. Leaving
	// manual mode leaves queued requests pending.
	SetPresence(ctx context.Context, mode PresenceMode) error
	// PendingPresence lists the queued presence requests, oldest first.
	PendingPresence() []PendingPresence
	// AnswerPresence answers a queued request ([ErrNotFound] if none).
	AnswerPresence(requestID string, approve bool) error
	// SetOverrides sets the response override bits.
	SetOverrides(ctx context.Context, o Overrides) error

	// SetPIN sets or replaces the PIN; retries go back to the maximum.
	SetPIN(ctx context.Context, pin string) error
	// RemovePIN removes the PIN.
	RemovePIN(ctx context.Context) error
	// Replug power-cycles the key.
	Replug(ctx context.Context) error

	// Subscribe calls fn with every event from now on until cancel is
	// called; after cancel returns fn is not called again. fn must not
	// block.
	Subscribe(fn func(Event)) (cancel func())
}

// KeyFactory makes keys for POST /v1/keys.
type KeyFactory interface {
	// NewKey builds and plugs in a key. cfg is normalized. closeKey unplugs
	// it: pending CTAP requests are answered, its goroutines end, an
	// ephemeral state directory is removed.
	NewKey(ctx context.Context, cfg KeyConfig) (k Key, closeKey func() error, err error)
}

// Errors a Key returns, wrapped, to pick the HTTP status.
var (
	// ErrNotFound: 404 (no such credential, request …).
	ErrNotFound = errors.New("not found")
	// ErrForbidden: 403 (private keys may not leave or enter this key).
	ErrForbidden = errors.New("forbidden")
	// ErrConflict: 409 (the key cannot do it, e.g. a TPM key cannot leave the TPM).
	ErrConflict = errors.New("conflict")
)

// BadRequestError is a 400: the request is wrong.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &BadRequestError{Msg: fmt.Sprintf(format, args...)}
}

// BadRequest returns a [BadRequestError].
func BadRequest(format string, args ...any) error { return badRequest(format, args...) }

// Hub fans events out to subscribers. Key implementations embed or hold
// one to implement [Key.Subscribe]. The zero value is ready.
type Hub struct {
	mu   sync.Mutex
	next int
	subs map[int]func(Event)
}

// Subscribe implements [Key.Subscribe].
func (h *Hub) Subscribe(fn func(Event)) (cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[int]func(Event){}
	}
	id := h.next
	h.next++
	h.subs[id] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs, id)
	}
}

// Publish delivers e to every subscriber.
func (h *Hub) Publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fn := range h.subs {
		fn(e)
	}
}

// Subscribers is how many subscribers there are.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
