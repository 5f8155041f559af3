package galera

// The survivor of a majority loss: a member that stays up while most of the cluster crashed is left in a
// non-Primary component, and nothing brings it back by itself.

import (
	"context"
	"fmt"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// Watch looks after the member once it is up (after Run), until ctx ends or done is closed (mariadbd exited: Run
// brings it up again). When the member stays out of a Primary component for StuckAfter (the others crashed, or are
// cut off, while this one lived on), it asks every peer and applies Recover's rules with its live position: when
// this member wins, it makes its component Primary again (pc.bootstrap=YES). The members that come back name it the
// winner (the highest seqno, or the live one of equal positions) and wait to join it, so without this the cluster
// never recovered. In doubt (a silent peer: the others may run a Primary component of their own; a fork) it waits
// and alerts after AlertAfter, and it does nothing while a peer runs a Primary component, which Galera rejoins by
// itself.
func (m *Manager) Watch(ctx context.Context, done <-chan struct{}) {
	every := m.Retry
	if every <= 0 {
		every = 5 * time.Second
	}
	stuckAfter := m.stuckAfter()
	alertAfter := m.AlertAfter
	if alertAfter <= 0 {
		alertAfter = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var since time.Time
	lastAlert := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		st, err := m.localStatus(ctx)
		if err != nil || st.ClusterStatus == "Primary" || st.StateUUID == "" {
			since, lastAlert = time.Time{}, ""
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		out := time.Since(since)
		if out < stuckAfter {
			continue
		}
		self := Report{Node: m.Name, Answered: true, Joining: true, State: st.LocalState,
			Pos: Position{UUID: st.StateUUID, Seqno: st.LastCommitted}}
		d := Recover(self, m.reports(ctx))
		switch {
		case d.Action == Bootstrap:
			m.Log.Warn("galera: this member is out of a Primary component and wins the recovery: making its component Primary (pc.bootstrap)",
				"cluster_status", st.ClusterStatus, "position", self.Pos.String(), "reason", d.Reason, "out_of_primary", out.Round(time.Second))
			if err := m.bootstrapComponent(ctx); err != nil {
				m.Log.Error("galera: pc.bootstrap", "err", err)
			}
			// The component takes a moment to become Primary: look again only after another StuckAfter.
			since = time.Now()
		case d.Action == Wait && out >= alertAfter && d.Reason != lastAlert:
			if m.Alert != nil {
				m.Alert(event.GaleraRecoveryBlocked, fmt.Sprintf("out of a Primary component for %s: %s", out.Round(time.Second), d.Reason))
			}
			lastAlert = d.Reason
		}
	}
}

// localStatus reads the member's wsrep status through its socket.
func (m *Manager) localStatus(ctx context.Context) (Status, error) {
	db, err := Open(m.Socket)
	if err != nil {
		return Status{}, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return Query(qctx, db)
}

// bootstrapComponent makes the member's component Primary: what --wsrep-new-cluster does at a start, for a
// running member, keeping its history (the same cluster uuid and seqno).
func (m *Manager) bootstrapComponent(ctx context.Context) error {
	db, err := Open(m.Socket)
	if err != nil {
		return err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(qctx, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'"); err != nil {
		return fmt.Errorf("galera: pc.bootstrap: %w", err)
	}
	return nil
}
