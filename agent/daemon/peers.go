package daemon

// The peer API as this agent implements it (demote and confirm, state, switchover, maintenance) and asks it of
// others.

import (
	"context"
	"fmt"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/buildinfo"
)

// Demote implements the peer API's demote request: it waits until the brain confirmed the demotion.
func (a *Agent) Demote(ctx context.Context, from int64) error {
	ch := make(chan struct{})
	a.mu.Lock()
	a.waiters[from] = append(a.waiters[from], ch)
	a.mu.Unlock()
	a.observe(failover.DemoteRequest{From: from})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("demotion not finished: %w", ctx.Err())
	}
}

func (a *Agent) confirm(server int64) {
	a.mu.Lock()
	ws := a.waiters[server]
	delete(a.waiters, server)
	a.mu.Unlock()
	for _, ch := range ws {
		close(ch)
	}
}

// State implements the peer API's state question.
func (a *Agent) State() api.PeerState {
	a.mu.Lock()
	s, p, mounted := a.s, a.p, a.seen.Mounted
	a.mu.Unlock()
	now := time.Now()
	ok, why := failover.Verdict(p, s, now)
	n := failover.RecentTakeovers(p, s, now)
	rev, pending := a.configRevision()
	return api.PeerState{ConfigRevision: rev, ConfigPending: pending, Node: p.Name, Role: string(s.Role), VRRP: string(s.VRRP), GaleraOK: s.GaleraOK, Galera: s.GaleraDetail,
		Verdict: ok, Reason: why, StackFailed: s.StackFailed, Breaker: s.Breaker, Maintenance: s.Maintenance, Takeovers: n,
		Mounted: mounted, Started: a.started.UTC(), Version: buildinfo.Short(), Mailcow: a.mailcowRelease()}
}

// Switchover implements the peer API's switchover.
func (a *Agent) Switchover(to string, until time.Time) {
	a.observe(failover.Switchover{To: to, Until: until})
}

// Maintenance implements the peer API's maintenance switch.
func (a *Agent) Maintenance(on bool) { a.observe(failover.Maintenance{On: on}) }

// AskDemote (Peers) asks a peer's agent to demote and waits for its confirmation.
func (a *Agent) AskDemote(ctx context.Context, server int64) error {
	peers := a.peerAPI()
	peer, ok := peers[server]
	if !ok {
		return fmt.Errorf("server %d is not a member of this cluster", server)
	}
	return a.client.Demote(ctx, peer, a.p.Self)
}

// peerAPI is the peers as the peer API reaches them, by server id (a map that is replaced, never changed).
func (a *Agent) peerAPI() map[int64]api.Peer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peers
}

// peerNamed is the peer of that name.
func (a *Agent) peerNamed(name string) (api.Peer, bool) {
	for _, p := range a.peerAPI() {
		if p.Name == name {
			return p, true
		}
	}
	return api.Peer{}, false
}

func (a *Agent) broadcast(ctx context.Context, f func(ctx context.Context, to api.Peer) error) string {
	var failed []string
	for _, peer := range a.peerAPI() {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := f(cctx, peer); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", peer.Name, err))
		}
		cancel()
	}
	if len(failed) == 0 {
		return ""
	}
	return fmt.Sprintf(" (not reached: %v)", failed)
}
