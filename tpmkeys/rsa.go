package tpmkeys

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha3"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
)

// RS256 credentials (RSASSA-PKCS1-v1_5 with SHA-256, RSA-2048).
//
// The primes of an RSA-2048 key take 256 bytes; wrapped, they would make a
// 316-byte credential ID, and 32 such IDs (maxCredentialCountInList) do not
// fit a 7609-byte CTAP message. So an RS256 credential ID carries a 32-byte
// seed instead, from which the key is derived deterministically:
//
//	candidate(label) = SHAKE-256(infoRSAPrime ‖ label ‖ seed), 128 bytes,
//	                   with the top two bits and the low bit set
//	p = candidate("p") + 2·stepsP,  q = candidate("q") + 2·stepsQ
//
// where p (q) is the first probable prime (Baillie-PSW plus 20 Miller-Rabin
// rounds, math/big's ProbablyPrime(20)) at or after the candidate with
// gcd(e, p−1) = 1, e = 65537. The top two bits make n = p·q exactly 2048
// bits. The seed is fresh from crypto/rand for each credential and retried
// in the (never observed) case that the primes are closer than 2^924
// (FIPS 186-5 A.1.3) or the search runs out of steps. The private key
// material in the ID is
//
//	seed (32) ‖ stepsP (uint32, big-endian) ‖ stepsQ (uint32, big-endian)
//
// 40 bytes, so RS256 IDs are 100 bytes and MaxCredentialIDLength stays
// that of ES384 (108). Recording the step counts means opening an ID costs
// two SHAKE-256 calls and the CRT precomputation, not a prime search; the
// AEAD authenticates them, so they are not re-tested for primality.
//
// The key has 256 bits of entropy (the seed), more than RSA-2048's 112-bit
// security level. Like crypto/rsa's own GenerateKey, the prime search and
// the private exponent computation use math/big, which is not constant
// time; signing uses crypto/rsa's constant-time code.
const (
	rsaBits      = 2048
	rsaPrimeLen  = rsaBits / 16 // bytes per prime
	rsaSeedSize  = 32
	rsaPrivLen   = rsaSeedSize + 4 + 4
	rsaExponent  = 65537
	rsaMaxSteps  = 1 << 16 // candidates tried per prime before a new seed
	infoRSAPrime = "virtkey tpmkeys v1: RS256 prime "
)

// rsaSmallPrimes are the odd primes below 2^12, for sieving candidates
// before the expensive primality test.
var rsaSmallPrimes = func() []uint32 {
	const limit = 1 << 12
	composite := make([]bool, limit)
	var ps []uint32
	for i := 3; i < limit; i += 2 {
		if composite[i] {
			continue
		}
		ps = append(ps, uint32(i))
		for j := i * i; j < limit; j += 2 * i {
			composite[j] = true
		}
	}
	return ps
}()

// rsaCandidate is the start of the search for the prime labelled label.
func rsaCandidate(seed []byte, label byte) *big.Int {
	in := make([]byte, 0, len(infoRSAPrime)+1+len(seed))
	in = append(in, infoRSAPrime...)
	in = append(in, label)
	in = append(in, seed...)
	b := sha3.SumSHAKE256(in, rsaPrimeLen)
	b[0] |= 0xC0
	b[len(b)-1] |= 1
	defer clear(b)
	return new(big.Int).SetBytes(b)
}

// rsaSearch finds the first usable prime candidate+2k and returns it with k.
func rsaSearch(seed []byte, label byte) (*big.Int, uint32, bool) {
	c := rsaCandidate(seed, label)
	mods := make([]uint32, len(rsaSmallPrimes))
	m := new(big.Int)
	for i, sp := range rsaSmallPrimes {
		mods[i] = uint32(m.Mod(c, big.NewInt(int64(sp))).Uint64())
	}
	modE := uint32(m.Mod(c, big.NewInt(rsaExponent)).Uint64())
	x := new(big.Int)
next:
	for k := uint32(0); k < rsaMaxSteps; k++ {
		step := 2 * uint64(k)
		// gcd(e, x−1) = 1 ⇔ x ≢ 1 (mod e), e being prime.
		if (uint64(modE)+step)%rsaExponent == 1 {
			continue
		}
		for i, sp := range rsaSmallPrimes {
			if (uint64(mods[i])+step)%uint64(sp) == 0 {
				continue next
			}
		}
		x.Add(c, new(big.Int).SetUint64(step))
		if x.BitLen() != rsaPrimeLen*8 {
			return nil, 0, false
		}
		if x.ProbablyPrime(20) {
			return x, k, true
		}
	}
	return nil, 0, false
}

// genRSA makes an RS256 key and its 40-byte private encoding.
func genRSA() (crypto.Signer, []byte, error) {
	for range 8 {
		raw := make([]byte, rsaPrivLen)
		rand.Read(raw[:rsaSeedSize])
		p, kp, ok := rsaSearch(raw[:rsaSeedSize], 'p')
		if !ok {
			continue
		}
		q, kq, ok := rsaSearch(raw[:rsaSeedSize], 'q')
		if !ok {
			continue
		}
		if new(big.Int).Sub(p, q).BitLen() <= rsaPrimeLen*8-100 {
			continue // |p−q| too small (FIPS 186-5 A.1.3)
		}
		binary.BigEndian.PutUint32(raw[rsaSeedSize:], kp)
		binary.BigEndian.PutUint32(raw[rsaSeedSize+4:], kq)
		k, err := rsaKey(p, q)
		if err != nil {
			return nil, nil, err
		}
		return k, raw, nil
	}
	return nil, nil, errors.New("no RSA key after 8 seeds")
}

// loadRSA rebuilds an RS256 key from its private encoding.
func loadRSA(raw []byte) (crypto.Signer, error) {
	if len(raw) != rsaPrivLen {
		return nil, errors.New("bad RS256 key length")
	}
	seed := raw[:rsaSeedSize]
	kp := binary.BigEndian.Uint32(raw[rsaSeedSize:])
	kq := binary.BigEndian.Uint32(raw[rsaSeedSize+4:])
	if kp >= rsaMaxSteps || kq >= rsaMaxSteps {
		return nil, errors.New("bad RS256 prime offset")
	}
	p := rsaCandidate(seed, 'p')
	p.Add(p, big.NewInt(2*int64(kp)))
	q := rsaCandidate(seed, 'q')
	q.Add(q, big.NewInt(2*int64(kq)))
	return rsaKey(p, q)
}

// rsaKey assembles, precomputes and validates the key with primes p and q.
func rsaKey(p, q *big.Int) (*rsa.PrivateKey, error) {
	one := big.NewInt(1)
	n := new(big.Int).Mul(p, q)
	if n.BitLen() != rsaBits {
		return nil, fmt.Errorf("RS256 modulus of %d bits", n.BitLen())
	}
	p1 := new(big.Int).Sub(p, one)
	q1 := new(big.Int).Sub(q, one)
	g := new(big.Int).GCD(nil, nil, p1, q1)
	lambda := new(big.Int).Mul(p1, q1)
	lambda.Div(lambda, g)
	d := new(big.Int).ModInverse(big.NewInt(rsaExponent), lambda)
	if d == nil {
		return nil, errors.New("RS256 exponent not invertible")
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: rsaExponent}, D: d, Primes: []*big.Int{p, q}}
	k.Precompute()
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("RS256 key: %w", err)
	}
	return k, nil
}
