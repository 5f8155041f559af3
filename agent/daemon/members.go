package daemon

// cluster.discover = "hcloud": the members from the API before anything starts.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// newCloud is the hcloud adapter with the token of hcloud.token_file.
func newCloud(c config.Config, owner config.SecretFiles, log *slog.Logger) (*hcloud.Client, error) {
	token, err := owner.ReadSecret(c.Hcloud.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("hcloud.token_file: %w", err)
	}
	return hcloud.New(hcloud.Options{Endpoint: c.Hcloud.Endpoint, Token: token.Reveal(), Logger: log})
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

// MembersCheckInterval is how often a running agent with cluster.discover = "hcloud" compares the API's members with
// the ones it runs with (12 requests an hour of the API's 3600).
const MembersCheckInterval = 5 * time.Minute

// watchMembers compares, every interval, the members the API lists with the ones this agent runs with, and alerts
// once per new difference (membership_changed): a node added, removed or relabelled takes effect at the agents'
// next start, and the operator is told so.
func (a *Agent) watchMembers(ctx context.Context, api membership.API, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var said string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		now, err := membership.Current(cctx, &a.c, api)
		cancel()
		if err != nil {
			a.log.Debug("membership: the API did not answer; compared again later", "err", err)
			continue
		}
		a.mu.Lock()
		running := slices.Clone(a.c.Cluster.Nodes)
		a.mu.Unlock()
		msg, key := membersNote(running, now, said)
		if key == said {
			continue
		}
		said = key
		if msg == "" {
			a.log.Info("membership: the API lists the members this agent runs with again")
			continue
		}
		a.alert(event.MembershipChanged, report.SeverityWarning, "", 0, msg, nil)
	}
}

// membersNote says what changed between the running members and the API's, and a key for the difference ("" when
// there is none); said is the key of the last difference reported.
func membersNote(running, now []config.Member, said string) (msg, key string) {
	d := membership.Diff(running, now)
	if len(d) == 0 {
		return "", ""
	}
	key = strings.Join(d, "; ")
	return "membership: " + key + ". This agent runs with the members it started with: restart the agents one at a " +
		"time, BACKUPs first and the MASTER last, to apply it", key
}
