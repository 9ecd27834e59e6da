// Package vkey is the control plane's real key: a [control.Key] backed by
// a ctap2.Authenticator and the transport that serves it ([Device]); the
// keys of POST /v1/keys are made by package control/factory, in-process
// keys by package inproc.
//
// `virtkey run --control` builds its default key with [NewControls] (the
// presence queue and the event observer go into the authenticator's
// configuration) and [Controls.Key] once the transport is up.
package vkey

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

// Device is the transport side of a key.
type Device interface {
	// Attach is "udp" or "uhid".
	Attach() string
	// UDPAddr is the bound address of a UDP key ("" otherwise).
	UDPAddr() string
	// HIDRaw is the /dev/hidraw node of a uhid key, once known ("" otherwise).
	HIDRaw() string
	// Replug power-cycles the key (UDP: the magic reboot's semantics;
	// uhid: the device is destroyed and made again).
	Replug(ctx context.Context) error
}

// Controls are the parts of a key the control plane hands to the
// authenticator's configuration before it is built: the presence queue
// and the event observer.
type Controls struct {
	hub      control.Hub
	presence *Presence
	pinSet   bool
	mu       sync.Mutex
}

// NewControls makes the controls of one key. mode is the initial presence
// mode; "" lets fallback (named fallbackName) answer until the API sets one.
func NewControls(mode control.PresenceMode, fallback ctap2.Presence, fallbackName string) *Controls {
	c := &Controls{presence: NewPresence(mode, fallback, fallbackName)}
	c.presence.emit = c.hub.Publish
	return c
}

// SetFallback names the provider that answers while no mode is set (the
// one `virtkey run --presence` built after the controls were made).
func (c *Controls) SetFallback(p ctap2.Presence, name string) {
	c.presence.mu.Lock()
	defer c.presence.mu.Unlock()
	c.presence.fallback, c.presence.fallbackName = p, name
}

// Presence goes into ctap2.Config.Presence.
func (c *Controls) Presence() ctap2.Presence { return c.presence }

// Observer goes into ctap2.Config.Observer.
func (c *Controls) Observer() ctap2.Observer { return observer{c} }

type observer struct{ c *Controls }

// Observe turns an authenticator event into a control event.
func (o observer) Observe(e ctap2.Event) {
	ev := control.Event{
		Type: string(e.Type), Time: time.Now().UTC(), CredentialID: e.CredentialID, RPID: e.RPID,
		UserHandle: e.UserHandle, Op: e.Op,
	}
	switch e.Type {
	case ctap2.EventCredentialAdded, ctap2.EventCredentialAsserted, ctap2.EventCredentialUpdated:
		n := e.SignCount
		ev.SignCount = &n
	}
	if e.Flags != 0 {
		f := e.Flags
		ev.Flags = &f
	}
	if e.Type == ctap2.EventPINFailed {
		ev.Status = e.Status.Name()
	}
	o.c.mu.Lock()
	switch e.Type {
	case ctap2.EventPINSet:
		o.c.pinSet = true
	case ctap2.EventReset:
		o.c.pinSet = false
	}
	o.c.mu.Unlock()
	o.c.hub.Publish(ev)
}

// KeyOptions describe a key for [Controls.Key].
type KeyOptions struct {
	Auth   *ctap2.Authenticator
	Device Device
	// Protocol and Transport as the key's configuration named them.
	Protocol, Transport string
	// UV is the built-in UV mode the authenticator was built with.
	UV ctap2.UVMode
	// BackupEligible, BackupState are the authenticator's defaults.
	BackupEligible, BackupState bool
	StateDir                    string
	Ephemeral                   bool
	// KeyStore is "software" or "tpm": with "tpm" private keys never
	// leave or enter (409).
	KeyStore string
	// ExportAllowed lets private keys leave and enter (else 403).
	ExportAllowed bool
}

// Key is a running key driven through the control API.
type Key struct {
	c     *Controls
	auth  *ctap2.Authenticator
	dev   Device
	opts  KeyOptions
	exts  []string
	hasRK bool

	mu        sync.Mutex
	uv        ctap2.UVMode
	overrides control.Overrides
}

var _ control.Key = (*Key)(nil)

// Key wraps an authenticator built with c's presence and observer.
func (c *Controls) Key(opts KeyOptions) (*Key, error) {
	info, err := opts.Auth.Info()
	if err != nil {
		return nil, err
	}
	if opts.Protocol == "" {
		opts.Protocol = control.ProtocolCTAP21
	}
	if opts.Transport == "" {
		opts.Transport = "usb"
	}
	c.mu.Lock()
	c.pinSet = opts.Auth.PINSet()
	c.mu.Unlock()
	return &Key{c: c, auth: opts.Auth, dev: opts.Device, opts: opts, exts: info.Extensions, hasRK: info.Options["rk"], uv: opts.UV}, nil
}

// Subscribe implements control.Key.
func (k *Key) Subscribe(fn func(control.Event)) func() { return k.c.hub.Subscribe(fn) }

