//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
)

// The end-to-end test of the management CLI: it builds cmd/virtkey, serves
// a key with "virtkey run" on a loopback UDP port, and runs the management
// scenario with the built binary, one process per command.
// VIRTKEY_BIN=/path/to/virtkey tests a prebuilt binary; -short skips it.

var (
	e2eBinOnce sync.Once
	e2eBin     string
	e2eBinErr  error
)

// virtkeyBinary builds the command once per test run.
func virtkeyBinary(t *testing.T) string {
	t.Helper()
	e2eBinOnce.Do(func() {
		if bin := os.Getenv("VIRTKEY_BIN"); bin != "" {
			e2eBin = bin
			return
		}
		dir, err := os.MkdirTemp("", "virtkey-manage-e2e-")
		if err != nil {
			e2eBinErr = err
			return
		}
		e2eBin = filepath.Join(dir, "virtkey")
		out, err := exec.Command("go", "build", "-o", e2eBin, ".").CombinedOutput()
		if err != nil {
			e2eBinErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if e2eBinErr != nil {
		t.Fatal(e2eBinErr)
	}
	return e2eBin
}

// freeUDPAddr returns a loopback UDP address that was free a moment ago.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// startVirtkey runs "virtkey run" on a fresh state directory and waits
// until it answers; the process is stopped with SIGTERM at cleanup.
func startVirtkey(t *testing.T, bin string) string {
	t.Helper()
	addr := freeUDPAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--transport", "udp", "--udp-listen", addr, "--state-dir", t.TempDir(),
		"--presence", "auto", "--reset-window", "0", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = cleanEnv(nil)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("virtkey run: %v\n%s", err, logs.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("virtkey run did not stop on SIGTERM\n%s", logs.String())
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("virtkey run exited: %v\n%s", err, logs.String())
		default:
		}
		if answers(addr) {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("virtkey run does not answer on %s\n%s", addr, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// answers reports whether a key answers getInfo at addr.
func answers(addr string) bool {
	conn, err := udp.Dial(addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	d, err := client.Open(ctx, conn, nil)
	if err != nil {
		return false
	}
	_, err = d.GetInfo(ctx)
	return err == nil
}

// cleanEnv is the test's environment without VIRTKEY_* variables, plus env.
func cleanEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIRTKEY_") {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// binaryRunner runs the built binary in a session of its own, so that it
// has no controlling terminal to ask a PIN on, with stdin from /dev/null.
func binaryRunner(bin string) cliRunner {
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
	bin := virtkeyBinary(t)
	addr := startVirtkey(t, bin)
	run := binaryRunner(bin)

	// The exit codes reach the shell, and "virtkey:" prefixes the words.
	r := run(t, nil, "--device", "udp:"+addr, "creds", "rename", "x")
	if r.code != exitUsage {
		t.Fatalf("usage error: exit %d, %q", r.code, r.stderr)
	}
	r = run(t, nil, "--device", "udp:"+freeUDPAddr(t), "info")
	if r.code != exitNoDevice || !strings.HasPrefix(r.stderr, "virtkey: no FIDO key answers") {
		t.Fatalf("no device: exit %d, %q", r.code, r.stderr)
	}
	r = run(t, nil, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "virtkey creds list") {
		t.Fatalf("help: exit %d, %q", r.code, r.stdout)
	}
	manageScenario(t, addr, run)
}
