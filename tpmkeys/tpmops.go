package tpmkeys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// This file holds the TPM commands TPM uses, one small function each, all
// with the tpm2 API of go-tpm. Callers hold TPM.mu.

// persistentSRK is the TCG-recommended handle of a persistent storage root
// key (TCG TPM v2.0 Provisioning Guidance §7.8). virtkey only reads it and
// never evicts or writes it.
const persistentSRK tpm2.TPMHandle = 0x81000001

// srkTemplate is the TCG reference ECC P-256 SRK template (the one
// tpm2-tools and tpm2-tss-engine use), so a persistent SRK provisioned by
// other tools has the same Name as the one CreatePrimary re-creates.
var srkTemplate = tpm2.ECCSRKTemplate

// signingTemplate is the template of every credential key: an unrestricted
// ECDSA P-256 / SHA-256 signing key generated inside the TPM (sensitiveDataOrigin),
// never duplicable (fixedTPM, fixedParent), used with an empty auth value
// (userWithAuth) and exempt from dictionary-attack lockout (noDA): the key
// is only reachable through a credential ID that the master key
// authenticates, and a wrong guess must never lock the user's TPM.
var signingTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
}

// sealTemplate is the template of the sealed master key: a keyedhash data
// object (TPM2_Unseal returns it) bound to this TPM and parent, with an
// empty auth value and noDA. Its data is supplied by the caller, so
// sensitiveDataOrigin is clear.
var sealTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:     true,
		FixedParent:  true,
		UserWithAuth: true,
		NoDA:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

// srk is a loaded storage root key.
type srk struct {
	handle     tpm2.TPMHandle
	name       tpm2.TPM2BName
	public     tpm2.TPMTPublic
	persistent bool // at persistentSRK: never flushed
}

func (k *srk) auth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)}
}

// encrypted is an auth session for the SRK's children that is salted with
// the SRK and encrypts the first command or response parameter (AES-128
// CFB). Only the holder of the SRK's private key can compute its session
// key, so it also proves we talk to the TPM whose SRK Name we pinned.
func (k *srk) encrypted(dir tpm2.AuthOption) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(k.handle, k.public), dir)
}

// readPersistentSRK returns the persistent SRK if its Name is want.
func readPersistentSRK(t transport.TPM, want []byte) (*srk, bool) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: persistentSRK}.Execute(t)
	if err != nil {
		return nil, false
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, false
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil || !bytes.Equal(name.Buffer, want) || !bytes.Equal(rsp.Name.Buffer, want) {
		return nil, false
	}
	return &srk{handle: persistentSRK, name: *name, public: *pub, persistent: true}, true
}

// createSRK re-creates the ECC P-256 SRK in the owner hierarchy (empty
// owner auth). The TPM derives it from its storage primary seed, so the
// Name is the same on every call until the TPM is cleared.
func createSRK(t transport.TPM) (*srk, error) {
	cmd := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(srkTemplate),
	}
	rsp, err := cmd.Execute(t)
	if errors.Is(err, tpm2.TPMRCInitialize) {
		// A TPM (or swtpm) that nobody started: start it, once.
		if _, serr := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(t); serr != nil {
			return nil, fmt.Errorf("TPM2_Startup: %w", serr)
		}
		rsp, err = cmd.Execute(t)
	}
	if err != nil {
		if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
			return nil, fmt.Errorf("creating the storage root key: the TPM's owner hierarchy has a password (%w); "+
				"provision a persistent ECC P-256 SRK at 0x81000001 with the TCG template, or clear the owner password", err)
		}
		return nil, fmt.Errorf("creating the storage root key: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return nil, fmt.Errorf("storage root key: %w", err)
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, public: *pub}, nil
}

