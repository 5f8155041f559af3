package daemon

// cluster.discover = "hcloud": the members from the API before anything starts.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
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
