package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// RemoveOptions are RemoveNode's choices.
type RemoveOptions struct {
	// DeleteVolume deletes the node's own Galera Volume too; without it the Volume is kept (detached).
	DeleteVolume bool
	// ShutdownWait is how long the node gets to stop by itself (ACPI shutdown: the agent demotes and leaves Galera
	// cleanly) before its power is cut. Default 5 minutes.
	ShutdownWait time.Duration
	Log          io.Writer
}

// ErrServesMail is RemoveNode's refusal to take away the node that holds the Floating IP or the shared Volume.
var ErrServesMail = errors.New("it serves the mail")

// RemoveNode takes one node out of the cluster for good, as `cluster remove-node` does: it refuses the node that
// holds the Floating IP or the shared Volume (hand MASTER over first) and a removal that would leave fewer than
// three members; it moves the bootstrap label to another member when the node has it; it shuts the server down and
// waits (the agent demotes nothing, it is a BACKUP, and mariadbd leaves Galera cleanly), cuts the power if the
// shutdown does not finish within ShutdownWait, and deletes the server. The members drop it at their next read of
// the API (cluster.discover_interval). Its Galera Volume is kept unless DeleteVolume.
func RemoveNode(ctx context.Context, c *hc.Client, cluster, node string, o RemoveOptions) error {
	if o.ShutdownWait <= 0 {
		o.ShutdownWait = 5 * time.Minute
	}
	say := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	invs, err := Find(ctx, c, Selector(cluster))
	if err != nil {
		return err
	}
	if len(invs) == 0 {
		return fmt.Errorf("no resource carries the labels %s", Selector(cluster))
	}
	inv := invs[0]
	i := slices.IndexFunc(inv.Servers, func(s *hc.Server) bool { return s.Name == node })
	if i < 0 {
		return fmt.Errorf("no server %q carries the labels %s", node, Selector(cluster))
	}
	srv := inv.Servers[i]
	for _, f := range inv.FloatingIPs {
		if f.Server != nil && f.Server.ID == srv.ID {
			return fmt.Errorf("%s holds the Floating IP %s: %w; hand MASTER over first (mailcow-ha switchover on any node), then remove it", node, f.IP, ErrServesMail)
		}
	}
	var own *hc.Volume
	for _, v := range inv.Volumes {
		switch {
		case v.Labels["purpose"] == "galera" && v.Labels["node"] == node:
			own = v
		case v.Labels["purpose"] != "galera" && v.Server != nil && v.Server.ID == srv.ID:
			return fmt.Errorf("%s has the Volume %s attached: %w; hand MASTER over first (mailcow-ha switchover on any node), then remove it", node, v.Name, ErrServesMail)
		}
	}
	var rest []*hc.Server
	members := 0
	for _, s := range inv.Servers {
		if s.ID == srv.ID {
			continue
		}
		rest = append(rest, s)
		if r := s.Labels["role"]; r == "" || r == "member" {
			members++
		}
	}
	if len(rest) < 3 || members < 2 {
		return fmt.Errorf("removing %s would leave %d nodes (%d members): a cluster keeps at least three (or two members and an arbitrator); to replace a node, add the new one first", node, len(rest), members)
	}
	// The bootstrap label goes to the member with the highest priority: the members' list must keep one.
	if srv.Labels["bootstrap"] == "true" {
		to := highestMember(rest)
		if to == nil {
			return fmt.Errorf("%s carries bootstrap=true and no other member can take it", node)
		}
		labels := maps.Clone(to.Labels)
		labels["bootstrap"] = "true"
		if _, _, err := c.Server.Update(ctx, to, hc.ServerUpdateOpts{Labels: labels}); err != nil {
			return apiErr("move the bootstrap label to "+to.Name, err)
		}
		say("label    bootstrap=true  moved from %s to %s", node, to.Name)
	}
	if srv.Status != hc.ServerStatusOff {
		a, _, err := c.Server.Shutdown(ctx, srv)
		if err != nil {
			return apiErr("shut down "+node, err)
		}
		say("shutdown %-15s waiting up to %s for it to stop by itself", node, o.ShutdownWait)
		if err := c.Action.WaitFor(ctx, a); err != nil {
			return apiErr("shut down "+node, err)
		}
		if !waitOff(ctx, c, srv.ID, o.ShutdownWait) {
			say("poweroff %-15s it did not stop within %s", node, o.ShutdownWait)
			a, _, err := c.Server.Poweroff(ctx, srv)
			if err != nil {
				return apiErr("power off "+node, err)
			}
			if err := c.Action.WaitFor(ctx, a); err != nil {
				return apiErr("power off "+node, err)
			}
		}
	}
	res, _, err := c.Server.DeleteWithResult(ctx, srv)
	if err != nil {
		return apiErr("delete server "+node, err)
	}
	if err := c.Action.WaitFor(ctx, res.Action); err != nil {
		return apiErr("delete server "+node, err)
	}
	say("deleted  server          %s (%d): the members drop it at their next read of the API", node, srv.ID)
	switch {
	case own == nil:
	case o.DeleteVolume:
		if _, err := c.Volume.Delete(ctx, own); err != nil {
			return apiErr("delete volume "+own.Name, err)
		}
		say("deleted  volume          %s (%d)", own.Name, own.ID)
	default:
		say("kept     volume          %s (%d): %s's database; --delete-volume deletes it", own.Name, own.ID, node)
	}
	return nil
}

// highestMember is the member (not an arbitrator) with the highest priority label.
func highestMember(servers []*hc.Server) *hc.Server {
	var best *hc.Server
	bestPrio := -1
	for _, s := range servers {
		if r := s.Labels["role"]; r != "" && r != "member" {
			continue
		}
		if p, err := strconv.Atoi(s.Labels["priority"]); err == nil && p > bestPrio {
			best, bestPrio = s, p
		}
	}
	return best
}

// waitOff polls the server's status until it is off, for up to within.
func waitOff(ctx context.Context, c *hc.Client, id int64, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		s, _, err := c.Server.GetByID(ctx, id)
		if err == nil && (s == nil || s.Status == hc.ServerStatusOff) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Second):
		}
	}
	return false
}
