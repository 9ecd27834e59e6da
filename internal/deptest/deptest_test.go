package deptest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps the errors Check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheck(t *testing.T) {
	t.Parallel()
	Check(t, ".", []string{"github.com/virtkey/virtkey/internal/deptest"})

	// cose depends on cbor, which this list leaves out; a trailing slash
	// covers the paths below.
	r := &recorder{TB: t}
	Check(r, "github.com/virtkey/virtkey/cose", []string{"github.com/virtkey/virtkey/cose", "github.com/x448/"})
	if got := strings.Join(r.errs, "\n"); !strings.Contains(got, "forbidden dependency github.com/fxamacker/cbor/v2") ||
		strings.Contains(got, "x448") || strings.Contains(got, "virtkey/cose") {
		t.Errorf("errors:\n%s\nwant cbor forbidden, float16 and cose allowed", got)
	}
}

func TestCheckImports(t *testing.T) {
	t.Parallel()
	CheckImports(t, ".", []string{"net", "github.com/virtkey/virtkey/"})

	// hid/udp imports net, net/netip and os itself; what fmt imports
	// (unicode/utf8) does not count, and neither does what hid imports.
	r := &recorder{TB: t}
	CheckImports(r, "github.com/virtkey/virtkey/hid/udp", []string{"net", "os", "unicode/utf8"})
	got := strings.Join(r.errs, "\n")
	for _, want := range []string{"forbidden import net\n", "forbidden import net/netip", "forbidden import os"} {
		if !strings.Contains(got+"\n", want) {
			t.Errorf("errors:\n%s\nwant %q", got, want)
		}
	}
	if strings.Contains(got, "utf8") {
		t.Errorf("errors:\n%s\nunicode/utf8 is not imported by hid/udp itself", got)
	}
}
