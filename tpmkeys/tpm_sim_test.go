//go:build cgo

package tpmkeys

// Tests of the TPM key store on the in-process TPM 2.0 reference simulator
// (go-tpm-tools/simulator, cgo + libcrypto). There is one simulator per
// process, so these tests never run in parallel with each other.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

var (
	_ ctap2.KeyStore      = (*TPM)(nil)
	_ ctap2.Sealer        = (*TPM)(nil)
	_ ctap2.SecretDeriver = (*TPM)(nil)
	_ ctap2.KeyResetter   = (*TPM)(nil)
)

// simConn is a connection to the process's simulator. Closing it leaves the
// simulator running (TPM closes and reopens connections when it recovers).
// failNext makes the next Send fail like a dropped socket.
type simConn struct {
	mu       sync.Mutex
	sim      *simulator.Simulator
	failNext bool
	sends    int
	// loseResponse, if set, makes the next command with this code run in
	// the TPM but fail on the way back, like a connection dropped after
	// the TPM answered.
	loseResponse tpm2.TPMCC
}

func (c *simConn) Send(cmd []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sends++
	if c.failNext {
		c.failNext = false
		return nil, errors.New("simulated connection reset")
	}
	rsp, err := transport.FromReadWriter(c.sim).Send(cmd)
	if c.loseResponse != 0 && len(cmd) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) == c.loseResponse {
		c.loseResponse = 0
		return nil, errors.New("simulated connection reset after the command ran")
	}
	return rsp, err
}

func (c *simConn) Close() error { return nil }

// dropNext makes the next Send fail like a dropped socket.
func (c *simConn) dropNext() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext = true
}

// testSim is a simulator for one test, with an Opener for OpenTPM.
type testSim struct {
	*simulator.Simulator
	conn   *simConn
	opens  int
	openMu sync.Mutex
	down   bool // Opener fails while set
}

func newSim(t testing.TB) *testSim {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return &testSim{Simulator: sim, conn: &simConn{sim: sim}}
}

func (s *testSim) opener() Opener {
	return func() (transport.TPMCloser, error) {
		s.openMu.Lock()
		defer s.openMu.Unlock()
		if s.down {
			return nil, errors.New("connection refused (simulated)")
		}
		s.opens++
		return s.conn, nil
	}
}

