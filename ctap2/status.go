package ctap2

import (
	"context"
	"errors"
	"fmt"
)

// StatusCode is a CTAP status code (CTAP 2.1 §8.2 "Status codes"). It
// implements error; handlers return it, possibly wrapped with %w, and
// [statusOf] turns any error into the byte sent on the wire.
type StatusCode byte

// Status codes. Go names; the spec name is in the comment.
const (
	StatusOK                  StatusCode = 0x00 // CTAP2_OK
	ErrInvalidCommand         StatusCode = 0x01 // CTAP1_ERR_INVALID_COMMAND
	ErrInvalidParameter       StatusCode = 0x02 // CTAP1_ERR_INVALID_PARAMETER
	ErrInvalidLength          StatusCode = 0x03 // CTAP1_ERR_INVALID_LENGTH
	ErrInvalidSeq             StatusCode = 0x04 // CTAP1_ERR_INVALID_SEQ
	ErrTimeout                StatusCode = 0x05 // CTAP1_ERR_TIMEOUT
	ErrChannelBusy            StatusCode = 0x06 // CTAP1_ERR_CHANNEL_BUSY
	ErrLockRequired           StatusCode = 0x0A // CTAP1_ERR_LOCK_REQUIRED
	ErrInvalidChannel         StatusCode = 0x0B // CTAP1_ERR_INVALID_CHANNEL
	ErrCBORUnexpectedType     StatusCode = 0x11 // CTAP2_ERR_CBOR_UNEXPECTED_TYPE
	ErrInvalidCBOR            StatusCode = 0x12 // CTAP2_ERR_INVALID_CBOR
	ErrMissingParameter       StatusCode = 0x14 // CTAP2_ERR_MISSING_PARAMETER
	ErrLimitExceeded          StatusCode = 0x15 // CTAP2_ERR_LIMIT_EXCEEDED
	ErrFPDatabaseFull         StatusCode = 0x17 // CTAP2_ERR_FP_DATABASE_FULL
	ErrLargeBlobStorageFull   StatusCode = 0x18 // CTAP2_ERR_LARGE_BLOB_STORAGE_FULL
	ErrCredentialExcluded     StatusCode = 0x19 // CTAP2_ERR_CREDENTIAL_EXCLUDED
	ErrProcessing             StatusCode = 0x21 // CTAP2_ERR_PROCESSING
	ErrInvalidCredential      StatusCode = 0x22 // CTAP2_ERR_INVALID_CREDENTIAL
	ErrUserActionPending      StatusCode = 0x23 // CTAP2_ERR_USER_ACTION_PENDING
	ErrOperationPending       StatusCode = 0x24 // CTAP2_ERR_OPERATION_PENDING
	ErrNoOperations           StatusCode = 0x25 // CTAP2_ERR_NO_OPERATIONS
	ErrUnsupportedAlgorithm   StatusCode = 0x26 // CTAP2_ERR_UNSUPPORTED_ALGORITHM
	ErrOperationDenied        StatusCode = 0x27 // CTAP2_ERR_OPERATION_DENIED
	ErrKeyStoreFull           StatusCode = 0x28 // CTAP2_ERR_KEY_STORE_FULL
	ErrUnsupportedOption      StatusCode = 0x2B // CTAP2_ERR_UNSUPPORTED_OPTION
	ErrInvalidOption          StatusCode = 0x2C // CTAP2_ERR_INVALID_OPTION
	ErrKeepaliveCancel        StatusCode = 0x2D // CTAP2_ERR_KEEPALIVE_CANCEL
	ErrNoCredentials          StatusCode = 0x2E // CTAP2_ERR_NO_CREDENTIALS
	ErrUserActionTimeout      StatusCode = 0x2F // CTAP2_ERR_USER_ACTION_TIMEOUT
	ErrNotAllowed             StatusCode = 0x30 // CTAP2_ERR_NOT_ALLOWED
	ErrPINInvalid             StatusCode = 0x31 // CTAP2_ERR_PIN_INVALID
	ErrPINBlocked             StatusCode = 0x32 // CTAP2_ERR_PIN_BLOCKED
	ErrPINAuthInvalid         StatusCode = 0x33 // CTAP2_ERR_PIN_AUTH_INVALID
	ErrPINAuthBlocked         StatusCode = 0x34 // CTAP2_ERR_PIN_AUTH_BLOCKED
	ErrPINNotSet              StatusCode = 0x35 // CTAP2_ERR_PIN_NOT_SET
	ErrPUATRequired           StatusCode = 0x36 // CTAP2_ERR_PUAT_REQUIRED (2.0: PIN_REQUIRED)
	ErrPINPolicyViolation     StatusCode = 0x37 // CTAP2_ERR_PIN_POLICY_VIOLATION
	ErrRequestTooLarge        StatusCode = 0x39 // CTAP2_ERR_REQUEST_TOO_LARGE
	ErrActionTimeout          StatusCode = 0x3A // CTAP2_ERR_ACTION_TIMEOUT
	ErrUPRequired             StatusCode = 0x3B // CTAP2_ERR_UP_REQUIRED
	ErrUVBlocked              StatusCode = 0x3C // CTAP2_ERR_UV_BLOCKED
	ErrIntegrityFailure       StatusCode = 0x3D // CTAP2_ERR_INTEGRITY_FAILURE
	ErrInvalidSubcommand      StatusCode = 0x3E // CTAP2_ERR_INVALID_SUBCOMMAND
	ErrUVInvalid              StatusCode = 0x3F // CTAP2_ERR_UV_INVALID
	ErrUnauthorizedPermission StatusCode = 0x40 // CTAP2_ERR_UNAUTHORIZED_PERMISSION
	ErrOther                  StatusCode = 0x7F // CTAP1_ERR_OTHER
)

