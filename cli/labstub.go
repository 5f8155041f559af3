package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
)

// labCreateStub is the lab nodes' mailcow.create_command: the stub stack's `docker compose create`, made through
// the Engine API (the lab's host has Debian 12's Compose v1, which cannot read mailcow's compose file). With
// o.MailImage, Debian's postfix and dovecot play postfix-mailcow and dovecot-mailcow.
func labCreateStub(ctx context.Context, o deploy.Options, host, tree string, stdio Stdio) int {
	if host == "" || o.DataMount == "" || o.SocketDir == "" {
		fmt.Fprintln(stdio.Stderr, "usage: mailcow-ha lab create-stub --docker-host URL --data DIR --socket-dir DIR [--hostname NAME] [--mail-image TAG --mail-user ADDR,...]")
		return ExitUsage
	}
	if len(o.MailUsers) > 0 && o.MailImage == "" {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha lab create-stub: --mail-user needs --mail-image (the stub's own servers take any mailbox)")
		return ExitUsage
	}
	if tree != "" {
		if _, err := os.Stat(filepath.Join(tree, stack.ComposeFile)); err == nil {
			comp, err := stack.LoadCompose(ctx, tree)
			if err != nil {
				fmt.Fprintln(stdio.Stderr, "mailcow-ha lab create-stub:", err)
				return ExitFailure
			}
			o.Images = comp.Images
		}
	}
	c, err := deploy.Connect(host)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	defer c.Close()
	o.Project = "mailcowdockerized"
	n, err := deploy.Create(ctx, c, o)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Stdout, "created %d containers\n", n)
	return ExitOK
}

// labPullStub is the lab nodes' mailcow.pull_command, run in a staged release's tree: the stub image tagged as
// each image the release names (deploy.TagRelease), where `docker compose pull` would download them.
func labPullStub(ctx context.Context, host string, stdio Stdio) int {
	if host == "" {
		fmt.Fprintln(stdio.Stderr, "usage: mailcow-ha lab pull-stub --docker-host URL (in the release's tree)")
		return ExitUsage
	}
	c, err := deploy.Connect(host)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	defer c.Close()
	dir, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	n, err := deploy.TagRelease(ctx, c, "", dir)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha lab pull-stub:", err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Stdout, "tagged the stub as %d images\n", n)
	return ExitOK
}

// labComposeStub is the VM tests' mailcow.create_command: mailcow's real `docker compose create`, with the stub
// in place of the images that cannot be pulled here. In the mailcow directory it has the real Compose check
// mailcow's docker-compose.yml with the agent's override (`docker compose config`), writes the stub layer
// (deploy.Layer, for the services of that compose file) and runs `docker compose create` with the three files. The
// services greet with --hostname, by default this machine's host name.
func labComposeStub(ctx context.Context, dir string, o deploy.LayerOptions, stdio Stdio) int {
	if dir == "" || o.DataMount == "" {
		fmt.Fprintln(stdio.Stderr, "usage: mailcow-ha lab compose-stub --mailcow-dir DIR --data DIR [--hostname NAME] [--health-interval D] [--health-timeout D] [--mail-image TAG --mail-user ADDR,...]")
		return ExitUsage
	}
	if len(o.MailUsers) > 0 && o.MailImage == "" {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha lab compose-stub: --mail-user needs --mail-image (the stub's own servers take any mailbox)")
		return ExitUsage
	}
	if o.Hostname == "" {
		// One create command for every node (it is in the cluster's one user-data): each greets with its own name.
		if h, err := os.Hostname(); err == nil {
			o.Hostname = h
		}
	}
	if err := composeStub(ctx, dir, o, stdio); err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha lab compose-stub:", err)
		return ExitFailure
	}
	return ExitOK
}

func composeStub(ctx context.Context, dir string, o deploy.LayerOptions, stdio Stdio) error {
	files := []string{"-f", stack.ComposeFile, "-f", stack.OverrideFile}
	// The real Compose reads mailcow's file with the override as the agent wrote it, before any stub is laid on it.
	services, err := dockerCompose(ctx, dir, append(files, "config", "--services"))
	if err != nil {
		return err
	}
	names := strings.Fields(services)
	sort.Strings(names)
	fmt.Fprintf(stdio.Stdout, "docker compose config: %d services (%s)\n", len(names), strings.Join(names, " "))
	layer, err := deploy.Layer(names, o)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, deploy.LayerFile)
	if err := os.WriteFile(path, layer, 0o644); err != nil {
		return fmt.Errorf("writing the stub layer: %w", err)
	}
	out, err := dockerCompose(ctx, dir, append(files, "-f", deploy.LayerFile, "create"))
	fmt.Fprint(stdio.Stdout, out)
	return err
}

// dockerCompose runs `docker compose ARGS` in dir and returns its output; a failure carries the output's end.
func dockerCompose(ctx context.Context, dir string, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"compose"}, args...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), fmt.Errorf("docker compose %s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), msg)
		}
		return string(out), fmt.Errorf("docker compose %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}
