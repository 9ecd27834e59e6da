package uhid

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
)

// Defaults for [Options].
const (
	DefaultPath      = "/dev/uhid"
	DefaultName      = "virtkey FIDO2 security key"
	DefaultPhys      = "virtkey"
	DefaultVendorID  = 0x1209 // pid.codes, the open-source hardware vendor id
	DefaultProductID = 0x7664
)

// fidoDescriptor is the FIDO HID report descriptor (CTAP 2.1 §11.2.8.1
// "HID report descriptor and device discovery"): one 64-byte input and one
// 64-byte output report, no report IDs.
var fidoDescriptor = []byte{
	0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance, 0xF1D0)
	0x09, 0x01, //       Usage (CTAPHID, 0x01)
	0xA1, 0x01, //       Collection (Application)
	0x09, 0x20, //         Usage (Input Report Data, 0x20)
	0x15, 0x00, //         Logical Minimum (0)
	0x26, 0xFF, 0x00, //   Logical Maximum (255)
	0x75, 0x08, //         Report Size (8)
	0x95, 0x40, //         Report Count (64)
	0x81, 0x02, //         Input (Data, Var, Abs)
	0x09, 0x21, //         Usage (Output Report Data, 0x21)
	0x15, 0x00, //         Logical Minimum (0)
	0x26, 0xFF, 0x00, //   Logical Maximum (255)
	0x75, 0x08, //         Report Size (8)
	0x95, 0x40, //         Report Count (64)
	0x91, 0x02, //         Output (Data, Var, Abs)
	0xC0, //             End Collection
}

// ReportDescriptor returns a copy of the FIDO HID report descriptor the
// device is created with.
func ReportDescriptor() []byte { return append([]byte(nil), fidoDescriptor...) }

// Options configure [Open]. The zero value gives a device with the
// defaults and a random serial.
type Options struct {
	// Path is the uhid character device; empty means [DefaultPath].
	Path string

	// Name is the device name (HID_NAME, what `fido2-token -L` and
	// browsers show); empty means [DefaultName]. At most 127 bytes.
	Name string

	// Phys is the physical location string (HID_PHYS); empty means
	// [DefaultPhys]. At most 63 bytes.
	Phys string

	// Serial is the unique serial (HID_UNIQ); empty means 16 random hex
	// digits, chosen once per Open and kept by [Device.Recreate]. At most
	// 63 bytes.
	Serial string

	// VendorID and ProductID are the USB ids; zero means
	// [DefaultVendorID] and [DefaultProductID].
	VendorID, ProductID uint16

	// Version is the device release number (bcdDevice), e.g. 0x0100.
	Version uint32

	// Country is the HID country code (0: not localised).
	Country uint32

	// Logger receives device events at debug level (START, OPEN, CLOSE,
	// dropped reports) and a warning for anything unexpected. Nil
	// discards.
	Logger *slog.Logger
}

// withDefaults returns o with empty fields filled in.
func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Phys == "" {
		o.Phys = DefaultPhys
	}
	if o.Serial == "" {
		var b [8]byte
		rand.Read(b[:])
		o.Serial = hex.EncodeToString(b[:])
	}
	if o.VendorID == 0 {
		o.VendorID = DefaultVendorID
	}
	if o.ProductID == 0 {
		o.ProductID = DefaultProductID
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// createEvent returns the UHID_CREATE2 event for o (defaults applied).
func (o Options) createEvent() ([]byte, error) {
	return encodeCreate2(create2{
		name:       o.Name,
		phys:       o.Phys,
		uniq:       o.Serial,
		bus:        busUSB,
		vendor:     uint32(o.VendorID),
		product:    uint32(o.ProductID),
		version:    o.Version,
		country:    o.Country,
		descriptor: fidoDescriptor,
	})
}
