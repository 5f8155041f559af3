package daemon

// The agent's loop: observations into the brain, its actions to the executor, the verdict and sd_notify.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
)

func (a *Agent) observe(o failover.Observation) { a.obs <- o }

// loop is the reconcile loop: one observation at a time through the brain, the actions to the executor.
func (a *Agent) loop(ctx context.Context) error {
	tick := a.o.Tick
	if tick <= 0 {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	a.step(ctx, failover.Boot{})
	for _, o := range a.probe(ctx, probeWait(tick)) {
		a.step(ctx, o)
	}
	// Later probes run beside the loop, one at a time: see probe.
	probing := false
	probeDone := make(chan []failover.Observation, 1)
	// The reconcile loop: a look at the address and the mount every reconcile interval; the API (the Floating
	// IP's owner) only on the MASTER and only every apiEvery looks, to spare the rate limit.
	rec := time.NewTicker(a.c.Failover.ReconcileInterval.D())
	defer rec.Stop()
	const apiEvery = 6
	looks := 0
	looking := false
	lookDone := make(chan struct{}, 1)
	var lookStarted, lastSelfWarn time.Time
	stopping := false
	var stopDeadline <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if !stopping {
				stopping = true
				a.o.Notifier.Stopping("demoting")
				stopDeadline = time.After(2 * time.Minute)
				// Steps that the executor still runs keep their own context; the demotion runs on.
				ctx = context.WithoutCancel(ctx)
				a.step(ctx, failover.Stop{})
			}
		case o := <-a.obs:
			a.step(ctx, o)
		case <-t.C:
			a.mu.Lock()
			a.loopAt = time.Now()
			a.mu.Unlock()
			if !probing {
				probing = true
				go func() { probeDone <- a.probe(ctx, probeWait(tick)) }()
			}
			a.step(ctx, failover.Tick{})
			// WATCHDOG=1 only when the loop's self-check passes: observations are not piling up and the last look
			// at the world came back. Otherwise systemd restarts the agent after WatchdogSec.
			if why := a.selfCheck(looking, lookStarted); why == "" {
				a.o.Notifier.Watchdog()
			} else if time.Since(lastSelfWarn) > 10*time.Second {
				lastSelfWarn = time.Now()
				a.log.Warn("self-check failed: not petting the watchdog", "reason", why)
			}
		case <-rec.C:
			if looking || stopping {
				break
			}
			a.mu.Lock()
			tid, role := a.s.TID, a.s.Role
			a.mu.Unlock()
			looks++
			withAPI := role == failover.RoleMaster && looks%apiEvery == 0
			looking, lookStarted = true, time.Now()
			go func() {
				lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				o, err := a.exec.ObserveWorld(lctx, tid, withAPI)
				if err != nil {
					a.log.Warn("reconcile: look failed", "err", err)
				} else {
					a.observe(o)
				}
				lookDone <- struct{}{}
			}()
		case obs := <-probeDone:
			probing = false
			for _, o := range obs {
				a.step(ctx, o)
			}
		case <-lookDone:
			looking = false
		case <-a.o.Reload:
			a.reload()
		case <-stopDeadline:
			return errors.New("agent: demotion did not finish within 2 minutes")
		}
		if stopping && a.role() == failover.RoleStopped {
			a.exec.Wait()
			return nil
		}
	}
}

// probeWait is how long one probe waits for mariadbd's and dockerd's answers: five ticks.
func probeWait(tick time.Duration) time.Duration { return 5 * tick }

// probe asks mariadbd for the Galera state and dockerd for the stack's, each for up to wait, and returns what it
// saw. Only one probe runs at a time, beside the loop: a slow answer is waited for, not abandoned at the next tick
// and asked again. An abandoned question is not free: dockerd still lists every container and mariadbd still runs
// the query, so on a loaded node a probe that gave up every second became the load (an emulated MASTER's dockerd
// answered a broken pipe to dozens of abandoned listings while it was starting the stack, and the start ran out of
// time). No answer within wait is an unknown Galera state, which the brain does not count as a lost quorum before
// quorum_grace; a stack probe without an answer is no observation.
func (a *Agent) probe(ctx context.Context, wait time.Duration) []failover.Observation {
	gctx, cancel := context.WithTimeout(ctx, wait)
	primary, synced, detail, err := a.o.Galera.Status(gctx)
	cancel()
	if err != nil && detail != "" {
		detail = err.Error() + " (" + detail + ")"
	} else if err != nil {
		detail = err.Error()
	}
	obs := []failover.Observation{failover.Galera{Primary: primary, Synced: synced, Detail: detail, Unknown: err != nil}}
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if failed, err := a.stackFailed(sctx); err == nil {
		obs = append(obs, failover.Stack{Failed: failed})
	}
	return obs
}

