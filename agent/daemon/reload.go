package daemon

// SIGHUP: the configuration read again and applied where it can be live.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// reload re-reads the configuration (SIGHUP) and applies what can change while running.
func (a *Agent) reload() {
	if a.o.LoadConfig == nil {
		return
	}
	c, err := a.o.LoadConfig()
	if err == nil {
		// The token again: config apply rotates it by writing its file.
		err = a.reloadToken(c)
	}
	if err == nil {
		// The members from the API again (a reload shows a membership that changed: the warning below). The loop
		// waits for this: the API gets 5 s, then the cache answers.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = discoverMembers(ctx, &c, &a.o, config.SecretFiles{Owner: a.o.SecretOwner}, 5*time.Second, a.log)
		cancel()
	}
	if err != nil {
		a.alert(event.ConfigInvalid, report.SeverityCritical, "", 0, "reload: configuration refused, keeping the running one: "+err.Error(), nil)
		return
	}
	self, _ := c.Self()
	a.mu.Lock()
	changes := membership.Diff(a.c.Cluster.Nodes, c.Cluster.Nodes)
	a.mu.Unlock()
	// Members found through the API are applied as a running agent applies them (watchMembers); a static list
	// waits for the restart.
	live := a.membersLive(c)
	if c.Node.Name != a.c.Node.Name || self.ServerID != a.p.Self || c.Cluster.Name != a.c.Cluster.Name ||
		(len(changes) > 0 && !live) || !sameAPI(c.API, a.c.API) {
		a.log.Warn("reload: the node, the cluster's membership or the API settings changed: restart the agent to apply them")
	} else if len(changes) > 0 {
		if err := a.applyMembers(context.Background(), c.Cluster.Nodes); err != nil {
			a.log.Error("reload: membership", "changes", changes, "err", err)
		} else {
			a.log.Info("reload: membership applied", "changes", changes)
		}
	}
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	a.p.CheckGrace, a.p.QuorumGrace = c.Failover.CheckGrace.D(), c.Failover.QuorumGrace.D()
	a.p.FenceTimeout, a.p.BreakerMax, a.p.BreakerWindow = c.Failover.FenceTimeout.D(), c.Failover.Breaker.Max, c.Failover.Breaker.Window.D()
	a.p.Sequential, a.p.PowerOnFenced = c.Failover.Sequential, c.Failover.PowerOnFenced
	a.c.Failover, a.c.Keepalived = c.Failover, c.Keepalived
	a.c.Mailcow.Repo, a.c.Mailcow.PullCommand = c.Mailcow.Repo, c.Mailcow.PullCommand
	a.c.Backup = c.Backup // the backups' watch reads it at each look (backups.go)
	for i := range a.c.Cluster.Nodes {
		if m, ok := c.Member(a.c.Cluster.Nodes[i].Name); ok {
			a.c.Cluster.Nodes[i].Priority = m.Priority
		}
	}
	cur := a.c
	a.mu.Unlock()
	a.exec.SetFenceTimeout(c.Failover.FenceTimeout.D())
	a.restartWatcher(cur)
	changed, err := a.writeKeepalivedConfig(cur)
	if err != nil {
		a.log.Error("reload: keepalived configuration", "err", err)
		return
	}
	if changed && a.ka != nil {
		if err := a.ka.Reload(); err != nil {
			a.log.Error("reload: keepalived", "err", err)
			return
		}
		a.alert(event.ConfigReloaded, report.SeverityInfo, "", 0, "reload: configuration applied; keepalived reloaded", nil)
		return
	}
	a.alert(event.ConfigReloaded, report.SeverityInfo, "", 0, "reload: configuration applied", nil)
}

// reloadToken hands the hcloud client the token in hcloud.token_file, which may have been rotated.
func (a *Agent) reloadToken(c config.Config) error {
	ts, ok := a.o.Cloud.(interface{ SetToken(string) })
	if !ok {
		return nil
	}
	tok, err := config.SecretFiles{Owner: a.o.SecretOwner}.ReadSecret(c.Hcloud.TokenFile)
	if err != nil {
		return fmt.Errorf("hcloud.token_file: %w", err)
	}
	ts.SetToken(tok.Reveal())
	return nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func sameAPI(x, y config.API) bool {
	return slices.Equal(x.Listen, y.Listen) && x.PeerPort == y.PeerPort && x.Socket == y.Socket
}
