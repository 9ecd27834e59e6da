package server

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0) // non-blocking: reads take deadlines
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// An existing passphrase store is unlocked with a passphrase typed on the
// terminal (stdin), without echo, when nothing else gives it; a new or
// key-file store never asks.
func TestPassphrasePrompt(t *testing.T) {
	t.Parallel()
	master, tty := openPTY(t)
	protected := newPassphraseStore(t, "pw")
	none := func(string) string { return "" }

	var prompt bytes.Buffer
	fresh := passphraseSource{stateDir: filepath.Join(t.TempDir(), "fresh"), getenv: none, stdin: tty, prompt: &prompt}
	if got, err := fresh.read(); err != nil || got != nil || prompt.Len() != 0 {
		t.Fatalf("a new store: %q, %v, asked %q; want nil, no question", got, err, prompt.String())
	}

	src := passphraseSource{stateDir: protected, getenv: none, stdin: tty, prompt: &prompt}
	done := make(chan struct{})
	var got []byte
	var err error
	go func() {
		defer close(done)
		got, err = src.read()
	}()
	// Type once the prompt has turned echo off.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prompt never turned echo off")
		}
	}
	if _, err := master.WriteString("typed secret\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the prompt did not return")
	}
	if err != nil || string(got) != "typed secret" {
		t.Fatalf("read %q, %v; want the typed passphrase", got, err)
	}
	if !strings.Contains(prompt.String(), "Passphrase of the virtkey key store in "+protected) {
		t.Errorf("prompt %q", prompt.String())
	}
	// No echo: what the terminal showed holds no passphrase.
	if err := master.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 256)
	n, _ := master.Read(echo)
	if strings.Contains(string(echo[:n]), "typed secret") {
		t.Errorf("the terminal echoed the passphrase: %q", echo[:n])
	}

	// An empty line is no passphrase.
	master.WriteString("\n")
	if got, err := src.read(); err == nil {
		t.Errorf("an empty passphrase was accepted: %q", got)
	}
}
