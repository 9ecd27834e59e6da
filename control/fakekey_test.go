package control_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/virtkey/virtkey/control"
)

// memKey is an in-memory control.Key for the HTTP layer's unit tests only:
// it checks routing, JSON and lifecycle, not a key's behaviour (the real
// key's tests in control/vkey do that over CTAP).
type memKey struct {
	control.Hub
	mu       sync.Mutex
	info     control.KeyInfo
	creds    []control.Credential
	pending  []control.PendingPresence
	closed   bool
	slowCall chan struct{} // if set, Credentials blocks until it is closed
}

func newMemKey() *memKey {
	return &memKey{info: control.KeyInfo{
		Attach: control.AttachUDP, UDPAddr: "127.0.0.1:9", Protocol: control.ProtocolCTAP21, Transport: "usb",
		HasResidentKey: true, HasUserVerification: true, IsUserConsenting: true,
		Extensions: []string{"credProtect"}, Presence: control.PresenceAuto, KeyStore: "software", ExportAllowed: true, Ephemeral: true,
	}}
}

func (k *memKey) Info() control.KeyInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.info
}

func (k *memKey) emit(typ string, c *control.Credential) {
	ev := control.Event{Type: typ, Time: time.Now().UTC()}
	if c != nil {
		ev.CredentialID, ev.RPID, ev.UserHandle = c.CredentialID, c.RPID, c.UserHandle
		n := c.SignCount
		ev.SignCount = &n
	}
	k.Publish(ev)
}

func (k *memKey) AddCredential(_ context.Context, p control.CredentialParams) (control.Credential, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p.PrivateKey != nil && !k.info.ExportAllowed {
		return control.Credential{}, fmt.Errorf("import: %w", control.ErrForbidden)
	}
	id := p.CredentialID
	if id == nil {
		id = []byte(fmt.Sprintf("generated-id-%04d", len(k.creds)))
	}
	priv := p.PrivateKey
	if priv == nil {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		priv, _ = x509.MarshalPKCS8PrivateKey(k)
	}
	sk, err := x509.ParsePKCS8PrivateKey(priv)
	if err != nil {
		return control.Credential{}, control.BadRequest("privateKey: %v", err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(sk.(crypto.Signer).Public())
	c := control.Credential{
		CredentialID: id, RPID: p.RPID, PrivateKey: priv, UserHandle: p.UserHandle, SignCount: p.SignCount,
		LargeBlob: p.LargeBlob, UserName: p.UserName, UserDisplayName: p.UserDisplayName,
		PublicKey: spki, Algorithm: -7,
	}
	setIf(&c.IsResidentCredential, p.IsResidentCredential)
	setIf(&c.BackupEligibility, p.BackupEligibility)
	setIf(&c.BackupState, p.BackupState)
	setIf(&c.CredProtect, p.CredProtect)
	setIf(&c.HMACSecret, p.HMACSecret)
	k.creds = append(k.creds, c)
	k.emit(control.EventCredentialAdded, &c)
	return c, nil
}

func (k *memKey) Credentials(ctx context.Context) ([]control.Credential, error) {
	if k.slowCall != nil {
		select {
		case <-k.slowCall:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.creds), nil
}

func (k *memKey) find(id []byte) int {
	return slices.IndexFunc(k.creds, func(c control.Credential) bool { return string(c.CredentialID) == string(id) })
}

func (k *memKey) Credential(_ context.Context, id []byte) (control.Credential, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(id)
	if i < 0 {
		return control.Credential{}, fmt.Errorf("credential: %w", control.ErrNotFound)
	}
	return k.creds[i], nil
}

func (k *memKey) DeleteCredential(_ context.Context, id []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(id)
	if i < 0 {
		return fmt.Errorf("credential: %w", control.ErrNotFound)
	}
	c := k.creds[i]
	k.creds = slices.Delete(k.creds, i, i+1)
	k.emit(control.EventCredentialDeleted, &c)
	return nil
}

func (k *memKey) DeleteCredentials(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.creds = nil
	return nil
}

func (k *memKey) SetCredentialProps(_ context.Context, id []byte, p control.CredentialProps) (control.Credential, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(id)
	if i < 0 {
		return control.Credential{}, fmt.Errorf("credential: %w", control.ErrNotFound)
	}
	c := &k.creds[i]
	setIf(&c.BackupEligibility, p.BackupEligibility)
	setIf(&c.BackupState, p.BackupState)
	setIf(&c.SignCount, p.SignCount)
	setIf(&c.UserName, p.UserName)
	setIf(&c.UserDisplayName, p.UserDisplayName)
	k.emit(control.EventCredentialUpdated, c)
	return *c, nil
}

func (k *memKey) SetUserVerified(_ context.Context, v bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.info.IsUserVerified = v
	return nil
}

func (k *memKey) SetPresence(_ context.Context, m control.PresenceMode) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.info.Presence = m
	k.info.IsUserConsenting = m != control.PresenceDeny
	return nil
}

func (k *memKey) PendingPresence() []control.PendingPresence {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.pending)
}

func (k *memKey) AnswerPresence(id string, approve bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.IndexFunc(k.pending, func(p control.PendingPresence) bool { return p.RequestID == id })
	if i < 0 {
		return fmt.Errorf("presence request %q: %w", id, control.ErrNotFound)
	}
	k.pending = slices.Delete(k.pending, i, i+1)
	status := "denied"
	if approve {
		status = "approved"
	}
	k.Publish(control.Event{Type: control.EventPresenceAnswered, Time: time.Now().UTC(), RequestID: id, Status: status})
	return nil
}

func (k *memKey) SetOverrides(_ context.Context, o control.Overrides) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.info.Overrides = o
	return nil
}

func (k *memKey) SetPIN(_ context.Context, pin string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(pin) < 4 {
		return control.BadRequest("PIN too short")
	}
	k.info.PINSet = true
	k.Publish(control.Event{Type: control.EventPINSet, Time: time.Now().UTC()})
	return nil
}

func (k *memKey) RemovePIN(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.info.PINSet = false
	return nil
}

func (k *memKey) Replug(context.Context) error {
	k.Publish(control.Event{Type: control.EventReplug, Time: time.Now().UTC()})
	return nil
}

func (k *memKey) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	return nil
}

type memFactory struct {
	mu   sync.Mutex
	keys []*memKey
}

func (f *memFactory) NewKey(_ context.Context, cfg control.KeyConfig) (control.Key, func() error, error) {
	k := newMemKey()
	k.info.Attach = cfg.Attach
	k.info.Presence = cfg.Presence
	k.info.DefaultBackupEligibility, k.info.DefaultBackupState = cfg.DefaultBackupEligibility, cfg.DefaultBackupState
	k.info.IsUserVerified = cfg.IsUserVerified == nil || *cfg.IsUserVerified
	f.mu.Lock()
	f.keys = append(f.keys, k)
	f.mu.Unlock()
	return k, k.close, nil
}

// setIf sets *dst to *v when v is present (an optional field of a request).
func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
