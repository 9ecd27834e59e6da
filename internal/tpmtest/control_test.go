package tpmtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/internal/rptest"
)

// TestControlAPIWithTPM drives the control API of `virtkey run --keystore
// tpm` on swtpm: a passkey registered over CTAP is listed without a
// private key (even with --control-allow-export), exporting or importing a
// private key is refused with 409 (the keys cannot leave or enter the
// TPM), a credential ID without a private key too, while a credential the
// API asks the TPM to make signs in through go-webauthn, and deleting
// through the API makes the key forget it.
func TestControlAPIWithTPM(t *testing.T) {
	tmp, sw, state := swtpmTest(t)
	sock := filepath.Join(tmp, "ctl", "control.sock")
	k := startKey(t, state, sw.Addr(), "--control", "unix:"+sock, "--control-allow-export")
	c, err := client.New("unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := c.Key(control.DefaultKeyID)
	var ki control.KeyInfo
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ki, err = key.Info(ctx); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || ki.KeyStore != "tpm" || ki.ExportAllowed {
		t.Fatalf("default key: %+v, %v; want keystore tpm, export not allowed", ki, err)
	}

	d := k.Client(t)
	rp := rptest.New(t, rpID, rpOrigin)
	alice := &rptest.User{ID: []byte("alice-user-handle"), Name: "alice"}
	reg := rp.Register(t, d, alice, rptest.RegisterOptions{Alg: -7, Resident: true})
	got, err := key.Credential(ctx, reg.ID)
	if err != nil || got.UserName != "alice" || !got.IsResidentCredential || got.PrivateKey != nil || got.PublicKey == nil {
		t.Fatalf("API view of a TPM passkey: %+v, %v; want alice, resident, a public key and no private key", got, err)
	}
	if _, err := key.PlaywrightCredentials(ctx); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("Playwright export of TPM credentials: %v, want 409", err)
	}

	pk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(pk)
	tr := true
	if _, err := key.AddCredential(ctx, control.CredentialParams{RPID: rpID, PrivateKey: der, IsResidentCredential: &tr, UserHandle: []byte("bob")}); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("importing a private key into the TPM key store: %v, want 409", err)
	}
	if _, err := key.AddCredential(ctx, control.CredentialParams{RPID: rpID, CredentialID: bytes.Repeat([]byte{7}, 32), IsResidentCredential: &tr, UserHandle: []byte("bob")}); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("a credential ID without a private key on the TPM key store: %v, want 409", err)
	}

	// A passkey the TPM makes at the API's request signs in.
	carol := &rptest.User{ID: []byte("carol-user-handle"), Name: "carol"}
	made, err := key.AddCredential(ctx, control.CredentialParams{RPID: rpID, IsResidentCredential: &tr, UserHandle: carol.ID, UserName: carol.Name})
	if err != nil || made.PrivateKey != nil || len(made.CredentialID) == 0 {
		t.Fatalf("a TPM-made passkey through the API: %+v, %v", made, err)
	}
	pub, err := x509.ParsePKIXPublicKey(made.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	coseKey, err := cose.EncodePublicKey(pub, cose.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	carol.Creds = append(carol.Creds, webauthn.Credential{ID: made.CredentialID, PublicKey: coseKey})
	signedIn := false
	for _, l := range rp.DiscoverableLogin(t, d, alice, carol) { // verifies every account's assertion
		signedIn = signedIn || bytes.Equal(l.Credential.ID, made.CredentialID)
	}
	if !signedIn {
		t.Fatalf("no discoverable assertion with the API's credential %x", made.CredentialID)
	}

	if err := key.DeleteCredential(ctx, reg.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := key.Credential(ctx, reg.ID); !errors.Is(err, control.ErrNotFound) && !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("a deleted credential: %v, want 404", err)
	}
	creds, err := key.Credentials(ctx)
	if err != nil || len(creds) != 1 || !bytes.Equal(creds[0].CredentialID, made.CredentialID) {
		t.Errorf("credentials after the delete: %+v, %v; want carol's only", creds, err)
	}
}