// flush frees a transient handle, ignoring errors (the handle may be gone
// after a TPM restart).
func flush(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// keyBlobs are a TPM object's TPM2B_PUBLIC and TPM2B_PRIVATE contents
// (without their size fields), as TPM2_Create returns them.
type keyBlobs struct {
	public  []byte
	private []byte
}

// createSigningKey makes a new credential key under parent.
func createSigningKey(t transport.TPM, parent *srk) (*keyBlobs, *ecdsa.PublicKey, error) {
	rsp, err := tpm2.Create{ParentHandle: parent.auth(), InPublic: tpm2.New2B(signingTemplate)}.Execute(t)
	if err != nil {
		return nil, nil, fmt.Errorf("TPM2_Create (signing key): %w", err)
	}
	b := &keyBlobs{public: bytes.Clone(rsp.OutPublic.Bytes()), private: bytes.Clone(rsp.OutPrivate.Buffer)}
	pub, err := signingPublic(b.public)
	if err != nil {
		return nil, nil, err
	}
	return b, pub, nil
}

// signingPublic parses and checks a credential key's TPMT_PUBLIC.
func signingPublic(public []byte) (*ecdsa.PublicKey, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](public)
	if err != nil {
		return nil, fmt.Errorf("TPM public area: %w", err)
	}
	if p.Type != tpm2.TPMAlgECC || p.NameAlg != tpm2.TPMAlgSHA256 || p.ObjectAttributes != signingTemplate.ObjectAttributes {
		return nil, errors.New("TPM public area is not a virtkey signing key")
	}
	parms, err := p.Parameters.ECCDetail()
	if err != nil || parms.CurveID != tpm2.TPMECCNistP256 || parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return nil, errors.New("TPM public area is not an ECDSA P-256 key")
	}
	pt, err := p.Unique.ECC()
	if err != nil || len(pt.X.Buffer) > 32 || len(pt.Y.Buffer) > 32 {
		return nil, errors.New("TPM public area: bad ECC point")
	}
	raw := make([]byte, 65)
	raw[0] = 4
	copy(raw[1+32-len(pt.X.Buffer):33], pt.X.Buffer)
	copy(raw[33+32-len(pt.Y.Buffer):], pt.Y.Buffer)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("TPM public key: %w", err)
	}
	return pub, nil
}

// load loads blobs under parent and returns the transient handle.
func load(t transport.TPM, parent *srk, b *keyBlobs) (tpm2.AuthHandle, error) {
	rsp, err := tpm2.Load{
		ParentHandle: parent.auth(),
		InPrivate:    tpm2.TPM2BPrivate{Buffer: b.private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](b.public),
	}.Execute(t)
	if err != nil {
		return tpm2.AuthHandle{}, fmt.Errorf("TPM2_Load: %w", err)
	}
	return tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}, nil
}

// signDigest is Load, Sign, Flush: an ECDSA signature over a SHA-256
// digest, DER-encoded (SEC 1 §C.5, as crypto/ecdsa.SignASN1 returns it).
func signDigest(t transport.TPM, parent *srk, b *keyBlobs, digest []byte) ([]byte, error) {
	key, err := load(t, parent, b)
	if err != nil {
		return nil, err
	}
	defer flush(t, key.Handle)
	rsp, err := tpm2.Sign{
		KeyHandle: key,
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM2_Sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("TPM2_Sign: %w", err)
	}
	return derSignature(sig.SignatureR.Buffer, sig.SignatureS.Buffer)
}

// derSignature encodes ECDSA (r, s) as the ASN.1 Ecdsa-Sig-Value SEQUENCE.
func derSignature(r, s []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(r))
		b.AddASN1BigInt(new(big.Int).SetBytes(s))
	})
	return b.Bytes()
}

// createSealed seals data (the master key) under parent. The data travels
// to the TPM encrypted by a session salted with the SRK.
func createSealed(t transport.TPM, parent *srk, data []byte) (*keyBlobs, error) {
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: parent.handle, Name: parent.name, Auth: parent.encrypted(tpm2.AESEncryption(128, tpm2.EncryptIn))},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data}),
		}},
		InPublic: tpm2.New2B(sealTemplate),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM2_Create (sealed master key): %w", err)
	}
	return &keyBlobs{public: bytes.Clone(rsp.OutPublic.Bytes()), private: bytes.Clone(rsp.OutPrivate.Buffer)}, nil
}

