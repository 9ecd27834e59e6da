package inproc

import (
	"context"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/vkey"
	"github.com/virtkey/virtkey/ctap2"
)

// Control is the key's control plane, in process: the operations of the
// HTTP control API (package control) — seed, read and delete credentials,
// switch user verification and presence, answer queued presence requests,
// set response overrides and the PIN, power-cycle, subscribe to events —
// as Go calls. Private keys may always leave and enter an in-process key.
//
//	k.Control().SetPresence(ctx, control.PresenceManual)
//	cancel := k.Control().Subscribe(func(ev control.Event) { ... })
//
// To serve it over HTTP too, register it with a [control.Server]:
// srv.AddKey("inproc", k.Control(), nil).
func (k *Key) Control() *vkey.Key { return k.control }

func newControls(p ctap2.Presence) *vkey.Controls {
	name := "auto"
	if p != nil {
		name = "custom"
	}
	return vkey.NewControls("", p, name)
}

func (k *Key) newControl(cfg ctap2.Config) (*vkey.Key, error) {
	return k.controls.Key(vkey.KeyOptions{
		Auth: k.Authenticator, Device: pipeDevice{k}, UV: cfg.UV,
		BackupEligible: cfg.BackupEligible, BackupState: cfg.BackupState,
		StateDir: k.dir, Ephemeral: k.tempDir, KeyStore: "software", ExportAllowed: true,
	})
}

// pipeDevice is the in-memory transport as the control plane sees it.
type pipeDevice struct{ k *Key }

func (pipeDevice) Attach() string  { return "inproc" }
func (pipeDevice) UDPAddr() string { return "" }
func (pipeDevice) HIDRaw() string  { return "" }
func (d pipeDevice) Replug(context.Context) error {
	d.k.PowerCycle()
	return nil
}

var _ control.Key = (*vkey.Key)(nil)
