package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/manage"
	"github.com/virtkey/virtkey/internal/server"
	"github.com/virtkey/virtkey/internal/vktest"
)

// output runs virtkey with args and returns what it printed on stdout.
func output(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{Env: manage.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(string) string { return "" }}}
	if err := run(context.Background(), e, args); err != nil {
		t.Fatalf("virtkey %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// tableFlags are the flags each listed command parses, asked from the
// command itself ("virtkey WORDS -h"), by command path.
func tableFlags(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, c := range commands() {
		if c.group == "" {
			continue
		}
		words, _ := cli.SplitSynopsis(c.synopsis)
		e := &env{Env: manage.Env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
			Getenv: func(string) string { return "" }}}
		var help *cli.HelpError
		if errors.As(run(context.Background(), e, append(words, "-h")), &help) {
			help.Flags.VisitAll(func(f *flag.Flag) { out[strings.Join(words, " ")] = append(out[strings.Join(words, " ")], f.Name) })
		} else {
			out[strings.Join(words, " ")] = nil
		}
	}
	return out
}

// The table's command paths: every listed command, with its words.
func tablePaths(t *testing.T) [][]string {
	var out [][]string
	for _, c := range commands() {
		if c.group == "" {
			continue
		}
		words, _ := cli.SplitSynopsis(c.synopsis)
		if len(words) == 0 || words[0] != c.name {
			t.Fatalf("the synopsis %q of %q does not start with its name", c.synopsis, c.name)
		}
		out = append(out, words)
	}
	return out
}

// The man page is valid roff (groff finds nothing to warn about) and
// lists every command of the table, every flag of run and every flag of
// every other command; "man" itself is not listed.
func TestManPage(t *testing.T) {
	t.Parallel()
	page := output(t, "man")
	groff := vktest.RequireTool(t, "groff", "groff-base")
	f := filepath.Join(t.TempDir(), "virtkey.1")
	if err := os.WriteFile(f, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-k", "-ww", "-z", f)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff -ww: %v\n%s", err, out)
	}
	roff := func(s string) string { return strings.ReplaceAll(s, "-", `\-`) }

	for _, words := range tablePaths(t) {
		if !strings.Contains(page, `\fBvirtkey `+roff(strings.Join(words, " "))+`\fR`) {
			t.Errorf("the man page lacks the command %q", strings.Join(words, " "))
		}
	}
	cfg := server.Default()
	for _, name := range cfg.FlagNames() {
		if !strings.Contains(page, `\fB\-\-`+roff(name)+`\fR`) {
			t.Errorf("the man page lacks run's flag --%s", name)
		}
	}
	for path, flags := range tableFlags(t) {
		for _, name := range flags {
			if !strings.Contains(page, `\fB\-\-`+roff(name)+`\fR`) {
				t.Errorf("the man page lacks --%s of %q", name, path)
			}
		}
	}
	for _, c := range cli.ExitCodes {
		if !strings.Contains(page, roff(c.Meaning)) {
			t.Errorf("the man page lacks exit code %d", c.Code)
		}
	}
	if strings.Contains(page, `\fBvirtkey man\fR`) {
		t.Error("the man page lists the hidden man command")
	}
	if strings.Contains(output(t, "help"), "virtkey man") {
		t.Error("virtkey help lists the hidden man command")
	}
}

// completer runs one shell's completion of a command line (whose last
// word is being completed) and returns the words it offers.
type completer func(t *testing.T, script string, line []string) []string

