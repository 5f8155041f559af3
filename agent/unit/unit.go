// Package unit starts, stops and watches systemd units for the agent (mariadb.service, the units that run with
// mailcow) over D-Bus, with go-systemd's dbus package: a start or stop waits for its job's result (done, failed,
// timeout, …) from systemd itself, where a systemctl call would leave an exit code and text to parse.
package unit

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// Manager is what the agent needs of systemd. Systemd is the real one; tests give their own.
type Manager interface {
	// Start starts the unit and returns once its start job ended: nil only when the job's result is "done".
	Start(ctx context.Context, name string) error
	// Stop stops the unit, likewise.
	Stop(ctx context.Context, name string) error
	// Active reports whether the unit is active (or reloading): its ActiveState.
	Active(ctx context.Context, name string) (bool, error)
	// Kill sends SIGKILL to every process of the unit, as a crash would end them.
	Kill(ctx context.Context, name string) error
}

// Systemd talks to PID 1 over its private socket (/run/systemd/private, root only), which needs no D-Bus daemon
// in the image. It connects on first use and again after the connection broke (systemd re-executed, say). The
// zero value is ready.
type Systemd struct {
	// Dial connects; default go-systemd's NewSystemdConnectionContext (the private socket). Tests dial a bus of
	// their own.
	Dial func(ctx context.Context) (*sddbus.Conn, error)

	mu   sync.Mutex
	conn *sddbus.Conn
}

func (s *Systemd) connect(ctx context.Context) (*sddbus.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	// The dial's context must outlive this call: go-systemd keeps the connection it made.
	dial := s.Dial
	if dial == nil {
		dial = sddbus.NewSystemdConnectionContext
	}
	c, err := dial(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("systemd: connect: %w", err)
	}
	s.conn = c
	return c, nil
}

// Close ends the connection, if there is one.
func (s *Systemd) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

type jobFunc func(c *sddbus.Conn, ctx context.Context, name, mode string, ch chan<- string) (int, error)

func (s *Systemd) job(ctx context.Context, verb, name string, f jobFunc) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	// Buffered: go-systemd delivers the result from its signal loop, which must not block on us.
	ch := make(chan string, 1)
	// "replace": a queued job of the opposite kind (a stop still pending when we start) gives way to this one.
	if _, err := f(c, ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("systemd: %s %s: %w", verb, name, err)
	}
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("systemd: %s %s: the job ended %q (journalctl -u %s says why)", verb, name, r, name)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd: %s %s: %w", verb, name, ctx.Err())
	}
}

// Start implements Manager.
func (s *Systemd) Start(ctx context.Context, name string) error {
	return s.job(ctx, "start", name, (*sddbus.Conn).StartUnitContext)
}

// Stop implements Manager.
func (s *Systemd) Stop(ctx context.Context, name string) error {
	return s.job(ctx, "stop", name, (*sddbus.Conn).StopUnitContext)
}

// Kill implements Manager.
func (s *Systemd) Kill(ctx context.Context, name string) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	if err := c.KillUnitWithTarget(ctx, name, sddbus.All, int32(syscall.SIGKILL)); err != nil {
		return fmt.Errorf("systemd: kill %s: %w", name, err)
	}
	return nil
}

// Active implements Manager.
func (s *Systemd) Active(ctx context.Context, name string) (bool, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	p, err := c.GetUnitPropertyContext(ctx, name, "ActiveState")
	if err != nil {
		return false, fmt.Errorf("systemd: %s: %w", name, err)
	}
	state, ok := p.Value.Value().(string)
	if !ok {
		return false, fmt.Errorf("systemd: %s: ActiveState is %s, not a string", name, p.Value)
	}
	return state == "active" || state == "reloading", nil
}
