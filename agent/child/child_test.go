package child

import (
	"bytes"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"
)

type buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }

func TestChild(t *testing.T) {
	var c Child
	select {
	case <-c.Done():
	default:
		t.Fatal("a child that never ran is not done")
	}
	out := &buf{}
	// The shell ignores TERM in the first round, so Stop has to kill it after the timeout.
	if err := c.Start([]string{"sh", "-c", "trap '' TERM; echo up; sleep 30"}, out); err != nil {
		t.Fatal(err)
	}
	if err := c.Start([]string{"true"}, out); !errors.Is(err, ErrRunning) {
		t.Fatalf("second start: %v", err)
	}
	pid := c.Pid()
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		t.Fatal("not running")
	}
	for i := 0; i < 100; i++ { // until the trap is set
		out.mu.Lock()
		up := out.b.Len() > 0
		out.mu.Unlock()
		if up {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	c.Stop(300 * time.Millisecond)
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("stop took %s", took)
	}
	if c.Pid() != 0 {
		t.Fatal("still running after Stop")
	}
	// It can be started again; SIGTERM ends a cooperative one at once.
	if err := c.Start([]string{"sleep", "30"}, out); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	c.Stop(10 * time.Second)
	if time.Since(start) > 5*time.Second {
		t.Fatal("SIGTERM did not end sleep")
	}
	if err := c.Start([]string{"sleep", "30"}, out); err != nil {
		t.Fatal(err)
	}
	c.Kill()
	if err := c.Signal(syscall.SIGHUP); err == nil {
		t.Fatal("signalled a dead child")
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.b.String() != "up\n" {
		t.Fatalf("output %q", out.b.String())
	}
}
