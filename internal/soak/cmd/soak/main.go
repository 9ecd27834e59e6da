// Command soak runs the soak test (scripts/soak.sh, package internal/soak)
// and prints the samples; the exit status is 1 on a failure (an error the
// protocol does not allow, a hang, growth after the warm-up).
//
//	go run [-race] ./internal/soak/cmd/soak [-d 10m] [-clients 16] [-sample 10s]
package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"time"

	"github.com/virtkey/virtkey/internal/soak"
	"github.com/virtkey/virtkey/internal/testkit"
)

func main() {
	d := flag.Duration("d", 10*time.Minute, "how long the clients run")
	clients := flag.Int("clients", 16, "concurrent UDP clients")
	sample := flag.Duration("sample", 10*time.Second, "sampling interval of RSS, goroutines and open files")
	flag.Parse()
	testkit.Main("soak", func(ctx context.Context) (bool, error) {
		tmp, err := os.MkdirTemp("", "virtkey-soak-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(tmp)
		rep, err := soak.Run(ctx, soak.Options{Duration: *d, Clients: *clients, Dir: filepath.Join(tmp, "state"), Sample: *sample, Progress: os.Stderr})
		if err != nil {
			return false, err
		}
		rep.Print(os.Stdout)
		return len(rep.Failures) > 0, nil
	})
}
