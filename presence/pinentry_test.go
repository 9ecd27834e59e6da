package presence

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
)

// fakePinentry writes a pinentry for one test: testdata/fake-pinentry.sh
// in the given mode, logging to the returned file.
func fakePinentry(t *testing.T, mode string) (program, logFile string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("pinentry is a Unix program")
	}
	script, err := filepath.Abs("testdata/fake-pinentry.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logFile = filepath.Join(dir, "log")
	program = filepath.Join(dir, "pinentry")
	wrapper := "#!/bin/sh\nexec " + strconv.Quote(script) + " " + mode + " " + strconv.Quote(logFile) + "\n"
	if err := os.WriteFile(program, []byte(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}
	return program, logFile
}

// startFakePinentry is a Pinentry with opts that runs the fake in mode,
// and the fake's log file.
func startFakePinentry(t *testing.T, mode string, opts PinentryOptions) (*Pinentry, string) {
	t.Helper()
	prog, logFile := fakePinentry(t, mode)
	opts.Program = prog
	p, err := NewPinentry(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, logFile
}

// logLines returns the fake's log: "PID n", then the commands it got.
func logLines(t *testing.T, logFile string) []string {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

var aliceRequest = ctap2.PresenceRequest{Op: "makeCredential", RPID: "example.com", UserName: "alice"}

func TestPinentryAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode     string
		want     error // nil, ctap2.ErrDeclined, or errOther
		contains string
	}{
		{mode: "allow"},
		{mode: "noopts"},
		{mode: "deny", want: ctap2.ErrDeclined},
		{mode: "notconfirmed", want: ctap2.ErrDeclined},
		{mode: "broken", want: errOther, contains: "Inappropriate ioctl"},
		{mode: "exit", want: errOther, contains: "exited without answering"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			p, logFile := startFakePinentry(t, tt.mode, PinentryOptions{TTYName: "/dev/pts/9", TTYType: "xterm"})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := p.Confirm(ctx, aliceRequest)
			switch tt.want {
			case nil:
				if err != nil {
					t.Fatalf("Confirm = %v, want nil", err)
				}
			case errOther:
				if err == nil || errors.Is(err, ctap2.ErrDeclined) || ctx.Err() != nil || !strings.Contains(err.Error(), tt.contains) {
					t.Fatalf("Confirm = %v, want an error containing %q", err, tt.contains)
				}
			default:
				if !errors.Is(err, tt.want) {
					t.Fatalf("Confirm = %v, want %v", err, tt.want)
				}
			}
			got := logLines(t, logFile)[1:]
			want := []string{
				"OPTION ttyname=/dev/pts/9",
				"OPTION ttytype=xterm",
				"SETTITLE virtkey security key",
				"SETDESC Allow makeCredential for example.com (alice)?",
				"SETOK Allow",
				"SETCANCEL Deny",
				"CONFIRM",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("pinentry got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// errOther marks "an error that is neither a decline nor ctx's".
var errOther = errors.New("other")

func TestPinentryEscapesClientText(t *testing.T) {
	t.Parallel()
	p, logFile := startFakePinentry(t, "deny", PinentryOptions{})
	req := ctap2.PresenceRequest{Op: "getAssertion", RPID: "evil.example", UserName: "bob\nCONFIRM\r\n100%", UV: true}
	if err := p.Confirm(t.Context(), req); !errors.Is(err, ctap2.ErrDeclined) {
		t.Fatalf("Confirm = %v", err)
	}
	got := logLines(t, logFile)[1:]
	if len(got) != 5 || got[4] != "CONFIRM" {
		t.Fatalf("a user name must not inject commands; pinentry got %q", got)
	}
	want := `SETDESC Allow getAssertion for evil.example (bob\nCONFIRM\r\n100%25)?` + "%0A%0AAllowing also verifies you to the site (built-in user verification)."
	if got[1] != want {
		t.Fatalf("SETDESC = %q\nwant      %q", got[1], want)
	}
}

func TestPinentryCancel(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"cancel", "timeout"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, logFile := startFakePinentry(t, "hang", PinentryOptions{})
			ctx, cancel := context.WithCancel(t.Context())
			want := context.Canceled
			if name == "timeout" {
				ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
				want = context.DeadlineExceeded
			}
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- p.Confirm(ctx, aliceRequest) }()
			if name == "cancel" {
				waitForLine(t, logFile, "CONFIRM")
				cancel() // as CTAPHID_CANCEL does
			}
			select {
			case err := <-errc:
				if !errors.Is(err, want) {
					t.Fatalf("Confirm = %v, want %v", err, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Confirm did not return after its context ended")
			}
			pid, err := strconv.Atoi(strings.TrimPrefix(logLines(t, logFile)[0], "PID "))
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Fatalf("pinentry %d still exists after Confirm returned (kill 0: %v)", pid, err)
			}
		})
	}
}

func TestPinentryOnePromptAtATime(t *testing.T) {
	t.Parallel()
	p, logFile := startFakePinentry(t, "hang", PinentryOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Confirm(ctx, aliceRequest) }()
	waitForLine(t, logFile, "CONFIRM")
	ctx2, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	if err := p.Confirm(ctx2, aliceRequest); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Confirm = %v, want it to wait for the first and time out", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("first Confirm = %v", err)
	}
}

// waitForLine polls the fake's log until it has line (the fake is another
// process, so there is nothing to synchronise on but its output).
func waitForLine(t *testing.T, logFile, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(logFile); err == nil && strings.Contains(string(b), "\n"+line+"\n") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pinentry never got %q", line)
}

func TestPinentryProgramFromEnvironment(t *testing.T) {
	prog, _ := fakePinentry(t, "allow")
	t.Setenv("PINENTRY_PROGRAM", prog)
	p, err := NewPinentry(PinentryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Program() != prog {
		t.Fatalf("Program = %q, want $PINENTRY_PROGRAM %q", p.Program(), prog)
	}
	if err := p.Confirm(t.Context(), aliceRequest); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PINENTRY_PROGRAM", filepath.Join(t.TempDir(), "no-such-pinentry"))
	if _, err := NewPinentry(PinentryOptions{}); err == nil {
		t.Fatal("NewPinentry with a missing program succeeded")
	}
}

func TestAssuanEscape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain text", 100, "plain text"},
		{"100%", 100, "100%25"},
		{"a\r\nb\tc\x7f", 100, "a%0D%0Ab%09c%7F"},
		{"héllo wörld", 100, "héllo wörld"},
		{"bad \xff utf8", 100, "bad ? utf8"},
		{"abc%", 5, "abc"},     // never half an escape
		{"abcé", 4, "abc"},     // never half a character
		{"ab\ncd", 5, "ab%0A"}, // an escape that fits exactly
	}
	for _, tt := range tests {
		if got := assuanEscape(tt.in, tt.max); got != tt.want {
			t.Errorf("assuanEscape(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
	long := assuanEscape(strings.Repeat("%", 1000), maxAssuanLine-10)
	if len(long) > maxAssuanLine-10 || len(long)%3 != 0 {
		t.Fatalf("escaped long text is %d bytes", len(long))
	}
}