func openTestTPM(t testing.TB, sim *testSim, dir string, opts ...TPMOption) *TPM {
	t.Helper()
	k, err := OpenTPM(context.Background(), dir, sim.opener(), opts...)
	if err != nil {
		t.Fatalf("OpenTPM: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// exampleRP is the rpIDHash of the RP the tests make credentials for.
var exampleRP = rpHash("example.org")

// tpmWithCredential opens a TPM store in dir on sim and makes an ES256
// credential for example.org in it.
func tpmWithCredential(t testing.TB, sim *testSim, dir string) (*TPM, []byte) {
	t.Helper()
	k := openTestTPM(t, sim, dir)
	id, _, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, nil)
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	return k, id
}

// signVerify signs with k's credential id for exampleRP and checks the
// signature.
func signVerify(k *TPM, id []byte) error {
	s, _, err := k.Signer(ctx, id, exampleRP)
	if err != nil {
		return err
	}
	d := sha256.Sum256([]byte("authenticatorData ‖ clientDataHash"))
	sig, err := s.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

func TestTPMCreateSignVerify(t *testing.T) {
	sim := newSim(t)
	k := openTestTPM(t, sim, t.TempDir())
	meta := []byte{1, 2, 3}
	id, pub, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, meta)
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	if len(id) != k.MaxCredentialIDLength() || len(id) != 380 {
		t.Errorf("ID of %d bytes, want %d", len(id), k.MaxCredentialIDLength())
	}
	s, gotMeta, err := k.Signer(ctx, id, exampleRP)
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	if !bytes.Equal(gotMeta, meta) {
		t.Errorf("meta = %x, want %x", gotMeta, meta)
	}
	if !s.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Error("Signer's public key differs from NewCredential's")
	}
	for i := range 3 {
		d := sha256.Sum256([]byte{byte(i)})
		sig, err := s.Sign(nil, d[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig) {
			t.Fatalf("signature does not verify")
		}
	}
	// cose.Sign (what ctap2 uses) and COSE verification agree.
	msg := []byte("message")
	sig, err := cose.Sign(s, cose.AlgES256, msg)
	if err != nil {
		t.Fatalf("cose.Sign: %v", err)
	}
	if err := cose.Verify(pub, cose.AlgES256, msg, sig); err != nil {
		t.Errorf("cose.Verify: %v", err)
	}
	if _, err := s.Sign(nil, make([]byte, 48), crypto.SHA384); err == nil {
		t.Error("Sign accepted a SHA-384 digest")
	}
	// Two credentials have different keys and IDs.
	id2, pub2, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(id, id2) || pub2.(*ecdsa.PublicKey).Equal(pub) {
		t.Error("two credentials share an ID or key")
	}
	if err := signVerify(k, id2); err != nil {
		t.Error(err)
	}
}

func TestTPMAlgorithms(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k := openTestTPM(t, sim, dir)
	if got := k.Algorithms(); len(got) != 1 || got[0] != cose.AlgES256 {
		t.Errorf("Algorithms = %v, want [ES256]", got)
	}
	for _, alg := range []cose.Algorithm{cose.AlgEdDSA, cose.AlgES384, cose.AlgRS256} {
		if _, _, err := k.NewCredential(ctx, alg, exampleRP, nil); !errors.Is(err, ErrUnsupportedAlgorithm) {
			t.Errorf("NewCredential(%v) = %v, want ErrUnsupportedAlgorithm", alg, err)
		}
	}
	k.Close()

	w := openTestTPM(t, sim, dir, WithEdDSA(EdDSAWrapped))
	if got := w.Algorithms(); len(got) != 2 || got[1] != cose.AlgEdDSA {
		t.Errorf("Algorithms = %v, want [ES256 EdDSA]", got)
	}
	id, pub, err := w.NewCredential(ctx, cose.AlgEdDSA, exampleRP, []byte{9})
	if err != nil {
		t.Fatalf("NewCredential(EdDSA): %v", err)
	}
	s, meta, err := w.Signer(ctx, id, exampleRP)
	if err != nil || !bytes.Equal(meta, []byte{9}) {
		t.Fatalf("Signer(EdDSA) = %v, %x", err, meta)
	}
	sig, err := s.Sign(nil, []byte("msg"), crypto.Hash(0))
	if err != nil || !ed25519.Verify(pub.(ed25519.PublicKey), []byte("msg"), sig) {
		t.Fatalf("EdDSA signature: %v", err)
	}
	if _, _, err := w.Signer(ctx, id, rpHash("other.example")); err == nil {
		t.Error("wrapped EdDSA ID opened for another RP")
	}
	w.Close()
	// A store that refuses EdDSA does not open wrapped EdDSA IDs either.
	r := openTestTPM(t, sim, dir)
	if _, _, err := r.Signer(ctx, id, exampleRP); !errors.Is(err, ErrUnknownCredential) {
		t.Errorf("EdDSARefuse store opened an EdDSA ID: %v", err)
	}
	// The EdDSA key is wrapped under the TPM-sealed master key, not
	// under any key a software store has.
	sw := newTestStore(t)
	if _, _, err := sw.Signer(ctx, id, exampleRP); err == nil {
		t.Error("a software store opened a TPM-wrapped EdDSA ID")
	}
}

func TestTPMSealOpen(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k := openTestTPM(t, sim, dir)
	sealed, err := k.Seal(ctx, []byte("pin hash"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open(ctx, sealed, []byte("aad")); err != nil || string(got) != "pin hash" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(ctx, sealed, []byte("other")); !errors.Is(err, ErrSealedData) {
		t.Errorf("Open with other aad = %v", err)
	}
	s1, _ := k.CredentialSecret(ctx, []byte("id"), "label")
	k.Close()
	// The master key survives a restart: it is unsealed from tpm.json.
	k2 := openTestTPM(t, sim, dir)
	if got, err := k2.Open(ctx, sealed, []byte("aad")); err != nil || string(got) != "pin hash" {
		t.Fatalf("Open after reopen = %q, %v", got, err)
	}
	if s2, _ := k2.CredentialSecret(ctx, []byte("id"), "label"); !bytes.Equal(s1, s2) || len(s1) != 32 {
		t.Error("CredentialSecret changed across a restart")
	}
	// Another state directory on the same TPM has another master key.
	k3 := openTestTPM(t, sim, t.TempDir())
	if _, err := k3.Open(ctx, sealed, []byte("aad")); err == nil {
		t.Error("another state directory opened sealed data")
	}
}

// TestTPMReboot: after a TPM restart (all handles gone) and a process
// restart, credentials still sign.
func TestTPMReboot(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k, id := tpmWithCredential(t, sim, dir)
	if err := sim.Reset(); err != nil {
		t.Fatal(err)
	}
	// The cached SRK handle is gone: Sign re-creates the SRK and retries.
	if err := signVerify(k, id); err != nil {
		t.Fatalf("after TPM reset: %v", err)
	}
	// NewCredential also recovers.
	if err := sim.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, nil); err != nil {
		t.Fatalf("NewCredential after TPM reset: %v", err)
	}
	k.Close()
	if err := sim.Reset(); err != nil {
		t.Fatal(err)
	}
	k2 := openTestTPM(t, sim, dir)
	if err := signVerify(k2, id); err != nil {
		t.Fatalf("after process restart: %v", err)
	}
}

// TestTPMReconnect: a dropped connection is reopened and the command
// retried once; a TPM that stays away is ErrTPMUnavailable.
func TestTPMReconnect(t *testing.T) {
	sim := newSim(t)
	k, id := tpmWithCredential(t, sim, t.TempDir())
	opens := sim.opens
	sim.conn.dropNext()
	if err := signVerify(k, id); err != nil {
		t.Fatalf("after a dropped connection: %v", err)
	}
	if sim.opens != opens+1 {
		t.Errorf("reconnected %d times, want 1", sim.opens-opens)
	}
	sim.conn.dropNext()
	sim.down = true
	if err := signVerify(k, id); !errors.Is(err, ErrTPMUnavailable) {
		t.Fatalf("TPM down: %v, want ErrTPMUnavailable", err)
	}
	sim.down = false
	if err := signVerify(k, id); err != nil {
		t.Fatalf("TPM back: %v", err)
	}
}

// TestTPMManufactureReset: a cleared TPM (new seeds) makes old credentials
// fail with ErrTPMMismatch, at run time and at start, and nothing is
// replaced silently.
func TestTPMManufactureReset(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k, id := tpmWithCredential(t, sim, dir)
	before, err := os.ReadFile(filepath.Join(dir, TPMStateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.ManufactureReset(); err != nil {
		t.Fatal(err)
	}
	err = signVerify(k, id)
	if !errors.Is(err, ErrTPMMismatch) {
		t.Fatalf("Sign after a TPM clear = %v, want ErrTPMMismatch", err)
	}
	t.Logf("the error reads: %v", err)
	if _, _, err := k.Signer(ctx, id, exampleRP); !errors.Is(err, ErrTPMMismatch) {
		t.Errorf("Signer after mismatch = %v, want ErrTPMMismatch", err)
	}
	if _, _, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, nil); !errors.Is(err, ErrTPMMismatch) {
		t.Errorf("NewCredential after mismatch = %v, want ErrTPMMismatch", err)
	}
	k.Close()
	_, err = OpenTPM(ctx, dir, sim.opener())
	if !errors.Is(err, ErrTPMMismatch) {
		t.Fatalf("OpenTPM on a cleared TPM = %v, want ErrTPMMismatch", err)
	}
	after, err := os.ReadFile(filepath.Join(dir, TPMStateFileName))
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("tpm.json changed after a mismatch (%v)", err)
	}
}

func TestTPMBadIDs(t *testing.T) {
	sim := newSim(t)
	k, id := tpmWithCredential(t, sim, t.TempDir())
	good, _, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 30, 100, 200, len(id) - 1} {
		bad := bytes.Clone(id)
		bad[i] ^= 0x40
		if _, _, err := k.Signer(ctx, bad, exampleRP); !errors.Is(err, ErrUnknownCredential) {
			t.Errorf("ID with byte %d flipped: %v, want ErrUnknownCredential", i, err)
		}
	}
	for _, bad := range [][]byte{nil, id[:len(id)-1], append(bytes.Clone(id), 0), randBytes(len(id))} {
		if _, _, err := k.Signer(ctx, bad, exampleRP); !errors.Is(err, ErrUnknownCredential) {
			t.Errorf("ID of %d bytes: %v, want ErrUnknownCredential", len(bad), err)
		}
	}
	if _, _, err := k.Signer(ctx, id, rpHash("evil.example")); !errors.Is(err, ErrUnknownCredential) {
		t.Errorf("ID for another RP: %v, want ErrUnknownCredential", err)
	}
	if _, _, err := k.Signer(ctx, id, exampleRP[:31]); !errors.Is(err, ErrUnknownCredential) {
		t.Errorf("short rpIDHash: %v", err)
	}
	// The good credential is unaffected.
	if err := signVerify(k, good); err != nil {
		t.Errorf("good credential: %v", err)
	}
	// An ID from another state directory (another master key) on the same TPM.
	other := openTestTPM(t, sim, t.TempDir())
	if _, _, err := other.Signer(ctx, id, exampleRP); !errors.Is(err, ErrUnknownCredential) {
		t.Errorf("another master key opened the ID: %v", err)
	}
	// Software IDs are not TPM IDs.
	sw := newTestStore(t)
	swID, _, err := sw.NewCredential(ctx, cose.AlgES256, exampleRP, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.Signer(ctx, swID, exampleRP); !errors.Is(err, ErrUnknownCredential) {
		t.Errorf("a software ID opened: %v", err)
	}
	if _, _, err := k.NewCredential(ctx, cose.AlgES256, exampleRP[:5], nil); err == nil {
		t.Error("NewCredential accepted a short rpIDHash")
	}
	if _, _, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, make([]byte, 17)); err == nil {
		t.Error("NewCredential accepted 17 bytes of meta")
	}
}

// TestTPMTamperedBlobs: blobs that authenticate but that the TPM rejects
// (here: a TPM2B_PRIVATE of another key, as a corrupted or foreign blob
// would be) fail for that credential only.
func TestTPMTamperedBlobs(t *testing.T) {
	sim := newSim(t)
	k, id1 := tpmWithCredential(t, sim, t.TempDir())
	id2, _, _ := k.NewCredential(ctx, cose.AlgES256, exampleRP, nil)
	s1, _, err := k.openTPMCredential(k.currentKeys(), id1, exampleRP)
	if err != nil {
		t.Fatal(err)
	}
	s2, _, _ := k.openTPMCredential(k.currentKeys(), id2, exampleRP)
	swapped := &tpmSigner{t: k, pub: s1.pub, blobs: keyBlobs{public: s1.blobs.public, private: s2.blobs.private}}
	d := sha256.Sum256(nil)
	if _, err := swapped.Sign(nil, d[:], crypto.SHA256); err == nil {
		t.Fatal("mismatched blobs signed")
	}
	if err := signVerify(k, id1); err != nil {
		t.Errorf("after a failed load: %v", err)
	}
}

func TestTPMResetKeys(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k, id := tpmWithCredential(t, sim, dir)
	sealed, _ := k.Seal(ctx, []byte("x"), nil)
	if err := k.ResetKeys(ctx); err != nil {
		t.Fatalf("ResetKeys: %v", err)
	}
	if _, _, err := k.Signer(ctx, id, exampleRP); !errors.Is(err, ErrUnknownCredential) {
		t.Errorf("old ID after ResetKeys: %v", err)
	}
	if _, err := k.Open(ctx, sealed, nil); err == nil {
		t.Error("old sealed data opened after ResetKeys")
	}
	id2, _, err := k.NewCredential(ctx, cose.AlgES256, exampleRP, nil)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	k2 := openTestTPM(t, sim, dir)
	if err := signVerify(k2, id2); err != nil {
		t.Errorf("new ID after restart: %v", err)
	}
	if _, _, err := k2.Signer(ctx, id, exampleRP); err == nil {
		t.Error("old ID opened after restart")
	}
	if m := mode(t, filepath.Join(dir, TPMStateFileName)); m != 0o600 {
		t.Errorf("tpm.json mode %04o after ResetKeys", m)
	}
}

// TestTPMStateDir: tpm.json is 0600 and holds TPM blobs only: the master
// key (unsealed here by hand) appears nowhere in the state directory.
func TestTPMStateDir(t *testing.T) {
	sim := newSim(t)
	dir := filepath.Join(t.TempDir(), "state")
	k := openTestTPM(t, sim, dir)
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("state dir mode %04o", m)
	}
	path := filepath.Join(dir, TPMStateFileName)
	if m := mode(t, path); m != 0o600 {
		t.Errorf("tpm.json mode %04o", m)
	}
	st, err := readTPMState(dir)
	if err != nil || st == nil {
		t.Fatalf("readTPMState: %v", err)
	}
	var master []byte
	if err := k.do(func(tpm transport.TPM, parent *srk) (err error) {
		master, err = unseal(tpm, parent, &keyBlobs{public: st.MasterPublic, private: st.MasterPrivate})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if bytes.Contains(b, master) {
			t.Errorf("%s contains the master key", e.Name())
		}
	}
	if !bytes.Equal(st.SRKName, k.pinned) || len(st.SRKName) != 34 {
		t.Errorf("pinned SRK Name %x", st.SRKName)
	}
	// A state directory of the software store is refused, and vice versa
	// the TPM files are not a software key file.
	swDir := t.TempDir()
	if _, err := OpenSoftware(swDir); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTPM(context.Background(), swDir, sim.opener()); err == nil {
		t.Error("OpenTPM accepted a software state directory")
	}
	// A tpm.json readable by others is refused.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	k.Close()
	if _, err := OpenTPM(context.Background(), dir, sim.opener()); err == nil {
		t.Error("OpenTPM accepted a world-readable tpm.json")
	}
}

// TestTPMPersistentSRK: a persistent SRK at 0x81000001 is used when its Name
// is the pinned one, and ignored otherwise.
func TestTPMPersistentSRK(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k, id := tpmWithCredential(t, sim, dir)
	k.Close()

	tpm := transport.FromReadWriter(sim)
	// evict makes the object persistent at persistentSRK, or, given the
	// persistent object itself, removes it.
	evict := func(object tpm2.NamedHandle) {
		t.Helper()
		if _, err := (tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			ObjectHandle:     object,
			PersistentHandle: persistentSRK,
		}).Execute(tpm); err != nil {
			t.Fatalf("EvictControl: %v", err)
		}
	}
	persist := func(tmpl tpm2.TPMTPublic) {
		t.Helper()
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tmpl),
		}.Execute(tpm)
		if err != nil {
			t.Fatal(err)
		}
		defer flush(tpm, rsp.ObjectHandle)
		evict(tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name})
	}
	unpersist := func() {
		t.Helper()
		pub, err := tpm2.ReadPublic{ObjectHandle: persistentSRK}.Execute(tpm)
		if err != nil {
			t.Fatal(err)
		}
		evict(tpm2.NamedHandle{Handle: persistentSRK, Name: pub.Name})
	}

	persist(tpm2.ECCSRKTemplate)
	k2 := openTestTPM(t, sim, dir)
	if !k2.srk.persistent {
		t.Error("the matching persistent SRK was not used")
	}
	if err := signVerify(k2, id); err != nil {
		t.Fatal(err)
	}
	k2.Close()
	unpersist()

	persist(tpm2.RSASRKTemplate) // another key at the same handle
	k3 := openTestTPM(t, sim, dir)
	if k3.srk.persistent {
		t.Error("a persistent SRK with another Name was used")
	}
	if err := signVerify(k3, id); err != nil {
		t.Fatal(err)
	}
	k3.Close()
	unpersist()
}

