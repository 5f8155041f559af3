package provision

import (
	"context"
	"fmt"
	"strconv"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// UpgradeOptions are a rolling upgrade's inputs (Upgrade): the cluster as a roll sees it, and the image.
type UpgradeOptions struct {
	Roll
	Image *hc.Image // the snapshot every server is rebuilt from (ResolveImage)
}

// UpgradeResult is what Upgrade did.
type UpgradeResult struct {
	Rebuilt     []string // in order
	Switchovers int
	// SelfLast says that the command's own server was rebuilt last: the command ends with it, and the cluster is
	// complete once that node is back (see mailcow-ha status on another node).
	SelfLast bool
}

// Upgrade rebuilds every server of the cluster that does not run o.Image, one at a time, and waits for each to
// come back before it touches the next: arbitrators first (a vote), then the BACKUPs from the lowest priority up,
// then one switchover to an upgraded BACKUP, then the old MASTER, and the server it runs on last. Each rebuilt
// member must come back with a new agent (a later start), as a BACKUP with Galera Primary and Synced, while the
// MASTER still serves; an arbitrator must be back in Galera (the MASTER's cluster size whole again). It stops at
// the first server that does not come back within o.Within, and then the cluster still serves: only a BACKUP was
// down. Servers that already run the image are left alone, so a second run after a stop goes on where it stopped.
func Upgrade(ctx context.Context, c *hc.Client, o UpgradeOptions) (UpgradeResult, error) {
	var res UpgradeResult
	o.Roll = o.defaults()
	say := o.say
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
	if len(todo) == 0 {
		if _, err := o.healthy(ctx); err != nil {
			return res, fmt.Errorf("%w: nothing rebuilt", err)
		}
		say("every server runs image %d: nothing to do", o.Image.ID)
		return res, nil
	}
	var err error
	res.Switchovers, err = o.run(ctx, todo, "rebuilt", func(ctx context.Context, m config.Member) (bool, error) {
		if m.Name == o.Self {
			say("rebuild  %-15s image %d: this node, last; the command ends with it (check with mailcow-ha status on another node)", m.Name, o.Image.ID)
			if o.DryRun {
				return false, nil
			}
			if _, _, err := c.Server.RebuildWithResult(ctx, servers[m.Name], hc.ServerRebuildOpts{Image: o.Image}); err != nil {
				return false, apiErr("rebuild "+m.Name, err)
			}
			res.Rebuilt, res.SelfLast = append(res.Rebuilt, m.Name), true
			return true, nil
		}
		say("rebuild  %-15s image %d", m.Name, o.Image.ID)
		if o.DryRun {
			return false, nil
		}
		if err := o.rebuild(ctx, c, servers[m.Name], m); err != nil {
			return false, err
		}
		res.Rebuilt = append(res.Rebuilt, m.Name)
		return false, nil
	})
	return res, err
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
	return o.waitBack(ctx, m, before, t0, "its rebuild", "upgrade")
}

// ResolveImage is the snapshot an --image flag names: an id, or "latest" for the newest snapshot of channel.
func ResolveImage(ctx context.Context, c *hc.Client, image, channel string) (*hc.Image, error) {
	return resolveImage(ctx, c, Spec{Image: image, Channel: channel})
}
