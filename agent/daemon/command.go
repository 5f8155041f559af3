package daemon

// The local commands on the check socket: maintenance, switchover, status, breaker reset.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
)

// command answers the local commands on the check socket: maintenance on|off, switchover [NODE], status,
// breaker reset.
func (a *Agent) command(ctx context.Context, verb string, args []string) string {
	switch verb {
	case "maintenance":
		if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
			return "error usage: maintenance on|off"
		}
		on := args[0] == "on"
		a.Maintenance(on)
		errs := a.broadcast(ctx, func(ctx context.Context, to api.Peer) error { return a.client.Maintenance(ctx, to, on) })
		return "ok maintenance " + args[0] + errs
	case "switchover":
		to := ""
		if len(args) > 0 {
			to = args[0]
		}
		target, err := a.switchoverTarget(ctx, to)
		if err != nil {
			return "error " + err.Error()
		}
		a.mu.Lock() // reload() writes the failover parameters under the lock
		hold := a.p.FenceTimeout + a.p.QuorumGrace + 30*time.Second
		a.mu.Unlock()
		until := time.Now().Add(hold)
		a.Switchover(target, until)
		errs := a.broadcast(ctx, func(ctx context.Context, to api.Peer) error { return a.client.Switchover(ctx, to, target, until) })
		return "ok switchover to " + target + " until " + until.UTC().Format(time.RFC3339) + errs
	case "status":
		b, _ := json.Marshal(a.State())
		return "ok " + string(b)
	case "galera":
		if len(args) != 1 || args[0] != "force-bootstrap" {
			return "error usage: galera force-bootstrap"
		}
		if a.mgr == nil {
			return "error this node runs no Galera member"
		}
		if err := a.mgr.ForceBootstrap(); err != nil {
			return "error " + err.Error()
		}
		a.log.Warn("galera: the operator forced a bootstrap here; the next start round bootstraps from this node's position")
		return "ok galera: " + a.p.Name + " bootstraps from its own position at its next start round (within seconds), unless a peer runs a Primary component; the others join it"
	case "breaker":
		if len(args) != 1 || args[0] != "reset" {
			return "error usage: breaker reset"
		}
		// This node only: the breaker is each node's own history.
		a.observe(failover.BreakerReset{})
		return "ok breaker reset on " + a.p.Name
	}
	return "error unknown command " + strconv.Quote(verb)
}

// switchoverTarget is the named node, or the eligible peer with the highest priority.
func (a *Agent) switchoverTarget(ctx context.Context, to string) (string, error) {
	a.mu.Lock()
	members := slices.Clone(a.c.Cluster.Nodes)
	a.mu.Unlock()
	if to != "" {
		i := slices.IndexFunc(members, func(m config.Member) bool { return m.Name == to })
		if i < 0 || members[i].IsArbitrator() {
			return "", fmt.Errorf("%s is not a member that can serve", to)
		}
		return to, nil
	}
	slices.SortFunc(members, func(x, y config.Member) int { return y.Priority - x.Priority })
	for _, m := range members {
		if m.Name == a.p.Name || m.IsArbitrator() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := a.client.State(qctx, a.peerAPI()[m.ServerID])
		cancel()
		if err == nil && st.Verdict {
			return m.Name, nil
		}
	}
	return "", errors.New("no healthy peer to hand over to")
}
