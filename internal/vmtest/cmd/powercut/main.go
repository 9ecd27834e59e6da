//go:build linux

// Command powercut runs the power-cut campaign (scripts/powercut.sh;
// internal/vmtest.RunPowerCut): virtkey in a VM with its state on a virtio
// disk (qemu cache=none), internal/crash's random commands over UDP, qemu
// killed with SIGKILL at random moments, every invariant checked at the
// next boot. It prints what it did and found; the exit status is 1 when an
// invariant was broken, 2 when the campaign could not run.
//
//	go run ./internal/vmtest/cmd/powercut [-cuts 50] [-seed N] [-max-delay 4s] [-start-cuts 0.2] [-keep DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/virtkey/virtkey/internal/testkit"
	"github.com/virtkey/virtkey/internal/vmtest"
)

func main() {
	cuts := flag.Int("cuts", 50, "power cuts (each one boot of the VM)")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (printed, to repeat a run)")
	maxDelay := flag.Duration("max-delay", 4*time.Second, "longest run of commands before a cut")
	startCuts := flag.Float64("start-cuts", 0.2, "probability that a start after a cut is cut too, while virtkey opens its state")
	keep := flag.String("keep", "", "keep the guest's shared folder here (virtkey.log, every boot's console); empty: a temporary one")
	flag.Parse()
	testkit.Main("powercut", func(ctx context.Context) (bool, error) {
		root, err := os.Getwd()
		if err == nil {
			_, err = os.Stat(filepath.Join(root, "go.mod"))
		}
		if err != nil {
			return false, fmt.Errorf("run it from the repository's root (scripts/powercut.sh does): %w", err)
		}
		if *keep != "" {
			if *keep, err = filepath.Abs(*keep); err == nil {
				err = os.MkdirAll(*keep, 0o755)
			}
			if err != nil {
				return false, err
			}
		}
		fmt.Printf("powercut: seed %d, %d cuts\n", *seed, *cuts)
		logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
		rep, _, err := vmtest.RunPowerCut(ctx, vmtest.PowerCutOptions{
			Root: root, Share: *keep, Cuts: *cuts, Seed: *seed, MaxDelay: *maxDelay, StartCutRate: *startCuts, Progress: os.Stderr, Logf: logf,
		})
		if err != nil {
			return false, err
		}
		rep.Print(os.Stdout)
		return len(rep.Violations) > 0, nil
	})
}
