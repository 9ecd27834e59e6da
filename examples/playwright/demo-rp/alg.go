package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

	"github.com/virtkey/virtkey/cose"
)

// algorithmOf names the COSE algorithm a public key signs with.
func algorithmOf(pub crypto.PublicKey) (cose.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return cose.AlgES256, nil
		case elliptic.P384():
			return cose.AlgES384, nil
		}
	case ed25519.PublicKey:
		return cose.AlgEdDSA, nil
	case *rsa.PublicKey:
		return cose.AlgRS256, nil
	}
	return 0, fmt.Errorf("unsupported public key %T", pub)
}