func TestTPMUnavailable(t *testing.T) {
	open := func() (transport.TPMCloser, error) { return nil, errors.New("open /dev/tpmrm0: permission denied") }
	_, err := OpenTPM(context.Background(), t.TempDir(), open)
	if !errors.Is(err, ErrTPMUnavailable) {
		t.Fatalf("OpenTPM = %v, want ErrTPMUnavailable", err)
	}
	if _, err := OpenerFor("ftp://x"); err == nil {
		t.Error("OpenerFor accepted ftp://")
	}
	o, err := OpenerFor("tcp://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o(); err == nil {
		t.Error("connected to 127.0.0.1:1")
	}
}

func TestTPMConcurrentSigners(t *testing.T) {
	sim := newSim(t)
	k, id := tpmWithCredential(t, sim, t.TempDir())
	runConcurrently(t, 4, func(int) error {
		for range 3 {
			if err := signVerify(k, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// BenchmarkTPMSimSign is Signer + Sign (Load, Sign, Flush) on the simulator.
func BenchmarkTPMSimSign(b *testing.B) {
	sim := newSim(b)
	k, id := tpmWithCredential(b, sim, b.TempDir())
	d := sha256.Sum256(nil)
	for b.Loop() {
		s, _, err := k.Signer(ctx, id, exampleRP)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
