package client

import (
	"errors"

	"github.com/fxamacker/cbor/v2"

	"github.com/virtkey/virtkey/ctap2"
)

// This is the only file of the client that builds the CBOR codec, from
// ctap2's options (ctap2/codec.go): requests are CTAP2-canonical (CTAP 2.1
// §8 "Message Encoding"); responses are decoded strictly (duplicate map
// keys, indefinite lengths, tags and more than four levels of nesting are
// errors, as they are outside the canonical form every authenticator must
// send). Unknown map keys are ignored, so newer authenticators still parse.
//
// Text strings with invalid UTF-8 are accepted on decode: some hardware keys
// cut stored user names at a byte limit in the middle of a character, and a
// management tool must still be able to list (and rename) such credentials.

// RawMessage is a raw encoded CBOR value: a pre-encoded request parameter
// map for [Device.Transact], or a response field kept undecoded.
type RawMessage = cbor.RawMessage

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = ctap2.CBOREncOptions().EncMode()
	if err != nil {
		panic("ctap2/client: CBOR encode options: " + err.Error())
	}
	do := ctap2.CBORDecOptions()
	do.UTF8 = cbor.UTF8DecodeInvalid
	decMode, err = do.DecMode()
	if err != nil {
		panic("ctap2/client: CBOR decode options: " + err.Error())
	}
}

// encode marshals v in CTAP2 canonical form. A RawMessage passes through.
func encode(v any) ([]byte, error) {
	if r, ok := v.(RawMessage); ok {
		return r, nil
	}
	return encMode.Marshal(v)
}

// errEmptyResponse is returned when a command that answers with a map
// answered with nothing.
var errEmptyResponse = errors.New("empty response")

// decode parses one complete CBOR item (nothing after it) into v.
func decode(data []byte, v any) error {
	if len(data) == 0 {
		return errEmptyResponse
	}
	return decMode.Unmarshal(data, v)
}
