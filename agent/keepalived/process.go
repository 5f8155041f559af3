package keepalived

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
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
	Log    *slog.Logger

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *Process) pidFiles() []string {
	return []string{filepath.Join(p.RunDir, "keepalived.pid"), filepath.Join(p.RunDir, "vrrp.pid"), filepath.Join(p.RunDir, "checkers.pid")}
}

// Start starts keepalived. Stale pid files from a previous run are removed first: keepalived refuses to start
// against its old pid file.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done: // exited: start it again
		default:
			return errors.New("keepalived: already running")
		}
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
	args := []string{"--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", p.Config, "--pid", pids[0], "--vrrp_pid", pids[1], "--checkers_pid", pids[2]}
	if p.Netns != "" {
		args = append(args, "--namespace", p.Netns)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = p.Output, p.Output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("keepalived: %w", err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}(cmd, p.done)
	return nil
}

// Pid returns keepalived's parent pid, 0 when not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
	}
	return p.cmd.Process.Pid
}

// Done is closed when keepalived has exited.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Reload makes keepalived re-read its configuration (SIGHUP).
func (p *Process) Reload() error {
	pid := p.Pid()
	if pid == 0 {
		return errors.New("keepalived: not running")
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}

// Kill ends keepalived at once (SIGKILL to its process group), as a crash would; the tests use it.
func (p *Process) Kill() error {
	pid := p.Pid()
	if pid == 0 {
		return nil
	}
	return syscall.Kill(-pid, syscall.SIGKILL)
}

// Stop ends keepalived with SIGTERM and waits for it; after timeout it kills the process group.
func (p *Process) Stop(ctx context.Context, timeout time.Duration) error {
	pid := p.Pid()
	if pid == 0 {
		p.reset()
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(timeout):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-p.Done()
	case <-ctx.Done():
		syscall.Kill(-pid, syscall.SIGKILL)
		<-p.Done()
	}
	p.reset()
	return nil
}

func (p *Process) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd, p.done = nil, nil
}
