// Command scale measures virtkey with many resident credentials
// (scripts/scale.sh): it generates a 10-credential baseline store and a
// large one — n credentials over n/10 RPs, one RP with min(10000, n/10)
// accounts, one with a single account — serves each with `virtkey run` over
// UDP, and prints every figure beside its baseline with its target.
//
//	go run ./internal/scale/cmd/scale [-n 1000000] [-dir DIR] [-samples 100] [-check]
//
// The state directories are made under -dir (default: a temporary
// directory under $TMPDIR, removed at the end), so the store pays the
// fsyncs of that file system. With -check the exit status is 1 when a
// target is missed; CI runs a small n and checks that every figure is
// measured and the credentials verify, not the timings.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/virtkey/virtkey/internal/scale"
	"github.com/virtkey/virtkey/internal/testkit"
)

func main() {
	n := flag.Int("n", 1000000, "credentials in the large store")
	dir := flag.String("dir", "", "directory for the state directories (kept); empty: a temporary one")
	samples := flag.Int("samples", 100, "timed calls per figure and store")
	bin := flag.String("bin", "", "virtkey binary; empty: build ./cmd/virtkey")
	check := flag.Bool("check", false, "exit with status 1 if a target is missed")
	flag.Parse()
	testkit.Main("scale", func(ctx context.Context) (bool, error) {
		return run(ctx, *n, *dir, *samples, *bin, *check)
	})
}

// run reports whether check is set and a target was missed.
func run(ctx context.Context, n int, dir string, samples int, bin string, check bool) (missed bool, err error) {
	if n < 100 {
		return false, fmt.Errorf("-n %d: want at least 100", n)
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "virtkey-scale-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if bin == "" {
		if bin, err = testkit.BuildVirtkey(dir); err != nil {
			return false, err
		}
	}
	spec := scale.Spec{N: n, RPs: n / 10, Big: min(10000, n/10)}
	rep, err := scale.Measure(ctx, scale.Options{Spec: spec, Bin: bin, Dir: dir, Samples: samples, Progress: os.Stderr})
	if err != nil {
		return false, err
	}
	rep.Print(os.Stdout)
	for _, f := range rep.Figures {
		if check && !f.Met() {
			return true, nil
		}
	}
	return false, nil
}
