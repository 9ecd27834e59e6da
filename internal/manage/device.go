package manage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/hidraw"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/internal/cli"
)

// The device: --device udp:HOST:PORT (a virtual key served by "virtkey run
// --transport udp"), --device /dev/hidrawN, or the only FIDO key present
// (package hid/hidraw finds it).

// Timeouts of the management commands.
const (
	initTimeout    = 3 * time.Second  // CTAPHID_INIT: does anything answer?
	commandTimeout = 90 * time.Second // one CTAP command, a touch included
)

// openedDevice is an open transport and the CTAP2 client on it.
type openedDevice struct {
	dev   *client.Device
	name  string // what the user would pass to --device
	close func() error
}

// openDevice opens the device named by spec ("" = find the only one) and
// sets up CTAPHID on it. onKeepalive receives KEEPALIVE status bytes.
func openDevice(ctx context.Context, spec string, onKeepalive func(byte)) (*openedDevice, error) {
	if spec == "" {
		found, err := hidraw.Find()
		if err != nil {
			return nil, &cliError{code: cli.ExitNoDevice, msg: fmt.Sprintf("looking for FIDO keys: %v; name one with --device", err)}
		}
		switch len(found) {
		case 0:
			return nil, &cliError{code: cli.ExitNoDevice, msg: "no FIDO security key found (no hidraw device with the FIDO usage page 0xF1D0); " +
				"plug one in, or name one with --device (for a virtual key served by \"virtkey run\": --device udp:127.0.0.1:8111)"}
		case 1:
			spec = found[0].Path
		default:
			var b strings.Builder
			b.WriteString("several FIDO security keys found; choose one with --device:")
			for _, d := range found {
				fmt.Fprintf(&b, "\n  %s", d.Path)
				if d.Name != "" {
					fmt.Fprintf(&b, "  %s", d.Name)
				}
			}
			return nil, &cliError{code: cli.ExitNoDevice, msg: b.String()}
		}
	}

	var rd hidraw.Device
	var err error
	switch {
	case strings.HasPrefix(spec, "udp:"):
		addr := strings.TrimPrefix(spec, "udp:")
		if addr == "" {
			return nil, &cliError{code: cli.ExitUsage, msg: "--device udp: needs HOST:PORT, e.g. udp:127.0.0.1:8111"}
		}
		// Only a key of this user (or root) gets to see PIN messages.
		rd, err = udp.DialOwned(addr, uint32(os.Getuid()))
	case strings.HasPrefix(spec, "/"):
		rd, err = hidraw.Open(spec)
	default:
		return nil, &cliError{code: cli.ExitUsage, msg: fmt.Sprintf("--device %q: want udp:HOST:PORT or a hidraw path such as /dev/hidraw3", spec)}
	}
	if errors.Is(err, udp.ErrNoListener) {
		return nil, &cliError{code: cli.ExitNoDevice, msg: fmt.Sprintf("no FIDO key answers at %s (nothing listens there); is \"virtkey run\" serving there?", spec)}
	}
	if err != nil {
		msg := fmt.Sprintf("opening %s: %v", spec, err)
		if errors.Is(err, fs.ErrPermission) {
			msg += " (give your user access to FIDO keys with a udev rule, such as the 70-u2f.rules libfido2 ships)"
		}
		return nil, &cliError{code: cli.ExitNoDevice, msg: msg}
	}
	ictx, cancel := context.WithTimeout(ctx, initTimeout)
	defer cancel()
	dev, err := client.Open(ictx, rd, &client.Options{OnKeepalive: onKeepalive, Timeout: commandTimeout})
	if err != nil {
		rd.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := fmt.Sprintf("no FIDO key answers at %s: %v", spec, err)
		if errors.Is(err, context.DeadlineExceeded) {
			msg = fmt.Sprintf("no FIDO key answers at %s (no reply within %v)", spec, initTimeout)
			if strings.HasPrefix(spec, "udp:") {
				msg += "; is \"virtkey run\" serving there?"
			}
		}
		return nil, &cliError{code: cli.ExitNoDevice, msg: msg}
	}
	return &openedDevice{dev: dev, name: spec, close: rd.Close}, nil
}
