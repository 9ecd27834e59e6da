package tpmtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/rptest"
	"github.com/virtkey/virtkey/internal/vktest"
	"github.com/virtkey/virtkey/tpmkeys"
)

// TestTPMKeystore is the life of a passkey made with --keystore tpm: made
// over UDP and verified by a relying party; still usable after restarting
// virtkey and after restarting the TPM; refused, in plain words, on another
// TPM; and never present in the state directory.
func TestTPMKeystore(t *testing.T) {
	tmp, tpmA, state := swtpmTest(t)
	rp := rptest.New(t, rpID, rpOrigin)
	alice := &rptest.User{ID: []byte("alice-user-handle"), Name: "alice"}

	var credID []byte
	t.Run("register", func(t *testing.T) {
		k := startKey(t, state, tpmA.Addr())
		d := k.Client(t)
		info, err := d.GetInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Algorithms) != 1 || info.Algorithms[0].Alg != -7 {
			t.Errorf("getInfo algorithms %+v, want ES256 only", info.Algorithms)
		}
		if info.MaxCredentialIDLength != 380 {
			t.Errorf("maxCredentialIdLength %d, want 380", info.MaxCredentialIDLength)
		}
		cred := rp.Register(t, d, alice, rptest.RegisterOptions{Alg: -7, Resident: true})
		credID = cred.ID
		if got := rp.DiscoverableLogin(t, d, alice); !bytes.Equal(got[0].Credential.ID, credID) {
			t.Fatal("assertion with another credential")
		}
		// EdDSA is refused (UNSUPPORTED_ALGORITHM), not silently made in software.
		st, _ := rptest.Call(t, d, ctap2.CmdMakeCredential, map[int]any{
			1: sha([]byte("x")), 2: map[string]any{"id": rpID}, 3: map[string]any{"id": []byte("u")},
			4: []map[string]any{{"type": "public-key", "alg": -8}},
		})
		if st != ctap2.ErrUnsupportedAlgorithm {
			t.Errorf("makeCredential EdDSA: %v, want UNSUPPORTED_ALGORITHM", st)
		}
		k.Stop(t)
	})
	if credID == nil {
		t.FailNow()
	}

	t.Run("restart virtkey", func(t *testing.T) {
		k := startKey(t, state, tpmA.Addr())
		rp.DiscoverableLogin(t, k.Client(t), alice)
		k.Stop(t)
	})

	t.Run("restart swtpm under a running virtkey", func(t *testing.T) {
		k := startKey(t, state, tpmA.Addr())
		d := k.Client(t)
		rp.DiscoverableLogin(t, d, alice)
		tpmA.restart(t)
		rp.DiscoverableLogin(t, d, alice) // reconnects, re-creates the SRK, checks its Name
		k.Stop(t)
		if !strings.Contains(k.Output(), "retrying once") {
			t.Errorf("virtkey did not log the reconnect:\n%s", k.Output())
		}
	})

	t.Run("restart swtpm then virtkey", func(t *testing.T) {
		tpmA.restart(t)
		k := startKey(t, state, tpmA.Addr())
		rp.DiscoverableLogin(t, k.Client(t), alice)
		k.Stop(t)
	})

	tpmB := startSwtpm(t, filepath.Join(tmp, "swtpm-b"))
	t.Run("another TPM is refused", func(t *testing.T) {
		addr := vktest.FreeUDPAddr(t)
		out := runFails(t, vktest.RunArgs(addr, state, tpmArgs(tpmB.Addr())...)...)
		if !strings.Contains(out, "the TPM has been cleared or replaced; credentials made on the old TPM cannot be used") {
			t.Errorf("output does not say the TPM was replaced:\n%s", out)
		}
		t.Logf("virtkey said: %s", strings.TrimSpace(out))
	})

	t.Run("TPM unavailable", func(t *testing.T) {
		port, err := freeTCPPortPair()
		if err != nil {
			t.Fatal(err)
		}
		addr := vktest.FreeUDPAddr(t)
		for _, tpm := range []string{"tcp://127.0.0.1:" + strconv.Itoa(port), filepath.Join(tmp, "no-such-tpm")} {
			fresh := filepath.Join(tmp, "state-unavailable")
			out := runFails(t, vktest.RunArgs(addr, fresh, tpmArgs(tpm)...)...)
			if !strings.Contains(out, "TPM unavailable") || !strings.Contains(out, "no fallback to software") {
				t.Errorf("--tpm %s: output does not say the TPM is unavailable:\n%s", tpm, out)
			}
			if _, err := os.Stat(filepath.Join(fresh, tpmkeys.KeyFileName)); err == nil {
				t.Errorf("--tpm %s: a software key file was created", tpm)
			}
		}
	})

	t.Run("doctor", func(t *testing.T) {
		out := doctorOutput(t, "--keystore", "tpm", "--state-dir", state, "--tpm", tpmA.Addr())
		if !strings.Contains(out, "OK       TPM answers") || !strings.Contains(out, "it is the TPM the state directory was set up with") {
			t.Errorf("doctor on the right TPM:\n%s", out)
		}
		if !strings.Contains(out, "OK       state directory") {
			t.Errorf("doctor on the state directory:\n%s", out)
		}
		out = doctorOutput(t, "--keystore", "tpm", "--state-dir", state, "--tpm", tpmB.Addr())
		if !strings.Contains(out, "PROBLEM  tpmkeys: the TPM has been cleared or replaced") {
			t.Errorf("doctor on another TPM:\n%s", out)
		}
	})

	t.Run("state directory holds TPM blobs only", func(t *testing.T) {
		checkStateDir(t, state, credID, tpmA, tpmB)
	})
}

