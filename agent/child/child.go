// Package child supervises a daemon that the agent runs as its child (keepalived, mariadbd in the lab): it
// starts it in its own process group, tells when it has exited, signals it, and stops it with a deadline. A
// daemon is always waited for by its parent, so an ended one never lingers as a zombie that still looks alive.
package child

import (
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
