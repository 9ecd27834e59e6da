package hid

import "context"

// Keepalive status bytes (CTAPHID_KEEPALIVE payload).
const (
	StatusProcessing byte = 1 // PROCESSING
	StatusUPNeeded   byte = 2 // UPNEEDED
)

// Handler processes complete CTAPHID_CBOR messages. ctap2.Authenticator
// satisfies it; hid never imports ctap2.
//
// HandleCBOR gets the CBOR payload (command byte + parameters) and returns
// the response payload (status byte + optional CBOR). ctx is cancelled by
// CTAPHID_CANCEL, by an INIT resync of the channel and by a power cycle.
// keepalive sets the status reported by the KEEPALIVE packets the server
// sends about every 100 ms while the request runs (PROCESSING until set).
//
// The server calls HandleCBOR on the goroutine that read the request, one
// request at a time per device (another goroutine takes over reading if
// it runs longer than 10 ms), though a request aborted by INIT or a
// power cycle may still be returning when the next one starts. msg is the
// handler's to keep. HandleCBOR must return soon after ctx is cancelled:
// Server.Run and Server.PowerCycle wait for it. The answer must be 1 to
// 7609 bytes; the server reports anything else as ERR_OTHER.
type Handler interface {
	HandleCBOR(ctx context.Context, cid uint32, msg []byte, keepalive func(status byte)) []byte
}

// MsgHandler is implemented by handlers that also speak CTAP1/U2F over
// CTAPHID_MSG. Without it the server answers MSG with INVALID_CMD and sets
// the NMSG capability.
type MsgHandler interface {
	HandleMSG(ctx context.Context, cid uint32, apdu []byte, keepalive func(status byte)) []byte
}

// PowerCycler is implemented by handlers that hold volatile state; the
// server calls PowerCycle on a simulated power cycle (UDP magic reboot).
type PowerCycler interface {
	PowerCycle()
}

// Winker is implemented by handlers that can show CTAPHID_WINK to the user.
type Winker interface {
	Wink()
}
