package child

import (
	"context"
	"os"
	"os/exec"
	"strings"
)

// systemdOnly are the variables systemd gives the agent's unit for its main process alone: the sd_notify socket
// and the watchdog. The agent keeps them in its own environment (go-systemd's daemon.SdNotify reads
// NOTIFY_SOCKET on every call), so no child may inherit them: a mariadbd that saw NOTIFY_SOCKET would send its own
// READY=1 to the agent's unit.
var systemdOnly = []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}

// Environ is the environment of every process the agent starts: its own, less systemd's notify and watchdog
// variables. It is the one place that builds a child's environment.
func Environ() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, s := range systemdOnly {
			if k == s {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// Command is exec.CommandContext with the child's environment (Environ). Every command the agent runs goes
// through it.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = Environ()
	return cmd
}
