package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/daemon"
	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

const mailcowConfigUsage = "mailcow config --config PATH --out DIR [--mailcow-dir DIR] [--floating-ip ADDR]"

const mailcowUsage = `usage: mailcow-ha ` + mailcowConfigUsage + `
       mailcow-ha ` + mailcowUpdateUsage + `
       mailcow-ha mailcow release [--config PATH]

config writes the mailcow.conf, .env and override that the agent would write, to read before a first boot.
update (run on a node) stages mailcow's release TAG on every node while mail flows (a clone of mailcow.repo, its
images pulled with mailcow.pull_command), then runs it on the MASTER in maintenance (only the containers whose
definition changed are created anew), then lays it over the other nodes' trees. release prints what each node
runs and has staged.
`

// Mailcow runs the mailcow subcommands: config (below), update and release (mailcowupdate.go).
func Mailcow(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) > 0 {
		switch args[0] {
		case "update":
			return mailcowUpdate(ctx, args[1:], stdio)
		case "release":
			return mailcowRelease(ctx, args[1:], stdio)
		case "-h", "--help", "-help", "help":
			fmt.Fprint(stdio.Stdout, mailcowUsage)
			return ExitOK
		}
	}
	if len(args) == 0 || args[0] != "config" {
		fmt.Fprint(stdio.Stderr, mailcowUsage)
		return ExitUsage
	}
	return mailcowConfig(ctx, args, stdio)
}

// mailcowConfig runs `mailcow-ha mailcow config`: it writes what the agent would write into mailcow's directory
// (mailcow.conf, .env linked to it, docker-compose.override.yml), from a configuration, so that an operator can
// read it before a first boot.
func mailcowConfig(ctx context.Context, args []string, stdio Stdio) int {
	fset := newFlags("mailcow config", mailcowConfigUsage, stdio)
	src := sourceFlags(fset)
	out := fset.String("out", "", "the directory to write mailcow.conf, .env and docker-compose.override.yml into (required)")
	dir := fset.String("mailcow-dir", "", "mailcow's tree, whose docker-compose.yml the override is made for (default: mailcow.dir)")
	fipFlag := fset.String("floating-ip", "", "the Floating IP's address, for SNAT_TO_SOURCE (the agent asks the API; required with mailcow.snat)")
	if code, done := parseFlags(fset, args[1:], stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha mailcow config: "+format+"\n", a...)
		return code
	}
	if *out == "" {
		return fail(ExitUsage, "--out: required")
	}
	src.Stdin = stdio.Stdin
	c, _, err := loadConfig(ctx, *src)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	if *dir != "" {
		c.Mailcow.Dir = *dir
	}
	var fip netip.Addr
	switch {
	case *fipFlag != "":
		if fip, err = netip.ParseAddr(*fipFlag); err != nil {
			return fail(ExitUsage, "--floating-ip: %v", err)
		}
	case c.Mailcow.SNAT:
		return fail(ExitUsage, "--floating-ip: required with mailcow.snat (the agent asks the API for it)")
	}
	if c.Mailcow.Hostname == "" {
		return fail(ExitUsage, "mailcow.hostname: missing (the agent writes no mailcow.conf without it)")
	}
	secret, err := inlineOrFile(c.Cluster.Secret, c.Cluster.SecretFile)
	if err != nil {
		return fail(ExitUsage, "cluster.secret: %v", err)
	}
	password, err := inlineOrFile(c.Galera.Password, c.Galera.PasswordFile)
	if err != nil {
		return fail(ExitUsage, "galera.password: %v", err)
	}
	conf, err := daemon.RenderMailcowConf(c, []byte(secret), password)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	ov, err := daemon.RenderOverride(ctx, c, fip)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fail(ExitFailure, "%v", err)
	}
	// As the agent writes them: mode 0600, .env linked, a mailcow.conf or .env it did not write kept beside it.
	if err := stack.WriteConf(*out, conf, slog.New(slog.NewTextHandler(stdio.Stderr, nil))); err != nil {
		return fail(ExitFailure, "%v", err)
	}
	if err := os.WriteFile(filepath.Join(*out, stack.OverrideFile), ov, 0o644); err != nil {
		return fail(ExitFailure, "%v", err)
	}
	fmt.Fprintf(stdio.Stdout, "wrote %s (mode 0600), %s -> %s and %s into %s\n", mailcowconf.File, mailcowconf.Env, mailcowconf.File, stack.OverrideFile, *out)
	return ExitOK
}

// inlineOrFile is the content of a secret's file, or else the secret given inline: as the agent does
// (config.MaterializeSecrets), the file wins, because a rotation changed it and not the user-data.
func inlineOrFile(inline config.Secret, path string) (string, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if inline.Set() {
			return inline.Reveal(), nil
		}
		return "", fmt.Errorf("neither given inline nor in %s", path)
	}
	s, err := config.SecretFiles{Owner: os.Geteuid()}.ReadSecret(path)
	return s.Reveal(), err
}
