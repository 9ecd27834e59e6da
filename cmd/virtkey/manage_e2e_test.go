//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

// The end-to-end test of the CLI: it builds cmd/virtkey, serves a key with
// "virtkey run" on a loopback UDP port, and checks that exit codes and
// messages reach the shell (internal/vktest builds and runs it).
// VIRTKEY_BIN=/path/to/virtkey tests a prebuilt binary; -short skips it.

func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }

// cleanEnv is the test's environment without VIRTKEY_* variables, plus env.
func cleanEnv(env map[string]string) []string {
	out := vktest.Environ()
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// binaryRunner runs the built binary in a session of its own, so that it
// has no controlling terminal to ask a PIN on, with stdin from /dev/null.
func binaryRunner(bin string) func(t *testing.T, env map[string]string, args ...string) cliResult {
	return func(t *testing.T, env map[string]string, args ...string) cliResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = cleanEnv(env)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("virtkey %s: %v", strings.Join(args, " "), err)
		}
		return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
	}
}

func TestManageE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the virtkey binary; skipped with -short")
	}
	bin := vktest.Binary(t)
	addr := vktest.Start(t, t.TempDir(), "--log-level", "warn").Addr
	run := binaryRunner(bin)

	// The exit codes reach the shell, and "virtkey:" prefixes the words.
	r := run(t, nil, "--device", "udp:"+addr, "creds", "rename", "x")
	if r.code != 2 {
		t.Fatalf("usage error: exit %d, %q", r.code, r.stderr)
	}
	r = run(t, nil, "--device", "udp:"+vktest.FreeUDPAddr(t), "info")
	if r.code != 7 || !strings.HasPrefix(r.stderr, "virtkey: no FIDO key answers") {
		t.Fatalf("no device: exit %d, %q", r.code, r.stderr)
	}
	r = run(t, nil, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "virtkey creds list") {
		t.Fatalf("help: exit %d, %q", r.code, r.stdout)
	}
}
