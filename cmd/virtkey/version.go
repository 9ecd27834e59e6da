package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/server"
)

// Set by the linker when the build information has no version or VCS
// stamp (scripts/package.sh builds with -buildvcs=false and sets them from
// git): go build -ldflags "-X main.stampedVersion=v1.2.3 -X
// main.stampedRevision=SHA[+dirty]".
var stampedVersion, stampedRevision string

// runVersion is "virtkey version" (and --version): the module version, the
// VCS revision and whether the tree had uncommitted changes, from the build
// information, and the Go version.
func runVersion(_ context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return cli.Usagef("version: unexpected argument %q", args[0])
	}
	version, module, revision := buildVersion()
	fw := server.FirmwareVersion()
	_, err := fmt.Fprintf(e.Stdout, "virtkey %s (module %s)\n%s\n%s %s/%s\nfirmware %d.%d.%d (what getInfo and CTAPHID report)\n",
		version, module, revision, runtime.Version(), runtime.GOOS, runtime.GOARCH, fw[0], fw[1], fw[2])
	return err
}

// buildVersion is this binary's version, module path and revision line,
// from the build information, else from the stamps.
func buildVersion() (version, module, revision string) {
	version, module = "(unknown)", "github.com/virtkey/virtkey"
	revision = "revision unknown (no VCS information in this build)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, module = bi.Main.Version, bi.Main.Path
		var rev, when, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = ", committed " + s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", with uncommitted changes"
				}
			}
		}
		if rev != "" {
			revision = "revision " + rev + when + modified
		}
	}
	if stampedVersion != "" && (version == "" || version == "(devel)" || version == "(unknown)") {
		version = stampedVersion
	}
	if stampedRevision != "" && strings.HasPrefix(revision, "revision unknown") {
		revision = "revision " + stampedRevision + " (stamped at build)"
	}
	return version, module, revision
}
