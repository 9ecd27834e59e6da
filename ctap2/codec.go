package ctap2

import (
	"errors"

	"github.com/fxamacker/cbor/v2"
)

// This is the only file in ctap2 that configures the CBOR library (docs/style.md).
// Requests are decoded strictly; responses are CTAP2-canonical.

// RawMessage is a raw encoded CBOR value, kept undecoded (extension inputs,
// COSE keys).
type RawMessage = cbor.RawMessage

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

// CBOREncOptions are the encoding rules of CTAP2 canonical CBOR (CTAP 2.1
// §8 "Message Encoding"): what ctap2 answers with and what ctap2/client
// sends.
func CBOREncOptions() cbor.EncOptions { return cbor.CTAP2EncOptions() }

// CBORDecOptions are the decoding rules of the canonical form every CTAP2
// message is in: duplicate map keys, indefinite lengths, tags and more
// than four levels of nesting are errors. Unknown map keys are ignored.
// ctap2 adds limits on list and map sizes for requests; ctap2/client reads
// responses with these, accepting invalid UTF-8 (see its codec.go).
func CBORDecOptions() cbor.DecOptions {
	return cbor.DecOptions{
		DupMapKey:       cbor.DupMapKeyEnforcedAPF,
		IndefLength:     cbor.IndefLengthForbidden,
		TagsMd:          cbor.TagsForbidden,
		MaxNestedLevels: 4, // CTAP2 canonical form allows at most 4 levels
	}
}

func init() {
	var err error
	encMode, err = CBOREncOptions().EncMode()
	if err != nil {
		panic("ctap2: CBOR encode options: " + err.Error())
	}
	do := CBORDecOptions()
	do.MaxArrayElements, do.MaxMapPairs = 256, 256
	do.UTF8 = cbor.UTF8RejectInvalid
	decMode, err = do.DecMode()
	if err != nil {
		panic("ctap2: CBOR decode options: " + err.Error())
	}
}

// decode parses one complete CBOR item into v and maps failures to status
// codes: a type mismatch is CBOR_UNEXPECTED_TYPE, a too-long list or map is
// LIMIT_EXCEEDED, anything else (syntax, duplicate keys, tags, trailing
// bytes, nesting) is INVALID_CBOR.
func decode(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return decodeStatus(err)
	}
	return nil
}

// decodeFirst is decode for a CBOR item followed by other bytes.
func decodeFirst(data []byte, v any) (rest []byte, err error) {
	rest, err = decMode.UnmarshalFirst(data, v)
	if err != nil {
		return nil, decodeStatus(err)
	}
	return rest, nil
}

func decodeStatus(err error) error {
	var typeErr *cbor.UnmarshalTypeError
	var arrErr *cbor.MaxArrayElementsError
	var mapErr *cbor.MaxMapPairsError
	switch {
	case errors.As(err, &typeErr):
		return ErrCBORUnexpectedType
	case errors.As(err, &arrErr), errors.As(err, &mapErr):
		return ErrLimitExceeded
	default:
		return ErrInvalidCBOR
	}
}

// encode marshals v in CTAP2 canonical form.
func encode(v any) ([]byte, error) { return encMode.Marshal(v) }

// isCBORMap reports whether raw starts with a CBOR map header (major type 5).
func isCBORMap(raw []byte) bool { return len(raw) > 0 && raw[0]>>5 == 5 }

// Bytes is a CBOR byte string. The CBOR library would also fill a []byte
// from an array of small integers; request fields use Bytes so that such an
// array is CBOR_UNEXPECTED_TYPE, as CTAP requires. Bytes converts freely to
// and from []byte and encodes as a byte string.
type Bytes []byte

// UnmarshalCBOR accepts only a CBOR byte string (major type 2).
func (b *Bytes) UnmarshalCBOR(data []byte) error {
	if len(data) == 0 || data[0]>>5 != 2 {
		return &cbor.UnmarshalTypeError{CBORType: "non-byte-string", GoType: "ctap2.Bytes"}
	}
	var raw []byte
	if err := decMode.Unmarshal(data, &raw); err != nil {
		return err
	}
	*b = raw
	return nil
}

// commandRequest is a command's request type: validate runs the checks
// that need no state, once the CBOR is decoded.
type commandRequest[T any] interface {
	*T
	validate() error
}

// parseRequest decodes a command's parameters into a T and validates it:
// the one way every handler reads its request.
func parseRequest[T any, P commandRequest[T]](params []byte) (*T, error) {
	req := new(T)
	if err := decode(params, req); err != nil {
		return nil, err
	}
	return req, P(req).validate()
}