// Info implements control.Key. It never waits for the authenticator.
func (k *Key) Info() control.KeyInfo {
	k.mu.Lock()
	uv, ov := k.uv, k.overrides
	k.mu.Unlock()
	k.c.mu.Lock()
	pinSet := k.c.pinSet
	k.c.mu.Unlock()
	mode := k.c.presence.Mode()
	return control.KeyInfo{
		Attach: k.dev.Attach(), UDPAddr: k.dev.UDPAddr(), HIDRaw: k.dev.HIDRaw(),
		Protocol: k.opts.Protocol, Transport: k.opts.Transport,
		HasResidentKey: k.hasRK, HasUserVerification: uv != ctap2.UVNone, IsUserVerified: uv == ctap2.UVAuto,
		IsUserConsenting: mode != control.PresenceDeny, Extensions: append([]string{}, k.exts...),
		DefaultBackupEligibility: k.opts.BackupEligible, DefaultBackupState: k.opts.BackupState,
		PINSet: pinSet, Presence: mode, Overrides: ov, StateDir: k.opts.StateDir, Ephemeral: k.opts.Ephemeral,
		KeyStore: k.opts.KeyStore, ExportAllowed: k.exportable(),
	}
}

func (k *Key) exportable() bool { return k.opts.ExportAllowed && k.opts.KeyStore != "tpm" }

// keyGate says why a private key may not cross, or nil.
func (k *Key) keyGate(what string) error {
	if k.opts.KeyStore == "tpm" {
		return fmt.Errorf("%s: the keys of a TPM key store cannot leave or enter the TPM: %w", what, control.ErrConflict)
	}
	if !k.opts.ExportAllowed {
		return fmt.Errorf("%s: private keys may not leave or enter this key (its state is persistent; run virtkey with --control-allow-export): %w", what, control.ErrForbidden)
	}
	return nil
}

// mapErr turns authenticator errors into control errors.
func mapErr(err error) error {
	var sc ctap2.StatusCode
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ctap2.ErrNotStored):
		return fmt.Errorf("%v: %w", err, control.ErrNotFound)
	case errors.Is(err, ctap2.ErrCredentialExists), errors.Is(err, ctap2.ErrNotExportable):
		return fmt.Errorf("%v: %w", err, control.ErrConflict)
	case errors.Is(err, ctap2.ErrBadImport):
		return control.BadRequest("%v", err)
	case errors.As(err, &sc):
		switch sc {
		case ctap2.ErrPINPolicyViolation:
			return control.BadRequest("PIN: 4 or more code points (the key's minimum PIN length), at most 63 bytes")
		case ctap2.ErrKeyStoreFull:
			return fmt.Errorf("the key holds no more resident credentials: %w", control.ErrConflict)
		}
	}
	return err
}

