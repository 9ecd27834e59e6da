// Command virtkey is a virtual FIDO2 security key and a CTAP client that
// manages any FIDO2 key.
//
//	virtkey run [flags]                      serve a virtual key (internal/server)
//	virtkey backup|restore …                 back up the key's state (internal/backup)
//	virtkey info|pin|creds|reset|config …    manage a key (internal/manage)
//	virtkey doctor [flags]                   check this machine (internal/doctor)
//	virtkey version                          what this binary is
//
// main only dispatches: the table below owns the command names and the
// usage text, and cli.ExitCode maps every error to the exit status.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/manage"
	"github.com/virtkey/virtkey/internal/server"
)

func main() {
	os.Exit(mainEnv(osEnv(), os.Args[1:]))
}

// env is what a command may use of the process and the machine; tests
// replace it.
type env struct {
	manage.Env             // stdin, stdout, stderr, environment, terminal
	host       server.Host // device files: /dev/uhid, /dev/tty, the TPMs
	// scryptWorkFactor is the backup's scrypt log2(N); 0: age's default.
	// Tests lower it.
	scryptWorkFactor int
}

func osEnv() *env { return &env{Env: manage.OSEnv()} }

// mainEnv runs the command in args until SIGINT or SIGTERM, reports its
// error and returns the exit status.
func mainEnv(e *env, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, e, args)
	if err != nil && !errors.Is(err, cli.ErrUsage) && !errors.Is(err, cli.ErrHelp) {
		fmt.Fprintln(e.Stderr, "virtkey:", err)
	}
	return cli.ExitCode(err)
}

// command is one row of virtkey's command table.
type command struct {
	name     string // the first word
	synopsis string // the command line after "virtkey "
	summary  string
	group    string // the heading it is listed under
	run      func(ctx context.Context, e *env, args []string) error
}

// Groups of the usage text, in order, with the lines that end them.
var groups = []struct{ heading, notes string }{
	{"Serve a virtual key", ""},
	{"Back up the virtual key (software key store; stop the key first)",
		"  The backup passphrase comes from --passphrase-file FILE or $VIRTKEY_BACKUP_PASSPHRASE,\n" +
			"  else the terminal.\n"},
	{"Manage a key (the virtual one or a hardware key)",
		"  Common flags (before or after the command):\n" +
			"    --device udp:HOST:PORT | /dev/hidrawN   the key (default: $VIRTKEY_DEVICE, else the only key present)\n" +
			"    --json                                  machine-readable output\n" +
			"  The PIN comes from $VIRTKEY_PIN (the new one of \"pin change\" from $VIRTKEY_NEW_PIN),\n" +
			"  else from the terminal. CRED-ID is base64url as \"creds list\" prints it (standard\n" +
			"  base64 and hex work too).\n"},
	{"Test automation", ""},
	{"Check this machine", ""},
	{"About virtkey", ""},
}

// commands is the command table, in the order "virtkey help" lists it
// (a command without a group is not listed). The man page and the shell
// completions are made from it (docs.go).
func commands() []command {
	t := []command{
		{"run", "run [flags]", "serve a virtual key (virtkey run -h lists the flags)", groups[0].heading, runKey},
		{"backup", "backup --out FILE [flags]", "write an encrypted backup of the key's state directory", groups[1].heading, runBackup},
		{"restore", "restore [--force] [flags] FILE", "restore a backup into the state directory", groups[1].heading, runRestore},
	}
	for _, h := range manage.Commands() {
		name, _, _ := strings.Cut(h.Command, " ")
		t = append(t, command{name, strings.TrimSpace(h.Command + " " + h.Synopsis), h.Summary, groups[2].heading,
			func(ctx context.Context, e *env, args []string) error {
				return manage.Run(ctx, e.Env, append([]string{name}, args...))
			}})
	}
	return append(t,
		command{"ctl", "ctl COMMAND", "drive keys served with run --control (virtkey ctl help)", groups[3].heading, runCtl},
		command{"doctor", "doctor [flags]", "can this user run the key here as run's flags say? (virtkey doctor -h)", groups[4].heading, runDoctor},
		command{"version", "version", "print the version (also --version)", groups[5].heading, runVersion},
		command{"completion", "completion bash|zsh|fish", "print the shell's completion script", groups[5].heading, runCompletion},
		command{"man", "man", "print the man page (roff); not listed", "", runMan},
		command{"help", "help", "print this text (also -h, --help)", groups[5].heading, runHelp},
	)
}

// run dispatches args to a command.
func run(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		printUsage(e.Stderr)
		return cli.ErrUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	if strings.HasPrefix(name, "-") {
		// Common flags before a management command: --device D info.
		return manage.Run(ctx, e.Env, args)
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.Stderr, "virtkey: unknown command %q\n\n", name)
	printUsage(e.Stderr)
	return cli.ErrUsage
}

func runHelp(_ context.Context, e *env, args []string) error {
	printUsage(e.Stdout)
	return nil
}

// printUsage writes the usage text: the command table by group, then the
// exit codes.
func printUsage(w io.Writer) {
	fmt.Fprintln(w, "virtkey — a virtual FIDO2 security key for Linux, and a FIDO2 key manager")
	table := commands()
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.heading)
		for _, c := range table {
			if c.group != g.heading {
				continue
			}
			line := "virtkey " + c.synopsis
			if len(line) > 34 {
				fmt.Fprintf(w, "  %s\n  %-34s  %s\n", line, "", c.summary)
			} else {
				fmt.Fprintf(w, "  %-34s  %s\n", line, c.summary)
			}
		}
		fmt.Fprint(w, g.notes)
	}
	fmt.Fprintln(w, "\nExit codes:")
	for _, c := range cli.ExitCodes {
		fmt.Fprintf(w, "  %d  %s\n", c.Code, c.Meaning)
	}
}
