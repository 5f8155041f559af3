package report

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages with go-systemd's daemon.SdNotify, to the socket systemd named in
// $NOTIFY_SOCKET. The variable stays in the agent's environment (SdNotify reads it on every call); the agent's
// children do not inherit it, since every command it runs gets its environment from agent/child.Environ. The zero
// Notifier (outside systemd) sends nothing: each call reports sent = false.
type Notifier struct {
	on bool
}

// NotifierFromEnv returns the Notifier for the socket in $NOTIFY_SOCKET, if any. A WATCHDOG_USEC that is no
// positive number of microseconds is reported (the unit file is wrong) but does not stop the notifier.
func NotifierFromEnv() (Notifier, error) {
	n := Notifier{on: os.Getenv("NOTIFY_SOCKET") != ""}
	if _, err := daemon.SdWatchdogEnabled(false); err != nil {
		return n, fmt.Errorf("WATCHDOG_USEC=%q: %w", os.Getenv("WATCHDOG_USEC"), err)
	}
	return n, nil
}

// Send sends raw "KEY=VALUE" assignments in one datagram.
func (n Notifier) Send(assignments ...string) (sent bool, err error) {
	if !n.on {
		return false, nil
	}
	sent, err = daemon.SdNotify(false, strings.Join(assignments, "\n"))
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return sent, nil
}

// Ready tells systemd that start-up is complete, with a status line.
func (n Notifier) Ready(status string) (bool, error) {
	return n.Send(daemon.SdNotifyReady, "STATUS="+oneLine(status))
}

// Status sets the unit's status line, shown by systemctl status.
func (n Notifier) Status(status string) (bool, error) { return n.Send("STATUS=" + oneLine(status)) }

// Watchdog pets systemd's watchdog.
func (n Notifier) Watchdog() (bool, error) { return n.Send(daemon.SdNotifyWatchdog) }

// ExtendTimeout asks systemd to wait d longer for the current start or stop step.
func (n Notifier) ExtendTimeout(d time.Duration) (bool, error) {
	return n.Send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

// Stopping tells systemd that the service is shutting down.
func (n Notifier) Stopping(status string) (bool, error) {
	return n.Send(daemon.SdNotifyStopping, "STATUS="+oneLine(status))
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
