// Package membership finds a cluster's members through the Hetzner API, so that one user-data boots every node
// (cluster.discover = "hcloud"): the node knows itself from the metadata service (its instance id) and its members
// from the servers labelled app=mailcow-ha and cluster=<cluster.name>, with their addresses in the network
// hcloud.network_id. Each server's labels carry what a static cluster.nodes entry says: role, priority and
// bootstrap. The last membership the API gave is kept in the state directory, for a boot while the API is down. A
// configuration that lists cluster.nodes as well is checked against the API, entry by entry.
package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
)

// The labels of a member's server. `mailcow-ha cluster create` sets them; a server added by hand needs them too.
const (
	LabelApp       = "app"       // always AppName
	LabelCluster   = "cluster"   // cluster.name
	LabelRole      = "role"      // "member" (the default) or "arbitrator"
	LabelPriority  = "priority"  // a member's VRRP priority, 1..254, unique
	LabelBootstrap = "bootstrap" // "true" on the one member that may start a new Galera cluster
	AppName        = "mailcow-ha"
)

// CacheFile is the file in failover.state_dir that keeps the last membership the API gave.
const CacheFile = "membership.json"

// Selector is the label selector of a cluster's servers.
func Selector(cluster string) string {
	return LabelApp + "=" + AppName + "," + LabelCluster + "=" + cluster
}

// API lists servers by label selector (agent/hcloud.Client).
type API interface {
	Servers(ctx context.Context, selector string) ([]hcloud.ServerInfo, error)
}

// Metadata is the metadata service (agent/hcloud.Metadata): which server this is.
type Metadata interface {
	InstanceID(ctx context.Context) (int64, error)
}

// Options are what Resolve asks.
type Options struct {
	API      API
	Metadata Metadata
	// StateDir holds CacheFile (failover.state_dir).
	StateDir string
	// APITimeout bounds the API's answer before the cache is used (default 30 s; the client retries inside it).
	APITimeout time.Duration
	Log        *slog.Logger
}

// Source says where a membership came from.
type Source string

const (
	FromAPI   Source = "api"
	FromCache Source = "cache"
)

// cache is CacheFile's content.
type cache struct {
	Cluster string          `json:"cluster"`
	Self    int64           `json:"self"`
	Saved   time.Time       `json:"saved"`
	Members []config.Member `json:"members"`
}

