package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/server"
)

// powerCycleSignal power-cycles the key — with uhid the device is
// unplugged and plugged in again —, for tests of clients that see a key
// vanish or need a fresh power-up: kill -USR1 $(pidof virtkey).
const powerCycleSignal = syscall.SIGUSR1

// runKey is "virtkey run": it serves a virtual key until ctx ends.
func runKey(ctx context.Context, e *env, args []string) error {
	var cf controlFlags
	args, err := withProfile(args)
	if err != nil {
		return err
	}
	cfg, err := parseConfig(e, "run", "virtkey run [flags]", args, cf.register)
	if err != nil {
		return err
	}
	log, err := cfg.NewLogger(e.Stderr)
	if err != nil {
		return err
	}
	cp, err := newControlPlane(cf, &cfg, log)
	if err != nil {
		return err
	}
	defer cp.close()
	key, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer key.Close()
	stopControl, err := cp.serve(ctx, key)
	if err != nil {
		return err
	}
	defer stopControl()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, powerCycleSignal)
	defer signal.Stop(sig)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				if err := key.PowerCycle(); err != nil {
					// The uhid device is closed: Run fails and virtkey exits.
					log.Error("power cycle", "err", err)
					return
				}
			}
		}
	})
	return key.Run(ctx)
}

// parseConfig parses the flags of run (or only those named) into a Config
// with run's defaults and the environment's device files, and validates
// it; own, if not nil, defines the command's own flags after them.
func parseConfig(e *env, name, synopsis string, args []string, own func(*flag.FlagSet), names ...string) (server.Config, error) {
	cfg := server.Default()
	cfg.Host = e.host
	order := names
	if len(order) == 0 {
		order = cfg.FlagNames()
	}
	fs := cli.NewFlagSet("virtkey "+name, synopsis, e.Stderr, order...)
	cfg.RegisterFlags(fs, names...)
	if own != nil {
		own(fs)
	}
	pos, err := cli.Parse(fs, args, false)
	if err != nil {
		return cfg, err
	}
	if len(pos) != 0 {
		return cfg, cli.Usagef("%s: unexpected argument %q", name, pos[0])
	}
	if err := cfg.Validate(); err != nil {
		return cfg, &cli.UsageError{Err: err}
	}
	return cfg, nil
}
