package main

import (
	"context"
	"errors"
	"io"
)

// doctor reports whether this user can run a real key here.
func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("doctor: not available in this version yet")
}
