package cli

import (
	"context"
	"fmt"
	"runtime/debug"
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

func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "mailcow-ha (unknown build)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		rev = "unknown"
	} else if len(rev) > 12 {
		rev = rev[:12]
	}
	if settings["vcs.modified"] == "true" {
		rev += "+dirty"
	}
	return fmt.Sprintf("mailcow-ha %s revision %s %s %s", v, rev, settings["vcs.time"], bi.GoVersion)
}