// The bash, zsh and fish scripts each complete every command of the table
// word by word, every flag of every command, the values of run's flags
// that take a fixed set, and a command's fixed arguments.
func TestCompletion(t *testing.T) {
	t.Parallel()
	shells := map[string]completer{"bash": bashComplete, "zsh": zshComplete, "fish": fishComplete}
	for _, shell := range cli.Shells {
		t.Run(shell, func(t *testing.T) {
			t.Parallel()
			script := filepath.Join(t.TempDir(), "virtkey."+shell)
			if err := os.WriteFile(script, []byte(output(t, "completion", shell)), 0o644); err != nil {
				t.Fatal(err)
			}
			complete := shells[shell]
			want := func(line []string, words ...string) {
				t.Helper()
				got := complete(t, script, line)
				for _, w := range words {
					if !slices.Contains(got, w) {
						t.Errorf("%s: %q offers %q, not %q", shell, line, got, w)
					}
				}
			}
			// Every command path, word by word.
			for _, words := range tablePaths(t) {
				for i := range words {
					want(append(append([]string{"virtkey"}, words[:i]...), ""), words[i])
				}
			}
			// Every flag of every command.
			for path, flags := range tableFlags(t) {
				var dashed []string
				for _, f := range flags {
					dashed = append(dashed, "--"+f)
				}
				want(append(append([]string{"virtkey"}, strings.Fields(path)...), "--"), dashed...)
			}
			cfg := server.Default()
			var runFlags []string
			for _, f := range cfg.FlagNames() {
				runFlags = append(runFlags, "--"+f)
			}
			want([]string{"virtkey", "run", "--"}, runFlags...)
			// Values, after flags that take one, and fixed arguments.
			want([]string{"virtkey", "run", "--transport", ""}, "udp", "uhid")
			want([]string{"virtkey", "run", "--state-dir", "/x", "--keystore", ""}, "software", "tpm", "tpm+eddsa")
			want([]string{"virtkey", "--device", "/dev/hidraw0", "creds", ""}, "list", "rename", "delete")
			want([]string{"virtkey", "config", "always-uv", ""}, "on", "off")
			want([]string{"virtkey", "completion", ""}, cli.Shells...)
			if got := complete(t, script, []string{"virtkey", "m"}); slices.Contains(got, "man") {
				t.Errorf("%s offers the hidden man command: %q", shell, got)
			}
			if got := complete(t, script, []string{"virtkey", "run", "--"}); slices.Contains(got, "--rp") {
				t.Errorf("%s offers creds' --rp for run: %q", shell, got)
			}
		})
	}
}

func bashComplete(t *testing.T, script string, line []string) []string {
	t.Helper()
	prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _virtkey; printf '%s\n' "${COMPREPLY[@]}"`
	return shellWords(t, exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", prog, "bash", script}, line...)...))
}

// zshComplete calls the completion function with the completion system's
// builtins replaced: compadd prints the words it is given (zsh itself
// would filter them by the prefix typed), _files prints a marker.
func zshComplete(t *testing.T, script string, line []string) []string {
	t.Helper()
	zsh := vktest.RequireTool(t, "zsh", "zsh")
	prog := `compadd() { while (($#)) && [[ $1 != -- ]]; do shift; done; shift; print -rl -- "$@"; }
_files() { print -r -- '<files>'; }
compset() { return 0; }
compdef() { :; }
source "$1"; shift
words=("$@"); CURRENT=$#
_virtkey`
	got := shellWords(t, exec.Command(zsh, append([]string{"-f", "-c", prog, "zsh", script}, line...)...))
	// Filter by the prefix as zsh would.
	prefix := line[len(line)-1]
	var out []string
	for _, w := range got {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out
}

func fishComplete(t *testing.T, script string, line []string) []string {
	t.Helper()
	fish := vktest.RequireTool(t, "fish", "fish")
	// complete -C prints "WORD\tDESCRIPTION" lines.
	got := shellWords(t, exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, script, strings.Join(line, " ")))
	for i, w := range got {
		got[i], _, _ = strings.Cut(w, "\t")
	}
	return got
}

func shellWords(t *testing.T, cmd *exec.Cmd) []string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s: %v\n%s", cmd.Args[0], err, stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// A build without version or VCS information (scripts/package.sh builds
// with -buildvcs=false) reports the version and commit stamped by the
// linker; a test binary has neither, like such a build.
func TestStampedVersion(t *testing.T) {
	version, _, _ := buildVersion()
	if version != "(devel)" && version != "" {
		t.Skipf("this test binary has a module version (%s): nothing to stamp", version)
	}
	defer func(v, r string) { stampedVersion, stampedRevision = v, r }(stampedVersion, stampedRevision)
	stampedVersion, stampedRevision = "v1.2.3+git20260101.abcdef", "abcdef0123 (with uncommitted changes)"
	version, _, revision := buildVersion()
	if version != stampedVersion || revision != "revision abcdef0123 (with uncommitted changes) (stamped at build)" {
		t.Errorf("buildVersion() = %q, %q", version, revision)
	}
	out := output(t, "version")
	if !strings.HasPrefix(out, "virtkey v1.2.3+git20260101.abcdef (module ") {
		t.Errorf("virtkey version:\n%s", out)
	}
}
