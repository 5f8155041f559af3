package galera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// Manager brings the local Galera member up, on first boot and after any stop or crash: it asks every peer for
// its report, decides (FirstBoot or Recover), bootstraps or joins, and waits for Synced. In doubt it waits and
// alerts; it never bootstraps while a peer is silent.
type Manager struct {
	Name      string
	Bootstrap bool     // cluster.nodes[].bootstrap: this node starts the cluster on first boot
	Peers     []string // the other members' names
	// Ask returns a peer's report (through the peer API); an error means the peer did not answer.
	Ask    func(ctx context.Context, peer string) (Report, error)
	Server Control
	Socket string
	Alert  func(name event.Name, detail string)
	Log    *slog.Logger
	Retry  time.Duration // between rounds while waiting; default 5 s
	// AlertAfter is how long a wait lasts before it alerts (default 1 min): peers that start a little later, as at
	// every first boot, are no news.
	AlertAfter time.Duration
	// StuckAfter is how long a member may stay out of a Primary component before the manager acts (default 30 s):
	// a starting one is restarted, a running one is made Primary if it wins the recovery (Watch). A member cut off
	// for a few seconds rejoins by itself.
	StuckAfter time.Duration
	// OnFirstBootstrap runs once the node that bootstrapped a new cluster is Synced (mailcow's database and user).
	// Until it has succeeded, a mark in the datadir keeps it pending: it is tried again (and only it) every Retry,
	// in this run or after a restart of the agent, and alerts after AlertAfter.
	OnFirstBootstrap func(ctx context.Context) error
	// Restore, when set, makes the new cluster from a backup: at the first bootstrap of a new cluster (this is the
	// bootstrap node, every peer answered, none has a history) it gives the new datadir the copy's database, and
	// the member bootstraps from the copy's position. A restore that fails alerts (restore_failed, once per reason)
	// and is tried again every Retry: nothing starts from an empty datadir meanwhile.
	Restore func(ctx context.Context) (Position, error)
	// Progress is called every few seconds while the node waits or transfers state (EXTEND_TIMEOUT_USEC).
	Progress func()

	mu      sync.Mutex
	pos     Position
	running bool
	forced  bool // the operator asked for a bootstrap here (ForceBootstrap), for the next round
}

// Report is what this node tells its peers: its position (recovered while mariadbd is down) and whether it runs
// in a Primary component.
func (m *Manager) Report(ctx context.Context) Report {
	m.mu.Lock()
	running, pos := m.running, m.pos
	m.mu.Unlock()
	if !running && pos.UUID == "" {
		// The position is not known yet: answering now could let a lower seqno win.
		return Report{Node: m.Name}
	}
	r := Report{Node: m.Name, Answered: true, Pos: pos}
	if running {
		// The live server answers for itself; when it does not, this node knows nothing it may report, except
		// that it is on its way in.
		db, err := Open(m.Socket)
		if err != nil {
			return Report{Node: m.Name, Joining: true}
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := Query(qctx, db)
		cancel()
		db.Close()
		if err != nil || st.StateUUID == "" {
			return Report{Node: m.Name, Joining: true}
		}
		r.Primary = st.ClusterStatus == "Primary" && st.LocalState == "Synced"
		r.Joining = !r.Primary
		r.State = st.LocalState
		r.Pos = Position{UUID: st.StateUUID, Seqno: st.LastCommitted}
	}
	return r
}

// Down records that mariadbd is not running: until the next round computes the position, this node reports
// nothing (a stale or guessed position could let a lower seqno win).
func (m *Manager) Down() {
	m.mu.Lock()
	m.running, m.pos = false, Position{}
	m.mu.Unlock()
}

// ErrMemberRuns: there is nothing to force, the member runs.
var ErrMemberRuns = errors.New("galera: the member runs; a forced bootstrap is only for a member that waits to start")

// ForceBootstrap is the operator's decision when the rules wait for ever: a peer that is gone for good (its server
// died), or positions that fork. The next round bootstraps a Primary component here, from this node's own
// position, unless a peer already runs one (then it joins: never a second Primary component). Transactions that
// only a silent peer had are lost; that is the operator's call. A datadir without a position is refused: it has no
// data to start a cluster from.
func (m *Manager) ForceBootstrap() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running || m.serverRunning() {
		return ErrMemberRuns
	}
	m.forced = true
	return nil
}

