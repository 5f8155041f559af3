package galera

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUnits stands in for systemd (this machine has no systemd as PID 1; the VM tests run the real unit over
// D-Bus). It records the calls and the bootstrap environment a start would hand to mariadb.service.
type fakeUnits struct {
	mu     sync.Mutex
	env    string
	calls  []string
	active bool
}

func (f *fakeUnits) Start(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "start "+name)
	if b, err := os.ReadFile(f.env); err == nil {
		f.calls = append(f.calls, strings.TrimSpace(string(b)))
	}
	f.active = true
	return nil
}

func (f *fakeUnits) Stop(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+name)
	f.active = false
	return nil
}

func (f *fakeUnits) Active(context.Context, string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active, nil
}

// TestSystemd drives the controller against fakeUnits.
func TestSystemd(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "new-cluster")
	units := &fakeUnits{env: env}
	s := &Systemd{Units: units, EnvFile: env, DataDir: dir, Poll: 50 * time.Millisecond}
	from := Position{UUID: "9dd37a7e-eb46-11f1-a9bc-030597b2c8a1", Seqno: 35}
	if err := s.Start(true, from); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env); !os.IsNotExist(err) {
		t.Fatal("the bootstrap environment file outlived the start")
	}
	select {
	case <-s.Done():
		t.Fatal("done while active")
	case <-time.After(200 * time.Millisecond):
	}
	s.Stop(time.Second)
	select {
	case <-s.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("not done after stop")
	}
	// A flag left by an agent killed in the middle of a bootstrap does not make the next plain start a second
	// bootstrap.
	if err := os.WriteFile(env, []byte("_WSREP_NEW_CLUSTER=--wsrep-new-cluster\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(false, Position{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env); !os.IsNotExist(err) {
		t.Fatal("a plain start left the stale bootstrap flag in place")
	}
	if was, err := s.ClearBootstrapFlag(); was || err != nil {
		t.Fatalf("clearing an absent flag: %v %v", was, err)
	}
	units.mu.Lock()
	kept := units.calls
	units.mu.Unlock()
	want := []string{
		"start mariadb.service",
		"_WSREP_NEW_CLUSTER=--wsrep-new-cluster --wsrep_start_position=9dd37a7e-eb46-11f1-a9bc-030597b2c8a1:35",
		"stop mariadb.service",
		"start mariadb.service",
	}
	if strings.Join(kept, "|") != strings.Join(want, "|") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(kept, "\n"), strings.Join(want, "\n"))
	}
	// Position and the safe_to_bootstrap mark work on the datadir as for the child.
	if err := s.MarkSafeToBootstrap(from); err != nil {
		t.Fatal(err)
	}
	p, err := s.Position(t.Context())
	if err != nil || p != (Position{UUID: from.UUID, Seqno: 35, SafeToBootstrap: true}) {
		t.Fatalf("position %+v %v", p, err)
	}
}