// selfCheck is the reconcile loop's look at itself: "" when healthy, else why not.
func (a *Agent) selfCheck(looking bool, lookStarted time.Time) string {
	if n := len(a.obs); n >= cap(a.obs)-cap(a.obs)/4 {
		return fmt.Sprintf("%d observations waiting", n)
	}
	if looking && time.Since(lookStarted) > 2*time.Minute {
		return fmt.Sprintf("the reconcile look started %s ago has not come back", time.Since(lookStarted).Round(time.Second))
	}
	return ""
}

func (a *Agent) role() failover.Role {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.s.Role
}

func (a *Agent) step(ctx context.Context, o failover.Observation) {
	now := time.Now()
	a.mu.Lock()
	before := len(a.s.Takeovers)
	p := a.p
	prev := a.s.Role
	s, acts := failover.Step(p, a.s, o, now)
	a.s = s
	if seen, ok := o.(failover.Observed); ok && seen.TID == s.TID {
		a.seen = seen
	}
	role := s.Role
	changed := role != a.lastRole
	a.lastRole = role
	_, reset := o.(failover.BreakerReset)
	breakerChanged := len(s.Takeovers) != before || reset
	a.mu.Unlock()
	if breakerChanged {
		a.saveBreaker(s.Takeovers)
	}
	if d, ok := o.(failover.Done); ok {
		a.hist.done(d, now)
	}
	a.hist.role(s.TID, prev, role, now)
	for _, act := range acts {
		if act.Kind != failover.ActReport && act.Kind != failover.ActCancel && act.Kind != failover.ActConfirm {
			a.hist.act(act, now)
		}
	}
	a.exec.Apply(ctx, acts)
	// READY=1 once the agent works: the boot cleanup done and the Galera member Synced (not when it becomes
	// MASTER, which may never happen on this node).
	a.mu.Lock()
	ready := !a.ready && role != failover.RoleBooting && s.GaleraOK
	if ready {
		a.ready = true
	}
	a.mu.Unlock()
	if changed || ready {
		ok, why := failover.Verdict(p, s, now)
		check := "failing"
		if ok {
			check = "ok"
		}
		status := fmt.Sprintf("%s; check %s: %s", role, check, why)
		if ready {
			a.o.Notifier.Ready(status)
		} else {
			a.o.Notifier.Status(status)
		}
		a.log.Info("role", "role", string(role), "transition_id", s.TID, "verdict", ok, "reason", why)
		if role == failover.RoleMaster && s.SwitchTo == p.Name {
			// The hand-over is done: end the hold everywhere, so that the others may take over again at once.
			go func() {
				a.observe(failover.Switchover{})
				a.broadcast(ctx, func(ctx context.Context, to api.Peer) error {
					return a.client.Switchover(ctx, to, "", time.Time{})
				})
			}()
		}
	}
}

// verdict is what the check socket answers: computed now from the current state.
func (a *Agent) verdict() (bool, string) {
	a.mu.Lock()
	s, p := a.s, a.p
	a.mu.Unlock()
	return failover.Verdict(p, s, time.Now())
}

func (a *Agent) report(act failover.Action) {
	a.mu.Lock()
	peer := a.p.Peers[act.Server]
	role := string(a.s.Role)
	a.mu.Unlock()
	details := map[string]string{"role": role}
	if n, ok := a.takeoverRequests(act.Event); ok {
		details["api_requests"] = strconv.Itoa(n)
	}
	a.alert(act.Event, string(act.Severity), peer, act.TID, act.Detail, details)
	if act.Event == event.Promoted {
		a.ensureRDNS()
	}
}

// takeoverRequests counts the Hetzner API requests of a takeover (every call, poll and retry, from the agent's
// client): failover_started notes the count, failover_succeeded reports what it grew by. The rate limit (3600 an
// hour) is the whole project's, shared with the cluster commands.
func (a *Agent) takeoverRequests(e event.Name) (int, bool) {
	c, ok := a.o.Cloud.(interface{ Stats() hcloud.Stats })
	if !ok {
		return 0, false
	}
	n := c.Stats().Requests
	a.mu.Lock()
	defer a.mu.Unlock()
	switch e {
	case event.FailoverStarted:
		a.takeoverReqs, a.takeoverOn = n, true
	case event.FailoverSucceeded:
		if a.takeoverOn {
			a.takeoverOn = false
			return n - a.takeoverReqs, true
		}
	}
	return 0, false
}
