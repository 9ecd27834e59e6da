package cli

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// Doc describes a program's command line for its man page ([Doc.Man]) and
// its shell completions ([Doc.Completion]). cmd/virtkey builds it from its
// command table and from the flags each command defines, so that neither
// can drift from the program.
type Doc struct {
	Name     string // "virtkey"
	Summary  string // one line, for NAME
	Version  string // the footer of the man page
	Overview string // DESCRIPTION: paragraphs separated by blank lines
	// Flags are the program's own flags, before a command.
	Flags    []DocFlag
	Groups   []DocGroup
	Commands []DocCommand
	// Sections follow COMMANDS and EXIT STATUS in the man page:
	// ENVIRONMENT, FILES, SEE ALSO…
	Sections []DocSection
}

// DocGroup is a heading the commands are listed under, with the lines that
// end it in the usage text.
type DocGroup struct{ Heading, Notes string }

// DocSection is a man page section: paragraphs, or a list when Items is
// set.
type DocSection struct {
	Title string
	Text  string
	Items [][2]string // term, description
}

// DocCommand is one command: "creds rename" is the words creds, rename.
type DocCommand struct {
	Words    []string
	Synopsis string // the command line after the program's name
	Summary  string
	Group    string // the [DocGroup] heading; "" hides the command
	Flags    []DocFlag
	// Args are the words its first argument may be ("on", "off").
	Args []string
}

// DocFlag is one flag of a command.
type DocFlag struct {
	Name, Usage, Default string
	Value                string   // what its value is called: string, duration…
	Bool                 bool     // takes no value
	Values               []string // the values it accepts, when a fixed set
}

// Path is the command's words joined by spaces.
func (c DocCommand) Path() string { return strings.Join(c.Words, " ") }

// DocFlags lists the flags of fs in the order of [NewFlagSet]'s order (the
// others sorted after), with the accepted values that values names.
func DocFlags(fs *flag.FlagSet, order []string, values map[string][]string) []DocFlag {
	var out []DocFlag
	add := func(f *flag.Flag) {
		value, _ := flag.UnquoteUsage(f)
		out = append(out, DocFlag{Name: f.Name, Usage: f.Usage, Default: f.DefValue, Value: value,
			Bool: isBoolFlag(f), Values: values[f.Name]})
	}
	for _, name := range order {
		if f := fs.Lookup(name); f != nil {
			add(f)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(order, f.Name) {
			add(f)
		}
	})
	return out
}

var (
	commandWord = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	choiceArg   = regexp.MustCompile(`^[a-z0-9+-]+(\|[a-z0-9+-]+)+$`)
)

// SplitSynopsis splits a synopsis ("config always-uv on|off") into the
// command's words (config, always-uv: leading lower-case words) and the
// words its first argument may be (on, off: a first argument written
// a|b|c).
func SplitSynopsis(synopsis string) (words, args []string) {
	fields := strings.Fields(synopsis)
	i := 0
	for i < len(fields) && commandWord.MatchString(fields[i]) {
		i++
	}
	words = fields[:i]
	if i < len(fields) && choiceArg.MatchString(fields[i]) {
		args = strings.Split(fields[i], "|")
	}
	return words, args
}

// visible are the commands listed in the man page and offered by the
// completions.
func (d *Doc) visible() []DocCommand {
	var out []DocCommand
	for _, c := range d.Commands {
		if c.Group != "" {
			out = append(out, c)
		}
	}
	return out
}

// subcommands are the words that may follow prefix (a command path, ""
// for the program itself), in table order.
func (d *Doc) subcommands(prefix []string) []string {
	var out []string
	for _, c := range d.visible() {
		if len(c.Words) > len(prefix) && slices.Equal(c.Words[:len(prefix)], prefix) && !slices.Contains(out, c.Words[len(prefix)]) {
			out = append(out, c.Words[len(prefix)])
		}
	}
	return out
}

// summaryOf is the summary of the command or the group of commands at
// path: its own, or its subcommands'.
func (d *Doc) summaryOf(path []string) string {
	var subs []string
	for _, c := range d.visible() {
		if slices.Equal(c.Words, path) {
			return c.Summary
		}
		if len(c.Words) > len(path) && slices.Equal(c.Words[:len(path)], path) {
			subs = append(subs, c.Words[len(path)])
		}
	}
	return strings.Join(subs, ", ")
}

// prefixes are every command path and every proper prefix of one, the
// program itself ("") first.
func (d *Doc) prefixes() [][]string {
	out := [][]string{{}}
	seen := map[string]bool{"": true}
	for _, c := range d.visible() {
		for n := 1; n <= len(c.Words); n++ {
			p := strings.Join(c.Words[:n], " ")
			if !seen[p] {
				seen[p] = true
				out = append(out, c.Words[:n])
			}
		}
	}
	return out
}

// shortUsage is the first clause of a flag's usage: for the one-line
// descriptions of the completions.
func shortUsage(u string) string {
	for _, sep := range []string{" (", "; ", ": ", ", "} {
		if i := strings.Index(u, sep); i > 0 {
			u = u[:i]
		}
	}
	if r := []rune(u); len(r) > 70 {
		u = string(r[:69]) + "…"
	}
	return u
}

// Completion writes the completion script of shell: bash, zsh or fish.
func (d *Doc) Completion(w io.Writer, shell string) error {
	switch shell {
	case "bash":
		return d.bash(w)
	case "zsh":
		return d.zsh(w)
	case "fish":
		return d.fish(w)
	}
	return fmt.Errorf("no completion for the shell %q: want bash, zsh or fish", shell)
}

// Shells are the shells [Doc.Completion] writes scripts for.
var Shells = []string{"bash", "zsh", "fish"}
