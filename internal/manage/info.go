package manage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid"
)

// infoJSON is the --json output of "virtkey info". Field names follow the
// CTAP getInfo names.
type infoJSON struct {
	Device                           string          `json:"device"`
	Versions                         []string        `json:"versions"`
	AAGUID                           string          `json:"aaguid"`
	FirmwareVersion                  *uint32         `json:"firmwareVersion,omitempty"`
	Options                          map[string]bool `json:"options"`
	PINSet                           bool            `json:"pinSet"`
	PINRetries                       *int            `json:"pinRetries,omitempty"`
	MinPINLength                     uint            `json:"minPINLength"`
	ForcePINChange                   bool            `json:"forcePINChange"`
	PinUvAuthProtocols               []uint          `json:"pinUvAuthProtocols"`
	Algorithms                       []algJSON       `json:"algorithms"`
	Extensions                       []string        `json:"extensions"`
	Transports                       []string        `json:"transports"`
	MaxMsgSize                       uint            `json:"maxMsgSize,omitempty"`
	MaxCredentialCountInList         uint            `json:"maxCredentialCountInList,omitempty"`
	MaxCredentialIDLength            uint            `json:"maxCredentialIdLength,omitempty"`
	RemainingDiscoverableCredentials *uint           `json:"remainingDiscoverableCredentials,omitempty"`
	CTAPHID                          *ctaphidJSON    `json:"ctaphid,omitempty"`
}

type algJSON struct {
	Alg  int64  `json:"alg"`
	Name string `json:"name"`
}

type ctaphidJSON struct {
	Protocol      byte     `json:"protocol"`
	DeviceVersion string   `json:"deviceVersion"`
	Capabilities  []string `json:"capabilities"`
}

func info(ctx context.Context, c *call) error {
	info := c.info
	out := infoJSON{
		Device:                           c.opened.name,
		Versions:                         nonNil(info.Versions),
		AAGUID:                           formatUUID(info.AAGUID),
		FirmwareVersion:                  info.FirmwareVersion,
		Options:                          info.Options,
		MinPINLength:                     info.MinPINLength,
		ForcePINChange:                   info.ForcePINChange != nil && *info.ForcePINChange,
		PinUvAuthProtocols:               nonNil(info.PinUvAuthProtocols),
		Extensions:                       nonNil(info.Extensions),
		Transports:                       nonNil(info.Transports),
		MaxMsgSize:                       info.MaxMsgSize,
		MaxCredentialCountInList:         info.MaxCredentialCountInList,
		MaxCredentialIDLength:            info.MaxCredentialIDLength,
		RemainingDiscoverableCredentials: info.RemainingDiscoverableCredentials,
		Algorithms:                       []algJSON{},
	}
	if out.Options == nil {
		out.Options = map[string]bool{}
	}
	if out.MinPINLength == 0 {
		out.MinPINLength = ctap2.DefaultMinPINLength // the CTAP default when the key does not say
	}
	for _, a := range info.Algorithms {
		out.Algorithms = append(out.Algorithms, algJSON{Alg: a.Alg, Name: algName(cose.Algorithm(a.Alg))})
	}
	pinSupported, pinKnown := client.Option(info, "clientPin")
	out.PINSet = pinSupported
	if pinSupported {
		if n, _, err := c.dev.GetPINRetries(ctx); err == nil {
			out.PINRetries = &n
		}
	}
	hi, hidOK := c.dev.HIDInfo()
	if hidOK {
		out.CTAPHID = &ctaphidJSON{
			Protocol:      hi.Protocol,
			DeviceVersion: fmt.Sprintf("%d.%d.%d", hi.Version[0], hi.Version[1], hi.Version[2]),
			Capabilities:  capabilities(hi.Capabilities),
		}
	}
	if c.json {
		return c.printJSON(out)
	}

	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Device:", out.Device)
	row("Versions:", strings.Join(out.Versions, ", "))
	row("AAGUID:", out.AAGUID)
	if out.FirmwareVersion != nil {
		row("Firmware:", firmware(*out.FirmwareVersion, hi, hidOK))
	}
	switch {
	case !pinKnown:
		row("PIN:", "not supported")
	case out.PINSet && out.PINRetries != nil:
		row("PIN:", fmt.Sprintf("set, %s left", plural(*out.PINRetries, "retry", "retries")))
	case out.PINSet:
		row("PIN:", "set")
	default:
		row("PIN:", "not set")
	}
	row("Minimum PIN length:", fmt.Sprint(out.MinPINLength))
	if out.ForcePINChange {
		row("PIN change required:", "yes")
	}
	row("PIN/UV protocols:", joinUints(out.PinUvAuthProtocols))
	var algs []string
	for _, a := range out.Algorithms {
		algs = append(algs, a.Name)
	}
	row("Algorithms:", strings.Join(algs, ", "))
	row("Extensions:", strings.Join(out.Extensions, ", "))
	row("Options:", formatOptions(out.Options))
	transports := strings.Join(out.Transports, ", ")
	if strings.HasPrefix(out.Device, "udp:") && slices.Contains(out.Transports, "usb") {
		// CTAP has no UDP transport: the key reports itself as the USB key
		// it simulates.
		transports += " (as the key reports itself; reached over UDP here)"
	}
	row("Transports:", transports)
	if out.RemainingDiscoverableCredentials != nil {
		row("Room for passkeys:", fmt.Sprint(*out.RemainingDiscoverableCredentials))
	}
	if out.MaxMsgSize > 0 {
		row("Max message size:", fmt.Sprint(out.MaxMsgSize))
	}
	if out.CTAPHID != nil {
		row("CTAPHID:", fmt.Sprintf("protocol %d, device version %s, %s", out.CTAPHID.Protocol,
			out.CTAPHID.DeviceVersion, strings.Join(out.CTAPHID.Capabilities, " ")))
	}
	return tw.Flush()
}

// firmware shows getInfo's firmwareVersion. Its encoding is the vendor's;
// when it reads as major<<16 | minor<<8 | patch of the CTAPHID device
// version (virtkey's and many keys' way), it is shown as that version.
func firmware(v uint32, hi hid.DeviceInfo, hidOK bool) string {
	if hidOK && v == uint32(hi.Version[0])<<16|uint32(hi.Version[1])<<8|uint32(hi.Version[2]) {
		return fmt.Sprintf("%d.%d.%d", hi.Version[0], hi.Version[1], hi.Version[2])
	}
	return fmt.Sprintf("%d (0x%06x)", v, v)
}

// formatUUID formats a 16-byte AAGUID as a UUID.
func formatUUID(b []byte) string {
	if len(b) != 16 {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// algName names a COSE algorithm ("ES256"), or gives its number.
func algName(a cose.Algorithm) string {
	if s := a.String(); s != "unknown" {
		return s
	}
	return fmt.Sprintf("alg %d", int(a))
}

// formatOptions lists the options that are on, then those that are off.
func formatOptions(opts map[string]bool) string {
	var on, off []string
	for k, v := range opts {
		if v {
			on = append(on, k)
		} else {
			off = append(off, k)
		}
	}
	slices.Sort(on)
	slices.Sort(off)
	s := strings.Join(on, " ")
	if len(off) > 0 {
		s += "  (off: " + strings.Join(off, " ") + ")"
	}
	return s
}

func capabilities(c byte) []string {
	out := []string{}
	for _, x := range []struct {
		bit  byte
		name string
	}{{hid.CapWink, "wink"}, {hid.CapLock, "lock"}, {hid.CapCBOR, "cbor"}, {hid.CapNMSG, "nmsg"}} {
		if c&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

func joinUints(v []uint) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
