package cli

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestSplitSynopsis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		synopsis    string
		words, args []string
	}{
		{"run [flags]", []string{"run"}, nil},
		{"creds rename CRED-ID --name N [--display-name D]", []string{"creds", "rename"}, nil},
		{"config always-uv on|off", []string{"config", "always-uv"}, []string{"on", "off"}},
		{"config min-pin-length N [--rp ID]... [--force-change]", []string{"config", "min-pin-length"}, nil},
		{"completion bash|zsh|fish", []string{"completion"}, []string{"bash", "zsh", "fish"}},
		{"backup --out FILE", []string{"backup"}, nil},
	} {
		words, args := SplitSynopsis(tc.synopsis)
		if !slices.Equal(words, tc.words) || !slices.Equal(args, tc.args) {
			t.Errorf("SplitSynopsis(%q) = %q, %q; want %q, %q", tc.synopsis, words, args, tc.words, tc.args)
		}
	}
}

func TestRoffText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"--state-dir":        `\-\-state\-dir`,
		`C:\path`:            `C:\epath`,
		".hidden":            `\&.hidden`,
		"'quoted":            `\&'quoted`,
		"a — b…":             `a \(em b\&...`,
		"in .middle is fine": "in .middle is fine",
	} {
		if got := roffText(in); got != want {
			t.Errorf("roffText(%q) = %q, want %q", in, got, want)
		}
	}
	// Every line of a multi-line text is guarded.
	if got := roffLines("a\n.b\n'c"); got != "a\n\\&.b\n\\&'c" {
		t.Errorf("roffLines: %q", got)
	}
}

// -h hands the flags of the command that was asked, and is still ErrHelp.
func TestHelpErrorCarriesFlags(t *testing.T) {
	t.Parallel()
	fs := NewFlagSet("t", "t", io.Discard)
	fs.String("rp", "", "an RP")
	_, err := Parse(fs, []string{"x", "-h"}, false)
	var h *HelpError
	if !errors.Is(err, ErrHelp) || !errors.As(err, &h) || h.Flags.Lookup("rp") == nil {
		t.Fatalf("Parse -h: %v", err)
	}
	if ExitCode(err) != ExitOK {
		t.Errorf("exit code %d", ExitCode(err))
	}
	if _, err := ParseLeading(fs, []string{"--help"}); !errors.As(err, &h) {
		t.Errorf("ParseLeading --help: %v", err)
	}
	doc := &Doc{Name: "p", Commands: []DocCommand{{Words: []string{"a"}, Synopsis: "a", Group: "g", Flags: DocFlags(fs, nil, nil)}}}
	if err := doc.Completion(io.Discard, "tcsh"); err == nil || !strings.Contains(err.Error(), "bash, zsh or fish") {
		t.Errorf("Completion(tcsh): %v", err)
	}
}
