package main

import (
	"context"
	"fmt"

	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/doctor"
	"github.com/virtkey/virtkey/internal/server"
)

// doctorFlags are the flags of run that doctor reads, with run's defaults.
var doctorFlags = []string{"transport", "presence", "keystore", "tpm", "state-dir"}

// runDoctor is "virtkey doctor": it checks what "virtkey run" with the same
// flags needs of this machine and user, one line per check with the fix
// for each problem, and fails (exit status 1) if any check finds one.
func runDoctor(ctx context.Context, e *env, args []string) error {
	cfg := server.Default()
	cfg.Host = e.host
	fs := cli.NewFlagSet("virtkey doctor",
		"virtkey doctor [--transport uhid|udp] [--presence MODE] [--keystore software|tpm|tpm+eddsa] [--tpm PATH|tcp://HOST:PORT] [--state-dir DIR] [--json]\n"+
			"  checks what \"virtkey run\" with the same flags needs; the defaults are run's",
		e.Stderr, append(doctorFlags, "json")...)
	cfg.RegisterFlags(fs, doctorFlags...)
	asJSON := fs.Bool("json", false, "print one JSON object: {\"ok\", \"problems\", \"checks\": [{\"status\", \"check\", \"what\", \"fix\"}]}")
	pos, err := cli.Parse(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("doctor: unexpected argument %q", pos[0])
	}
	if err := cfg.Validate(); err != nil {
		return &cli.UsageError{Err: err}
	}
	checks := cfg.Doctor(ctx)
	if err := doctor.Print(e.Stdout, checks, *asJSON); err != nil {
		return err
	}
	switch n := doctor.Problems(checks); n {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("doctor: 1 problem found")
	default:
		return fmt.Errorf("doctor: %d problems found", n)
	}
}
