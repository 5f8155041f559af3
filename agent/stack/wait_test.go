package stack_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

// flakyDocker answers ContainerList with an error (or hangs until the caller gives up) for the first calls, then
// with one healthy postfix container.
type flakyDocker struct {
	bad   int32 // calls that fail
	hang  bool  // failing calls block until their context ends
	calls atomic.Int32
}

func (f *flakyDocker) ContainerList(ctx context.Context, _ container.ListOptions) ([]container.Summary, error) {
	if f.calls.Add(1) <= f.bad {
		if f.hang {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, errors.New("Cannot connect to the Docker daemon")
	}
	return []container.Summary{{ID: "c1", Names: []string{"/p-postfix-mailcow-1"}, State: "running",
		Status: "Up 2 seconds (healthy)", Labels: map[string]string{stack.LabelProject: "p", stack.LabelService: "postfix-mailcow"}}}, nil
}
func (*flakyDocker) ContainerUpdate(context.Context, string, container.UpdateConfig) (container.UpdateResponse, error) {
	return container.UpdateResponse{}, nil
}
func (*flakyDocker) ContainerStop(context.Context, string, container.StopOptions) error   { return nil }
func (*flakyDocker) ContainerStart(context.Context, string, container.StartOptions) error { return nil }

// A Docker Engine that fails a few calls while the containers start is waited out: the services answer after it.
func TestWaitHealthyOutlastsDockerErrors(t *testing.T) {
	d := &flakyDocker{bad: 3}
	s := &stack.Stack{Docker: d, Project: "p", Critical: []string{"postfix-mailcow"}}
	failed, err := s.WaitHealthy(context.Background(), 10*time.Second)
	if err != nil || failed != "" {
		t.Fatalf("WaitHealthy: %q %v; want healthy after the engine answered", failed, err)
	}
	if n := d.calls.Load(); n != 4 {
		t.Errorf("%d calls, want 4 (three failed, one healthy)", n)
	}
}

// An engine that never answers ends the wait at its deadline with the reason as the failure (the health check and
// its grace judge it then), not with an error that would fail the takeover; no call outlives the deadline.
func TestWaitHealthyHungDockerEndsAtDeadline(t *testing.T) {
	d := &flakyDocker{bad: 1 << 30, hang: true}
	s := &stack.Stack{Docker: d, Project: "p", Critical: []string{"postfix-mailcow"}}
	begin := time.Now()
	failed, err := s.WaitHealthy(context.Background(), 700*time.Millisecond)
	took := time.Since(begin)
	if err != nil || !strings.Contains(failed, "deadline exceeded") {
		t.Fatalf("WaitHealthy: %q %v; want the engine's timeout as the failure", failed, err)
	}
	if took > 3*time.Second {
		t.Errorf("the wait took %s for a 700ms limit", took)
	}
	// The caller's own context still ends it with an error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.WaitHealthy(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled context: %v, want context.Canceled", err)
	}
}

// The polls back off: a minute-long wait of a service that stays down costs about a call a second, not ten.
func TestWaitHealthyBacksOff(t *testing.T) {
	d := &flakyDocker{bad: 1 << 30}
	s := &stack.Stack{Docker: d, Project: "p", Critical: []string{"postfix-mailcow"}}
	failed, err := s.WaitHealthy(context.Background(), 3*time.Second)
	if err != nil || failed == "" {
		t.Fatalf("WaitHealthy: %q %v", failed, err)
	}
	// 100+200+400+800 ms, then one a second: about 6 calls in 3 s (31 at a fixed 100 ms).
	if n := d.calls.Load(); n < 4 || n > 8 {
		t.Errorf("%d calls in 3 s, want 4–8", n)
	}
}
