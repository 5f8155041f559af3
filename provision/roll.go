package provision

// This file is a rolling change of a running cluster: the members one at a time in a safe order, each back in a
// healthy cluster before the next, and one switchover before the MASTER's turn. The image upgrade (upgrade.go)
// rebuilds each server; config apply (restart.go) restarts each agent.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// Roll is a rolling change's view of the cluster.
type Roll struct {
	Members []config.Member // the cluster's members, arbitrators included
	// Self is the member the command runs on ("" when it runs on none).
	Self string
	// Status asks a member for its state over the peer API (signed with the cluster secret, and so is the answer:
	// nothing else on the private network can make the roll go on); Switchover asks the cluster to hand MASTER to
	// the member named (the local agent's switchover command, which tells every agent).
	Status     func(ctx context.Context, m config.Member) (api.PeerState, error)
	Switchover func(ctx context.Context, to string) error
	// Within is how long one member may take from its change to a healthy, Synced BACKUP (default 20 minutes).
	Within time.Duration
	// Poll is the pause between two looks at the cluster (default 2 s).
	Poll   time.Duration
	DryRun bool
	Log    io.Writer
}

// ErrUnhealthy is a cluster that is not complete: one MASTER with everything and every other member a Synced
// BACKUP. An upgrade neither starts nor goes on from such a cluster.
var ErrUnhealthy = errors.New("the cluster is not healthy")

var galeraSize = regexp.MustCompile(`size=(\d+)`)

func (o Roll) defaults() Roll {
	if o.Within <= 0 {
		o.Within = 20 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	return o
}

func (o Roll) say(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// run takes the members of todo one at a time: arbitrators first (a vote), then the BACKUPs by priority from the
// lowest, the MASTER after one switchover to a member already done, and this node (Self) last. Before each it
// checks that the cluster is healthy, and stops when it is not (then nothing of that member changed). step changes
// one member and returns once it is back; last ends the roll (this node's own server went down with it). verb
// names what a step does, for the errors. It returns the number of switchovers.
func (o Roll) run(ctx context.Context, todo []config.Member, verb string, step func(ctx context.Context, m config.Member) (last bool, err error)) (int, error) {
	switchovers := 0
	master, err := o.healthy(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: nothing %s", err, verb)
	}
	rank := func(m config.Member) int {
		switch {
		case m.Name == o.Self:
			return 3
		case m.Name == master:
			return 2
		case m.IsArbitrator():
			return 0
		}
		return 1
	}
	todo = slices.Clone(todo)
	slices.SortStableFunc(todo, func(a, b config.Member) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return a.Priority - b.Priority
	})
	pending := map[string]bool{}
	for _, m := range todo {
		pending[m.Name] = true
	}
	for _, m := range todo {
		// The MASTER serves until another member, one already done where one is, has taken over from it.
		if !o.DryRun {
			if master, err = o.healthy(ctx); err != nil {
				return switchovers, fmt.Errorf("%w: the roll stops before %s", err, m.Name)
			}
		}
		if m.Name == master {
			to := o.switchoverTarget(pending, master)
			if to == "" {
				return switchovers, fmt.Errorf("no member to hand MASTER over to before %s", master)
			}
			o.say("switch   %-15s MASTER -> %s", master, to)
			if !o.DryRun {
				if err := o.Switchover(ctx, to); err != nil {
					return switchovers, fmt.Errorf("switchover to %s: %w", to, err)
				}
				switchovers++
				if err := o.waitMaster(ctx, to); err != nil {
					return switchovers, err
				}
			}
			master = to
		}
		last, err := step(ctx, m)
		if err != nil || last {
			return switchovers, err
		}
		delete(pending, m.Name)
	}
	return switchovers, nil
}

// waitBack waits until a member changed at t0 is back in a healthy cluster with a new agent (one started after
// before); what names the change and job the command, for the messages.
func (o Roll) waitBack(ctx context.Context, m config.Member, before, t0 time.Time, what, job string) error {
	deadline := t0.Add(o.Within)
	// A member's new agent states a later start. An arbitrator states none (nor does an agent older than that
	// field): it has left once it is seen missing (within a minute, or taken as read), and is back once the
	// cluster is whole again.
	for end := time.Now().Add(time.Minute); before.IsZero() && time.Now().Before(end); {
		if o.back(ctx, m, before) != "" {
			break
		}
		if err := sleepCtx(ctx, o.Poll); err != nil {
			return err
		}
	}
	var why string
	for {
		why = o.back(ctx, m, before)
		if why == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come back within %s (%s): the %s stops here; the cluster still serves "+
				"(only this BACKUP is missing); once it is back, run the %s again", m.Name, o.Within, why, job, job)
		}
		if err := sleepCtx(ctx, o.Poll); err != nil {
			return err
		}
	}
	o.say("back     %-15s %.1f s after %s", m.Name, time.Since(t0).Seconds(), what)
	return nil
}

