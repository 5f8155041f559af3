// Package child supervises a daemon that the agent runs as its child (keepalived, mariadbd in the lab): it
// starts it in its own process group, tells when it has exited, signals it, and stops it with a deadline. A
// daemon is always waited for by its parent, so an ended one never lingers as a zombie that still looks alive.
package child

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Child is one supervised process. The zero value is ready; Start may be called again after it exited.
type Child struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// ErrRunning is returned by Start while the process runs.
var ErrRunning = errors.New("already running")

// Start runs argv with its output to out, in a new process group; the process gets SIGTERM if the agent dies.
func (c *Child) Start(argv []string, out io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		select {
		case <-c.done:
		default:
			return ErrRunning
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = Environ()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(cmd, c.done)
	return nil
}

// Pid is the process's id, 0 when it is not running.
func (c *Child) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	select {
	case <-c.done:
		return 0
	default:
		return c.cmd.Process.Pid
	}
}

// Done is closed when the process has exited (at once when it never ran).
func (c *Child) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		d := make(chan struct{})
		close(d)
		return d
	}
	return c.done
}

// Signal sends sig to the process.
func (c *Child) Signal(sig syscall.Signal) error {
	pid := c.Pid()
	if pid == 0 {
		return errors.New("not running")
	}
	return syscall.Kill(pid, sig)
}

// Kill ends the process group at once, as a crash would, and waits for it.
func (c *Child) Kill() {
	if pid := c.Pid(); pid != 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	<-c.Done()
}

// Stop sends SIGTERM and waits; after timeout it kills the process group.
func (c *Child) Stop(timeout time.Duration) {
	pid := c.Pid()
	if pid == 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-c.Done():
	case <-time.After(timeout):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-c.Done()
	}
}

// Keeper keeps a daemon up until its context ends: Up brings it up and returns a channel that is closed when it
// has ended; after it ended, Ended is told and the next Up comes after RestartDelay; when Up fails, Failed is told
// and decides whether to try again after RetryDelay. Every wait ends at once with the context. The keepalived,
// mariadbd and garbd loops of the agent are Keepers.
type Keeper struct {
	Up           func(ctx context.Context) (<-chan struct{}, error)
	Running      func()               // optional: the daemon is up
	Ended        func()               // optional: the daemon ended while the context was still live
	Failed       func(err error) bool // optional: Up failed; false stops the Keeper with the error (nil: try again)
	RestartDelay time.Duration        // after the daemon ended
	RetryDelay   time.Duration        // after Up failed
}

// Run keeps the daemon up until ctx ends (nil), or until Failed says stop (Up's error).
func (k Keeper) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		done, err := k.Up(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if k.Failed != nil && !k.Failed(err) {
				return err
			}
			if !sleep(ctx, k.RetryDelay) {
				return nil
			}
			continue
		}
		if k.Running != nil {
			k.Running()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-done:
		}
		if ctx.Err() != nil {
			return nil
		}
		if k.Ended != nil {
			k.Ended()
		}
		if !sleep(ctx, k.RestartDelay) {
			return nil
		}
	}
	return nil
}

// sleep waits d, or less when ctx ends first; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
