package daemon

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/buildinfo"
)

// keepTransitions is how many transitions /status shows.
const keepTransitions = 10

// history records the transitions and their steps' times, from the actions the brain gives and the Done
// observations that come back. It feeds /status and the metrics.
type history struct {
	mu      sync.Mutex
	list    []api.Transition // newest last
	started map[string]time.Time
	metrics *report.Metrics
}

// role notes the brain's role after a step: a transition begins when the node starts promoting, demoting or
// booting, and ends when it settles.
func (h *history) role(tid int, prev, now failover.Role, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kind := map[failover.Role]string{failover.RolePromoting: "takeover", failover.RoleDemoting: "demotion", failover.RoleBooting: "boot"}[now]
	if kind != "" && (len(h.list) == 0 || h.list[len(h.list)-1].ID != tid || h.list[len(h.list)-1].Kind != kind) {
		h.finish(prev, "interrupted", at)
		h.list = append(h.list, api.Transition{ID: tid, Kind: kind, Started: at})
		if len(h.list) > keepTransitions {
			h.list = h.list[len(h.list)-keepTransitions:]
		}
		return
	}
	if kind == "" && prev != now {
		h.finish(prev, string(now), at)
	}
}

// finish closes the open transition, if any (h.mu held).
func (h *history) finish(_ failover.Role, result string, at time.Time) {
	if len(h.list) == 0 {
		return
	}
	t := &h.list[len(h.list)-1]
	if !t.Finished.IsZero() {
		return
	}
	t.Finished, t.Result = at, result
	for _, p := range t.Phases {
		if p.Err != "" && t.Kind == "takeover" && result != string(failover.RoleMaster) {
			t.Result = "failed"
		}
	}
	h.metrics.Transition(t.Kind, t.Result)
}

// act notes that an action of transition tid started.
func (h *history) act(a failover.Action, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started == nil {
		h.started = map[string]time.Time{}
	}
	h.started[fmt.Sprintf("%d/%s", a.TID, a.Kind)] = at
}

// done notes an action's outcome.
func (h *history) done(d failover.Done, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := fmt.Sprintf("%d/%s", d.TID, d.Action)
	start, ok := h.started[key]
	if !ok {
		return
	}
	delete(h.started, key)
	took := at.Sub(start)
	if d.Err == "" {
		h.metrics.Phase(string(d.Action), took)
	}
	for i := len(h.list) - 1; i >= 0; i-- {
		if h.list[i].ID == d.TID {
			t := &h.list[i]
			t.Phases = append(t.Phases, api.Phase{Name: string(d.Action), Start: api.Duration(start.Sub(t.Started)), Took: api.Duration(took), Err: d.Err})
			return
		}
	}
}

// transitions returns the recorded transitions, newest first.
func (h *history) transitions() []api.Transition {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]api.Transition, 0, len(h.list))
	for i := len(h.list) - 1; i >= 0; i-- {
		t := h.list[i]
		t.Phases = append([]api.Phase(nil), t.Phases...)
		out = append(out, t)
	}
	return out
}

// checker is a Stack that reports every critical service (agent/stack.Stack does).
type checker interface {
	Check(ctx context.Context) ([]stack.Health, error)
}

// stackFailed asks the stack for its health; with a checker it also keeps each service's health for /status and
// the metrics.
func (a *Agent) stackFailed(ctx context.Context) (string, error) {
	c, ok := a.o.Stack.(checker)
	if !ok {
		return a.o.Stack.Failed(ctx)
	}
	hs, err := c.Check(ctx)
	if err != nil {
		return "", err
	}
	services := map[string]bool{}
	failed := ""
	for _, h := range hs {
		services[h.Service] = h.Healthy
		if !h.Healthy && failed == "" {
			failed = h.Service + ": " + h.Reason
		}
	}
	a.mu.Lock()
	a.services = services
	a.mu.Unlock()
	return failed, nil
}

