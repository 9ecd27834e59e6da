package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/virtkey/virtkey/internal/backup"
	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/server"
)

// runBackup is "virtkey backup": an encrypted copy of the software key
// store's state directory (internal/backup).
func runBackup(ctx context.Context, e *env, args []string) error {
	var out, passFile string
	cfg, _, err := parseBackupFlags(e, "backup",
		"virtkey backup --out FILE [--state-dir DIR] [--keystore software|tpm|tpm+eddsa] [--passphrase-file FILE]\n"+
			"  writes the key's passkeys, PIN and settings (state.db) with the key material (master.key or passphrase.json,\n"+
			"  device.key, epoch, attestation/) to FILE, encrypted with a passphrase (age, scrypt). Stop the key first.\n"+
			"  The passphrase comes from --passphrase-file, "+backup.EnvPassphrase+", else the terminal (twice)",
		args, 0, []string{"state-dir", "keystore"}, func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "the backup file to write (it must not exist)")
			fs.StringVar(&passFile, "passphrase-file", "", "read the backup passphrase from this file (else "+backup.EnvPassphrase+", else the terminal)")
		})
	if err != nil {
		return err
	}
	if out == "" {
		return cli.Usagef("backup: --out FILE is required")
	}
	secret := backup.Secret{What: "backup passphrase", File: passFile, FileFlag: "--passphrase-file", Env: backup.EnvPassphrase,
		Getenv: e.Getenv, OpenTTY: e.OpenTTY}
	m, err := backup.Create(ctx, backup.Options{
		StateDir: cfg.StateDir, Keystore: cfg.Keystore, Out: out,
		Passphrase: func() ([]byte, error) { return secret.Read(true) },
		WorkFactor: e.scryptWorkFactor, Virtkey: moduleVersion(),
	})
	if err != nil {
		return err
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, strings.TrimPrefix(f.Name, "state/"))
	}
	fmt.Fprintf(e.Stdout, "wrote %s: %s of %s, encrypted with the backup passphrase\n", out, strings.Join(names, ", "), cfg.StateDir)
	fmt.Fprintf(e.Stdout, "whoever has this file and its passphrase has your passkeys: keep them apart. Restore with: virtkey restore %s\n", out)
	if m.Keystore == backup.KeystorePassphrase {
		fmt.Fprintln(e.Stdout, "the key store's own passphrase is not in the file: restoring it, and starting the key, still need it")
	}
	return nil
}

// runRestore is "virtkey restore FILE".
func runRestore(ctx context.Context, e *env, args []string) error {
	var passFile, ksPassFile string
	var force bool
	cfg, pos, err := parseBackupFlags(e, "restore",
		"virtkey restore [--state-dir DIR] [--force] [--passphrase-file FILE] [--keystore-passphrase-file FILE] FILE\n"+
			"  restores a backup made by \"virtkey backup\" into the state directory, which must be new or empty\n"+
			"  unless --force moves it aside. The PIN retries become the lower of the backup's and the replaced\n"+
			"  state's. Stop the key first. The passphrase comes from --passphrase-file, "+backup.EnvPassphrase+",\n"+
			"  else the terminal; a passphrase-protected key store's from --keystore-passphrase-file, "+backup.EnvKeystorePassphrase+",\n"+
			"  else the terminal",
		args, 1, []string{"state-dir"}, func(fs *flag.FlagSet) {
			fs.BoolVar(&force, "force", false, "replace a non-empty state directory (it is moved aside to DIR.before-restore-TIME, not deleted)")
			fs.StringVar(&passFile, "passphrase-file", "", "read the backup passphrase from this file (else "+backup.EnvPassphrase+", else the terminal)")
			fs.StringVar(&ksPassFile, "keystore-passphrase-file", "", "read the passphrase of a passphrase-protected key store from this file (else "+backup.EnvKeystorePassphrase+", else the terminal)")
		})
	if err != nil {
		return err
	}
	secret := backup.Secret{What: "backup passphrase", File: passFile, FileFlag: "--passphrase-file", Env: backup.EnvPassphrase,
		Getenv: e.Getenv, OpenTTY: e.OpenTTY}
	ksSecret := backup.Secret{What: "key store passphrase", File: ksPassFile, FileFlag: "--keystore-passphrase-file", Env: backup.EnvKeystorePassphrase,
		Getenv: e.Getenv, OpenTTY: e.OpenTTY}
	r, err := backup.Restore(ctx, backup.RestoreOptions{
		StateDir: cfg.StateDir, Archive: pos[0], Force: force,
		Passphrase:         func() ([]byte, error) { return secret.Read(false) },
		KeystorePassphrase: func() ([]byte, error) { return ksSecret.Read(false) },
	})
	if err != nil {
		return err
	}
	printRestored(e, pos[0], r)
	return nil
}

func printRestored(e *env, file string, r *backup.Restored) {
	m := r.Manifest
	made := m.Created.Format("2006-01-02 15:04:05 UTC")
	if m.Virtkey != "" {
		made += " by virtkey " + m.Virtkey
	}
	pin := "no PIN"
	if r.PINSet {
		pin = "a PIN"
	}
	plural := "s"
	if r.Credentials == 1 {
		plural = ""
	}
	fmt.Fprintf(e.Stdout, "restored %s (made %s) into %s: %d discoverable credential%s, %s\n", file, made, r.StateDir, r.Credentials, plural, pin)
	switch {
	case r.PINSet && r.CurrentPINSet && r.CurrentPINRetries < r.BackupPINRetries:
		fmt.Fprintf(e.Stdout, "PIN retries: %d, as the replaced state directory had (the backup had %d; a restore never gives retries back)\n", r.PINRetries, r.BackupPINRetries)
	case r.PINSet && r.CurrentPINSet:
		fmt.Fprintf(e.Stdout, "PIN retries: %d, as in the backup (the replaced state directory had %d)\n", r.PINRetries, r.CurrentPINRetries)
	case r.PINSet:
		fmt.Fprintf(e.Stdout, "PIN retries: %d, as in the backup\n", r.PINRetries)
	}
	if r.MovedAside != "" {
		fmt.Fprintf(e.Stdout, "the replaced state directory is now %s: remove it once the restored key works (it holds the old master key)\n", r.MovedAside)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(e.Stdout, "note: %s\n", n)
	}
	fmt.Fprintf(e.Stdout, "start the key as before; the restored state needs no --accept-rollback\n")
}

// parseBackupFlags parses run's flags named in runFlags, the command's
// own flags and want positional arguments.
func parseBackupFlags(e *env, name, synopsis string, args []string, want int, runFlags []string, own func(*flag.FlagSet)) (server.Config, []string, error) {
	cfg := server.Default()
	fs := cli.NewFlagSet("virtkey "+name, synopsis, e.Stderr, runFlags...)
	cfg.RegisterFlags(fs, runFlags...)
	own(fs)
	pos, err := cli.Parse(fs, args, false)
	if err != nil {
		return cfg, nil, err
	}
	switch {
	case len(pos) > want:
		return cfg, nil, cli.Usagef("%s: unexpected argument %q", name, pos[want])
	case len(pos) < want:
		return cfg, nil, cli.Usagef("%s: the backup FILE is missing", name)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, &cli.UsageError{Err: err}
	}
	return cfg, pos, nil
}

// moduleVersion is this binary's module version, for the manifest.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}
