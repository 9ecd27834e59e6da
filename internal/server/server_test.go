package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/internal/vktest"
)

func udpConfig(t *testing.T) Config {
	c := Default()
	c.Transport, c.UDPListen, c.Presence, c.LogLevel = "udp", "127.0.0.1:0", "auto", "error"
	c.StateDir = filepath.Join(t.TempDir(), "state")
	return c
}

// A key built from a Config serves, power-cycles and closes without a
// process around it (as the control plane builds them).
func TestNewRunPowerCycle(t *testing.T) {
	t.Parallel()
	cfg := udpConfig(t)
	k, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	d := vktest.Dial(t, k.Addr())
	if err := d.SetPIN(ctx, "1234"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		d.GetPINToken(ctx, "0000", 0x04, "")
	}
	if _, err := d.GetPINToken(ctx, "1234", 0x04, ""); err == nil {
		t.Fatal("the PIN works after three wrong ones without a power cycle")
	}
	if err := k.PowerCycle(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.GetPINToken(ctx, "1234", 0x04, ""); err != nil {
		t.Fatalf("after PowerCycle: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"master.key", "state.db", "attestation"} {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, f)); err != nil {
			t.Errorf("state: %v", err)
		}
	}
}

// Nothing is created in the state directory when the Config is invalid or
// the UDP port is taken.
func TestNewLeavesNoState(t *testing.T) {
	t.Parallel()
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, mod := range map[string]func(*Config){
		"bad uv":    func(c *Config) { c.UV = "yes" },
		"busy port": func(c *Config) { c.UDPListen = busy.LocalAddr().String() },
		"no uhid":   func(c *Config) { c.Transport, c.Host.UHID = "uhid", filepath.Join(t.TempDir(), "uhid") },
		"no tpm":    func(c *Config) { c.Keystore, c.TPM = KeystoreTPM, filepath.Join(t.TempDir(), "tpm") },
	} {
		cfg := udpConfig(t)
		mod(&cfg)
		if _, err := New(context.Background(), cfg, nil); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
		if _, err := os.Stat(cfg.StateDir); err == nil {
			t.Errorf("%s: the state directory was created", name)
		}
	}
}

// Validate reports the first bad flag in the order of the flags, the
// transport first.
func TestValidateOrder(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Transport, c.UV, c.Presence = "usb", "yes", "pager"
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "--transport") {
		t.Fatalf("Validate: %v", err)
	}
	c.Transport = "udp"
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "--presence") {
		t.Fatalf("Validate: %v", err)
	}
	if d := Default(); d.Validate() != nil {
		t.Fatalf("the defaults: %v", d.Validate())
	}
}
