package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// UpgradeOptions are a rolling upgrade's inputs (Upgrade).
type UpgradeOptions struct {
	Image   *hc.Image       // the snapshot every server is rebuilt from (ResolveImage)
	Members []config.Member // the cluster's members, arbitrators included
	// Self is the member the command runs on ("" when it runs on none): rebuilt last, after everything else, since
	// its own rebuild ends the command.
	Self string
	// Status asks a member for its state over the peer API (signed with the cluster secret, and so is the answer:
	// nothing else on the private network can make the roll go on); Switchover asks the cluster to hand MASTER to
	// the member named (the local agent's switchover command, which tells every agent).
	Status     func(ctx context.Context, m config.Member) (api.PeerState, error)
	Switchover func(ctx context.Context, to string) error
	// Within is how long one server may take from its rebuild to a healthy, Synced BACKUP (default 20 minutes).
	Within time.Duration
	// Poll is the pause between two looks at the cluster (default 2 s).
	Poll   time.Duration
	DryRun bool
	Log    io.Writer
}

// UpgradeResult is what Upgrade did.
type UpgradeResult struct {
	Rebuilt     []string // in order
	Switchovers int
	// SelfLast says that the command's own server was rebuilt last: the command ends with it, and the cluster is
	// complete once that node is back (see mailcow-ha status on another node).
	SelfLast bool
}

// ErrUnhealthy is a cluster that is not complete: one MASTER with everything and every other member a Synced
// BACKUP. An upgrade neither starts nor goes on from such a cluster.
var ErrUnhealthy = errors.New("the cluster is not healthy")

var galeraSize = regexp.MustCompile(`size=(\d+)`)

// Upgrade rebuilds every server of the cluster that does not run o.Image, one at a time, and waits for each to
// come back before it touches the next: arbitrators first (a vote), then the BACKUPs from the lowest priority up,
// then one switchover to an upgraded BACKUP, then the old MASTER, and the server it runs on last. Each rebuilt
// member must come back with a new agent (a later start), as a BACKUP with Galera Primary and Synced, while the
// MASTER still serves; an arbitrator must be back in Galera (the MASTER's cluster size whole again). It stops at
// the first server that does not come back within o.Within, and then the cluster still serves: only a BACKUP was
// down. Servers that already run the image are left alone, so a second run after a stop goes on where it stopped.
func Upgrade(ctx context.Context, c *hc.Client, o UpgradeOptions) (UpgradeResult, error) {
	var res UpgradeResult
	if o.Within <= 0 {
		o.Within = 20 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	say := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	servers := map[string]*hc.Server{}
	var todo []config.Member
	for _, m := range o.Members {
		sv, _, err := c.Server.GetByID(ctx, m.ServerID)
		if err != nil {
			return res, apiErr("read server "+m.Name, err)
		}
		if sv == nil {
			return res, fmt.Errorf("member %s: no server %d in the project", m.Name, m.ServerID)
		}
		servers[m.Name] = sv
		from := "unknown image"
		if sv.Image != nil {
			from = "image " + strconv.FormatInt(sv.Image.ID, 10)
		}
		if sv.Image != nil && sv.Image.ID == o.Image.ID {
			say("current  %-15s %s", m.Name, from)
			continue
		}
		todo = append(todo, m)
		say("outdated %-15s %s", m.Name, from)
	}
	master, err := o.healthy(ctx)
	if err != nil {
		return res, fmt.Errorf("%w: nothing rebuilt", err)
	}
	if len(todo) == 0 {
		say("every server runs image %d: nothing to do", o.Image.ID)
		return res, nil
	}
	// The order: arbitrators, the BACKUPs by priority from the lowest, the MASTER, this node.
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
		// The MASTER serves until another member, upgraded where one is, has taken over from it.
		if !o.DryRun {
			if master, err = o.healthy(ctx); err != nil {
				return res, fmt.Errorf("%w: the upgrade stops before %s", err, m.Name)
			}
		}
		if m.Name == master {
			to := o.switchoverTarget(pending, master)
			if to == "" {
				return res, fmt.Errorf("no member to hand MASTER over to before %s is rebuilt", master)
			}
			say("switch   %-15s MASTER -> %s", master, to)
			if !o.DryRun {
				if err := o.Switchover(ctx, to); err != nil {
					return res, fmt.Errorf("switchover to %s: %w", to, err)
				}
				res.Switchovers++
				if err := o.waitMaster(ctx, to); err != nil {
					return res, err
				}
			}
			master = to
		}
		if m.Name == o.Self {
			say("rebuild  %-15s image %d: this node, last; the command ends with it (check with mailcow-ha status on another node)", m.Name, o.Image.ID)
			if o.DryRun {
				continue
			}
			if _, _, err := c.Server.RebuildWithResult(ctx, servers[m.Name], hc.ServerRebuildOpts{Image: o.Image}); err != nil {
				return res, apiErr("rebuild "+m.Name, err)
			}
			res.Rebuilt, res.SelfLast = append(res.Rebuilt, m.Name), true
			return res, nil
		}
		say("rebuild  %-15s image %d", m.Name, o.Image.ID)
		if o.DryRun {
			continue
		}
		if err := o.rebuild(ctx, c, servers[m.Name], m); err != nil {
			return res, err
		}
		delete(pending, m.Name)
		res.Rebuilt = append(res.Rebuilt, m.Name)
	}
	return res, nil
}