// TestTPMEdDSAWrapped: --keystore tpm+eddsa lists EdDSA in getInfo and
// makes EdDSA credentials, wrapped under the TPM-sealed master key.
func TestTPMEdDSAWrapped(t *testing.T) {
	_, tpm, state := swtpmTest(t)
	k := startKey(t, state, tpm.Addr(), "--keystore", "tpm+eddsa")
	d := k.Client(t)
	info, err := d.GetInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var algs []int64
	for _, a := range info.Algorithms {
		algs = append(algs, a.Alg)
	}
	if len(algs) != 2 || algs[0] != -7 || algs[1] != -8 {
		t.Errorf("getInfo algorithms %v, want [-7 -8]", algs)
	}
	rp := rptest.New(t, rpID, rpOrigin)
	bob := &rptest.User{ID: []byte("bob"), Name: "bob"}
	rp.Register(t, d, bob, rptest.RegisterOptions{Alg: -8, Resident: true})
	rp.DiscoverableLogin(t, d, bob)
	k = k.Restart(t)
	rp.DiscoverableLogin(t, k.Client(t), bob)
}

func bigInt(b []byte) *big.Int { return new(big.Int).SetBytes(b) }

func doctorOutput(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, vktest.Binary(t), append([]string{"doctor"}, args...)...).CombinedOutput()
	return string(out)
}

