package main

import (
	"context"
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
	cfg := server.Default()
	cfg.Host = e.host
	fs := cli.NewFlagSet("virtkey run", "virtkey run [flags]", e.Stderr, cfg.FlagNames()...)
	cfg.RegisterFlags(fs)
	pos, err := cli.Parse(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("run: unexpected argument %q", pos[0])
	}
	if err := cfg.Validate(); err != nil {
		return &cli.UsageError{Err: err}
	}
	log, err := cfg.NewLogger(e.Stderr)
	if err != nil {
		return err
	}
	key, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer key.Close()

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
