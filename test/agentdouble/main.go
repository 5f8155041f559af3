// Command agentdouble is mailcow-ha with test doubles for Galera, the mailcow stack and the Volume, for the agent's
// component tests (agent/daemon): `agentdouble agent` takes --test-galera-file, --test-stack-file and
// --test-storage-dir on top of the agent's own flags; every other command is mailcow-ha's. It is built by those
// tests only and never shipped.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/mailcow-ha/mailcow-ha/agent/daemon"
	"github.com/mailcow-ha/mailcow-ha/cli"
	"github.com/mailcow-ha/mailcow-ha/stdio"
)

func main() {
	io := stdio.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "agent" {
		os.Exit(cli.AgentWith(context.Background(), args[1:], io, doubles))
	}
	os.Exit(cli.Main(context.Background(), args, io))
}

// doubles adds the --test-* flags; after parsing, the doubles they name go into the agent's options.
func doubles(fs *flag.FlagSet) func(o *daemon.Options) {
	galeraFile := fs.String("test-galera-file", "", "test double: a file holding \"Primary Synced\" while Galera is healthy")
	stackFile := fs.String("test-stack-file", "", "test double: a file naming the failed critical service (empty: healthy)")
	storageDir := fs.String("test-storage-dir", "", "test double: a directory that stands for the mounted Volume")
	return func(o *daemon.Options) {
		if *galeraFile != "" {
			o.Galera = FileGalera{Path: *galeraFile}
		}
		if *stackFile != "" {
			o.Stack = FileStack{Path: *stackFile}
		}
		if *storageDir != "" {
			o.Storage = DirStorage{Dir: *storageDir}
		}
	}
}
