package config

// This file is the cluster's configuration: one TOML document of cluster-wide settings that `mailcow-ha config
// apply` hands to every node, layered on each node's user-data (which cannot change). It names the keys such a
// document may set, which of them a running agent applies live and which need a restart, checks a document
// against a node's user-data, and keeps the applied document with its revision.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Apply says how a running agent takes a changed key of the cluster's configuration.
type Apply string

// How a change is applied.
const (
	// ApplyLive: a reload applies it (SIGHUP), no process restarts.
	ApplyLive Apply = "live"
	// ApplyRestart: the agent reads it at its start only; config apply restarts the agents one at a time, and
	// hands MASTER over first.
	ApplyRestart Apply = "restart"
)

// clusterKeys are the keys a cluster configuration may set (a key ending in "." covers the table below it), with how each is applied. Everything else belongs to a node (node.*, its paths, its
// membership) or to the cluster's identity (cluster.name, cluster.secret, the Hetzner resources' ids), which a
// running cluster does not change.
var clusterKeys = []struct {
	prefix string
	apply  Apply
}{
	{"failover.check_grace", ApplyLive},
	{"failover.quorum_grace", ApplyLive},
	{"failover.fence_timeout", ApplyLive},
	{"failover.breaker.", ApplyLive},
	{"failover.sequential", ApplyLive},
	{"failover.power_on_fenced", ApplyLive},
	{"keepalived.advert_interval", ApplyLive},
	{"keepalived.vrrp_version", ApplyLive},
	{"keepalived.preempt", ApplyLive},
	{"keepalived.preempt_delay", ApplyLive},
	{"keepalived.check_timeout", ApplyLive},
	{"keepalived.check_fall", ApplyLive},
	{"hcloud.token", ApplyLive}, // the token itself (a rotation), not where it is kept
	{"failover.reconcile_interval", ApplyRestart},
	{"cluster.discover_interval", ApplyRestart},
	{"network.admin_cidrs", ApplyRestart},
	{"mailcow.hostname", ApplyRestart},
	{"mailcow.timezone", ApplyRestart},
	{"mailcow.conf.", ApplyRestart},
	{"mailcow.critical_services", ApplyRestart},
	{"mailcow.start_timeout", ApplyRestart},
	{"mailcow.repo", ApplyLive},
	{"mailcow.pull_command", ApplyLive},
	{"alerts.", ApplyRestart},
	{"backup.repository", ApplyLive}, // read at each backup
	{"backup.max_age", ApplyLive},    // read at each check
	{"backup.keep_daily", ApplyLive}, // read at each prune
	{"backup.keep_weekly", ApplyLive},
	{"backup.keep_monthly", ApplyLive},
}

// ClusterKeyApply says how a key of a cluster configuration is applied; ok is false for a key that a cluster
// configuration may not set.
func ClusterKeyApply(key string) (Apply, bool) {
	for _, k := range clusterKeys {
		if key == k.prefix || (strings.HasSuffix(k.prefix, ".") && strings.HasPrefix(key, k.prefix)) {
			return k.apply, true
		}
	}
	return "", false
}

// ClusterDoc is the cluster configuration a node runs: the document as applied, and its revision (1, 2, …; 0:
// none applied). A node keeps it in its state directory, mode 0600, since it may carry secrets (hcloud.token).
type ClusterDoc struct {
	Revision int64  `json:"revision"`
	TOML     string `json:"toml"`
}

// Hash is the document's SHA-256, hex: two nodes with the same revision hold the same document.
func (d ClusterDoc) Hash() string {
	h := sha256.Sum256([]byte(d.TOML))
	return hex.EncodeToString(h[:])
}

// ClusterDocPath is where a node keeps its cluster configuration: in failover.state_dir.
func ClusterDocPath(stateDir string) string { return filepath.Join(stateDir, "cluster-config.json") }

// ReadClusterDoc reads a node's cluster configuration; a missing file is revision 0.
func ReadClusterDoc(path string) (ClusterDoc, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ClusterDoc{}, nil
	}
	if err != nil {
		return ClusterDoc{}, fmt.Errorf("cluster configuration: %w", err)
	}
	var d ClusterDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return ClusterDoc{}, fmt.Errorf("cluster configuration %s: %w", path, err)
	}
	return d, nil
}

// WriteClusterDoc replaces a node's cluster configuration (mode 0600, atomically).
func WriteClusterDoc(path string, d ClusterDoc) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return WriteSecret(path, string(b))
}