// checkStateDir unseals the master key on tpmA by hand (virtkey stopped),
// checks that neither it nor the credential-wrapping key appear in any
// file of the state directory, opens credID per the documented format,
// and checks that its TPM blobs sign on tpmA and do not load on tpmB;
// likewise the sealed master key does not load on tpmB.
func checkStateDir(t *testing.T, state string, credID []byte, tpmA, tpmB *swtpm) {
	if _, err := os.Stat(filepath.Join(state, tpmkeys.KeyFileName)); err == nil {
		t.Errorf("the state directory has a software key file %s", tpmkeys.KeyFileName)
	}
	raw, err := os.ReadFile(filepath.Join(state, tpmkeys.TPMStateFileName))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		SRKName       []byte `json:"srk_name"`
		MasterPublic  []byte `json:"master_public"`
		MasterPrivate []byte `json:"master_private"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(state, tpmkeys.TPMStateFileName)); fi.Mode().Perm() != 0o600 {
		t.Errorf("tpm.json mode %04o", fi.Mode().Perm())
	}

	a := dialTPM(t, tpmA)
	srkA := createSRK(t, a)
	if !bytes.Equal(srkA.Name.Buffer, st.SRKName) {
		t.Fatalf("pinned SRK Name %x, swtpm A's %x", st.SRKName, srkA.Name.Buffer)
	}
	sealed := loadBlobs(t, a, srkA, st.MasterPublic, st.MasterPrivate)
	if sealed == nil {
		t.Fatal("the sealed master key does not load on its own TPM")
	}
	us, err := tpm2.Unseal{ItemHandle: *sealed}.Execute(a)
	if err != nil {
		t.Fatal(err)
	}
	master := us.OutData.Buffer
	flushH(a, sealed.Handle)
	wrapKey, err := hkdf.Key(sha256.New, master, nil, "virtkey tpmkeys v1: TPM credential wrapping", chacha20poly1305.KeySize)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(state, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name, secret := range map[string][]byte{"the master key": master, "the wrapping key": wrapKey, "a PEM key": []byte("PRIVATE KEY")} {
			if bytes.Contains(b, secret) {
				t.Errorf("%s contains %s", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Open the credential ID: 0x02 ‖ nonce ‖ XChaCha20-Poly1305(…, aad 0x02 ‖ rpIdHash).
	aead, _ := chacha20poly1305.NewX(wrapKey)
	if len(credID) != 380 || credID[0] != 2 {
		t.Fatalf("credential ID of %d bytes, version %d", len(credID), credID[0])
	}
	rpHash := sha([]byte(rpID))
	pt, err := aead.Open(nil, credID[1:25], credID[25:], append([]byte{2}, rpHash...))
	if err != nil {
		t.Fatalf("credential ID does not open per the documented format: %v", err)
	}
	s := cryptobyte.String(pt[2:])
	var pub, priv cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&pub) || !s.ReadUint16LengthPrefixed(&priv) {
		t.Fatal("credential ID plaintext holds no TPM blobs")
	}
	t.Logf("credential blobs: TPM2B_PUBLIC %d bytes, TPM2B_PRIVATE %d bytes", len(pub)+2, len(priv)+2)
	key := loadBlobs(t, a, srkA, pub, priv)
	if key == nil {
		t.Fatal("the credential's TPM blobs do not load on their TPM")
	}
	digest := sha([]byte("data"))
	sig, err := tpm2.Sign{KeyHandle: *key, Digest: tpm2.TPM2BDigest{Buffer: digest},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull}}.Execute(a)
	if err != nil {
		t.Fatalf("signing with the credential's blobs: %v", err)
	}
	flushH(a, key.Handle)
	flushH(a, srkA.Handle)
	a.Close()
	pubArea, _ := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	pk, err := tpm2.Pub(*pubArea)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := sig.Signature.Signature.ECDSA()
	if !ecdsa.Verify(pk.(*ecdsa.PublicKey), digest, bigInt(es.SignatureR.Buffer), bigInt(es.SignatureS.Buffer)) {
		t.Error("the blobs' signature does not verify")
	}

	b := dialTPM(t, tpmB)
	defer b.Close()
	srkB := createSRK(t, b)
	defer flushH(b, srkB.Handle)
	if h := loadBlobs(t, b, srkB, pub, priv); h != nil {
		flushH(b, h.Handle)
		t.Error("the credential's TPM blobs load on another TPM")
	}
	if h := loadBlobs(t, b, srkB, st.MasterPublic, st.MasterPrivate); h != nil {
		flushH(b, h.Handle)
		t.Error("the sealed master key loads on another TPM")
	}
}

// opener returns the tpmkeys opener of s.
func opener(t testing.TB, s *swtpm) tpmkeys.Opener {
	t.Helper()
	open, err := tpmkeys.OpenerFor(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return open
}

func dialTPM(t testing.TB, s *swtpm) transport.TPMCloser {
	t.Helper()
	c, err := opener(t, s)()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createSRK(t testing.TB, tpm transport.TPM) *tpm2.NamedHandle {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	return &tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
}

// loadBlobs loads TPM2B contents under parent; nil if the TPM refuses.
func loadBlobs(t *testing.T, tpm transport.TPM, parent *tpm2.NamedHandle, pub, priv []byte) *tpm2.AuthHandle {
	t.Helper()
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: priv},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](pub),
	}.Execute(tpm)
	if err != nil {
		t.Logf("TPM2_Load: %v", err)
		return nil
	}
	return &tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}
}

func flushH(tpm transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(tpm)
}

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
	vktest.WaitControl(t, c)
	key := c.Key(control.DefaultKeyID)
	ki, err := key.Info(ctx)
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
