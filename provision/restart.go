package provision

import (
	"context"
	"fmt"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// RestartAgents restarts the agents of todo one at a time, in a roll's order (the BACKUPs from the lowest
// priority up, then one switchover, then the old MASTER), each back as a Synced BACKUP with a new agent before the
// next: config apply's way to a setting that only a start reads. restart asks one member's agent to restart. The
// command's own node is not last here: its agent's restart does not end the command. It returns the number of
// switchovers.
func RestartAgents(ctx context.Context, r Roll, todo []config.Member, restart func(ctx context.Context, m config.Member) error) (int, error) {
	r = r.defaults()
	r.Self = ""
	return r.run(ctx, todo, "restarted", func(ctx context.Context, m config.Member) (bool, error) {
		r.say("restart  %-15s agent", m.Name)
		if r.DryRun {
			return false, nil
		}
		st, err := r.Status(ctx, m)
		if err != nil {
			return false, fmt.Errorf("%s: %w", m.Name, err)
		}
		t0 := time.Now()
		if err := restart(ctx, m); err != nil {
			return false, fmt.Errorf("restart %s: %w", m.Name, err)
		}
		return false, r.waitBack(ctx, m, st.Started, t0, "its restart", "config apply")
	})
}
