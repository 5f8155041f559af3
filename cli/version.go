package cli

import (
	"context"
	"fmt"

	"github.com/mailcow-ha/mailcow-ha/buildinfo"
)

// Version prints the module version, the VCS revision and the Go version this binary was built from.
func Version(_ context.Context, args []string, stdio Stdio) int {
	fs := newFlags("version", "version", stdio)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fmt.Fprintln(stdio.Stdout, versionString())
	return ExitOK
}

func versionString() string { return buildinfo.String() }
