package report

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier sends sd_notify messages to the socket that systemd named in $NOTIFY_SOCKET when the agent started. The
// zero Notifier (outside systemd) sends nothing: each call reports sent = false.
type Notifier struct {
	socket   string
	watchdog time.Duration // WatchdogSec, 0 when off or meant for another process
}

// NotifierFromEnv takes $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and removes them from the process
// environment, as sd_notify's unset_environment does: the agent's children (keepalived, mariadbd and its state
// transfer scripts, the stack's commands) must not inherit them. Their messages are not the unit's to send, and
// systemd refuses them for a NotifyAccess=main unit anyway ("reception only permitted for main PID").
func NotifierFromEnv() (Notifier, error) {
	n := Notifier{socket: os.Getenv("NOTIFY_SOCKET")}
	usec, pid := os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID")
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(k)
	}
	if usec == "" || (pid != "" && pid != strconv.Itoa(os.Getpid())) {
		return n, nil
	}
	u, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || u <= 0 {
		return n, fmt.Errorf("WATCHDOG_USEC=%q: not a positive number of microseconds", usec)
	}
	n.watchdog = time.Duration(u) * time.Microsecond
	return n, nil
}

// Send sends raw "KEY=VALUE" assignments in one datagram.
func (n Notifier) Send(assignments ...string) (sent bool, err error) {
	if n.socket == "" {
		return false, nil
	}
	// A leading "@" names an abstract socket; Go's net package maps it.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}

// Ready tells systemd that start-up is complete, with a status line.
func (n Notifier) Ready(status string) (bool, error) {
	return n.Send("READY=1", "STATUS="+oneLine(status))
}

// Status sets the unit's status line, shown by systemctl status.
func (n Notifier) Status(status string) (bool, error) { return n.Send("STATUS=" + oneLine(status)) }

// Watchdog pets systemd's watchdog.
func (n Notifier) Watchdog() (bool, error) { return n.Send("WATCHDOG=1") }

// ExtendTimeout asks systemd to wait d longer for the current start or stop step.
func (n Notifier) ExtendTimeout(d time.Duration) (bool, error) {
	return n.Send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

// Stopping tells systemd that the service is shutting down.
func (n Notifier) Stopping(status string) (bool, error) {
	return n.Send("STOPPING=1", "STATUS="+oneLine(status))
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
