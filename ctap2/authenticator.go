// Package ctap2 is the authenticator: it parses CTAP2 requests, validates
// them completely, executes them against injected key custody, storage and
// user-presence providers, and encodes CTAP2-canonical responses.
//
// # Shape
//
// One file per command (makecredential.go, getassertion.go, …); dispatch.go
// only routes command bytes. Every request type has a parse function that
// decodes and validates before anything runs. Errors are [StatusCode]s.
//
// # Dependencies
//
// The package declares the small interfaces it consumes ([KeyStore],
// [Store], [Presence]) and never imports a transport, a key-custody
// implementation, a database or os. [Authenticator] satisfies the hid
// package's Handler interface structurally.
//
// # Volatile and persistent state
//
// A power cycle ([Authenticator.PowerCycle]) and authenticatorReset drop
// the per-boot state (volatile.go: getNextAssertion and enumeration state,
// a pending large-blob write, the key-agreement key, the pinUvAuthToken and
// the count of wrong PINs); credentials, counters and settings live in the
// [Store].
package ctap2

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// DefaultAAGUID identifies virtkey's model: 5669724b-6579-4000-8000-7669726b6579
// ("VirKey" … "virkey" in ASCII). Override it with Config.AAGUID.
var DefaultAAGUID = [16]byte{0x56, 0x69, 0x72, 0x4b, 0x65, 0x79, 0x40, 0x00, 0x80, 0x00, 0x76, 0x69, 0x72, 0x6b, 0x65, 0x79}

// Attestation selects the attestation statement format makeCredential
// produces when the platform expresses no preference.
type Attestation string

// Attestation formats.
const (
	AttestationSelf Attestation = "packed-self" // packed, signed by the credential key
	AttestationNone Attestation = "none"
)

// Config configures an [Authenticator]. KeyStore and Store are required.
type Config struct {
	KeyStore KeyStore
	Store    Store
	// Presence confirms user presence. nil approves at once (tests).
	Presence Presence
	Logger   *slog.Logger
	// AAGUID of the model; zero means DefaultAAGUID.
	AAGUID [16]byte
	// ResetWindow is how long after power-up authenticatorReset is allowed;
	// 0 means always (conformance runs). The spec's value is 10 s.
	ResetWindow time.Duration
	// PresenceTimeout bounds a user-presence prompt (default 30 s).
	PresenceTimeout time.Duration
	// MaxResidentCredentials caps discoverable credentials: 0 means
	// [DefaultMaxResident], [NoResidentLimit] (any negative value) no limit
	// but the store's space (see [CredentialSpace]).
	MaxResidentCredentials int
	// Attestation is the default format (default AttestationSelf).
	Attestation Attestation
	// Batch is the batch attestation identity: AttestationBatch signs with
	// it, and so do the fido-u2f format and U2F registration (ECDSA P-256
	// only). nil: U2F registrations carry a self-signed certificate.
	Batch *AttestationIdentity
	// Enterprise is the enterprise attestation identity (unique per
	// device). Set, the authenticator is enterprise-attestation capable:
	// getInfo lists "ep", and authenticatorConfig can enable it.
	Enterprise *AttestationIdentity
	// EnterpriseRPIDs are the RP IDs that get vendor-facilitated
	// enterprise attestation (enterpriseAttestation 1).
	EnterpriseRPIDs []string
	// FirmwareVersion is reported by getInfo.
	FirmwareVersion uint32
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// UV selects built-in user verification (default UVNone).
	UV UVMode
	// SelectNewestAccount makes a discoverable getAssertion (no allowList)
	// answer with the newest credential only, marked userSelected, as an
	// authenticator with its own account chooser would (headless browsers
	// cannot answer their own chooser, even for a single account).
	SelectNewestAccount bool
	// Sealer protects the PIN hash at rest; default: the KeyStore, which
	// must then implement Sealer.
	Sealer Sealer
	// Observer, if set, is told what clients and controllers did (control.go).
	Observer Observer
	// BackupEligible and BackupState are the BE and BS flags of the
	// credentials makeCredential creates (WebDriver's defaultBackup*).
	BackupEligible, BackupState bool
}

// Authenticator is a CTAP2 authenticator. Its methods are safe for
// concurrent use; commands run one at a time.
type Authenticator struct {
	cfg Config
	log *slog.Logger

	sealer Sealer

	mu      sync.Mutex
	powerUp time.Time
	state   persistentState // PIN, UV and config state (mirrors the Store)
	vol     volatileState   // dropped at power-up and by authenticatorReset
	// records caches parsed resident records by credential ID.
	records map[string]*cachedRecord
	// overrides are a controller's response override bits (control.go).
	overrides Overrides
}

