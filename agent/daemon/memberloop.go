package daemon

// The loop that follows the members the API lists, shared by a member's agent (watchMembers) and an arbitrator's
// (followMembers): read every interval (or when kicked), and apply a change live, or alert once per difference that
// cannot be applied.

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// memberLoop is one agent's way of following the members.
type memberLoop struct {
	api   membership.API
	every time.Duration
	// kick asks for a read now, at most once per KickEvery (nil: none).
	kick <-chan struct{}
	// now is the configuration the agent runs with and its server id.
	now func() (config.Config, int64)
	// refuse, when it returns an error, keeps a change from being applied live (a static cluster.nodes).
	refuse func() error
	// apply applies the members live; applied says what that changed, restart what the operator does when a
	// change cannot be applied live.
	apply            func(ctx context.Context, members []config.Member) error
	applied, restart string
	alert            func(severity, msg string)
	log              *slog.Logger
}

func (w memberLoop) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	var said string
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
			// A node this agent does not know signed a request with the cluster's secret: read now, at most once
			// per KickEvery (the project's request budget is shared).
			if time.Since(last) < KickEvery {
				continue
			}
		}
		last = time.Now()
		c, self := w.now()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		now, changes, err := membership.Update(cctx, c, self, w.api)
		cancel()
		switch {
		case err != nil && len(changes) == 0:
			w.log.Debug("membership: the API did not answer; read again later", "err", err)
			continue
		case len(changes) == 0:
			if said != "" {
				w.log.Info("membership: the API lists the members this agent runs with again")
			}
			said = ""
			continue
		}
		key := strings.Join(changes, "; ")
		if err == nil && w.refuse != nil {
			err = w.refuse()
		}
		if err != nil {
			if key != said {
				said = key
				w.alert(report.SeverityWarning, "membership: "+key+"; not applied while running ("+err.Error()+"): "+w.restart)
			}
			continue
		}
		said = ""
		if err := w.apply(ctx, now); err != nil {
			w.alert(report.SeverityCritical, "membership: "+key+"; not all applied: "+err.Error())
			continue
		}
		w.alert(report.SeverityInfo, "membership: "+key+"; applied ("+w.applied+")")
	}
}

// errStaticMembers: a configuration that lists cluster.nodes itself changes them at a restart only.
var errStaticMembers = errors.New("the configuration lists cluster.nodes itself")
