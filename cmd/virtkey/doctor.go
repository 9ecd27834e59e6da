package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/virtkey/virtkey/internal/doctor"
)

// runDoctor is "virtkey doctor": it checks what "virtkey run" with the same
// flags needs of this machine and user, one line per check with the fix
// for each problem, and fails (exit status 1) if any check finds one.
func runDoctor(ctx context.Context, e *env, args []string) error {
	// The flags of run that doctor reads, with run's defaults.
	runFlags := []string{"transport", "presence", "keystore", "tpm", "state-dir"}
	var asJSON *bool
	cfg, err := parseConfig(e, "doctor",
		"virtkey doctor [--transport uhid|udp] [--presence MODE] [--keystore software|tpm|tpm+eddsa] [--tpm PATH|tcp://HOST:PORT] [--state-dir DIR] [--json]\n"+
			"  checks what \"virtkey run\" with the same flags needs; the defaults are run's",
		args, func(fs *flag.FlagSet) {
			asJSON = fs.Bool("json", false, "print one JSON object: {\"ok\", \"problems\", \"checks\": [{\"status\", \"check\", \"what\", \"fix\"}]}")
		}, runFlags...)
	if err != nil {
		return err
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
