package daemon

// The cluster's configuration (config apply): a revision handed over the peer API is checked against this node's
// own configuration, kept in the state directory, and applied live where it can be; a node that was down fetches
// the newest revision from a peer when it is back; a restart that config apply asks for ends the agent, which its
// supervisor starts again.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// ErrRestart is Run's answer when the agent ended to be started again (config apply): the command exits with
// ExitRestart, which systemd restarts (RestartForceExitStatus) and the lab's supervisor too.
var ErrRestart = errors.New("agent: restart requested to run the cluster's configuration")

// clusterConfig is the cluster configuration this agent holds (under Agent.cfgMu).
type clusterConfig struct {
	doc config.ClusterDoc
	// pending: the kept revision has changes that only a restart applies.
	pending bool
	// caught: this agent fetched that revision itself (it was not reached by config apply, whose roll restarts the
	// members it reached): it restarts itself once that is safe.
	caught bool
}

// loadClusterConfig reads the revision kept in the state directory; the agent runs it already (the command line
// layered it on the user-data).
func (a *Agent) loadClusterConfig() {
	d, err := config.ReadClusterDoc(config.ClusterDocPath(a.c.Failover.StateDir))
	if err != nil {
		a.log.Error("cluster configuration: the kept revision cannot be read; it is fetched from a peer", "err", err)
		return
	}
	a.cfgMu.Lock()
	a.cfg = clusterConfig{doc: d}
	a.cfgMu.Unlock()
	if d.Revision > 0 {
		a.log.Info("cluster configuration: running revision "+strconv.FormatInt(d.Revision, 10), "revision", d.Revision)
	}
}

// ClusterConfig implements api.ConfigAgent.
func (a *Agent) ClusterConfig() (int64, string) {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg.doc.Revision, a.cfg.doc.TOML
}

// configRevision is the revision this node holds and whether it waits for a restart.
func (a *Agent) configRevision() (int64, bool) {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg.doc.Revision, a.cfg.pending
}

// ApplyConfig implements api.ConfigAgent: a revision older than the one held is refused, the same one is
// unchanged, a different document under the held revision is refused; a newer one must check on this node's own
// configuration (ReadBase), then its secrets are written to their files, it is kept, and a reload applies it
// when every change is live.
func (a *Agent) ApplyConfig(ctx context.Context, revision int64, text string) api.ConfigAnswer {
	ans, reload := a.keepConfig(ctx, revision, text)
	if reload {
		// The reload reads the configuration again, the kept revision layered on it (cli's loadConfig). Outside
		// cfgMu: the peer API's state answers meanwhile.
		a.reload()
	}
	return ans
}

// keepConfig is ApplyConfig under cfgMu; reload says that every change is live.
func (a *Agent) keepConfig(ctx context.Context, revision int64, text string) (api.ConfigAnswer, bool) {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	cur := a.cfg.doc
	ans := api.ConfigAnswer{Node: a.c.Node.Name, Revision: cur.Revision}
	refuse := func(format string, args ...any) (api.ConfigAnswer, bool) {
		ans.Outcome, ans.Error = api.ConfigRefused, fmt.Sprintf(format, args...)
		a.log.Warn("cluster configuration: revision refused", "revision", revision, "err", ans.Error)
		return ans, false
	}
	next := config.ClusterDoc{Revision: revision, TOML: text}
	switch {
	case revision < cur.Revision:
		return refuse("this node runs revision %d, newer than %d", cur.Revision, revision)
	case revision == cur.Revision && next.Hash() == cur.Hash():
		ans.Outcome = api.ConfigUnchanged
		if a.cfg.pending {
			ans.Outcome = api.ConfigRestart
		}
		return ans, false
	case revision == cur.Revision:
		return refuse("this node holds another document as revision %d", revision)
	}
	changes, rotated, err := keepCluster(ctx, a.o.ReadBase, a.o.SecretOwner, a.c.Failover.StateDir, cur, next)
	if err != nil {
		return refuse("%v", err)
	}
	restart := config.NeedsRestart(changes) || a.cfg.pending
	a.cfg = clusterConfig{doc: next, pending: restart}
	ans.Revision = revision
	for _, c := range changes {
		ans.Keys = append(ans.Keys, c.Key)
	}
	ans.Outcome = api.ConfigLive
	how := "applied live"
	if restart {
		ans.Outcome, how = api.ConfigRestart, "kept; the agent runs it after its restart"
	}
	a.alert(event.ConfigApplied, report.SeverityInfo, "", 0,
		fmt.Sprintf("cluster configuration revision %d %s (changed: %s)", revision, how, orNone(ans.Keys)),
		map[string]string{"revision": strconv.FormatInt(revision, 10), "outcome": ans.Outcome,
			"keys": strings.Join(ans.Keys, ","), "secrets_rotated": strings.Join(rotated, ",")})
	return ans, !restart
}

