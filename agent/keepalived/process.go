package keepalived

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// WriteConfig writes conf to path with mode 0600 when it differs from what is there, and reports whether it
// changed (then keepalived needs a reload).
func WriteConfig(path string, conf []byte) (changed bool, err error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, conf) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("keepalived config: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, conf, 0o600); err != nil {
		return false, fmt.Errorf("keepalived config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("keepalived config: %w", err)
	}
	return true, nil
}

// Process runs keepalived (VRRP only) as a supervised child: its own pid files, so that several instances can
// run on one machine, logs to Output, and an optional network namespace.
type Process struct {
	Bin    string // default "keepalived"
	Config string
	RunDir string // pid files go here
	Netns  string // run in this named network namespace (keepalived -s)
	Output io.Writer

	c child.Child
}

func (p *Process) pidFiles() []string {
	return []string{filepath.Join(p.RunDir, "keepalived.pid"), filepath.Join(p.RunDir, "vrrp.pid"), filepath.Join(p.RunDir, "checkers.pid")}
}

// Start starts keepalived. Stale pid files from a previous run are removed first: keepalived refuses to start
// against its old pid file.
func (p *Process) Start() error {
	if p.c.Pid() != 0 {
		return errors.New("keepalived: already running")
	}
	bin := p.Bin
	if bin == "" {
		bin = "keepalived"
	}
	if err := os.MkdirAll(p.RunDir, 0o755); err != nil {
		return fmt.Errorf("keepalived: %w", err)
	}
	pids := p.pidFiles()
	for _, f := range pids {
		os.Remove(f)
	}
	argv := []string{bin, "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", p.Config, "--pid", pids[0], "--vrrp_pid", pids[1], "--checkers_pid", pids[2]}
	if p.Netns != "" {
		argv = append(argv, "--namespace", p.Netns)
	}
	if err := p.c.Start(argv, p.Output); err != nil {
		return fmt.Errorf("keepalived: %w", err)
	}
	return nil
}

// Pid returns keepalived's parent pid, 0 when not running.
func (p *Process) Pid() int { return p.c.Pid() }

// Done is closed when keepalived has exited.
func (p *Process) Done() <-chan struct{} { return p.c.Done() }

// Reload makes keepalived re-read its configuration (SIGHUP).
func (p *Process) Reload() error {
	if err := p.c.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("keepalived: %w", err)
	}
	return nil
}

// Kill ends keepalived at once (SIGKILL to its process group), as a crash would; the tests use it.
func (p *Process) Kill() error {
	p.c.Kill()
	return nil
}

// Stop ends keepalived with SIGTERM and waits for it; after timeout (or when ctx ends) it kills the group.
func (p *Process) Stop(ctx context.Context, timeout time.Duration) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	p.c.Stop(timeout)
	return nil
}