// Limits of Config.MaxResidentCredentials.
const (
	// DefaultMaxResident is the limit of a zero Config: about what a
	// hardware key holds (25–150 passkeys), with room to spare.
	DefaultMaxResident = 256
	// NoResidentLimit lifts the limit: the store's free space is the
	// only one.
	NoResidentLimit = -1
)

// New returns an authenticator, powered up.
func New(cfg Config) (*Authenticator, error) {
	if cfg.KeyStore == nil || cfg.Store == nil {
		return nil, errors.New("ctap2: Config.KeyStore and Config.Store are required")
	}
	if cfg.AAGUID == ([16]byte{}) {
		cfg.AAGUID = DefaultAAGUID
	}
	if cfg.PresenceTimeout <= 0 {
		cfg.PresenceTimeout = 30 * time.Second
	}
	if cfg.MaxResidentCredentials == 0 {
		cfg.MaxResidentCredentials = DefaultMaxResident
	}
	if cfg.Attestation == "" {
		cfg.Attestation = AttestationSelf
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Presence == nil {
		cfg.Presence = PresenceFunc(func(context.Context, PresenceRequest) error { return nil })
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sealer := cfg.Sealer
	if sealer == nil {
		s, ok := cfg.KeyStore.(Sealer)
		if !ok {
			return nil, errNoSealer
		}
		sealer = s
	}
	a := &Authenticator{cfg: cfg, log: log, sealer: sealer}
	if err := a.loadState(); err != nil {
		return nil, err
	}
	a.powerUp = cfg.Now()
	return a, nil
}

// PowerCycle simulates removing and re-inserting the key: volatile state is
// dropped, persistent state is kept.
func (a *Authenticator) PowerCycle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.vol.reset()
	a.powerUp = a.cfg.Now()
	a.log.Info("power cycle")
}

// HandleCBOR handles one CTAPHID_CBOR message (command byte ‖ CBOR
// parameters) from channel cid and returns status byte ‖ CBOR response.
// keepalive, if not nil, reports PROCESSING (1) or UPNEEDED (2) to the
// transport while the request waits.
func (a *Authenticator) HandleCBOR(ctx context.Context, cid uint32, msg []byte, keepalive func(status byte)) []byte {
	if len(msg) == 0 {
		return []byte{byte(ErrInvalidLength)}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx = withKeepalive(ctx, keepalive)
	cmd := msg[0]
	resp, err := a.dispatch(ctx, request{cid: cid, cmd: cmd, params: msg[1:]})
	var out []byte
	if err == nil && resp != nil {
		out, err = encode(resp)
	}
	code, expected := statusOf(err)
	if !expected {
		a.log.Error("command failed", "cmd", commandName(cmd), "err", err)
	} else {
		a.log.Info("command", "cmd", commandName(cmd), "status", code.Name())
	}
	if code != StatusOK {
		return []byte{byte(code)}
	}
	return append([]byte{0}, out...)
}

// Transact is HandleCBOR for in-process callers: it sends command cmd with the
// encoded parameters and returns the status and the CBOR response.
func (a *Authenticator) Transact(ctx context.Context, cmd byte, params []byte) (StatusCode, []byte) {
	out := a.HandleCBOR(ctx, 0, append([]byte{cmd}, params...), nil)
	return StatusCode(out[0]), out[1:]
}

type request struct {
	cid    uint32
	cmd    byte
	params []byte
}

type keepaliveKey struct{}

func withKeepalive(ctx context.Context, f func(byte)) context.Context {
	if f == nil {
		return ctx
	}
	return context.WithValue(ctx, keepaliveKey{}, f)
}

func setKeepalive(ctx context.Context, status byte) {
	if f, ok := ctx.Value(keepaliveKey{}).(func(byte)); ok {
		f(status)
	}
}

const (
	keepaliveProcessing byte = 1
	keepaliveUPNeeded   byte = 2
)

// confirm asks the user for presence, reporting UPNEEDED to the transport
// while it waits and bounding the wait with the presence timeout.
func (a *Authenticator) confirm(ctx context.Context, req PresenceRequest) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.PresenceTimeout)
	defer cancel()
	setKeepalive(ctx, keepaliveUPNeeded)
	defer setKeepalive(ctx, keepaliveProcessing)
	if err := a.cfg.Presence.Confirm(ctx, req); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return ErrUserActionTimeout
		}
		return err
	}
	return nil
}
