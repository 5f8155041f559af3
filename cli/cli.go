// Package cli is the mailcow-ha command line: it parses the arguments, dispatches to the subcommands and maps
// their outcome to exit codes. Each subcommand is a function that tests call directly; cmd/mailcow-ha only calls
// Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mailcow-ha/mailcow-ha/stdio"
)

// Exit codes.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // a runtime failure
	ExitUsage   = 2 // a usage or configuration error
	// ExitRestart: the agent ended to be started again (config apply); the unit restarts it on this status
	// (RestartForceExitStatus=75, EX_TEMPFAIL).
	ExitRestart = 75
)

// Stdio is the process's standard streams, so that tests can hand in their own.
type Stdio = stdio.Stdio

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdio Stdio) int
}

func commands() map[string]command {
	return map[string]command{
		"version":     {"print the version and build information", Version},
		"image":       {"appliance images: 'image latest' prints the newest snapshot's id", Image},
		"agent":       {"run the node agent (the systemd unit)", Agent},
		"check":       {"answer keepalived's health check from the agent's verdict", Check},
		"maintenance": {"pause (on) or resume (off) automatic actions on every node", Maintenance},
		"switchover":  {"hand MASTER over to another node", Switchover},
		"breaker":     {"reset this node's breaker: forget its takeover history", Breaker},
		"galera":      {"force-bootstrap: the operator's call when Galera's recovery waits for a peer gone for good", Galera},
		"status":      {"ask every node's agent and print the cluster in one table", Status},
		"config":      {"the cluster's configuration: apply a file to every node, diff it, show each node's revision", ConfigCmd},
		"validate":    {"check a configuration and summarise the cluster it describes", Validate},
		"mailcow":     {"mailcow itself: config writes what the agent would write; update rolls a new release over every node; release shows each node's", Mailcow},
		"lab":         {"a real cluster on this machine: up, status, kill, failover, bench, down", Lab},
		"cluster":     {"create, list or destroy a cluster's resources in a Hetzner Cloud project", Cluster},
		"migrate":     {"move a single-server mailcow (its mail, database, certificates, DKIM keys) into the cluster", Migrate},
		"backup":      {"the cluster's backups in a restic repository: run, list, check, restore (database, Volume, a mailbox)", Backup},
	}
}

// Main runs the mailcow-ha command line with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, stdio Stdio) int {
	cmds := commands()
	if len(args) == 0 {
		usage(stdio.Stderr, cmds)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			if c, ok := cmds[args[1]]; ok {
				return c.run(ctx, []string{"--help"}, stdio)
			}
		}
		usage(stdio.Stdout, cmds)
		return ExitOK
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha: unknown command %q\n\n", args[0])
		usage(stdio.Stderr, cmds)
		return ExitUsage
	}
	return c.run(ctx, args[1:], stdio)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "mailcow-ha turns three or more Hetzner Cloud servers into a highly available mailcow cluster.")
	fmt.Fprintln(w, "\nUsage: mailcow-ha COMMAND [flags]\n\nCommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'mailcow-ha COMMAND --help' for a command's flags.")
}

// newFlags returns a flag set that reports errors instead of exiting, with a usage text.
func newFlags(name, synopsis string, stdio Stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdio.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mailcow-ha %s\n", synopsis)
		var b strings.Builder
		out := fs.Output()
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(out)
		if b.Len() > 0 {
			fmt.Fprintf(out, "\nFlags:\n%s", b.String())
		}
	}
	return fs
}

// parseFlags parses args; it returns done with the exit code when the command should stop (help or a bad flag).
func parseFlags(fs *flag.FlagSet, args []string, stdio Stdio) (code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdio.Stdout)
			fs.Usage()
			return ExitOK, true
		}
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ExitOK, true
	case err != nil:
		return ExitUsage, true
	case fs.NArg() > 0:
		fmt.Fprintf(stdio.Stderr, "mailcow-ha %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return ExitUsage, true
	}
	return ExitOK, false
}
