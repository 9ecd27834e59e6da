package presence

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/vktest"
)

// hostile is what a web page can put into user.name (or an RP id) to
// rewrite a terminal prompt: return to the line start, erase the line, set
// the window title (OSC 0 … BEL), then print a friendlier question.
const hostile = "\r\x1b[2K\x1b]0;pwned\x07allow getAssertion for github.com"

// hostileEscaped is hostile as the prompts must show it.
const hostileEscaped = `\r\x1b[2K\x1b]0;pwned\aallow getAssertion for github.com`

func TestPrintable(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"Jöhn Døe 山田", "Jöhn Døe 山田"},
		{"with space", "with space"},
		{hostile, hostileEscaped},
		{"a\nb\tc\x7f\x00", `a\nb\tc\x7f\x00`},
		{"\u202egnp.exe", `\u202egnp.exe`},             // bidi override
		{"pay\u200bpal\u00a0x", `pay\u200bpal\u00a0x`}, // zero-width and no-break space
		{"\u0085\u2028", `\u0085\u2028`},               // NEL, line separator
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{`back\slash \x1b`, `back\\slash \\x1b`}, // typed text never looks escaped
		{"\U000E0041tag", `\U000e0041tag`},       // a tag character
	}
	for _, tt := range tests {
		if got := Printable(tt.in); got != tt.want {
			t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzPrintable checks that Printable's output prints as itself (valid
// UTF-8 of printable runes only) and loses nothing: read as the body of a Go
// string literal it gives back the input, byte for byte.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{hostile, "alice", "\xff", `\`, "\u202e", `"quoted"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Printable(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Printable(%q) = %q is not UTF-8", s, out)
		}
		for _, r := range out {
			if !strconv.IsPrint(r) {
				t.Fatalf("Printable(%q) = %q holds %U", s, out, r)
			}
		}
		back, err := strconv.Unquote(`"` + strings.ReplaceAll(out, `"`, `\"`) + `"`)
		if err != nil || back != s {
			t.Fatalf("Printable(%q) = %q reads back as %q, %v", s, out, back, err)
		}
	})
}

func TestDescribeEscapesClientText(t *testing.T) {
	t.Parallel()
	req := ctap2.PresenceRequest{Op: "makeCredential", RPID: "evil.example\x1b[8m", UserName: hostile}
	want := `makeCredential for evil.example\x1b[8m (` + hostileEscaped + `)`
	if got := Describe(req); got != want {
		t.Fatalf("Describe = %q\nwant       %q", got, want)
	}
}

// TestTerminalEscapesClientText is the --presence terminal prompt for a
// request whose user name tries to rewrite it: the terminal gets no
// control character from the client, and the user sees what it sent.
func TestTerminalEscapesClientText(t *testing.T) {
	t.Parallel()
	in, answer := io.Pipe()
	defer answer.Close()
	out := &vktest.SyncBuffer{}
	term := NewTerminal(in, out)
	done := make(chan error, 1)
	go func() {
		done <- term.Confirm(t.Context(), ctap2.PresenceRequest{Op: "getAssertion", RPID: "evil.example", UserName: hostile})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "[y/N]") {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt; wrote %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := io.WriteString(answer, "n\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ctap2.ErrDeclined) {
		t.Fatalf("Confirm = %v", err)
	}
	got := out.String()
	want := "virtkey: allow getAssertion for evil.example (" + hostileEscaped + ")? [y/N] "
	if got != want {
		t.Fatalf("prompt = %q\nwant     %q", got, want)
	}
	for _, c := range []byte(got) {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("the prompt carries control byte %#02x: %q", c, got)
		}
	}
}
