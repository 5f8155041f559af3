package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

// unitStack runs systemd units with mailcow (mailcow.with_units): started after the stack, stopped before it,
// so that a companion such as the sign-up portal runs only where mailcow runs, on the MASTER. A unit that fails
// to start is reported but does not fail the takeover: mail matters more than the portal.
type unitStack struct {
	Stack
	Units     []string
	Systemctl string // default "systemctl"
	Log       *slog.Logger
	Alert     func(name event.Name, msg string)
}

func (u unitStack) systemctl(ctx context.Context, verb string) error {
	bin := u.Systemctl
	if bin == "" {
		bin = "systemctl"
	}
	out, err := exec.CommandContext(ctx, bin, append([]string{verb}, u.Units...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s %s: %w: %s", verb, strings.Join(u.Units, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Start starts mailcow, then the units.
func (u unitStack) Start(ctx context.Context) error {
	if err := u.Stack.Start(ctx); err != nil {
		return err
	}
	if err := u.systemctl(ctx, "start"); err != nil {
		u.Alert(event.StackUnitFailed, "mailcow runs, but a unit of mailcow.with_units did not start: "+err.Error())
	} else {
		u.Log.Info("units started with mailcow", "units", u.Units)
	}
	return nil
}

// Stop stops the units, then mailcow.
func (u unitStack) Stop(ctx context.Context) error {
	if err := u.systemctl(ctx, "stop"); err != nil {
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