// unseal is Load, Unseal, Flush of a sealed object; the data travels back
// encrypted by a session salted with the SRK.
func unseal(t transport.TPM, parent *srk, b *keyBlobs) ([]byte, error) {
	obj, err := load(t, parent, b)
	if err != nil {
		return nil, err
	}
	defer flush(t, obj.Handle)
	obj.Auth = parent.encrypted(tpm2.AESEncryption(128, tpm2.EncryptOut))
	rsp, err := tpm2.Unseal{ItemHandle: obj}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM2_Unseal: %w", err)
	}
	return rsp.OutData.Buffer, nil
}

// NV counters (TPM 2.0 Part 1 §37.2.3, Part 3 §31.8): the rollback
// reference of a TPM key store. An index of type TPM_NT_COUNTER holds 8
// bytes that TPM2_NV_Increment raises by one and nothing lowers; its first
// increment sets it to at least the highest value any counter of this TPM
// ever had, so deleting and re-creating it does not lower it either.

// Owner-defined NV indexes (TCG Registry of Reserved TPM 2.0 Handles and
// Localities, §2.2): virtkey picks a random handle in this range and
// records it in tpm.json.
const (
	nvOwnerFirst tpm2.TPMHandle = 0x01800000
	nvOwnerCount uint32         = 0x00400000
)

// nvCounterPublic is the public area of virtkey's counter: 8 bytes, read
// and incremented with its own empty auth value (AuthRead, AuthWrite) and
// exempt from dictionary-attack lockout; the owner can delete it.
func nvCounterPublic(h tpm2.TPMHandle) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: h,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			AuthWrite: true,
			AuthRead:  true,
			NT:        tpm2.TPMNTCounter,
			NoDA:      true,
		},
		DataSize: 8,
	}
}

// defineCounter defines a counter at a free random owner handle, with
// owner authorization (an empty owner password).
func defineCounter(t transport.TPM, random func() uint32) (tpm2.TPMHandle, error) {
	for range 8 {
		h := nvOwnerFirst + tpm2.TPMHandle(random()%nvOwnerCount)
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(nvCounterPublic(h)),
		}.Execute(t)
		if errors.Is(err, tpm2.TPMRCNVDefined) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("TPM2_NV_DefineSpace: %w", err)
		}
		return h, nil
	}
	return 0, errors.New("TPM2_NV_DefineSpace: no free NV index found")
}

// counterName returns the counter's current Name (it changes once the
// counter is written) after checking that h is still a virtkey counter: a
// counter that is not, or no longer, one of ours is an error.
func counterName(t transport.TPM, h tpm2.TPMHandle) (tpm2.TPM2BName, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("TPM2_NV_ReadPublic(%#x): %w", uint32(h), err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("TPM2_NV_ReadPublic(%#x): %w", uint32(h), err)
	}
	want := nvCounterPublic(h)
	got := pub.Attributes
	if pub.NameAlg != want.NameAlg || pub.DataSize != 8 || got.NT != tpm2.TPMNTCounter || !got.AuthWrite || !got.AuthRead || got.PolicyWrite || got.PPWrite || got.OwnerWrite {
		return tpm2.TPM2BName{}, fmt.Errorf("NV index %#x is not a virtkey counter (it was deleted and re-defined)", uint32(h))
	}
	return rsp.NVName, nil
}

func counterAuth(h tpm2.TPMHandle, name tpm2.TPM2BName) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: h, Name: name, Auth: tpm2.PasswordAuth(nil)}
}

// readCounter returns the counter's value (TPM_RC_NV_UNINITIALIZED before
// the first increment).
func readCounter(t transport.TPM, h tpm2.TPMHandle) (uint64, error) {
	name, err := counterName(t, h)
	if err != nil {
		return 0, err
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: counterAuth(h, name),
		NVIndex:    tpm2.NamedHandle{Handle: h, Name: name},
		Size:       8,
	}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("TPM2_NV_Read(%#x): %w", uint32(h), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("TPM2_NV_Read(%#x): %d bytes", uint32(h), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// incrementCounter raises the counter by one.
func incrementCounter(t transport.TPM, h tpm2.TPMHandle) error {
	name, err := counterName(t, h)
	if err != nil {
		return err
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: counterAuth(h, name),
		NVIndex:    tpm2.NamedHandle{Handle: h, Name: name},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_Increment(%#x): %w", uint32(h), err)
	}
	return nil
}
