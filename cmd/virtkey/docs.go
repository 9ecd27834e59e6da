package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/manage"
	"github.com/virtkey/virtkey/internal/server"
)

// runMan is "virtkey man" (not listed in the usage text): the man page, in
// roff, made from the command table and the flags each command defines.
// scripts/package.sh puts it in the packages.
func runMan(ctx context.Context, e *env, args []string) error {
	fs := cli.NewFlagSet("virtkey man", "virtkey man > virtkey.1   (the man page, roff)", e.Stderr)
	pos, err := cli.Parse(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("man: unexpected argument %q", pos[0])
	}
	return describe(ctx).Man(e.Stdout)
}

// runCompletion is "virtkey completion bash|zsh|fish": the completion
// script of the shell, made like the man page.
func runCompletion(ctx context.Context, e *env, args []string) error {
	fs := cli.NewFlagSet("virtkey completion", "virtkey completion bash|zsh|fish\n"+
		"  bash: source <(virtkey completion bash)   zsh: virtkey completion zsh > \"${fpath[1]}/_virtkey\"\n"+
		"  fish: virtkey completion fish > ~/.config/fish/completions/virtkey.fish", e.Stderr)
	pos, err := cli.Parse(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !slices.Contains(cli.Shells, pos[0]) {
		return cli.Usagef("completion: want one of %s", cli.OrList(cli.Shells))
	}
	return describe(ctx).Completion(e.Stdout, pos[0])
}

// describe describes virtkey's command line: the command table, and the
// flags of each command, learnt by asking the command itself for its help
// (cli.HelpError carries its flag set), so that the man page and the
// completions list exactly what the commands parse.
func describe(ctx context.Context) *cli.Doc {
	version, _, _ := buildVersion()
	values := server.FlagValues()
	d := &cli.Doc{
		Name:    "virtkey",
		Summary: "a virtual FIDO2 security key for Linux, and a FIDO2 key manager",
		Version: version,
		Overview: "virtkey run serves a CTAP2 authenticator that looks to the machine like a USB-HID FIDO2 security key: " +
			"through the kernel's /dev/uhid browsers, libfido2 and OpenSSH see a hardware key; over UDP it speaks the " +
			"SoloKeys simulation protocol that python-fido2 and the virtkey CLI use. Its passkeys live in an encrypted " +
			"software key store or inside a TPM 2.0, in the state directory.\n\n" +
			"The other commands are a CTAP client: they manage the virtual key or any hardware FIDO2 key " +
			"(PIN, passkeys, reset, settings). virtkey doctor says what this machine and user lack for virtkey run " +
			"with the same flags.",
		Sections: []cli.DocSection{
			{Title: "Environment", Items: [][2]string{
				{"VIRTKEY_DEVICE", "the key the management commands talk to, as --device"},
				{"VIRTKEY_PIN, VIRTKEY_NEW_PIN", "the PIN (and the new PIN of pin change); else it is asked on the terminal"},
				{"VIRTKEY_PASSPHRASE", "the passphrase of a passphrase-protected software key store (virtkey run)"},
				{"CREDENTIALS_DIRECTORY", "systemd's credentials: virtkey run reads the passphrase from the credential " + server.CredentialName + " there (LoadCredential=)"},
				{"PINENTRY_PROGRAM", "the program of --presence pinentry (default: pinentry on $PATH)"},
				{"XDG_STATE_HOME", "the default state directory is $XDG_STATE_HOME/virtkey, else ~/.local/state/virtkey"},
			}},
			{Title: "Files", Items: [][2]string{
				{"~/.local/state/virtkey", "the key's state: master.key (or passphrase.json), state.db, attestation/"},
				{"/dev/uhid", "where virtkey run --transport uhid creates the key; the udev rule 70-virtkey-uhid.rules gives it to the group virtkey"},
				{"virtkey.service", "the systemd user unit (systemctl --user enable --now virtkey)"},
			}},
			{Title: "See also", Text: "fido2-token(1), ssh-keygen(1), udev(7), systemd.exec(5)"},
		},
	}
	for _, g := range groups {
		d.Groups = append(d.Groups, cli.DocGroup{Heading: g.heading, Notes: g.notes})
	}
	for _, c := range commands() {
		words, args := cli.SplitSynopsis(c.synopsis)
		d.Commands = append(d.Commands, cli.DocCommand{Words: words, Synopsis: c.synopsis, Summary: c.summary,
			Group: c.group, Args: args, Flags: flagsOf(ctx, words, values)})
	}
	// The flags before a command are the management commands' common ones.
	d.Flags = append(flagsOf(ctx, []string{"--json"}, values),
		cli.DocFlag{Name: "help", Usage: "print the usage text", Bool: true},
		cli.DocFlag{Name: "version", Usage: "print the version", Bool: true})
	return d
}

// flagsOf runs "virtkey WORDS -h" silently and returns the flags of the
// command that answered.
func flagsOf(ctx context.Context, words []string, values map[string][]string) []cli.DocFlag {
	quiet := &env{Env: manage.Env{
		Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard,
		Getenv:  func(string) string { return "" },
		OpenTTY: func() (*os.File, error) { return nil, errors.New("no terminal") },
	}}
	var help *cli.HelpError
	if !errors.As(run(ctx, quiet, append(slices.Clone(words), "-h")), &help) {
		return nil
	}
	flags := cli.DocFlags(help.Flags, nil, values)
	if len(words) > 0 && words[0] == "run" {
		cfg := server.Default()
		flags = cli.DocFlags(help.Flags, cfg.FlagNames(), values)
	}
	for i, f := range flags {
		switch {
		case f.Default == server.DefaultStateDir(): // not this machine's
			flags[i].Default = "$XDG_STATE_HOME/virtkey, else ~/.local/state/virtkey"
		case f.Name == "vid" || f.Name == "pid": // USB ids are hex
			if n, err := strconv.ParseUint(f.Default, 10, 16); err == nil {
				flags[i].Default = fmt.Sprintf("%#04x", n)
			}
		}
	}
	return flags
}
