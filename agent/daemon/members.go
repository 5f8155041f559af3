package daemon

// cluster.discover = "hcloud": the members from the API before anything starts, and again while the agent runs.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
)

// newCloud is the hcloud adapter with the token of hcloud.token_file, and the action durations kept in the state
// directory.
func newCloud(c config.Config, owner config.SecretFiles, log *slog.Logger) (*hcloud.Client, error) {
	token, err := owner.ReadSecret(c.Hcloud.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("hcloud.token_file: %w", err)
	}
	dir := c.Failover.StateDir
	return hcloud.New(hcloud.Options{Endpoint: c.Hcloud.Endpoint, Token: token.Reveal(), Logger: log,
		Fastest:   loadActionDurations(dir, log),
		OnFastest: func(m map[string]time.Duration) { saveActionDurations(dir, m, log) }})
}

// discoverMembers fills cluster.nodes and node.name from the API when the configuration asks for it (or checks a
// given cluster.nodes against it), waiting apiTimeout for the API (0: membership's default) before the cache
// answers. It builds the hcloud adapter when none was injected and keeps it in o.Cloud.
func discoverMembers(ctx context.Context, c *config.Config, o *Options, owner config.SecretFiles,
	apiTimeout time.Duration, log *slog.Logger) error {
	if c.Cluster.Discover != config.DiscoverHcloud {
		return nil
	}
	if o.Cloud == nil {
		cl, err := newCloud(*c, owner, log)
		if err != nil {
			return err
		}
		o.Cloud = cl
	}
	api, ok := o.Cloud.(membership.API)
	if !ok {
		return errors.New("cluster.discover = \"hcloud\": the cloud adapter cannot list servers")
	}
	src, err := membership.Resolve(ctx, c, membership.Options{API: api, Metadata: hcloud.NewMetadata(c.Hcloud.MetadataURL, nil),
		StateDir: c.Failover.StateDir, APITimeout: apiTimeout, Log: log})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(c.Cluster.Nodes))
	for _, m := range c.Cluster.Nodes {
		names = append(names, m.Name)
	}
	log.Info("membership: this node is "+c.Node.Name, "node", c.Node.Name, "source", string(src), "members", names)
	return nil
}

// KickEvery bounds the reads of the members that requests from unknown nodes bring about.
const KickEvery = 15 * time.Second

// kickMembers asks watchMembers for a read now (the peer API's verifier calls it; it never blocks).
func (a *Agent) kickMembers(node string) {
	select {
	case a.membersKick <- struct{}{}:
		a.log.Info("membership: a node this agent does not know yet signed a request with the cluster's secret; reading the members", "node", node)
	default:
	}
}

// watchMembers reads the members from the API every interval (cluster.discover_interval) and applies a change
// live (applyMembers): a node added, removed or readdressed. What cannot change live (this server renamed or gone
// from the API, members that do not check, or a configuration that lists cluster.nodes itself) is alerted once per
// difference and waits for the agents' restart.
func (a *Agent) watchMembers(ctx context.Context, api membership.API, every time.Duration) {
	memberLoop{api: api, every: every, kick: a.membersKick, log: a.log,
		now: func() (config.Config, int64) {
			a.mu.Lock()
			defer a.mu.Unlock()
			c := a.c
			c.Cluster.Nodes = slices.Clone(a.c.Cluster.Nodes)
			return c, a.p.Self
		},
		refuse: func() error {
			if len(a.o.Config.Cluster.Nodes) > 0 {
				return errStaticMembers
			}
			return nil
		},
		apply:   a.applyMembers,
		applied: "keepalived's peers, the firewall's member set, the peer API, Galera's peers and address",
		restart: "restart the agents one at a time, BACKUPs first and the MASTER last, to apply it",
		alert: func(severity, msg string) {
			a.alert(event.MembershipChanged, severity, "", 0, msg, nil)
		},
	}.run(ctx)
}

// applyMembers makes the agent run with the members now, without a restart and without a failover: the failover
// brain's and the peer API's peers, the peer API's known nodes, Galera's peers (the start decision asks them) and
// its address in my.cnf (for mariadbd's next start), the appliance firewall's member set, and keepalived's unicast
// peers (reloaded). A member that left is no longer asked, fenced or trusted.
func (a *Agent) applyMembers(ctx context.Context, now []config.Member) error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	a.c.Cluster.Nodes = slices.Clone(now)
	cur := a.c
	self, _ := cur.Self()
	peers, apiPeers, names := map[int64]string{}, map[int64]api.Peer{}, map[string]bool{}
	var galeraPeers []string
	for _, m := range now {
		names[m.Name] = true
		if m.Name == self.Name || m.IsArbitrator() {
			continue
		}
		peers[m.ServerID] = m.Name
		apiPeers[m.ServerID] = api.Peer{Name: m.Name, URL: cur.PeerURL(m)}
		galeraPeers = append(galeraPeers, m.Name)
	}
	a.p.Peers, a.peers = peers, apiPeers
	a.mu.Unlock()
	a.verifier.SetNodes(names)
	var errs []error
	if a.mgr != nil {
		a.mgr.SetPeers(galeraPeers)
		errs = append(errs, a.writeGaleraConfig(cur))
	}
	errs = append(errs, allowMembers(ctx, cur, self, a.log))
	changed, err := a.writeKeepalivedConfig(cur)
	if err == nil && changed && a.ka != nil {
		err = a.ka.Reload()
	}
	errs = append(errs, err)
	return errors.Join(errs...)
}

// membersLive says whether the members come from the API alone (cluster.discover = "hcloud" and no static
// cluster.nodes in the configuration as given): a change of them is then applied while the agent runs; a static
// list waits for a restart.
func (a *Agent) membersLive(c config.Config) bool {
	return c.Cluster.Discover == config.DiscoverHcloud && len(a.o.Config.Cluster.Nodes) == 0
}