var statusNames = map[StatusCode]string{
	StatusOK: "OK", ErrInvalidCommand: "INVALID_COMMAND", ErrInvalidParameter: "INVALID_PARAMETER",
	ErrInvalidLength: "INVALID_LENGTH", ErrInvalidSeq: "INVALID_SEQ", ErrTimeout: "TIMEOUT",
	ErrChannelBusy: "CHANNEL_BUSY", ErrLockRequired: "LOCK_REQUIRED", ErrInvalidChannel: "INVALID_CHANNEL",
	ErrCBORUnexpectedType: "CBOR_UNEXPECTED_TYPE", ErrInvalidCBOR: "INVALID_CBOR",
	ErrMissingParameter: "MISSING_PARAMETER", ErrLimitExceeded: "LIMIT_EXCEEDED",
	ErrFPDatabaseFull: "FP_DATABASE_FULL", ErrLargeBlobStorageFull: "LARGE_BLOB_STORAGE_FULL",
	ErrCredentialExcluded: "CREDENTIAL_EXCLUDED", ErrProcessing: "PROCESSING",
	ErrInvalidCredential: "INVALID_CREDENTIAL", ErrUserActionPending: "USER_ACTION_PENDING",
	ErrOperationPending: "OPERATION_PENDING", ErrNoOperations: "NO_OPERATIONS",
	ErrUnsupportedAlgorithm: "UNSUPPORTED_ALGORITHM", ErrOperationDenied: "OPERATION_DENIED",
	ErrKeyStoreFull: "KEY_STORE_FULL", ErrUnsupportedOption: "UNSUPPORTED_OPTION",
	ErrInvalidOption: "INVALID_OPTION", ErrKeepaliveCancel: "KEEPALIVE_CANCEL",
	ErrNoCredentials: "NO_CREDENTIALS", ErrUserActionTimeout: "USER_ACTION_TIMEOUT",
	ErrNotAllowed: "NOT_ALLOWED", ErrPINInvalid: "PIN_INVALID", ErrPINBlocked: "PIN_BLOCKED",
	ErrPINAuthInvalid: "PIN_AUTH_INVALID", ErrPINAuthBlocked: "PIN_AUTH_BLOCKED",
	ErrPINNotSet: "PIN_NOT_SET", ErrPUATRequired: "PUAT_REQUIRED",
	ErrPINPolicyViolation: "PIN_POLICY_VIOLATION", ErrRequestTooLarge: "REQUEST_TOO_LARGE",
	ErrActionTimeout: "ACTION_TIMEOUT", ErrUPRequired: "UP_REQUIRED", ErrUVBlocked: "UV_BLOCKED",
	ErrIntegrityFailure: "INTEGRITY_FAILURE", ErrInvalidSubcommand: "INVALID_SUBCOMMAND",
	ErrUVInvalid: "UV_INVALID", ErrUnauthorizedPermission: "UNAUTHORIZED_PERMISSION", ErrOther: "OTHER",
}

// Error returns the spec name and the code, e.g. "CTAP2_ERR_PIN_INVALID (0x31)".
func (s StatusCode) Error() string {
	if n, ok := statusNames[s]; ok {
		return fmt.Sprintf("CTAP %s (0x%02X)", n, byte(s))
	}
	return fmt.Sprintf("CTAP status 0x%02X", byte(s))
}

// Name is the short spec name ("PIN_INVALID"), or "" if the code is unknown.
func (s StatusCode) Name() string { return statusNames[s] }

// ErrDeclined is returned by a [Presence] provider when the user said no.
// It maps to OPERATION_DENIED.
var ErrDeclined = errors.New("user declined")

// statusOf maps any error to the status byte on the wire (docs/style.md, Errors).
// ok reports whether err was expected (a status code or a user outcome);
// unexpected errors are logged by the caller.
func statusOf(err error) (code StatusCode, expected bool) {
	var sc StatusCode
	switch {
	case err == nil:
		return StatusOK, true
	case errors.As(err, &sc):
		return sc, true
	case errors.Is(err, context.Canceled):
		return ErrKeepaliveCancel, true
	case errors.Is(err, context.DeadlineExceeded):
		return ErrUserActionTimeout, true
	case errors.Is(err, ErrDeclined):
		return ErrOperationDenied, true
	default:
		return ErrOther, false
	}
}
