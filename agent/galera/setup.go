package galera

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// The new cluster's first start: its database restored from a backup before the bootstrap (Manager.Restore), and
// its setup after it (Manager.OnFirstBootstrap), kept pending until it succeeded.

// setupMark is the file in the datadir that says the new cluster's setup (OnFirstBootstrap) is still to be done.
const setupMark = "mailcow-ha-setup-pending"

func (m *Manager) markSetupPending() error {
	if m.OnFirstBootstrap == nil {
		return nil
	}
	if err := os.WriteFile(filepath.Join(m.Server.Dir(), setupMark), []byte("mailcow's database and user are still to be created\n"), 0o600); err != nil {
		return fmt.Errorf("galera: %w", err)
	}
	return nil
}

// finishSetup runs a pending OnFirstBootstrap until it succeeds (nil) or ctx ends: the member runs and stays up
// meanwhile, and nothing but the pending step is tried again.
func (m *Manager) finishSetup(ctx context.Context, retry, alertAfter time.Duration) error {
	mark := filepath.Join(m.Server.Dir(), setupMark)
	if _, err := os.Stat(mark); err != nil || m.OnFirstBootstrap == nil {
		return nil
	}
	since, alerted := time.Now(), false
	for {
		err := m.OnFirstBootstrap(ctx)
		if err == nil {
			if err := os.Remove(mark); err != nil {
				return fmt.Errorf("galera: the setup is done, but its mark stays: %w", err)
			}
			m.Log.Info("galera: the new cluster's setup is done")
			return nil
		}
		m.Log.Error("galera: the new cluster's setup failed; trying it again", "err", err, "retry_in", retry)
		if !alerted && time.Since(since) >= alertAfter && m.Alert != nil {
			m.Alert(event.GaleraSetupFailed, fmt.Sprintf("the new cluster's setup (mailcow's database and user) has failed for %s: %v",
				time.Since(since).Round(time.Second), err))
			alerted = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

// restore runs Restore before a new cluster's first bootstrap and returns the copy's position; false when it failed
// (logged, and alerted once per reason: alerted holds the last reason), and nothing may start this round.
func (m *Manager) restore(ctx context.Context, retry time.Duration, alerted *string) (Position, bool) {
	pos, err := m.Restore(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.Log.Error("galera: the new cluster's database could not be restored; nothing starts, trying again", "err", err, "retry_in", retry)
			if err.Error() != *alerted && m.Alert != nil {
				m.Alert(event.RestoreFailed, fmt.Sprintf("the new cluster's database could not be restored from the backup (no empty cluster starts instead): %v", err))
				*alerted = err.Error()
			}
		}
		return pos, false
	}
	m.Log.Info("galera: the new cluster's database is the backup's; bootstrapping from its position", "position", pos.String())
	return pos, true
}
