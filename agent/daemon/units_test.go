package daemon

import (
	"context"
	"errors"
	"log/slog"
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

// seqUnits stands in for systemd: it records into the same sequence as seqStack, and fails for bad.service as
// systemd does for a unit it does not know.
type seqUnits struct{ seqStack }

func (u seqUnits) Start(_ context.Context, name string) error {
	u.note("start " + name)
	if name == "bad.service" {
		return errors.New("systemd: start bad.service: Unit bad.service not found.")
	}
	return nil
}
func (u seqUnits) Stop(_ context.Context, name string) error    { u.note("stop " + name); return nil }
func (u seqUnits) Kill(_ context.Context, name string) error    { u.note("kill " + name); return nil }
func (u seqUnits) Active(context.Context, string) (bool, error) { return true, nil }

// The units start after mailcow and stop before it, in reverse order; a unit that fails to start is alerted and
// the takeover goes on.
func TestUnitStack(t *testing.T) {
	var seq []string
	var mu sync.Mutex
	var alerts []string
	rec := seqStack{seq: &seq, mu: &mu}
	u := unitStack{Stack: rec, Units: []string{"mailcow-signup.service", "other.service"}, Systemd: seqUnits{rec},
		Log: slog.New(slog.DiscardHandler), Alert: func(e event.Name, m string) { alerts = append(alerts, string(e)+": "+m) }}
	ctx := context.Background()
	check := func(what string, want ...string) {
		t.Helper()
		if strings.Join(seq, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: %q, want %q", what, seq, want)
		}
		seq = nil
	}
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	check("start", "mailcow start", "start mailcow-signup.service", "start other.service")
	if len(alerts) != 0 {
		t.Fatalf("alerts: %v", alerts)
	}
	if err := u.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	check("stop", "stop other.service", "stop mailcow-signup.service", "mailcow stop")
	// A unit that does not start: alerted, the next one still starts, mailcow still counts as started.
	u.Units = []string{"bad.service", "mailcow-signup.service"}
	if err := u.Start(ctx); err != nil {
		t.Fatalf("a failing unit failed the takeover: %v", err)
	}
	check("a bad unit", "mailcow start", "start bad.service", "start mailcow-signup.service")
	if len(alerts) != 1 || !strings.HasPrefix(alerts[0], "stack_unit_failed: ") || !strings.Contains(alerts[0], "not found") {
		t.Errorf("alerts: %v", alerts)
	}
	// mailcow failing to start is the stack's error, and the units are not started.
	u.Stack = seqStack{seq: &seq, mu: &mu, err: errors.New("docker down")}
	if err := u.Start(ctx); err == nil {
		t.Error("mailcow's failure was swallowed")
	}
	check("mailcow failed", "mailcow start")
}
