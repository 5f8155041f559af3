package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
)

// Validate reads a configuration from the usual sources (or --config), checks it and its secret files, and
// prints either a summary of the cluster (exit 0) or every problem, one a line (exit 2).
func Validate(ctx context.Context, args []string, stdio Stdio) int {
	fset := newFlags("validate", "validate [--config PATH|-]", stdio)
	src := sourceFlags(fset)
	fset.DurationVar(&src.MetadataDeadline, "metadata-timeout", 10*time.Second, "how long to retry the metadata service")
	if code, done := parseFlags(fset, args, stdio); done {
		return code
	}
	src.Stdin = stdio.Stdin
	cfg, pl, err := loadConfig(ctx, *src)
	var probs config.Problems
	switch {
	case errors.As(err, &probs):
		fmt.Fprintln(stdio.Stderr, err)
		fmt.Fprintf(stdio.Stderr, "%s: %d problem(s)\n", pl.Name, len(probs))
		return ExitUsage
	case err != nil:
		fmt.Fprintln(stdio.Stderr, err)
		var pe *config.PayloadError
		if errors.As(err, &pe) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, config.ErrNoConfig) {
			return ExitUsage
		}
		return ExitFailure
	}
	summarize(stdio.Stdout, pl.Name, &cfg)
	return ExitOK
}

func summarize(w io.Writer, name string, c *config.Config) {
	fmt.Fprintf(w, "%s: valid (schema v%d)\n", name, c.Version)
	if c.Discovers() {
		fmt.Fprintf(w, "cluster   %s, members from the API: the servers labelled %s, their addresses in network %d\n",
			c.Cluster.Name, membership.Selector(c.Cluster.Name), c.Hcloud.NetworkID)
		node := c.Node.Name
		if node == "" {
			node = "this server, as the metadata service names it"
		}
		fmt.Fprintf(w, "node      %s\n", node)
	} else {
		summarizeMembers(w, c)
	}
	summarizeRest(w, c)
}

// summarizeMembers prints a static cluster.nodes: this node, its peers and the priority order.
func summarizeMembers(w io.Writer, c *config.Config) {
	self, _ := c.Self()
	fmt.Fprintf(w, "cluster   %s, %d nodes\n", c.Cluster.Name, len(c.Cluster.Nodes))
	fmt.Fprintf(w, "node      %s\n", describe(self))
	for _, p := range c.Peers() {
		fmt.Fprintf(w, "peer      %s\n", describe(p))
	}
	members := make([]config.Member, 0, len(c.Cluster.Nodes))
	for _, m := range c.Cluster.Nodes {
		if !m.IsArbitrator() {
			members = append(members, m)
		}
	}
	sort.SliceStable(members, func(i, j int) bool { return members[i].Priority > members[j].Priority })
	order := make([]string, len(members))
	for i, m := range members {
		order[i] = fmt.Sprintf("%s (%d)", m.Name, m.Priority)
	}
	fmt.Fprintf(w, "priority  %s\n", strings.Join(order, " > "))
}

func summarizeRest(w io.Writer, c *config.Config) {
	fmt.Fprintf(w, "hcloud    floating IP %d, volume %d, API %s\n", c.Hcloud.FloatingIPID, c.Hcloud.VolumeID, c.Hcloud.Endpoint)
	fmt.Fprintf(w, "failover  check grace %s, quorum grace %s, fence timeout %s, breaker %d per %s\n",
		c.Failover.CheckGrace, c.Failover.QuorumGrace, c.Failover.FenceTimeout, c.Failover.Breaker.Max, c.Failover.Breaker.Window)
	for _, s := range []struct {
		key, file string
		inline    bool
	}{
		{"hcloud.token", c.Hcloud.TokenFile, c.Hcloud.Token.Set()},
		{"cluster.secret", c.Cluster.SecretFile, c.Cluster.Secret.Set()},
	} {
		if s.inline {
			fmt.Fprintf(w, "note      %s is inline: the agent writes it to %s (mode 0600); user-data stays in the "+
				"metadata service, which the appliance's firewall keeps to the agent\n", s.key, s.file)
		}
	}
}

func describe(m config.Member) string {
	if m.IsArbitrator() {
		return fmt.Sprintf("%s %s arbitrator (garbd)", m.Name, m.PrivateIP)
	}
	s := fmt.Sprintf("%s %s server %d priority %d", m.Name, m.PrivateIP, m.ServerID, m.Priority)
	if m.Bootstrap {
		s += " bootstrap"
	}
	return s
}