// Resolve fills c.Cluster.Nodes and c.Node.Name from the API (or from the cache when the API does not answer in
// time) and checks the result like a static cluster.nodes (config.CheckMembers). With cluster.nodes given, it
// checks them against the API instead and changes nothing.
func Resolve(ctx context.Context, c *config.Config, o Options) (Source, error) {
	if c.Cluster.Discover != config.DiscoverHcloud {
		return "", nil
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.APITimeout <= 0 {
		o.APITimeout = 30 * time.Second
	}
	self, err := o.Metadata.InstanceID(ctx)
	if err != nil {
		return "", fmt.Errorf("membership: which server is this: %w", err)
	}
	path := filepath.Join(c.Failover.StateDir, CacheFile)
	actx, cancel := context.WithTimeout(ctx, o.APITimeout)
	servers, apiErr := o.API.Servers(actx, Selector(c.Cluster.Name))
	cancel()
	var (
		members []config.Member
		src     = FromAPI
	)
	if apiErr == nil {
		if members, err = fromServers(servers, c.Hcloud.NetworkID); err != nil {
			return "", fmt.Errorf("membership: %w", err)
		}
	} else {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		cached, cerr := readCache(path, c.Cluster.Name, self)
		if cerr != nil {
			return "", fmt.Errorf("membership: the API did not answer (%w), and there is no membership to fall back on: %w", apiErr, cerr)
		}
		o.Log.Warn("membership: the API did not answer: the members are the last ones it gave", "err", apiErr,
			"saved", cached.Saved.Format(time.RFC3339), "members", len(cached.Members))
		members, src = cached.Members, FromCache
	}
	i := slices.IndexFunc(members, func(m config.Member) bool { return m.ServerID == self })
	if i < 0 {
		return "", fmt.Errorf("membership: this server (id %d) is not among the servers labelled %s", self, Selector(c.Cluster.Name))
	}
	if c.Node.Name != "" && c.Node.Name != members[i].Name {
		return "", fmt.Errorf("membership: node.name is %q, but this server (id %d) is %q", c.Node.Name, self, members[i].Name)
	}
	if len(c.Cluster.Nodes) > 0 {
		if err := compare(c.Cluster.Nodes, members); err != nil {
			return "", fmt.Errorf("membership: cluster.nodes does not match the API: %w", err)
		}
	} else {
		c.Cluster.Nodes = members
	}
	c.Node.Name = members[i].Name
	if probs := config.CheckMembers("membership ("+string(src)+")", c); len(probs) > 0 {
		return "", fmt.Errorf("membership: %w", probs.Err())
	}
	if src == FromAPI {
		if err := writeCache(path, cache{Cluster: c.Cluster.Name, Self: self, Saved: time.Now().UTC(), Members: members}); err != nil {
			o.Log.Warn("membership: not kept for a boot without the API", "err", err)
		}
	}
	return src, nil
}

// Current asks the API for the cluster's members now (no cache), for a running agent to compare with the ones it
// started with.
func Current(ctx context.Context, c *config.Config, api API) ([]config.Member, error) {
	servers, err := api.Servers(ctx, Selector(c.Cluster.Name))
	if err != nil {
		return nil, err
	}
	return fromServers(servers, c.Hcloud.NetworkID)
}

// Update reads the members again for an agent that runs with c (its members filled at the start) on server self:
// the API's members now, checked as at the start (this server among them under the same name, config.CheckMembers),
// and kept in the cache when they changed. It returns them with what changed; nothing changed: no changes.
func Update(ctx context.Context, c config.Config, self int64, api API) ([]config.Member, []string, error) {
	now, err := Current(ctx, &c, api)
	if err != nil {
		return nil, nil, fmt.Errorf("membership: %w", err)
	}
	changes := Diff(c.Cluster.Nodes, now)
	if len(changes) == 0 {
		return now, nil, nil
	}
	i := slices.IndexFunc(now, func(m config.Member) bool { return m.ServerID == self })
	if i < 0 {
		return nil, changes, fmt.Errorf("membership: this server (id %d) is no longer among the servers labelled %s", self, Selector(c.Cluster.Name))
	}
	if now[i].Name != c.Node.Name {
		return nil, changes, fmt.Errorf("membership: this server (id %d) is now named %q, not %q", self, now[i].Name, c.Node.Name)
	}
	c.Cluster.Nodes = now
	if probs := config.CheckMembers("membership (api)", &c); len(probs) > 0 {
		return nil, changes, fmt.Errorf("membership: %w", probs.Err())
	}
	path := filepath.Join(c.Failover.StateDir, CacheFile)
	if err := writeCache(path, cache{Cluster: c.Cluster.Name, Self: self, Saved: time.Now().UTC(), Members: now}); err != nil {
		return nil, changes, fmt.Errorf("membership: keeping it for a boot without the API: %w", err)
	}
	return now, changes, nil
}

// Diff says how the members the API lists differ from the running ones (name, server id, address, role, priority,
// bootstrap), one phrase per difference; none when they are the same.
func Diff(running, now []config.Member) []string {
	var out []string
	for _, n := range now {
		i := slices.IndexFunc(running, func(m config.Member) bool { return m.Name == n.Name })
		if i < 0 {
			out = append(out, fmt.Sprintf("%s (server %d, %s) joined", n.Name, n.ServerID, n.PrivateIP))
			continue
		}
		if r := running[i]; r != n {
			out = append(out, fmt.Sprintf("%s changed (server %d → %d, %s → %s, %s → %s, priority %d → %d, bootstrap %v → %v)",
				n.Name, r.ServerID, n.ServerID, r.PrivateIP, n.PrivateIP, r.Role, n.Role, r.Priority, n.Priority, r.Bootstrap, n.Bootstrap))
		}
	}
	for _, r := range running {
		if !slices.ContainsFunc(now, func(m config.Member) bool { return m.Name == r.Name }) {
			out = append(out, fmt.Sprintf("%s (server %d) left", r.Name, r.ServerID))
		}
	}
	return out
}

// fromServers turns the labelled servers into members, ordered by server id.
func fromServers(servers []hcloud.ServerInfo, network int64) ([]config.Member, error) {
	servers = slices.Clone(servers)
	slices.SortFunc(servers, func(a, b hcloud.ServerInfo) int { return int(a.ID - b.ID) })
	var out []config.Member
	var errs []error
	for _, s := range servers {
		m := config.Member{Name: s.Name, ServerID: s.ID, Role: s.Labels[LabelRole], PrivateIP: s.PrivateIPs[network]}
		if m.Role == "" {
			m.Role = config.RoleMember
		}
		if m.PrivateIP == "" {
			errs = append(errs, fmt.Errorf("server %s (id %d) is not in network %d (hcloud.network_id)", s.Name, s.ID, network))
		}
		if p, ok := s.Labels[LabelPriority]; ok {
			n, err := strconv.Atoi(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("server %s (id %d): label %s=%q is not a number", s.Name, s.ID, LabelPriority, p))
			}
			m.Priority = n
		} else if m.Role == config.RoleMember {
			errs = append(errs, fmt.Errorf("server %s (id %d) has no label %s (its VRRP priority, 1..254)", s.Name, s.ID, LabelPriority))
		}
		switch b := s.Labels[LabelBootstrap]; b {
		case "", "false":
		case "true":
			m.Bootstrap = true
		default:
			errs = append(errs, fmt.Errorf("server %s (id %d): label %s=%q (want true or false)", s.Name, s.ID, LabelBootstrap, b))
		}
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

// compare says how a static cluster.nodes differs from the API's members.
func compare(static, api []config.Member) error {
	var diffs []string
	for _, a := range api {
		i := slices.IndexFunc(static, func(m config.Member) bool { return m.Name == a.Name })
		if i < 0 {
			diffs = append(diffs, fmt.Sprintf("server %s (id %d) is labelled for the cluster but not in cluster.nodes", a.Name, a.ServerID))
			continue
		}
		s := static[i]
		if s.ServerID != 0 && s.ServerID != a.ServerID {
			diffs = append(diffs, fmt.Sprintf("%s: server_id %d, the API says %d", a.Name, s.ServerID, a.ServerID))
		}
		if s.PrivateIP != a.PrivateIP {
			diffs = append(diffs, fmt.Sprintf("%s: private_ip %s, the API says %s", a.Name, s.PrivateIP, a.PrivateIP))
		}
	}
	for _, s := range static {
		if !slices.ContainsFunc(api, func(m config.Member) bool { return m.Name == s.Name }) {
			diffs = append(diffs, fmt.Sprintf("%s is in cluster.nodes but no server of that name carries the cluster's labels", s.Name))
		}
	}
	if len(diffs) > 0 {
		return errors.New(strings.Join(diffs, "; "))
	}
	return nil
}

// Cached returns the members the agent last had from the API, for commands run on a node (`mailcow-ha status`).
func Cached(c *config.Config) ([]config.Member, error) {
	path := filepath.Join(c.Failover.StateDir, CacheFile)
	k, err := loadCache(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the members come from the API (cluster.discover = \"hcloud\") and the agent has kept none yet: %w", err)
	}
	if err != nil {
		return nil, err
	}
	if k.Cluster != c.Cluster.Name {
		return nil, fmt.Errorf("%s is of cluster %q, not %q", path, k.Cluster, c.Cluster.Name)
	}
	return k.Members, nil
}

// readCache reads the cache and checks that it is this cluster's and this server's.
func readCache(path, cluster string, self int64) (cache, error) {
	c, err := loadCache(path)
	if err != nil {
		return cache{}, err
	}
	if c.Cluster != cluster || c.Self != self {
		return cache{}, fmt.Errorf("%s is of cluster %q, server %d (this is %q, server %d)", path, c.Cluster, c.Self, cluster, self)
	}
	return c, nil
}

// loadCache reads and decodes the cache file.
func loadCache(path string) (cache, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return cache{}, err
	}
	var c cache
	if err := json.Unmarshal(b, &c); err != nil {
		return cache{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// writeCache replaces the cache atomically with mode 0600 (it names the members' addresses), through
// config.WriteSecret.
func writeCache(path string, c cache) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return config.WriteSecret(path, string(b))
}
