// Package cli is what virtkey's commands share about the command line: the
// exit codes, the usage error, the one way flags are parsed (mixed with
// arguments, in any order) and the one repeatable-flag type. The commands
// themselves live in cmd/virtkey (the table), internal/server (run),
// internal/doctor and internal/manage.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Exit codes of every virtkey command; [ExitCode] maps an error to one.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitWrongPIN    = 3
	ExitPINBlocked  = 4
	ExitNotFound    = 5
	ExitPINNeeded   = 6
	ExitNoDevice    = 7
	ExitUnsupported = 8
)

// ExitCodes is the table "virtkey help" and README print.
var ExitCodes = []struct {
	Code    int
	Meaning string
}{
	{ExitOK, "success (doctor: no problem found)"},
	{ExitFailure, "failure: the key refused or failed the operation, the link to it broke, run could not start, doctor found a problem, or backup/restore refused (the key is running, a non-empty state directory, a wrong passphrase, a damaged backup)"},
	{ExitUsage, "usage: a bad command line or flag value"},
	{ExitWrongPIN, "wrong PIN (the message says how many retries are left), or built-in user verification failed"},
	{ExitPINBlocked, "PIN blocked: too many wrong PINs in a row (power-cycle the key), no retries left (only \"virtkey reset\" helps), or built-in UV blocked"},
	{ExitNotFound, "not found: no such credential"},
	{ExitPINNeeded, "PIN needed: no PIN is set on the key, or no way to ask for one (no $VIRTKEY_PIN and no terminal)"},
	{ExitNoDevice, "no device: none found, several found, or it does not answer"},
	{ExitUnsupported, "not supported by this key (backup: the TPM key store, whose passkeys cannot leave the TPM)"},
}

// ExitCode is the exit status for a command's error: 0 for none or
// [ErrHelp], [ExitUsage] for [ErrUsage] (and [UsageError]), the code of an
// error with an ExitCode() int method, else [ExitFailure]. main and the
// tests use it alike.
func ExitCode(err error) int {
	var coded interface{ ExitCode() int }
	switch {
	case err == nil, errors.Is(err, ErrHelp):
		return ExitOK
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.As(err, &coded):
		return coded.ExitCode()
	}
	return ExitFailure
}

// ErrUsage means the command line was wrong and the usage text was already
// printed; main prints nothing more and exits with [ExitUsage].
var ErrUsage = errors.New("usage")

// ErrHelp means the usage text was printed because -h asked for it: main
// exits 0.
var ErrHelp = errors.New("help requested")

// HelpError is [ErrHelp] from [Parse] or [ParseLeading] with the flags of
// the command whose -h asked for it: the man page and the shell
// completions learn every command's flags by asking it for its help.
type HelpError struct{ Flags *flag.FlagSet }

func (e *HelpError) Error() string { return ErrHelp.Error() }

// Is makes errors.Is(err, ErrHelp) hold.
func (e *HelpError) Is(target error) bool { return target == ErrHelp }

// UsageError is a bad flag value or argument: main prints it and exits
// with [ExitUsage].
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is [ExitUsage].
func (e *UsageError) ExitCode() int { return ExitUsage }

// Usagef returns a [UsageError] with the formatted message.
func Usagef(format string, a ...any) error {
	return &UsageError{fmt.Errorf(format, a...)}
}

// NewFlagSet returns a flag set that reports errors (and -h) on stderr
// with "usage: SYNOPSIS" and the flags' defaults, for [Parse]. The flags
// named in order come first, in that order; the others follow sorted.
func NewFlagSet(name, synopsis string, stderr io.Writer, order ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n", synopsis)
		printFlags(stderr, fs, order)
	}
	return fs
}

// printFlags prints the defaults of fs as flag.PrintDefaults does, the
// flags named in order first.
func printFlags(w io.Writer, fs *flag.FlagSet, order []string) {
	var flags []*flag.Flag
	for _, name := range order {
		if f := fs.Lookup(name); f != nil {
			flags = append(flags, f)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(order, f.Name) {
			flags = append(flags, f)
		}
	})
	for _, f := range flags {
		// One flag at a time through the flag package's own formatting.
		one := flag.NewFlagSet("", flag.ContinueOnError)
		one.SetOutput(w)
		one.Var(f.Value, f.Name, f.Usage)
		one.Lookup(f.Name).DefValue = f.DefValue
		one.PrintDefaults()
	}
}

// Parse parses flags mixed with positional arguments ("creds rename ID
// --name N" as well as "creds rename --name N ID"); "--" ends the flags.
// With dashArgs, an argument that starts with "-" but names no flag is
// positional (a base64url credential ID may start with "-"). It returns
// the positional arguments, or [ErrUsage] (the flag package has printed
// why) or [ErrHelp] (a [*HelpError]).
func Parse(fs *flag.FlagSet, args []string, dashArgs bool) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		switch {
		case f == nil && dashArgs && name != "h" && name != "help":
			pos = append(pos, a)
		case f == nil || hasValue || isBoolFlag(f):
			flags = append(flags, a) // an unknown flag fails in Parse
		case i+1 < len(args):
			flags = append(flags, a, args[i+1])
			i++
		default:
			flags = append(flags, a) // missing value: Parse says so
		}
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &HelpError{fs}
		}
		return nil, ErrUsage
	}
	return pos, nil
}

// ParseLeading parses the flags before the first positional argument, as
// flag.FlagSet.Parse does, and returns the rest ("--device D creds --json
// list": the flags before a subcommand).
func ParseLeading(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &HelpError{fs}
		}
		return nil, ErrUsage
	}
	return fs.Args(), nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// StringList is a repeatable string flag (--enterprise-rp, --rp). An empty
// value is refused.
type StringList []string

func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set appends s.
func (l *StringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}

var _ flag.Value = (*StringList)(nil)

// OrList renders ["a", "b", "c"] as "a, b or c".
func OrList(v []string) string {
	if len(v) < 2 {
		return strings.Join(v, "")
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}
