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

func (f *fakeUnits) Kill(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "kill "+name)
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

// stubbornUnits is a mariadb.service whose mariadbd does not end on SIGTERM (a joiner whose Primary component went
// away): a stop job waits until killed or until its caller gives up.
type stubbornUnits struct {
	fakeUnits
	killed chan struct{}
}

func (f *stubbornUnits) Stop(ctx context.Context, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, "stop "+name)
	f.mu.Unlock()
	select {
	case <-f.killed:
		f.mu.Lock()
		f.active = false
		f.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *stubbornUnits) Kill(ctx context.Context, name string) error {
	f.fakeUnits.Kill(ctx, name)
	close(f.killed)
	return nil
}

// A unit that does not stop within the timeout is killed, and the stop ends then: not after the unit's own stop
// timeout (15 minutes for Debian's mariadb.service).
func TestSystemdStopKillsAfterTimeout(t *testing.T) {
	dir := t.TempDir()
	units := &stubbornUnits{fakeUnits: fakeUnits{env: filepath.Join(dir, "new-cluster")}, killed: make(chan struct{})}
	s := &Systemd{Units: units, EnvFile: units.env, DataDir: dir, Poll: 50 * time.Millisecond}
	if err := s.Start(false, Position{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	s.Stop(300 * time.Millisecond)
	if took := time.Since(t0); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("the stop took %s, want the timeout (300ms) and the kill", took)
	}
	select {
	case <-s.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("not done after the kill")
	}
	units.mu.Lock()
	defer units.mu.Unlock()
	if got, want := strings.Join(units.calls, "|"), "start mariadb.service|stop mariadb.service|kill mariadb.service|stop mariadb.service"; got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
}
