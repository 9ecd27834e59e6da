package testkit

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main is the body of a campaign command (crash, powercut, scale, soak),
// called after flag.Parse: it runs run with a context that SIGINT and
// SIGTERM cancel and exits the way every campaign does — 2 with "name: err"
// on stderr when run returns an error (the campaign could not run), 1 when
// run reports failed (an invariant broken, a target missed), 0 otherwise.
// run's deferred clean-ups have run by then.
func Main(name string, run func(ctx context.Context) (failed bool, err error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	failed, err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
