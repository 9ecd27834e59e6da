package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args     []string
		dashArgs bool
		pos      []string
		name     string
	}{
		{[]string{"ID", "--name", "n"}, true, []string{"ID"}, "n"},
		{[]string{"--name", "n", "ID"}, true, []string{"ID"}, "n"},
		{[]string{"--name=n", "-xYz_", "--json"}, true, []string{"-xYz_"}, "n"},
		{[]string{"--name", "n", "--", "--json"}, false, []string{"--json"}, "n"},
		{[]string{"a", "b"}, false, []string{"a", "b"}, ""},
	} {
		fs := NewFlagSet("t", "t", io.Discard)
		name := fs.String("name", "", "")
		fs.Bool("json", false, "")
		pos, err := Parse(fs, tc.args, tc.dashArgs)
		if err != nil || !slices.Equal(pos, tc.pos) || *name != tc.name {
			t.Errorf("Parse(%q) = %q, name %q, %v; want %q, %q", tc.args, pos, *name, err, tc.pos, tc.name)
		}
	}
	if _, err := Parse(NewFlagSet("t", "t", io.Discard), []string{"-nope"}, false); !errors.Is(err, ErrUsage) {
		t.Errorf("unknown flag: %v", err)
	}
	if _, err := Parse(NewFlagSet("t", "t", io.Discard), []string{"-nope", "-h"}, true); !errors.Is(err, ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// The usage lists the ordered flags first, then the rest sorted, with their
// defaults as given (not as a failed parse left them).
func TestUsageOrder(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	fs := NewFlagSet("t", "t [flags]", &out, "zeta", "alpha")
	fs.String("alpha", "a", "first letter")
	fs.String("mid", "", "middle")
	fs.String("zeta", "z", "last letter")
	var l StringList
	fs.Var(&l, "list", "repeatable")
	if _, err := Parse(fs, []string{"--zeta", "changed", "--bogus"}, false); !errors.Is(err, ErrUsage) {
		t.Fatal(err)
	}
	want := "flag provided but not defined: -bogus\nusage: t [flags]\n" +
		"  -zeta string\n    \tlast letter (default \"z\")\n" +
		"  -alpha string\n    \tfirst letter (default \"a\")\n" +
		"  -list value\n    \trepeatable\n" +
		"  -mid string\n    \tmiddle\n"
	if out.String() != want {
		t.Errorf("usage:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := l.Set(""); err == nil {
		t.Error("an empty repeatable value was accepted")
	}
}

func TestOrList(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "", "a": "a", "a b": "a or b", "a b c": "a, b or c"} {
		if got := OrList(strings.Fields(in)); got != want {
			t.Errorf("OrList(%q) = %q, want %q", in, got, want)
		}
	}
}

type coded struct{}

func (coded) Error() string { return "coded" }
func (coded) ExitCode() int { return ExitNotFound }

func TestExitCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{ErrHelp, ExitOK},
		{ErrUsage, ExitUsage},
		{Usagef("--x: bad"), ExitUsage},
		{fmt.Errorf("wrapped: %w", coded{}), ExitNotFound},
		{errors.New("boom"), ExitFailure},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
