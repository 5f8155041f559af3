package daemon

// This file is the agent of a node with role "arbitrator": garbd kept running, and the members followed while it
// runs.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// runArbitrator is the whole agent of an arbitrator node: garbd, kept running, and nothing else. It never
// bootstraps and never becomes MASTER (it runs no keepalived). With members from the API it follows them as a
// member's agent does (followMembers).
func runArbitrator(ctx context.Context, c config.Config, self config.Member, keys *api.Keyring, o Options, alerts *report.Alerter) error {
	tls, err := galeraTLS(c, self, keys)
	if err != nil {
		return err
	}
	g := &galera.Arbitrator{ClusterName: c.Cluster.Name, NodeName: self.Name, NodeIP: self.PrivateIP,
		Members: dataMembers(c.Cluster.Nodes), GroupPort: c.Galera.GroupPort, Output: newLogWriter(o.Log, "garbd"), TLS: tls}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wg.Add(1)
	go func() { defer wg.Done(); arbitratorFollowConfig(ctx, c, self, keys, o, alerts, cancel) }()
	if api, ok := o.Cloud.(membership.API); ok && c.Cluster.Discover == config.DiscoverHcloud && len(o.Config.Cluster.Nodes) == 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			followMembers(ctx, c, self, api, g, c.Cluster.DiscoverInterval.D(), alerts, o.Log)
		}()
	}
	o.Notifier.Ready("arbitrator: garbd")
	err = child.Keeper{
		Up: func(context.Context) (<-chan struct{}, error) {
			if err := g.Start(); err != nil {
				return nil, fmt.Errorf("agent: %w", err)
			}
			return g.Done(), nil
		},
		Ended: func() {
			o.Log.Error("garbd exited; restarting it in 5s", "event", "galera_degraded", "severity", "warning")
			alerts.Send(report.Event{Event: string(event.GaleraDegraded), Severity: report.SeverityWarning, Message: "garbd exited; restarting it in 5s"})
		},
		Failed:       func(error) bool { return false }, // garbd that cannot start at all is the agent's end
		RestartDelay: 5 * time.Second,
	}.Run(ctx)
	g.Stop(30 * time.Second)
	if errors.Is(context.Cause(ctx), ErrRestart) {
		return ErrRestart
	}
	return err
}

// arbitratorFollowConfig keeps the cluster's configuration on an arbitrator, which serves no peer API: every 30 s
// it asks the data members for their revision, and a newer one is checked, kept, and run by a restart (garbd is
// back within seconds; the data members keep their quorum meanwhile).
func arbitratorFollowConfig(ctx context.Context, c config.Config, self config.Member, keys *api.Keyring, o Options,
	alerts *report.Alerter, restart context.CancelCauseFunc) {
	client := &api.PeerClient{Keys: keys, Node: self.Name}
	peers := dataPeers(c, "")
	path := config.ClusterDocPath(c.Failover.StateDir)
	every(ctx, 10*time.Second, 30*time.Second, func() bool {
		cur, err := config.ReadClusterDoc(path)
		if err != nil {
			o.Log.Error("cluster configuration: the kept revision cannot be read", "err", err)
		}
		from, d, err := newerConfig(ctx, client, peers, cur.Revision)
		if err != nil || from.Name == "" {
			return false
		}
		// garbd's vote is away while it restarts: only while every data member is Synced and none waits for its
		// own restart (config apply's roll), so that two votes are never away at once.
		if why := membersSettled(ctx, client, peers); why != "" {
			o.Log.Info("cluster configuration: revision "+strconv.FormatInt(d.Revision, 10)+" waits until the members settle: "+why,
				"revision", d.Revision)
			return false
		}
		changes, _, err := keepCluster(ctx, o.ReadBase, o.SecretOwner, c.Failover.StateDir, cur, d)
		if err != nil {
			o.Log.Warn("cluster configuration: revision refused", "revision", d.Revision, "err", err)
			return false
		}
		msg := fmt.Sprintf("cluster configuration revision %d from %s kept; restarting to run it", d.Revision, from.Name)
		o.Log.Info(msg, "event", string(event.ConfigRestart), "changes", len(changes))
		alerts.Send(report.Event{Event: string(event.ConfigRestart), Severity: report.SeverityInfo, Message: msg})
		restart(ErrRestart)
		return true
	})
}

// membersSettled is "" when every data member answers with Galera Primary and Synced and no restart pending, else
// why not.
func membersSettled(ctx context.Context, client *api.PeerClient, peers []api.Peer) string {
	for _, p := range peers {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := client.State(qctx, p)
		cancel()
		switch {
		case err != nil:
			return p.Name + " does not answer"
		case !st.GaleraOK:
			return p.Name + ": Galera " + st.Galera
		case st.ConfigPending:
			return p.Name + " waits for its own restart"
		}
	}
	return ""
}

// dataPeers are the peer APIs of the members that hold data (an arbitrator serves none), but the one named except.
func dataPeers(c config.Config, except string) []api.Peer {
	var peers []api.Peer
	for _, m := range c.DataMembers() {
		if m.Name != except {
			peers = append(peers, api.Peer{Name: m.Name, URL: c.PeerURL(m)})
		}
	}
	return peers
}

// dataMembers are the private IPs of the members that hold data (not arbitrators).
func dataMembers(nodes []config.Member) []string {
	var ips []string
	for _, m := range nodes {
		if !m.IsArbitrator() {
			ips = append(ips, m.PrivateIP)
		}
	}
	return ips
}

// followMembers reads the members from the API every interval and applies a change to what an arbitrator has of
// them: the appliance firewall's member set (a new member's Galera connections reach garbd) and garbd's peers for its
// next start (a running garbd follows the cluster's view by itself). What cannot change live (this server renamed or
// gone, members that do not check) is alerted once per difference and waits for a restart.
func followMembers(ctx context.Context, c config.Config, self config.Member, api membership.API, g *galera.Arbitrator,
	every time.Duration, alerts *report.Alerter, log *slog.Logger) {
	memberLoop{api: api, every: every, log: log,
		now: func() (config.Config, int64) { return c, self.ServerID },
		apply: func(ctx context.Context, now []config.Member) error {
			next := c
			next.Cluster.Nodes = now
			if err := allowMembers(ctx, next, self, log); err != nil {
				return err
			}
			c = next
			g.SetMembers(dataMembers(now))
			return nil
		},
		applied: "the firewall's member set, garbd's peers at its next start",
		restart: "restart the agent to apply it",
		alert: func(severity, msg string) {
			log.Info(msg, "event", event.MembershipChanged, "severity", severity)
			alerts.Send(report.Event{Event: string(event.MembershipChanged), Severity: severity, Message: msg})
		},
	}.run(ctx)
}
