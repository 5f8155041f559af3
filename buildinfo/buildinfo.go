// Package buildinfo says which build of mailcow-ha runs: the module version, the VCS revision and the Go version
// stamped into the binary. The CLI prints it (mailcow-ha version), and every agent states it in its /status, so
// that a rolling upgrade shows which node runs what.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// String is "mailcow-ha VERSION revision REV TIME GO".
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "mailcow-ha (unknown build)"
	}
	v, rev, settings := parts(bi)
	return fmt.Sprintf("mailcow-ha %s revision %s %s %s", v, rev, settings["vcs.time"], bi.GoVersion)
}

// Short is "VERSION REV": what /status states.
func Short() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v, rev, _ := parts(bi)
	return v + " " + rev
}

func parts(bi *debug.BuildInfo) (version, revision string, settings map[string]string) {
	version = bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings = map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	revision = settings["vcs.revision"]
	if revision == "" {
		revision = "unknown"
	} else if len(revision) > 12 {
		revision = revision[:12]
	}
	if settings["vcs.modified"] == "true" {
		revision += "+dirty"
	}
	return version, revision, settings
}