// AddCredential implements control.Key.
func (k *Key) AddCredential(ctx context.Context, p control.CredentialParams) (control.Credential, error) {
	in := ctap2.CredentialImport{
		ID: p.CredentialID, RPID: p.RPID, SignCount: p.SignCount, LargeBlob: p.LargeBlob,
		User:           ctap2.UserEntity{ID: ctap2.Bytes(p.UserHandle), Name: p.UserName, DisplayName: p.UserDisplayName},
		BackupEligible: k.opts.BackupEligible, BackupState: k.opts.BackupState,
	}
	if p.IsResidentCredential != nil {
		in.Resident = *p.IsResidentCredential
	}
	if p.BackupEligibility != nil {
		in.BackupEligible = *p.BackupEligibility
	}
	if p.BackupState != nil {
		in.BackupState = *p.BackupState
	}
	if p.CredProtect != nil {
		in.CredProtect = byte(*p.CredProtect)
	}
	if p.HMACSecret != nil {
		in.HMACSecret = *p.HMACSecret
	}
	if p.Algorithm != nil {
		in.Alg = cose.Algorithm(*p.Algorithm)
	}
	if p.PrivateKey != nil {
		if err := k.keyGate("privateKey"); err != nil {
			return control.Credential{}, err
		}
		key, err := x509.ParsePKCS8PrivateKey(p.PrivateKey)
		if err != nil {
			return control.Credential{}, control.BadRequest("privateKey: not PKCS#8 DER: %v", err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return control.Credential{}, control.BadRequest("privateKey: %T cannot sign", key)
		}
		if p.PublicKey != nil {
			spki, err := x509.MarshalPKIXPublicKey(s.Public())
			if err != nil || string(spki) != string(p.PublicKey) {
				return control.Credential{}, control.BadRequest("publicKey is not privateKey's public key")
			}
		}
		in.PrivateKey = s
	} else if p.CredentialID != nil && k.opts.KeyStore == "tpm" {
		return control.Credential{}, fmt.Errorf("credentialId without privateKey: a TPM key store makes its own ids (leave credentialId out): %w", control.ErrConflict)
	}
	sc, err := k.auth.ImportCredential(ctx, in)
	if err != nil {
		return control.Credential{}, mapErr(err)
	}
	if k.exportable() {
		// ImportCredential answers without the private key.
		return k.Credential(ctx, sc.ID)
	}
	return toCredential(sc)
}

// Credentials implements control.Key.
func (k *Key) Credentials(ctx context.Context) ([]control.Credential, error) {
	scs, err := k.auth.StoredCredentials(ctx, k.exportable())
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]control.Credential, 0, len(scs))
	for _, sc := range scs {
		c, err := toCredential(sc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Credential implements control.Key.
func (k *Key) Credential(ctx context.Context, id []byte) (control.Credential, error) {
	sc, err := k.auth.StoredCredential(ctx, id, k.exportable())
	if err != nil {
		return control.Credential{}, mapErr(err)
	}
	return toCredential(sc)
}

// DeleteCredential implements control.Key.
func (k *Key) DeleteCredential(ctx context.Context, id []byte) error {
	return mapErr(k.auth.DeleteStoredCredential(ctx, id))
}

// DeleteCredentials implements control.Key.
func (k *Key) DeleteCredentials(ctx context.Context) error {
	return mapErr(k.auth.DeleteStoredCredentials(ctx))
}

// SetCredentialProps implements control.Key.
func (k *Key) SetCredentialProps(ctx context.Context, id []byte, p control.CredentialProps) (control.Credential, error) {
	sc, err := k.auth.UpdateStoredCredential(ctx, id, ctap2.CredentialUpdate{
		BackupEligible: p.BackupEligibility, BackupState: p.BackupState, SignCount: p.SignCount,
		UserName: p.UserName, UserDisplayName: p.UserDisplayName,
	})
	if err != nil {
		return control.Credential{}, mapErr(err)
	}
	if k.exportable() {
		// UpdateStoredCredential answers without the private key.
		return k.Credential(ctx, id)
	}
	return toCredential(sc)
}

// SetUserVerified implements control.Key.
func (k *Key) SetUserVerified(ctx context.Context, v bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.uv == ctap2.UVNone {
		return fmt.Errorf("this key has no built-in user verification (hasUserVerification false): %w", control.ErrConflict)
	}
	mode := ctap2.UVDeny
	if v {
		mode = ctap2.UVAuto
	}
	if err := k.auth.SetUV(ctx, mode); err != nil {
		return err
	}
	k.uv = mode
	return nil
}

// SetPresence implements control.Key.
func (k *Key) SetPresence(_ context.Context, m control.PresenceMode) error {
	k.c.presence.SetMode(m)
	return nil
}

// PendingPresence implements control.Key.
func (k *Key) PendingPresence() []control.PendingPresence { return k.c.presence.Pending() }

// AnswerPresence implements control.Key.
func (k *Key) AnswerPresence(id string, approve bool) error { return k.c.presence.Answer(id, approve) }

// SetOverrides implements control.Key.
func (k *Key) SetOverrides(_ context.Context, o control.Overrides) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.auth.SetOverrides(ctap2.Overrides{BogusSignature: o.IsBogusSignature, BadUV: o.IsBadUV, BadUP: o.IsBadUP})
	k.overrides = o
	return nil
}

// SetPIN implements control.Key.
func (k *Key) SetPIN(ctx context.Context, pin string) error { return mapErr(k.auth.SetPIN(ctx, pin)) }

// RemovePIN implements control.Key.
func (k *Key) RemovePIN(ctx context.Context) error {
	if err := k.auth.RemovePIN(ctx); err != nil {
		return err
	}
	k.c.mu.Lock()
	k.c.pinSet = false
	k.c.mu.Unlock()
	return nil
}

// Replug implements control.Key.
func (k *Key) Replug(ctx context.Context) error {
	if err := k.dev.Replug(ctx); err != nil {
		return err
	}
	k.c.hub.Publish(control.Event{Type: control.EventReplug, Time: time.Now().UTC()})
	return nil
}

// ReleasePresence answers the clients still waiting for presence (and
// every later request: refused) and waits for the command in flight to
// finish, so that its answer goes out before the transport stops. Call it
// when the key is being unplugged.
func (k *Key) ReleasePresence() {
	if k.c.presence.Close() {
		k.auth.PINSet() // returns once the command holding the authenticator is done
		time.Sleep(20 * time.Millisecond)
	}
}

func toCredential(sc *ctap2.StoredCredential) (control.Credential, error) {
	spki, err := x509.MarshalPKIXPublicKey(sc.PublicKey)
	if err != nil {
		return control.Credential{}, err
	}
	c := control.Credential{
		CredentialID: sc.ID, IsResidentCredential: sc.Resident, RPID: sc.RPID, UserHandle: control.Bytes(sc.User.ID),
		SignCount: sc.SignCount, LargeBlob: sc.LargeBlob, BackupEligibility: sc.BackupEligible, BackupState: sc.BackupState,
		UserName: sc.User.Name, UserDisplayName: sc.User.DisplayName, CredProtect: int(sc.CredProtect),
		HMACSecret: sc.HMACSecret, PublicKey: spki, Algorithm: int(sc.Alg),
	}
	if len(c.UserHandle) == 0 {
		c.UserHandle = nil
	}
	if sc.PrivateKey != nil {
		if c.PrivateKey, err = x509.MarshalPKCS8PrivateKey(sc.PrivateKey); err != nil {
			return control.Credential{}, err
		}
	}
	return c, nil
}
