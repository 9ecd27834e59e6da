package ctap2

// The PIN policy a client checks a new PIN against before it sends it
// (CTAP 2.1 §6.5.1): at least minPINLength Unicode code points —
// DefaultMinPINLength when getInfo does not say — and at most MaxPINBytes
// bytes of UTF-8.
const (
	DefaultMinPINLength = defaultMinPINLength
	MaxPINBytes         = pinMaxBytes
)
