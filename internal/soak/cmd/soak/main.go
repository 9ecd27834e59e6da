// Command soak runs the soak test (scripts/soak.sh, package internal/soak)
// and prints the samples; the exit status is 1 on a failure (an error the
// protocol does not allow, a hang, growth after the warm-up).
//
//	go run [-race] ./internal/soak/cmd/soak [-d 10m] [-clients 16] [-sample 10s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/virtkey/virtkey/internal/soak"
)

func main() {
	d := flag.Duration("d", 10*time.Minute, "how long the clients run")
	clients := flag.Int("clients", 16, "concurrent UDP clients")
	sample := flag.Duration("sample", 10*time.Second, "sampling interval of RSS, goroutines and open files")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "virtkey-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	defer os.RemoveAll(tmp)
	rep, err := soak.Run(ctx, soak.Options{Duration: *d, Clients: *clients, Dir: filepath.Join(tmp, "state"), Sample: *sample, Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	rep.Print(os.Stdout)
	if len(rep.Failures) > 0 {
		os.RemoveAll(tmp)
		os.Exit(1)
	}
}