// WithCluster layers a cluster configuration's TOML on a node's own (user-data) and returns the document the node
// runs. An empty cluster configuration returns base unchanged.
func WithCluster(base []byte, cluster string) ([]byte, error) {
	if strings.TrimSpace(cluster) == "" {
		return base, nil
	}
	var b, o map[string]any
	if _, err := toml.Decode(string(base), &b); err != nil {
		return nil, fmt.Errorf("the node's configuration: %w", err)
	}
	if _, err := toml.Decode(cluster, &o); err != nil {
		return nil, fmt.Errorf("the cluster configuration: %w", err)
	}
	delete(o, "version")
	Layer(b, o)
	text, err := Encode(b)
	if err != nil {
		return nil, err
	}
	return []byte(text), nil
}

// CheckCluster checks a cluster configuration (name: how problems name it) on its own, each key allowed and every
// value well typed, then layered on a node's configuration (baseName, base) as Check does. Every problem names a key
// of the cluster configuration and its line there where it has one. It returns the configuration the node would
// run.
func CheckCluster(name string, doc []byte, baseName string, base []byte, fsys FileChecker) (Config, Problems) {
	var raw map[string]any
	if _, err := toml.Decode(string(doc), &raw); err != nil {
		return Config{}, Problems{parseProblem(name, string(doc), err)}
	}
	idx := indexLines(string(doc))
	var probs Problems
	for _, k := range Keys(raw) {
		if k == "version" {
			continue
		}
		if k == "cluster.secret" || k == "cluster.secret_file" {
			probs = append(probs, Problem{File: name, Line: idx.line(k), Key: k,
				Msg: "the cluster secret is not rotated by a cluster configuration (every node must switch at once): use mailcow-ha cluster rotate-secret"})
		} else if _, ok := ClusterKeyApply(k); !ok {
			probs = append(probs, Problem{File: name, Line: idx.line(k), Key: k,
				Msg: "not a cluster-wide setting: it belongs to a node's user-data or to the cluster's identity (docs/config.md, \"Cluster configuration\")"})
		}
	}
	if len(probs) > 0 {
		return Config{}, probs
	}
	merged, err := WithCluster(base, string(doc))
	if err != nil {
		return Config{}, Problems{{File: name, Msg: err.Error()}}
	}
	cfg, ps := Check(name, merged, fsys)
	for _, p := range ps {
		if p.Key == "" {
			probs = append(probs, p)
			continue
		}
		if n := idx.line(p.Key); n > 0 {
			p.Line = n
		} else {
			p.File, p.Line = baseName, 0 // the node's own configuration, with the cluster's layered on it
		}
		probs = append(probs, p)
	}
	return cfg, probs
}

// Change is one key that differs between two cluster configurations.
type Change struct {
	Key      string
	From, To string // "" when absent; secrets are shown as "(secret)"
	Apply    Apply
}

// ClusterChanges lists what differs between two cluster configurations (both already checked), key by key in key
// order. Secrets are compared, never shown.
func ClusterChanges(from, to string) ([]Change, error) {
	a, err := flatten(from)
	if err != nil {
		return nil, err
	}
	b, err := flatten(to)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var out []Change
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	}) {
		if k == "version" || a[k] == b[k] {
			continue
		}
		ap, _ := ClusterKeyApply(k)
		c := Change{Key: k, From: a[k], To: b[k], Apply: ap}
		if secretKey(k) || strings.Contains(a[k]+b[k], `"password"`) {
			c.From, c.To = shown(c.From), shown(c.To)
		}
		out = append(out, c)
	}
	return out, nil
}

// NeedsRestart says whether any change needs the agents restarted.
func NeedsRestart(cs []Change) bool {
	return slices.ContainsFunc(cs, func(c Change) bool { return c.Apply != ApplyLive })
}

func secretKey(k string) bool {
	return k == "hcloud.token" || strings.HasSuffix(k, ".password") || strings.HasSuffix(k, ".secret")
}

func shown(s string) string {
	if s == "" {
		return ""
	}
	return "(secret)"
}

// flatten maps each key of a document (tables walked; arrays, of tables too, as one value) to its value as text.
func flatten(doc string) (map[string]string, error) {
	var raw map[string]any
	if _, err := toml.Decode(doc, &raw); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k, v := range Leaves(raw) {
		j, _ := json.Marshal(v)
		out[k] = string(j)
	}
	return out, nil
}
