// Command crash runs the kill -9 campaign (scripts/crash.sh, package
// internal/crash) and prints what it did and found; the exit status is 1
// when an invariant was broken.
//
//	go run ./internal/crash/cmd/crash [-kills 500] [-seed N] [-dir DIR] [-max-delay 400ms]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/virtkey/virtkey/internal/crash"
	"github.com/virtkey/virtkey/internal/testkit"
)

func main() {
	kills := flag.Int("kills", 500, "kill -9 rounds")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (printed, to repeat a run)")
	dir := flag.String("dir", "", "state directory (kept); empty: a temporary one")
	maxDelay := flag.Duration("max-delay", 400*time.Millisecond, "longest run of commands before a kill")
	bin := flag.String("bin", "", "virtkey binary; empty: build ./cmd/virtkey")
	flag.Parse()
	testkit.Main("crash", func(ctx context.Context) (bool, error) {
		return run(ctx, *kills, *seed, *dir, *maxDelay, *bin)
	})
}

// run reports whether an invariant was broken.
func run(ctx context.Context, kills int, seed uint64, dir string, maxDelay time.Duration, bin string) (failed bool, err error) {
	tmp, err := os.MkdirTemp("", "virtkey-crash-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	if dir == "" {
		dir = filepath.Join(tmp, "state")
	}
	if bin == "" {
		if bin, err = testkit.BuildVirtkey(tmp); err != nil {
			return false, err
		}
	}
	fmt.Printf("crash: seed %d, %d kills, state in %s\n", seed, kills, dir)
	rep, err := crash.Run(ctx, crash.Options{Bin: bin, Dir: dir, Kills: kills, Seed: seed, MaxDelay: maxDelay, Progress: os.Stderr})
	if err != nil {
		return false, err
	}
	rep.Print(os.Stdout)
	return len(rep.Violations) > 0, nil
}
