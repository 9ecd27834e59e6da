package ctap2

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/virtkey/virtkey/cose"
)

// memStore is an in-memory Store for unit tests and fuzzing.
type memStore struct {
	mu       sync.Mutex
	creds    map[string][]byte
	rpOf     map[string]string
	counters map[string]uint32
	settings map[string][]byte
}

func newMemStore() *memStore {
	return &memStore{creds: map[string][]byte{}, rpOf: map[string]string{}, counters: map[string]uint32{}, settings: map[string][]byte{}}
}

func (m *memStore) PutCredential(id, rpIDHash, record []byte, replaces ...[]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, old := range replaces {
		delete(m.creds, string(old))
		delete(m.rpOf, string(old))
		delete(m.counters, string(old))
	}
	m.creds[string(id)] = bytes.Clone(record)
	m.rpOf[string(id)] = string(rpIDHash)
	return nil
}

func (m *memStore) Credential(id []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.creds[string(id)]
	return r, ok, nil
}

// listKey orders an RP's credentials as the store does: newest first,
// then by a hash of the ID. listed is false for an unlisted record.
func (m *memStore) listKey(id string) (key []byte, hidden, listed bool) {
	x, _ := IndexRecord(m.creds[id])
	h := sha256.Sum256([]byte(id))
	return append(binary.BigEndian.AppendUint64(nil, ^(uint64(x.Created)^(1<<63))), h[:16]...), x.Hidden, !x.Unlisted
}

// listed is the IDs of rpIDHash's listed credentials.
func (m *memStore) listed(rpIDHash []byte) []string {
	var out []string
	for id, rp := range m.rpOf {
		if _, _, ok := m.listKey(id); ok && rp == string(rpIDHash) {
			out = append(out, id)
		}
	}
	return out
}

func (m *memStore) CredentialsOfUser(rpIDHash, userID []byte) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]byte
	for _, id := range m.listed(rpIDHash) {
		if x, _ := IndexRecord(m.creds[id]); bytes.Equal(x.UserID, userID) {
			out = append(out, m.creds[id])
		}
	}
	return out, nil
}

func (m *memStore) NextCredentialOfRP(rpIDHash, cursor []byte, withHidden bool) ([]byte, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best, bestKey []byte
	for _, id := range m.listed(rpIDHash) {
		k, hidden, _ := m.listKey(id)
		if (hidden && !withHidden) || (cursor != nil && bytes.Compare(k, cursor) <= 0) {
			continue
		}
		if bestKey == nil || bytes.Compare(k, bestKey) < 0 {
			best, bestKey = m.creds[id], k
		}
	}
	return best, bestKey, nil
}

func (m *memStore) CountOfRP(rpIDHash []byte) (all, visible int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range m.listed(rpIDHash) {
		all++
		if _, hidden, _ := m.listKey(id); !hidden {
			visible++
		}
	}
	return all, visible, nil
}

// rps is the RPs with a listed credential, sorted.
func (m *memStore) rps() []string {
	seen := map[string]bool{}
	for id, rp := range m.rpOf {
		if _, _, ok := m.listKey(id); ok {
			seen[rp] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

func (m *memStore) NextRP(cursor []byte) ([]byte, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rp := range m.rps() {
		if cursor != nil && rp <= string(cursor) {
			continue
		}
		var best, bestKey []byte
		for _, id := range m.listed([]byte(rp)) {
			if k, _, _ := m.listKey(id); bestKey == nil || bytes.Compare(k, bestKey) < 0 {
				best, bestKey = m.creds[id], k
			}
		}
		return best, []byte(rp), nil
	}
	return nil, nil, nil
}

func (m *memStore) CountRPs() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rps()), nil
}

func (m *memStore) Credentials() ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]byte
	for _, r := range m.creds {
		out = append(out, bytes.Clone(r))
	}
	return out, nil
}

func (m *memStore) DeleteCredential(id []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.creds, string(id))
	delete(m.rpOf, string(id))
	return nil
}

func (m *memStore) CountCredentials() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.creds), nil
}

func (m *memStore) NextCounter(id []byte) (uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters[string(id)]++
	return m.counters[string(id)], nil
}

func (m *memStore) Setting(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settings[name], nil
}

func (m *memStore) PutSetting(name string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v == nil {
		delete(m.settings, name)
	} else {
		m.settings[name] = bytes.Clone(v)
	}
	return nil
}

func (m *memStore) Wipe() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.creds, m.rpOf, m.counters, m.settings = map[string][]byte{}, map[string]string{}, map[string]uint32{}, map[string][]byte{}
	return nil
}

// memKeys is an in-memory KeyStore: IDs are random handles into a map.
type memKeys struct {
	mu   sync.Mutex
	keys map[string]memKey
}

type memKey struct {
	signer   crypto.Signer
	rpIDHash []byte
	meta     []byte
}

func newMemKeys() *memKeys { return &memKeys{keys: map[string]memKey{}} }

func (k *memKeys) NewCredential(_ context.Context, alg cose.Algorithm, rpIDHash, meta []byte) ([]byte, crypto.PublicKey, error) {
	var s crypto.Signer
	switch alg {
	case cose.AlgES256:
		s, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case cose.AlgEdDSA:
		_, s, _ = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, nil, errors.New("unsupported")
	}
	id := make([]byte, 48)
	rand.Read(id)
	k.mu.Lock()
	k.keys[string(id)] = memKey{s, bytes.Clone(rpIDHash), bytes.Clone(meta)}
	k.mu.Unlock()
	return id, s.Public(), nil
}

func (k *memKeys) Signer(_ context.Context, id, rpIDHash []byte) (crypto.Signer, []byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	mk, ok := k.keys[string(id)]
	if !ok || !bytes.Equal(mk.rpIDHash, rpIDHash) {
		return nil, nil, errors.New("unknown credential")
	}
	return mk.signer, mk.meta, nil
}

func (k *memKeys) Algorithms() []cose.Algorithm {
	return []cose.Algorithm{cose.AlgES256, cose.AlgEdDSA}
}
func (k *memKeys) MaxCredentialIDLength() int { return 48 }

func (k *memKeys) ResetKeys(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = map[string]memKey{}
	return nil
}

func rpHash(id string) []byte { h := sha256.Sum256([]byte(id)); return h[:] }

// Seal and Open make memKeys a Sealer (a test fake: XOR with a fixed pad
// plus the AAD as a check; not cryptography).
func (k *memKeys) Seal(_ context.Context, pt, aad []byte) ([]byte, error) {
	out := append(append([]byte{byte(len(aad))}, aad...), pt...)
	for i := 1 + len(aad); i < len(out); i++ {
		out[i] ^= 0x5A
	}
	return out, nil
}

func (k *memKeys) Open(_ context.Context, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+len(aad) || int(sealed[0]) != len(aad) || !bytes.Equal(sealed[1:1+len(aad)], aad) {
		return nil, errors.New("does not open")
	}
	out := bytes.Clone(sealed[1+len(aad):])
	for i := range out {
		out[i] ^= 0x5A
	}
	return out, nil
}

// CredentialSecret makes memKeys a SecretDeriver.
func (k *memKeys) CredentialSecret(_ context.Context, id []byte, label string) ([]byte, error) {
	h := sha256.Sum256(append(append([]byte(label), 0), id...))
	return h[:], nil
}
