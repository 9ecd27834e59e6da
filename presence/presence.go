// Package presence provides user-presence providers for ctap2: Auto
// (tests), Terminal (asks on a terminal), Pinentry (an Assuan pinentry
// dialog) and Notify (a desktop notification over the session D-Bus).
//
// # Contract
//
// Every provider implements ctap2.Presence: Confirm blocks until the user
// answers or ctx ends, returns nil for yes, ctap2.ErrDeclined for no, and
// ctx.Err() when cancelled (CTAPHID_CANCEL) or timed out.
package presence

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/virtkey/virtkey/ctap2"
)

// Auto approves every request at once. It is for automated tests only.
type Auto struct{}

// Confirm approves unless ctx has already ended.
func (Auto) Confirm(ctx context.Context, _ ctap2.PresenceRequest) error { return ctx.Err() }

// NewAuto returns Auto and logs a warning that it is for testing.
func NewAuto(log *slog.Logger) Auto {
	if log != nil {
		log.Warn("presence: auto-approving every request; use --presence auto for testing only")
	}
	return Auto{}
}

// Terminal asks the user on a terminal (or any reader/writer pair) and
// reads a y/n answer. One reader goroutine owns the input; answers typed
// while no prompt is open are discarded.
type Terminal struct {
	out   io.Writer
	lines chan string
	mu    sync.Mutex // one prompt at a time
}

// NewTerminal starts reading answers from in and writes prompts to out.
func NewTerminal(in io.Reader, out io.Writer) *Terminal {
	t := &Terminal{out: out, lines: make(chan string)}
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			t.lines <- sc.Text()
		}
		close(t.lines)
	}()
	return t
}

// Describe renders a request for a prompt: "makeCredential for example.com (alice)".
// The RP id and the user name come from the client — a web page chooses
// them — so they are shown through [Printable]: a name such as
// "\r\x1b[2K" cannot rewrite the prompt, the terminal title or a dialog.
// Every provider builds its text with Describe.
func Describe(req ctap2.PresenceRequest) string {
	s := req.Op
	if req.RPID != "" {
		s += " for " + Printable(req.RPID)
	}
	if req.UserName != "" {
		s += " (" + Printable(req.UserName) + ")"
	}
	return s
}

// Printable returns s with everything that does not print as itself
// visibly escaped, the way Go writes it in a string literal: control
// characters (\r, \n, \x1b, \x7f), non-printing runes such as bidi
// overrides, zero-width and non-ASCII spaces (\u202e, \u200b, \u00a0),
// bytes that are not UTF-8 (\xff), and the backslash itself (\\), so the
// escaped form cannot be mistaken for text the client sent. Printable
// runes, non-ASCII letters included, are kept.
func Printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case strconv.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\r', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// Confirm prompts and waits for an answer.
func (t *Terminal) Confirm(ctx context.Context, req ctap2.PresenceRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Drop answers typed before this prompt.
	for {
		select {
		case _, ok := <-t.lines:
			if ok {
				continue
			}
			return fmt.Errorf("presence: terminal input closed")
		default:
		}
		break
	}
	fmt.Fprintf(t.out, "virtkey: allow %s? [y/N] ", Describe(req))
	select {
	case <-ctx.Done():
		fmt.Fprintln(t.out, "\nvirtkey: request cancelled")
		return ctx.Err()
	case line, ok := <-t.lines:
		if !ok {
			return fmt.Errorf("presence: terminal input closed")
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return nil
		}
		return ctap2.ErrDeclined
	}
}

// turn lets one prompt show at a time: a prompter's Confirm waits for its
// turn, or for its context to end.
type turn chan struct{}

func newTurn() turn { return make(turn, 1) }

// wait blocks until it is the caller's turn (then the caller must call
// done) or ctx ends.
func (t turn) wait(ctx context.Context) error {
	select {
	case t <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// done ends the caller's turn.
func (t turn) done() { <-t }