// rebuild rebuilds one server and waits until it is back in the cluster (see Upgrade).
func (o UpgradeOptions) rebuild(ctx context.Context, c *hc.Client, sv *hc.Server, m config.Member) error {
	var before time.Time
	if !m.IsArbitrator() {
		st, err := o.Status(ctx, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
		before = st.Started
	}
	t0 := time.Now()
	r, _, err := c.Server.RebuildWithResult(ctx, sv, hc.ServerRebuildOpts{Image: o.Image})
	if err != nil {
		return apiErr("rebuild "+m.Name, err)
	}
	if err := c.Action.WaitFor(ctx, r.Action); err != nil {
		return apiErr("rebuild "+m.Name, err)
	}
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
			return fmt.Errorf("%s did not come back within %s (%s): the upgrade stops here; the cluster still serves "+
				"(only this BACKUP is missing); once it is back, run the upgrade again", m.Name, o.Within, why)
		}
		if err := sleepCtx(ctx, o.Poll); err != nil {
			return err
		}
	}
	if o.Log != nil {
		fmt.Fprintf(o.Log, "back     %-15s %.1f s after its rebuild\n", m.Name, time.Since(t0).Seconds())
	}
	return nil
}

// back is "" once a rebuilt member is back in a healthy cluster with a new agent, else why not yet.
func (o UpgradeOptions) back(ctx context.Context, m config.Member, before time.Time) string {
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
	}
	return ""
}

// healthy returns the MASTER of a complete cluster: one member MASTER with its Volume and its stack, every other
// member a BACKUP with Galera Primary and Synced, and the MASTER's Galera cluster of every member (arbitrators
// included).
func (o UpgradeOptions) healthy(ctx context.Context) (string, error) {
	master := ""
	var masterState api.PeerState
	for _, m := range o.Members {
		if m.IsArbitrator() {
			continue
		}
		st, err := o.Status(ctx, m)
		if err != nil {
			return "", fmt.Errorf("%w: %s does not answer: %v", ErrUnhealthy, m.Name, err)
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
func (o UpgradeOptions) switchoverTarget(pending map[string]bool, master string) string {
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
func (o UpgradeOptions) waitMaster(ctx context.Context, to string) error {
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

// ResolveImage is the snapshot an --image flag names: an id, or "latest" for the newest snapshot of channel.
func ResolveImage(ctx context.Context, c *hc.Client, image, channel string) (*hc.Image, error) {
	return resolveImage(ctx, c, Spec{Image: image, Channel: channel})
}
