package ctap2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
)

// Large-blob storage limits (CTAP 2.1 §6.10).
const (
	// MaxSerializedLargeBlobArray is getInfo's maxSerializedLargeBlobArray:
	// the longest serialized large-blob array (CBOR array ‖ checksum) the
	// authenticator stores.
	MaxSerializedLargeBlobArray = 8192
	// maxLargeBlobFragment is maxFragmentLength: maxMsgSize − 64, the room
	// for one fragment in a request or response.
	maxLargeBlobFragment = MaxMsgSize - 64
	// largeBlobChecksumLen is the length of the truncated SHA-256 that
	// ends a serialized large-blob array.
	largeBlobChecksumLen = 16
	// minLargeBlobArray is the shortest serialized array: an empty CBOR
	// array (one byte) and its checksum.
	minLargeBlobArray = 1 + largeBlobChecksumLen
)

// settingLargeBlobArray names the Store setting that holds the serialized
// large-blob array. It is written whole, so a commit is atomic; reset wipes
// it, and an unset array reads as initialLargeBlobArray.
const settingLargeBlobArray = "largeBlobArray"

// initialLargeBlobArray is the empty array 0x80 followed by
// LEFT(SHA-256(0x80), 16) (CTAP 2.1 §6.10.1).
var initialLargeBlobArray = []byte{
	0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7,
	0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c,
}

// largeBlobAuthPrefix is 32×0xFF ‖ 0x0C 0x00, the start of the message a
// set's pinUvAuthParam authenticates (§6.10.2).
var largeBlobAuthPrefix = append(bytes.Repeat([]byte{0xFF}, 32), CmdLargeBlobs, 0x00)

// largeBlobWriteState is a serialized large-blob array being written in
// fragments (authenticatorLargeBlobs set with offsets). It lives only in
// memory: a power cycle or reset drops it, and the stored array is replaced
// only when the last fragment arrives with a valid checksum.
type largeBlobWriteState struct {
	expectedLength int
	buf            []byte // received so far; len(buf) is expectedNextOffset
}

// LargeBlobsRequest is the authenticatorLargeBlobs (0x0C) input. See CTAP 2.1 §6.10.2.
type LargeBlobsRequest struct {
	Get               *uint64 `cbor:"1,keyasint,omitempty"`
	Set               Bytes   `cbor:"2,keyasint,omitempty"`
	Offset            *uint64 `cbor:"3,keyasint,omitempty"`
	Length            *uint64 `cbor:"4,keyasint,omitempty"`
	PinUvAuthParam    Bytes   `cbor:"5,keyasint,omitempty"`
	PinUvAuthProtocol *uint   `cbor:"6,keyasint,omitempty"`
}

// LargeBlobsResponse is the authenticatorLargeBlobs output of a get.
type LargeBlobsResponse struct {
	Config []byte `cbor:"1,keyasint"`
}

// validate runs the checks of §6.10.2 that need no state.
//
// A missing offset or (first fragment) length is INVALID_PARAMETER, not
// MISSING_PARAMETER: the spec's steps say so, and OpenSK and the SoloKeys
// fido-authenticator agree.
func (req *LargeBlobsRequest) validate() error {
	// Steps 1–3: offset, and exactly one of get and set.
	if req.Offset == nil || (req.Get == nil) == (req.Set == nil) {
		return ErrInvalidParameter
	}
	if req.Get != nil {
		// Step 4.1–4.3: a read carries neither a length nor authentication.
		if req.Length != nil || req.PinUvAuthParam != nil || req.PinUvAuthProtocol != nil {
			return ErrInvalidParameter
		}
		if *req.Get > maxLargeBlobFragment {
			return ErrInvalidLength
		}
		return nil
	}
	// Step 5.1–5.3.
	if len(req.Set) > maxLargeBlobFragment {
		return ErrInvalidLength
	}
	if *req.Offset != 0 {
		if req.Length != nil {
			return ErrInvalidParameter
		}
		return nil
	}
	switch {
	case req.Length == nil:
		return ErrInvalidParameter
	case *req.Length > MaxSerializedLargeBlobArray:
		return ErrLargeBlobStorageFull
	case *req.Length < minLargeBlobArray:
		return ErrInvalidParameter
	}
	return nil
}

