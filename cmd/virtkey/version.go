package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/server"
)

// runVersion is "virtkey version" (and --version): the module version, the
// VCS revision and whether the tree had uncommitted changes, from the build
// information, and the Go version.
func runVersion(_ context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return cli.Usagef("version: unexpected argument %q", args[0])
	}
	module, revision, modified, when := "(unknown)", "unknown", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		module = bi.Main.Path + " " + bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified: built with uncommitted changes)"
				}
			case "vcs.time":
				when = ", committed " + s.Value
			}
		}
	}
	fw := server.FirmwareVersion()
	_, err := fmt.Fprintf(e.Stdout, "virtkey %s\nrevision %s%s%s\n%s %s/%s\nfirmware %d.%d.%d (reported by getInfo and CTAPHID)\n",
		module, revision, modified, when, runtime.Version(), runtime.GOOS, runtime.GOARCH, fw[0], fw[1], fw[2])
	return err
}
