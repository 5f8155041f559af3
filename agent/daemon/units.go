package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/agent/unit"
)

// unitStack runs systemd units with mailcow (mailcow.with_units): started after the stack, stopped before it,
// so that a companion such as the sign-up portal runs only where mailcow runs, on the MASTER. A unit that fails
// to start is reported but does not fail the takeover: mail matters more than the portal.
type unitStack struct {
	Stack
	Units   []string
	Systemd unit.Manager
	Log     *slog.Logger
	Alert   func(name event.Name, msg string)
}

// each runs verb on every unit, in the order given (stop: in reverse), and joins the failures.
func (u unitStack) each(ctx context.Context, stop bool) error {
	var errs []error
	for i := range u.Units {
		if stop {
			errs = append(errs, u.Systemd.Stop(ctx, u.Units[len(u.Units)-1-i]))
		} else {
			errs = append(errs, u.Systemd.Start(ctx, u.Units[i]))
		}
	}
	return errors.Join(errs...)
}

// Warm passes the warm start through (the units start with mailcow's start, after the mount).
func (u unitStack) Warm(ctx context.Context) error {
	if w, ok := u.Stack.(stackWarmer); ok {
		return w.Warm(ctx)
	}
	return nil
}

// Start starts mailcow, then the units.
func (u unitStack) Start(ctx context.Context) error {
	if err := u.Stack.Start(ctx); err != nil {
		return err
	}
	if err := u.each(ctx, false); err != nil {
		u.Alert(event.StackUnitFailed, "mailcow runs, but a unit of mailcow.with_units did not start: "+err.Error())
	} else {
		u.Log.Info("units started with mailcow", "units", u.Units)
	}
	return nil
}

// Stop stops the units, then mailcow.
func (u unitStack) Stop(ctx context.Context) error {
	if err := u.each(ctx, true); err != nil {
		u.Log.Warn("units with mailcow: stop failed; stopping mailcow anyway", "err", err)
	}
	return u.Stack.Stop(ctx)
}

// Check passes the stack's per-service health through (see checker).
func (u unitStack) Check(ctx context.Context) ([]stack.Health, error) {
	if c, ok := u.Stack.(checker); ok {
		return c.Check(ctx)
	}
	failed, err := u.Stack.Failed(ctx)
	if err != nil || failed == "" {
		return nil, err
	}
	return []stack.Health{{Service: failed, Reason: "failed"}}, nil
}

// Running passes the count of running containers through, when the stack below can count them.
func (u unitStack) Running(ctx context.Context) (int, error) {
	if r, ok := u.Stack.(stackRunning); ok {
		return r.Running(ctx)
	}
	return 0, nil
}
