package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/virtkey/virtkey/ctap2"
)

// serveUHID serves the key as a USB HID device through /dev/uhid.
func serveUHID(ctx context.Context, f *runFlags, auth *ctap2.Authenticator, log *slog.Logger) error {
	return errors.New("--transport uhid is not available in this version yet; use --transport udp")
}