// keepCluster checks revision next of the cluster's configuration on this node's own configuration (readBase),
// writes the secrets it sets to their files and keeps it in stateDir. It returns what changed from cur, and the
// secrets whose files changed.
func keepCluster(ctx context.Context, readBase func(context.Context) (config.Payload, error), owner int, stateDir string,
	cur, next config.ClusterDoc) ([]config.Change, []string, error) {
	if readBase == nil {
		return nil, nil, errors.New("this agent cannot read its own configuration again (no ReadBase)")
	}
	pl, err := readBase(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("this node's own configuration: %w", err)
	}
	name := "cluster configuration revision " + strconv.FormatInt(next.Revision, 10)
	cfg, probs := config.CheckCluster(name, []byte(next.TOML), pl.Name, pl.Data, config.SecretFiles{Owner: owner})
	if err := probs.Err(); err != nil {
		return nil, nil, err
	}
	changes, err := config.ClusterChanges(cur.TOML, next.TOML)
	if err != nil {
		return nil, nil, err
	}
	var raw map[string]any
	if _, err := toml.Decode(next.TOML, &raw); err != nil {
		return nil, nil, err
	}
	rotated, err := config.RotateSecrets(&cfg, config.Keys(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: %w", err)
	}
	if err := config.WriteClusterDoc(config.ClusterDocPath(stateDir), next); err != nil {
		return nil, nil, fmt.Errorf("keep it: %w", err)
	}
	return changes, rotated, nil
}

// newerConfig asks the data members for the revision they run and fetches the newest when it is newer than own
// (from.Name is "" when none is).
func newerConfig(ctx context.Context, client *api.PeerClient, peers []api.Peer, own int64) (from api.Peer, d config.ClusterDoc, err error) {
	newest := own
	for _, p := range peers {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := client.State(qctx, p)
		cancel()
		if err == nil && st.ConfigRevision > newest {
			newest, from = st.ConfigRevision, p
		}
	}
	if newest == own {
		return api.Peer{}, d, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d.Revision, d.TOML, err = client.ClusterConfig(qctx, from)
	return from, d, err
}

// bootCatchUp asks the other members, before the agent starts anything, for a newer revision of the cluster's
// configuration than the one kept here, and keeps it (checked as ApplyConfig checks it). It says what it kept ("":
// nothing, and the configuration need not be read again). Members that do not answer within a few seconds are not waited for (a
// cluster's first boot, a full power cut): the running agent asks again every 30 s.
func bootCatchUp(ctx context.Context, c config.Config, keys *api.Keyring, o Options, log *slog.Logger) string {
	peers := dataPeers(c, c.Node.Name)
	path := config.ClusterDocPath(c.Failover.StateDir)
	cur, err := config.ReadClusterDoc(path)
	if err != nil {
		log.Warn("cluster configuration: the kept revision cannot be read; asking the members", "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	from, d, err := newerConfig(ctx, &api.PeerClient{Keys: keys, Node: c.Node.Name}, peers, cur.Revision)
	if err != nil || from.Name == "" {
		return ""
	}
	changes, _, err := keepCluster(ctx, o.ReadBase, o.SecretOwner, c.Failover.StateDir, cur, d)
	if err != nil {
		log.Warn("cluster configuration: revision from "+from.Name+" refused", "revision", d.Revision, "err", err)
		return ""
	}
	changed := make([]string, 0, len(changes))
	for _, ch := range changes {
		changed = append(changed, ch.Key)
	}
	msg := fmt.Sprintf("cluster configuration revision %d taken from %s before the start (changed: %s)", d.Revision, from.Name, orNone(changed))
	log.Info(msg, "revision", d.Revision, "peer", from.Name)
	return msg
}

func orNone(keys []string) string {
	if len(keys) == 0 {
		return "nothing"
	}
	return strings.Join(keys, ", ")
}

// Restart implements api.ConfigAgent: a BACKUP's agent ends and is started again; a MASTER's would be a failover,
// so it refuses (config apply hands MASTER over first).
func (a *Agent) Restart() error {
	a.mu.Lock()
	role := a.s.Role
	a.mu.Unlock()
	if role == failover.RoleMaster || role == failover.RolePromoting {
		return fmt.Errorf("%s is %s: hand MASTER over first (mailcow-ha switchover)", a.c.Node.Name, role)
	}
	rev, _ := a.configRevision()
	a.alert(event.ConfigRestart, report.SeverityInfo, "", 0,
		fmt.Sprintf("restarting to run cluster configuration revision %d", rev), nil)
	a.restart(ErrRestart)
	return nil
}

// followConfig asks the peers now and then for the revision they run, and fetches a newer one than this node's:
// a node that was down when config apply ran catches up when it is back. A change that needs a restart restarts
// this agent while it is not MASTER; a MASTER waits for the operator (config apply again, which hands it over).
func (a *Agent) followConfig(ctx context.Context, interval time.Duration) {
	every(ctx, 10*time.Second, interval, func() bool { a.catchUp(ctx); return false })
}

// every runs f after first, then every interval after it returned, until ctx ends or f says it is done.
func every(ctx context.Context, first, interval time.Duration, f func() (done bool)) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f() {
			return
		}
		t.Reset(interval)
	}
}

func (a *Agent) catchUp(ctx context.Context) {
	own, _ := a.configRevision()
	var peers []api.Peer
	for _, p := range a.peerAPI() {
		peers = append(peers, p)
	}
	from, d, err := newerConfig(ctx, a.client, peers, own)
	if err != nil {
		a.log.Warn("cluster configuration: fetching a newer revision from "+from.Name+" failed", "peer", from.Name, "err", err)
		return
	}
	if from.Name != "" {
		a.log.Info("cluster configuration: "+from.Name+" runs a newer revision; catching up", "peer", from.Name,
			"revision", d.Revision, "own_revision", own)
		if ans := a.ApplyConfig(ctx, d.Revision, d.TOML); ans.Outcome == api.ConfigRestart {
			a.cfgMu.Lock()
			a.cfg.caught = true
			a.cfgMu.Unlock()
		}
	}
	a.cfgMu.Lock()
	rev, due := a.cfg.doc.Revision, a.cfg.pending && a.cfg.caught
	a.cfgMu.Unlock()
	if !due {
		return
	}
	// Never while another member is away or waits for its own restart: two votes away at once could cost the
	// cluster its quorum.
	if why := membersSettled(ctx, a.client, peers); why != "" {
		a.log.Info("cluster configuration: revision "+strconv.FormatInt(rev, 10)+" needs this agent restarted, which waits until the members settle: "+why,
			"revision", rev)
		return
	}
	if err := a.Restart(); err != nil {
		a.log.Warn("cluster configuration: revision "+strconv.FormatInt(rev, 10)+" needs a restart of this agent, which waits: "+err.Error(),
			"revision", rev)
	}
}
