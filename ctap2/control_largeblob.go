package ctap2

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
)

// largeBlobEntry is one element of the large-blob array (CTAP 2.1 §6.10.3).
type largeBlobEntry struct {
	Ciphertext Bytes  `cbor:"1,keyasint"`
	Nonce      Bytes  `cbor:"2,keyasint"`
	OrigSize   uint64 `cbor:"3,keyasint"`
}

// maxLargeBlobOrigSize bounds what a controller's blob inflates to.
const maxLargeBlobOrigSize = 64 << 10

func largeBlobAD(origSize uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte("blob"), origSize)
}

// largeBlobEntries splits the stored array into its raw entries.
func (a *Authenticator) largeBlobEntries() ([]RawMessage, error) {
	arr, err := a.largeBlobArray()
	if err != nil {
		return nil, err
	}
	var entries []RawMessage
	if len(arr) < minLargeBlobArray || decode(arr[:len(arr)-largeBlobChecksumLen], &entries) != nil {
		return nil, nil // a corrupt array reads as empty, as platforms treat it
	}
	return entries, nil
}

// openLargeBlob decrypts entry with key; ok is false if it is not key's.
func openLargeBlob(gcm cipher.AEAD, raw RawMessage) ([]byte, bool) {
	var e largeBlobEntry
	if decode(raw, &e) != nil || len(e.Nonce) != gcm.NonceSize() || e.OrigSize > maxLargeBlobOrigSize {
		return nil, false
	}
	pt, err := gcm.Open(nil, e.Nonce, e.Ciphertext, largeBlobAD(e.OrigSize))
	if err != nil {
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(pt)), maxLargeBlobOrigSize+1))
	if err != nil || uint64(len(out)) != e.OrigSize {
		return nil, false
	}
	return out, true
}

func (a *Authenticator) largeBlobCipher(ctx context.Context, id []byte) (cipher.AEAD, error) {
	key, err := a.credentialSecret(ctx, id, labelLargeBlobKey)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// largeBlobOf returns credential id's large blob among entries (the
// array's, read once by the caller), or nil.
func (a *Authenticator) largeBlobOf(ctx context.Context, id []byte, entries []RawMessage) ([]byte, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	gcm, err := a.largeBlobCipher(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, raw := range entries {
		if blob, ok := openLargeBlob(gcm, raw); ok {
			return blob, nil
		}
	}
	return nil, nil
}

// putLargeBlob replaces credential id's entry of the large-blob array
// with blob, as a platform would (compressed, then encrypted with the
// credential's largeBlobKey), in one atomic write.
func (a *Authenticator) putLargeBlob(ctx context.Context, id, blob []byte) error {
	gcm, err := a.largeBlobCipher(ctx, id)
	if err != nil {
		return err
	}
	entries, err := a.largeBlobEntries()
	if err != nil {
		return err
	}
	kept := entries[:0]
	for _, raw := range entries {
		if _, mine := openLargeBlob(gcm, raw); !mine {
			kept = append(kept, raw)
		}
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write(blob)
	w.Close()
	e := largeBlobEntry{Nonce: make([]byte, gcm.NonceSize()), OrigSize: uint64(len(blob))}
	rand.Read(e.Nonce)
	e.Ciphertext = gcm.Seal(nil, e.Nonce, z.Bytes(), largeBlobAD(e.OrigSize))
	raw, err := encode(&e)
	if err != nil {
		return err
	}
	arr, err := encode(append(kept, raw))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(arr)
	arr = append(arr, sum[:largeBlobChecksumLen]...)
	if len(arr) > MaxSerializedLargeBlobArray {
		return badImport("largeBlob: the key's large-blob array holds at most %d bytes", MaxSerializedLargeBlobArray)
	}
	return a.cfg.Store.PutSetting(settingLargeBlobArray, arr)
}
