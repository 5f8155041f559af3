package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to systemd through $NOTIFY_SOCKET (go-systemd's daemon package). Outside
// systemd each call is a no-op that reports sent = false.
type Notifier struct{}

// Send sends raw "KEY=VALUE" assignments in one message.
func (Notifier) Send(assignments ...string) (sent bool, err error) {
	sent, err = daemon.SdNotify(false, strings.Join(assignments, "\n"))
	if err != nil {
		return sent, fmt.Errorf("sd_notify: %w", err)
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

// WatchdogInterval returns how often to pet the watchdog (half of WatchdogSec), or 0 when it is off.
func (Notifier) WatchdogInterval() (time.Duration, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("watchdog: %w", err)
	}
	return d / 2, nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