// largeBlobs runs authenticatorLargeBlobs (CTAP 2.1 §6.10.2).
func (a *Authenticator) largeBlobs(ctx context.Context, r request, req *LargeBlobsRequest) (any, error) {
	if req.Get != nil {
		return a.readLargeBlobs(*req.Offset, *req.Get)
	}
	return nil, a.writeLargeBlobs(req)
}

// readLargeBlobs returns up to n bytes of the stored array from offset
// (step 4.4–4.5).
func (a *Authenticator) readLargeBlobs(offset, n uint64) (*LargeBlobsResponse, error) {
	array, err := a.largeBlobArray()
	if err != nil {
		return nil, err
	}
	if offset > uint64(len(array)) {
		return nil, ErrInvalidParameter
	}
	rest := array[offset:]
	return &LargeBlobsResponse{Config: append([]byte{}, rest[:min(n, uint64(len(rest)))]...)}, nil
}

// writeLargeBlobs takes one fragment of a new array (step 5.2–5.11). The
// pending write starts only once the first fragment has passed every check.
func (a *Authenticator) writeLargeBlobs(req *LargeBlobsRequest) error {
	offset := *req.Offset
	expectedLength := 0
	switch {
	case offset == 0:
		expectedLength = int(*req.Length) // validated: ≤ MaxSerializedLargeBlobArray
	case a.vol.largeBlobWrite == nil || offset != uint64(len(a.vol.largeBlobWrite.buf)):
		return ErrInvalidSeq
	default:
		expectedLength = a.vol.largeBlobWrite.expectedLength
	}
	// Step 5.5: an authenticator protected by user verification needs a
	// token with the lbw permission over this fragment.
	if a.protectedByUV() || a.state.AlwaysUV {
		if req.PinUvAuthParam == nil {
			return ErrPUATRequired
		}
		if err := a.verifyPinUvAuth(req.PinUvAuthProtocol, req.PinUvAuthParam, largeBlobAuthMessage(uint32(offset), req.Set), PermLargeBlobWrite, ""); err != nil {
			return err
		}
	}
	// Step 5.6.
	if offset+uint64(len(req.Set)) > uint64(expectedLength) {
		return ErrInvalidParameter
	}
	// Steps 5.7–5.9.
	if offset == 0 {
		a.vol.largeBlobWrite = &largeBlobWriteState{expectedLength: expectedLength, buf: make([]byte, 0, expectedLength)}
	}
	w := a.vol.largeBlobWrite
	w.buf = append(w.buf, req.Set...)
	if len(w.buf) < w.expectedLength {
		return nil // more fragments to come (step 5.11)
	}
	// Step 5.10: the array is complete; commit it only if its checksum holds.
	a.vol.largeBlobWrite = nil
	if !largeBlobChecksumOK(w.buf) {
		return ErrIntegrityFailure
	}
	if err := a.cfg.Store.PutSetting(settingLargeBlobArray, w.buf); err != nil {
		return err
	}
	a.log.Info("large-blob array written", "length", len(w.buf))
	return nil
}

// largeBlobArray returns the stored serialized array, or the initial empty
// one when nothing was ever written (or after a reset).
func (a *Authenticator) largeBlobArray() ([]byte, error) {
	b, err := a.cfg.Store.Setting(settingLargeBlobArray)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return initialLargeBlobArray, nil
	}
	return b, nil
}

// largeBlobAuthMessage is 32×0xFF ‖ 0x0C 0x00 ‖ uint32LE(offset) ‖ SHA-256(fragment).
func largeBlobAuthMessage(offset uint32, fragment []byte) []byte {
	h := sha256.Sum256(fragment)
	msg := make([]byte, 0, len(largeBlobAuthPrefix)+4+len(h))
	msg = append(msg, largeBlobAuthPrefix...)
	msg = binary.LittleEndian.AppendUint32(msg, offset)
	return append(msg, h[:]...)
}

// largeBlobChecksumOK reports whether array ends in LEFT(SHA-256(rest), 16).
func largeBlobChecksumOK(array []byte) bool {
	if len(array) < largeBlobChecksumLen {
		return false
	}
	n := len(array) - largeBlobChecksumLen
	h := sha256.Sum256(array[:n])
	return bytes.Equal(h[:largeBlobChecksumLen], array[n:]) // a checksum, not a secret
}
