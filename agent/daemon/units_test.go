package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// seqStack records Start and Stop into a shared sequence.
type seqStack struct {
	seq *[]string
	mu  *sync.Mutex
	err error
}

func (s seqStack) note(x string) {
	s.mu.Lock()
	*s.seq = append(*s.seq, x)
	s.mu.Unlock()
}
func (s seqStack) Start(context.Context) error            { s.note("mailcow start"); return s.err }
func (s seqStack) Stop(context.Context) error             { s.note("mailcow stop"); return nil }
func (s seqStack) Failed(context.Context) (string, error) { return "", nil }

// The units start after mailcow and stop before it; a unit that fails to start is alerted and the takeover goes on.
func TestUnitStack(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "systemctl")
	// A stand-in for systemctl that records its arguments and fails for a unit named bad.service.
	os.WriteFile(fake, []byte("#!/bin/sh\necho \"systemctl $*\" >> "+log+"\ncase \"$*\" in *bad.service*) echo 'Unit bad.service not found.' >&2; exit 5;; esac\n"), 0o755)
	var seq []string
	var mu sync.Mutex
	var alerts []string
	u := unitStack{Stack: seqStack{seq: &seq, mu: &mu}, Units: []string{"mailcow-signup.service"}, Systemctl: fake,
		Log: slog.New(slog.DiscardHandler), Alert: func(e event.Name, m string) { alerts = append(alerts, string(e)+": "+m) }}
	ctx := context.Background()
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	if string(b) != "systemctl start mailcow-signup.service\n" || len(seq) != 1 || len(alerts) != 0 {
		t.Fatalf("start: %q %v %v", b, seq, alerts)
	}
	os.Remove(log)
	seq = nil
	// Stop: the unit first. The fake appends to the log before mailcow's Stop records.
	stopOrder := []string{}
	u.Stack = orderStack{seqStack{seq: &seq, mu: &mu}, log, &stopOrder}
	if err := u.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if len(stopOrder) != 1 || stopOrder[0] != "systemctl stop mailcow-signup.service\n" {
		t.Errorf("the unit did not stop before mailcow: %q", stopOrder)
	}
	// A unit that does not start: alerted, mailcow still counts as started.
	u.Units = []string{"bad.service"}
	if err := u.Start(ctx); err != nil {
		t.Fatalf("a failing unit failed the takeover: %v", err)
	}
	if len(alerts) != 1 || !strings.HasPrefix(alerts[0], "stack_unit_failed: ") || !strings.Contains(alerts[0], "not found") {
		t.Errorf("alerts: %v", alerts)
	}
	// mailcow failing to start is the stack's error, and the units are not started.
	os.Remove(log)
	u.Stack = seqStack{seq: &seq, mu: &mu, err: errors.New("docker down")}
	if err := u.Start(ctx); err == nil {
		t.Error("mailcow's failure was swallowed")
	}
	if _, err := os.Stat(log); err == nil {
		t.Error("units started although mailcow did not")
	}
}

// orderStack records, when mailcow stops, what systemctl had done by then.
type orderStack struct {
	seqStack
	log   string
	order *[]string
}

func (o orderStack) Stop(ctx context.Context) error {
	b, _ := os.ReadFile(o.log)
	*o.order = append(*o.order, string(b))
	return o.seqStack.Stop(ctx)
}