// nodeStatus builds the public /status document.
func (a *Agent) nodeStatus(context.Context) api.NodeStatus {
	a.mu.Lock()
	s, p, c := a.s, a.p, a.c
	seen, services, loop := a.seen, a.services, a.loopAt
	a.mu.Unlock()
	ok, why := failover.Verdict(p, s, time.Now())
	name := func(id int64) string {
		if id == 0 {
			return ""
		}
		return p.NodeName(id)
	}
	st := api.NodeStatus{
		Node: p.Name, Cluster: c.Cluster.Name, ServerID: p.Self, Version: buildinfo.Short(), Mailcow: a.mailcowRelease(), Started: a.started.UTC(), Role: string(s.Role), VRRP: string(s.VRRP),
		Verdict: ok, Reason: why,
		Galera:      api.GaleraStatus{OK: s.GaleraOK, Detail: s.GaleraDetail},
		Stack:       api.StackStatus{Healthy: s.Role == failover.RoleMaster && s.StackFailed == "", Failed: s.StackFailed, Services: services},
		Volume:      api.VolumeStatus{ID: c.Hcloud.VolumeID, Mounted: seen.Mounted, Owner: name(s.VolOwner)},
		FloatingIP:  api.FIPStatus{ID: c.Hcloud.FloatingIPID, OnInterface: seen.Address},
		Breaker:     api.Breaker{Tripped: s.Breaker, Takeovers: failover.RecentTakeovers(p, s, time.Now()), Max: p.BreakerMax, Window: api.Duration(p.BreakerWindow)},
		Maintenance: s.Maintenance,
		LoopAge:     api.Duration(time.Since(loop)),
		Transitions: a.hist.transitions(),
		Backup:      a.backupStatus(c.Backup.Repository != ""),
	}
	if seen.FIPKnown {
		st.FloatingIP.Owner = name(seen.FIPOwner)
	} else {
		st.FloatingIP.Owner = name(s.FIPOwner)
	}
	if s.Role != failover.RoleMaster && s.Role != failover.RolePromoting {
		// Off the MASTER the stack is stopped on purpose: nothing failed.
		st.Stack.Failed = ""
	}
	if s.Role == failover.RoleMaster {
		// The takeover made this node the owner of both.
		st.Volume.Owner, st.FloatingIP.Owner = p.Name, p.Name
	}
	if ip, ok := a.exec.cachedAddress(); ok {
		st.FloatingIP.Address = ip.String()
	}
	return st
}

// snapshot is what the metrics read at each scrape.
func (a *Agent) snapshot() report.Snapshot {
	st := a.nodeStatus(context.Background())
	snap := report.Snapshot{Role: st.Role, GaleraOK: st.Galera.OK, GaleraState: st.Galera.Detail, Breaker: st.Breaker.Tripped,
		Takeovers: st.Breaker.Takeovers, BreakerMax: st.Breaker.Max, Maintenance: st.Maintenance, Services: st.Stack.Services,
		Webhooks: a.alerts.Stats()}
	if a.verifier != nil {
		snap.PeerRefused = a.verifier.Refused.Load()
	}
	if b := st.Backup; b != nil {
		if !b.Checked.IsZero() {
			snap.Backups = map[string]time.Time{"volume": b.Volume.Time, "database": b.Database.Time}
			snap.BackupsStale = b.Problem != ""
		}
		if b.LastRun != nil {
			snap.BackupRun, snap.BackupRunOK = b.LastRun.Time, b.LastRun.OK
		}
	}
	if c, ok := a.o.Cloud.(interface{ Stats() hcloud.Stats }); ok {
		hs := c.Stats()
		snap.Hcloud = report.HcloudStats{Attempts: map[[2]string]int{}, RateLimit: hs.RateLimit, RateRemaining: hs.RateRemaining,
			ActionBounds: hcloud.ActionBucketBounds(), ActionBuckets: hs.ActionBuckets, ActionSum: hs.ActionLatency, ActionCount: hs.ActionsAwaited}
		for k, n := range hs.Attempts {
			snap.Hcloud.Attempts[[2]string{k.Op, k.Code}] = n
		}
	}
	return snap
}

// servePublic serves /health, /primary, /replica, /status and /metrics on every api.listen address ("private"
// stands for this node's private IP, "mailcow" for its address on mailcow's network).
func (a *Agent) servePublic(ctx context.Context, self config.Member, wg *sync.WaitGroup) error {
	h := api.PublicHandler(a.nodeStatus, a.metrics.Handler())
	for _, l := range a.c.API.Listen {
		host, port, _ := net.SplitHostPort(l)
		freebind := false
		switch host {
		case config.PrivateHost:
			host = self.PrivateIP
		case config.MailcowHost:
			host, freebind = mailcowconf.PortalAddress, true
		}
		ln, err := listenTCP(ctx, net.JoinHostPort(host, port), freebind)
		if err != nil {
			return fmt.Errorf("agent: api.listen %s: %w", l, err)
		}
		srv := api.Server(h, api.PublicLimits, a.log)
		wg.Add(2)
		go func() { defer wg.Done(); srv.Serve(api.Listener(ln, api.PublicLimits)) }()
		go func() { defer wg.Done(); <-ctx.Done(); srv.Close() }()
		a.log.Info("public API", "listen", ln.Addr().String())
	}
	return nil
}

// listenTCP listens on addr; with freebind also before the address exists on the node (IP_FREEBIND: mailcow's
// network, and its address, come and go with the stack).
func listenTCP(ctx context.Context, addr string, freebind bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if freebind {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(ctx, "tcp", addr)
}
