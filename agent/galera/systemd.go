package galera

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/unit"
)

// Systemd controls Debian's mariadb.service. A bootstrap goes through the unit's EnvironmentFile, as Debian's
// galera_new_cluster does: _WSREP_NEW_CLUSTER carries --wsrep-new-cluster and the start position, and the file
// is removed once the start returned, so that no later start bootstraps by accident.
type Systemd struct {
	Unit    string       // default mariadb.service
	Units   unit.Manager // default systemd over D-Bus (unit.Systemd)
	EnvFile string       // default /run/mariadb-wsrep-new-cluster (the unit's EnvironmentFile)
	DataDir string
	Poll    time.Duration // how often Done looks at the unit; default 2 s

	mu   sync.Mutex
	done chan struct{}
}

func (s *Systemd) unit() string { return or(s.Unit, "mariadb.service") }

func (s *Systemd) units() unit.Manager {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Units == nil {
		s.Units = &unit.Systemd{}
	}
	return s.Units
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *Systemd) envFile() string { return or(s.EnvFile, "/run/mariadb-wsrep-new-cluster") }

// ClearBootstrapFlag removes the bootstrap environment file, so that no start of the unit (ours, or systemd's own
// restart of it) bootstraps a new Primary component by accident. An agent killed in the middle of a bootstrap
// leaves the file behind; the agent clears it when it starts, and every start that is no bootstrap clears it too.
// It reports whether a file was there.
func (s *Systemd) ClearBootstrapFlag() (bool, error) {
	err := os.Remove(s.envFile())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("galera: a stale bootstrap flag: %w", err)
	}
	return true, nil
}

// Start starts the unit; the start blocks until mariadbd is up (the unit is Type=notify).
func (s *Systemd) Start(bootstrap bool, from Position) error {
	if !bootstrap {
		if _, err := s.ClearBootstrapFlag(); err != nil {
			return err
		}
	}
	if bootstrap {
		env := s.envFile()
		v := "--wsrep-new-cluster"
		if from.Known() {
			v += " --wsrep_start_position=" + from.String()
		}
		if err := os.WriteFile(env, []byte("_WSREP_NEW_CLUSTER="+v+"\n"), 0o644); err != nil {
			return fmt.Errorf("galera: %w", err)
		}
		defer os.Remove(env)
	}
	// The unit is Type=notify: its start job ends when mariadbd said READY=1, or failed.
	if err := s.units().Start(context.Background(), s.unit()); err != nil {
		return fmt.Errorf("galera: %w", err)
	}
	s.mu.Lock()
	s.done = make(chan struct{})
	done := s.done
	s.mu.Unlock()
	go s.watch(done)
	return nil
}

// watch closes done when the unit is no longer active, or when systemd could not be asked three times in a row
// (as the systemctl is-active it replaces, a systemd that does not answer counts as an ended unit).
func (s *Systemd) watch(done chan struct{}) {
	poll := s.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	failures := 0
	for {
		time.Sleep(poll)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		active, err := s.units().Active(ctx, s.unit())
		cancel()
		switch {
		case err != nil:
			failures++
			if failures < 3 {
				continue
			}
		case active:
			failures = 0
			continue
		}
		close(done)
		return
	}
}

// Done is closed when the unit stopped being active after Start.
func (s *Systemd) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		d := make(chan struct{})
		close(d)
		return d
	}
	return s.done
}

// Stop stops the unit and waits up to timeout for the stop job; then it kills the unit's processes (SIGKILL, as
// Server.Stop does) and waits for the stop to end. The unit's own stop timeout (Debian's mariadb.service: 15
// minutes) is no bound for a member out of a Primary component, whose mariadbd may not end on SIGTERM at all (see
// stuckStop). A stop that failed shows in Done, which stays open while the unit is active.
func (s *Systemd) Stop(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := s.units().Stop(ctx, s.unit())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		return
	}
	kctx, kcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer kcancel()
	s.units().Kill(kctx, s.unit())
	s.units().Stop(kctx, s.unit())
}

// Position reads grastate.dat, and the recovered position after a crash.
func (s *Systemd) Position(ctx context.Context) (Position, error) {
	return position(ctx, s.DataDir, "mariadbd", "", []string{})
}

// MarkSafeToBootstrap records the winner's position with safe_to_bootstrap: 1.
func (s *Systemd) MarkSafeToBootstrap(p Position) error { return markSafe(s.DataDir, p) }

// Dir is the datadir.
func (s *Systemd) Dir() string { return s.DataDir }
