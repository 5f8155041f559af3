package galera

// Waiting on a member that starts: progress for systemd while a start blocks, and the wait for Synced with what
// counts as stuck.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// progressEvery is how often a start that blocks reports progress.
const progressEvery = 5 * time.Second

// whileProgress runs start and calls progress every so often until it returns. Under systemd, starting
// mariadb.service blocks until mariadbd is ready, which for a joiner is after its whole state transfer: without
// progress, systemd's start timeout ended the agent (and the transfer) of the third of three emulated VMs.
func whileProgress(start func() error, progress func(), every time.Duration) error {
	if progress == nil {
		return start()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				progress()
			}
		}
	}()
	err := start()
	close(stop)
	wg.Wait()
	return err
}

// stuckStop is how long a member that did not reach Synced gets to end on SIGTERM before it is killed. A joiner
// whose Primary component went away (a majority crash while it joined) does not end on SIGTERM: in the lab and in
// TestGaleraManagers it used the whole 30 s it had every time, which the recovery of the whole cluster waited for.
// Killing it is a crash, which InnoDB recovers from; the next round reads its position back with --wsrep-recover,
// and a datadir with a state transfer in progress never wins (decide).
const stuckStop = 10 * time.Second

// stuckAfter is StuckAfter or its default, 30 s.
func (m *Manager) stuckAfter() time.Duration {
	if m.StuckAfter > 0 {
		return m.StuckAfter
	}
	return 30 * time.Second
}

// waitSynced waits for the started member to be Primary and Synced. A member that stays out of a Primary
// component for stuckAfter is stopped (an error), so that the next round decides again with its position:
// after a failed state transfer ("node restart required") mariadbd stays up Disconnected and never joins; and a
// joiner that started while a Primary component ran, which then lost its quorum (a majority crash), sits in a
// non-Primary component without a position to report, and the recovery would wait for it for ever (seen in the
// lab).
//
// A joiner is also restarted when every peer answers and none runs a Primary component (none Primary, none a donor)
// for stuckAfter: there is nobody to join, and a joiner waiting for its state transfer has no socket to ask, so without this it
// would wait its ten minutes while the recovery waits for its position.
func (m *Manager) waitSynced(ctx context.Context, joining bool) error {
	deadline := time.Now().Add(10 * time.Minute)
	stuck := m.stuckAfter()
	var disconnectedSince, alone time.Time
	var asked time.Time
	for time.Now().Before(deadline) {
		select {
		case <-m.Server.Done():
			return errors.New("mariadbd exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if m.Progress != nil {
			m.Progress()
		}
		if joining && time.Since(asked) >= time.Second {
			asked = time.Now()
			if peers := m.reports(ctx); primaryAmong(peers) || !allAnswered(peers) {
				// A Primary component to join, or a peer that did not answer (a busy donor's may not): no verdict.
				alone = time.Time{}
			} else if alone.IsZero() {
				alone = time.Now()
			} else if time.Since(alone) > stuck {
				return fmt.Errorf("joining, but no peer runs a Primary component for %s: restarting to decide again", stuck)
			}
		}
		db, err := Open(m.Socket)
		if err != nil {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := Query(qctx, db)
		cancel()
		db.Close()
		if err == nil && st.PrimarySynced() {
			return nil
		}
		if err == nil && st.ClusterStatus != "Primary" {
			if disconnectedSince.IsZero() {
				disconnectedSince = time.Now()
			}
			if time.Since(disconnectedSince) > stuck {
				return fmt.Errorf("mariadbd stays out of a Primary component (%s) for %s: restarting it", st.Detail(), stuck)
			}
		} else {
			disconnectedSince = time.Time{}
		}
	}
	return fmt.Errorf("not Synced after 10 minutes")
}

// serverRunning reports whether the member's mariadbd runs.
func (m *Manager) serverRunning() bool {
	select {
	case <-m.Server.Done():
		return false
	default:
		return true
	}
}