func (m *Manager) takeForced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.forced
	m.forced = false
	return f
}

// firstBoot reports whether this node never joined a cluster: no grastate.dat in its datadir, and no database
// beside the system ones. A datadir that holds data but lost its grastate.dat is no first boot: it recovers its
// position like any member.
func (m *Manager) firstBoot() bool {
	dir := m.Server.Dir()
	if _, err := os.Stat(filepath.Join(dir, "grastate.dat")); !errors.Is(err, os.ErrNotExist) {
		return false
	}
	return !HasUserData(dir)
}

// HasUserData reports whether the datadir holds a database other than MariaDB's own (mysql, performance_schema,
// sys, test): Debian's package and mariadb-install-db create those on a new server, mailcow's database comes only
// with a cluster. A datadir that cannot be read counts as holding data: in doubt, no new cluster.
func HasUserData(dir string) bool {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || strings.HasPrefix(n, "#") || strings.HasPrefix(n, ".") {
			continue
		}
		switch n {
		case "mysql", "performance_schema", "sys", "test", "lost+found":
			continue
		}
		return true
	}
	return false
}

// Run brings the member up and returns when it is Synced, or when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	retry := m.Retry
	if retry <= 0 {
		retry = 5 * time.Second
	}
	lastAlert := ""
	alertAfter := m.AlertAfter
	if alertAfter <= 0 {
		alertAfter = time.Minute
	}
	var waitSince time.Time
	restoreAlert := ""
	if m.serverRunning() {
		// The member runs already (an agent that lost track of it): its position is not read while it runs (that
		// would be a --wsrep-recover against a live datadir), and no start is decided. It is waited for as it is.
		m.Log.Warn("galera: the member runs already; waiting for it to be Synced")
		m.mu.Lock()
		m.running = true
		m.mu.Unlock()
		if err := m.waitSynced(ctx, true); err != nil {
			return fmt.Errorf("galera: the running member: %w", err)
		}
		return m.finishSetup(ctx, retry, alertAfter)
	}
	for {
		d, err := m.decide(ctx)
		if err != nil {
			return err
		}
		m.Log.Info("galera start", "action", string(d.Action), "reason", d.Reason)
		// Waiting for a peer, or for this node's turn to join, is work in progress: systemd's start timeout must not
		// end an agent that is queued behind another joiner's long state transfer (seen with three emulated VMs).
		if m.Progress != nil {
			m.Progress()
		}
		first := m.firstBoot() && d.Action == Bootstrap
		started := false
		switch d.Action {
		case Bootstrap:
			if first && m.Restore != nil {
				pos, ok := m.restore(ctx, retry, &restoreAlert)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !ok {
					break
				}
				d.From = pos
			}
			if d.From.Known() && !d.From.SafeToBootstrap {
				if err := m.Server.MarkSafeToBootstrap(d.From); err != nil {
					return err
				}
			}
			if first {
				if err := m.markSetupPending(); err != nil {
					return err
				}
			}
			if err := whileProgress(func() error { return m.Server.Start(true, d.From) }, m.Progress, progressEvery); err != nil {
				return err
			}
			started = true
		case Join:
			if d.Winner != "" && d.Winner != m.Name {
				// The winner has to bootstrap first; the next round finds its Primary component.
				break
			}
			if err := whileProgress(func() error { return m.Server.Start(false, Position{}) }, m.Progress, progressEvery); err != nil {
				return err
			}
			started = true
		}
		if d.Action == Wait || (d.Waits && !started) {
			if waitSince.IsZero() {
				waitSince = time.Now()
			}
			if time.Since(waitSince) >= alertAfter && d.Reason != lastAlert && m.Alert != nil {
				m.Alert(event.GaleraRecoveryBlocked, fmt.Sprintf("%s (waiting for %s)", d.Reason, time.Since(waitSince).Round(time.Second)))
				lastAlert = d.Reason
			}
		} else {
			waitSince, lastAlert = time.Time{}, ""
		}
		if started {
			m.mu.Lock()
			m.running = true
			m.mu.Unlock()
			if err := m.waitSynced(ctx, d.Action == Join); err == nil {
				return m.finishSetup(ctx, retry, alertAfter)
			} else if ctx.Err() != nil {
				return ctx.Err()
			} else {
				m.Log.Warn("galera did not reach Synced; trying again", "err", err)
				m.Server.Stop(stuckStop)
				m.Down()
			}
		}
		if m.Progress != nil {
			m.Progress()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

// decide gathers the reports and applies the rules. Joiners go one at a time: a node joins only when no silent
// or not-yet-Primary peer with a smaller name is still to go.
func (m *Manager) decide(ctx context.Context) (Decision, error) {
	pos, err := m.Server.Position(ctx)
	if err != nil {
		// An unreadable position (a grastate.dat without uuid after an aborted state transfer, say) must not stop
		// the member forever: it counts as unknown, which never wins a bootstrap and joins like a new node.
		m.Log.Warn("galera: position unknown", "err", err)
		pos = Position{UUID: ZeroUUID, Seqno: -1}
	}
	if _, err := os.Stat(filepath.Join(m.Server.Dir(), "sst_in_progress")); err == nil {
		// An aborted state transfer leaves a datadir that must never win.
		pos = Position{UUID: ZeroUUID, Seqno: -1}
	}
	m.mu.Lock()
	m.pos = pos
	m.mu.Unlock()
	peers := m.reports(ctx)
	self := Report{Node: m.Name, Answered: true, Pos: pos}
	var d Decision
	switch {
	case m.takeForced():
		d = forced(m.Name, pos, peers)
	case m.firstBoot():
		d = FirstBoot(m.Name, m.Bootstrap, peers)
	default:
		d = Recover(self, peers)
	}
	if d.Action == Join && d.Winner == "" {
		if w, wait := queue(m.Name, peers); wait {
			return w, nil
		}
	}
	return d, nil
}

// primaryAmong reports whether a peer runs in a Primary component: Primary and Synced, or a donor.
func primaryAmong(peers []Report) bool {
	for _, p := range peers {
		if p.Primary || p.State == DonorState {
			return true
		}
	}
	return false
}

// allAnswered reports whether every peer answered with what it knows.
func allAnswered(peers []Report) bool {
	for _, p := range peers {
		if !p.Answered {
			return false
		}
	}
	return true
}

// SetPeers replaces the other members' names (a member added or removed while the agent runs); the next round
// asks them.
func (m *Manager) SetPeers(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Peers = slices.Clone(names)
}

// reports asks every peer for its report; a peer that does not answer within 3 s is reported as silent.
func (m *Manager) reports(ctx context.Context) []Report {
	m.mu.Lock()
	names := m.Peers
	m.mu.Unlock()
	var peers []Report
	for _, p := range names {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		r, err := m.Ask(actx, p)
		cancel()
		if err != nil {
			r = Report{Node: p}
		}
		r.Node = p
		peers = append(peers, r)
	}
	return peers
}

// queue applies "joiners go one at a time" to a node that is to join: it returns the decision to wait behind
// another member and wait = true, or wait = false when this node may go now.
func queue(self string, peers []Report) (d Decision, wait bool) {
	primary := false
	for _, p := range peers {
		primary = primary || p.Primary
	}
	if !primary {
		// A donor is in the Primary component but Desynced, so it does not report Primary: say so, rather than
		// "no Primary component" while one runs.
		for _, p := range peers {
			if p.State == DonorState {
				return Decision{Action: Join, Winner: p.Node, Reason: p.Node + " is " + DonorState + ": a state transfer is under way; one joiner at a time"}, true
			}
		}
		return Decision{Action: Join, Winner: "?", Reason: "no Primary component yet: waiting for the bootstrap node"}, true
	}
	for _, p := range peers {
		if p.Joining {
			what := "is joining"
			if p.State != "" {
				what = "is " + p.State
			}
			return Decision{Action: Join, Winner: p.Node, Reason: p.Node + " " + what + ": one joiner at a time"}, true
		}
	}
	for _, p := range peers {
		if !p.Primary && p.Answered && p.Node < self {
			return Decision{Action: Join, Winner: p.Node, Reason: p.Node + " joins first"}, true
		}
	}
	return Decision{}, false
}