// back is "" once a rebuilt member is back in a healthy cluster with a new agent, else why not yet.
func (o Roll) back(ctx context.Context, m config.Member, before time.Time) string {
	if _, err := o.healthy(ctx); err != nil {
		return err.Error()
	}
	if m.IsArbitrator() {
		return "" // healthy counts the arbitrators in Galera's size
	}
	st, err := o.Status(ctx, m)
	switch {
	case err != nil:
		return err.Error()
	case !st.Started.After(before):
		return "its old agent still answers"
	case st.ConfigPending:
		return "its agent restarts to run the cluster configuration"
	}
	return ""
}

// healthy returns the MASTER of a complete cluster: one member MASTER with its Volume and its stack, every other
// member a BACKUP with Galera Primary and Synced, the MASTER's Galera cluster of every member (arbitrators
// included), and every member on the same revision of the cluster configuration and the same mailcow release.
func (o Roll) healthy(ctx context.Context) (string, error) {
	master := ""
	var masterState api.PeerState
	revs := map[int64][]string{}
	releases := map[string][]string{}
	for _, m := range o.Members {
		if m.IsArbitrator() {
			continue
		}
		st, err := o.Status(ctx, m)
		if err != nil {
			return "", fmt.Errorf("%w: %s does not answer: %v", ErrUnhealthy, m.Name, err)
		}
		revs[st.ConfigRevision] = append(revs[st.ConfigRevision], m.Name)
		if st.Mailcow != "" { // "": an agent older than the field, or a tree that records no release
			releases[st.Mailcow] = append(releases[st.Mailcow], m.Name)
		}
		switch {
		case st.Role == "master" && st.Mounted && st.StackFailed == "" && st.GaleraOK:
			if master != "" {
				return "", fmt.Errorf("%w: %s and %s are both MASTER", ErrUnhealthy, master, m.Name)
			}
			master, masterState = m.Name, st
		case st.Role == "backup" && st.GaleraOK:
		default:
			return "", fmt.Errorf("%w: %s is %s (Galera %s%s)", ErrUnhealthy, m.Name, st.Role, st.Galera, orEmpty(", stack: ", st.StackFailed))
		}
	}
	if master == "" {
		return "", fmt.Errorf("%w: no MASTER serves", ErrUnhealthy)
	}
	if len(revs) > 1 {
		return "", fmt.Errorf("%w: the members run different revisions of the cluster configuration (%v): one catches up", ErrUnhealthy, revs)
	}
	if len(releases) > 1 {
		return "", fmt.Errorf("%w: the members hold different mailcow releases (%v): one catches up", ErrUnhealthy, releases)
	}
	if g := galeraSize.FindStringSubmatch(masterState.Galera); g != nil {
		if n, _ := strconv.Atoi(g[1]); n < len(o.Members) {
			return "", fmt.Errorf("%w: Galera has %d of %d members (%s)", ErrUnhealthy, n, len(o.Members), masterState.Galera)
		}
	}
	return master, nil
}

func orEmpty(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// switchoverTarget is the member with the highest priority that serves mail and is no longer to be rebuilt
// (upgraded, or current from the start), other than the MASTER; else the one with the highest priority.
func (o Roll) switchoverTarget(pending map[string]bool, master string) string {
	cands := slices.Clone(o.Members)
	slices.SortStableFunc(cands, func(a, b config.Member) int { return b.Priority - a.Priority })
	for _, upgradedOnly := range []bool{true, false} {
		for _, m := range cands {
			if m.Name != master && !m.IsArbitrator() && (!upgradedOnly || !pending[m.Name]) {
				return m.Name
			}
		}
	}
	return ""
}

// waitMaster waits until the cluster is healthy with to as its MASTER.
func (o Roll) waitMaster(ctx context.Context, to string) error {
	deadline := time.Now().Add(o.Within)
	for {
		m, err := o.healthy(ctx)
		if err == nil && m == to {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not become a complete MASTER within %s (%v, MASTER %q): the upgrade stops here", to, o.Within, err, m)
		}
		if err := sleepCtx(ctx, o.Poll); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
