package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
)

// Reset brings the lab back to its known state, however the last scenario left it: no partition, every link up,
// no process stopped, every node powered on, maintenance off, every breaker reset (its takeover history
// forgotten), and the cluster settled (one MASTER with everything, the others BACKUPs in Galera's Primary
// component). It returns the MASTER and what it had to repair, or an error when the lab did not settle within.
func (l *Lab) Reset(ctx context.Context, within time.Duration) (string, []string, error) {
	deadline := time.Now().Add(within)
	var repaired []string
	l.Heal()
	for _, n := range l.Nodes {
		if !n.Powered() {
			if err := l.PowerOn(ctx, n, time.Until(deadline)); err != nil {
				return "", repaired, err
			}
			repaired = append(repaired, n.Name+" powered on")
			continue
		}
		if err := n.SetLinks(true); err != nil {
			return "", repaired, fmt.Errorf("lab: reset %s: %w", n.Name, err)
		}
		if n.stopped() {
			n.Resume()
			repaired = append(repaired, n.Name+" resumed")
		}
	}
	// Every agent answers again (a node powered on just now boots first).
	for _, n := range l.Nodes {
		for {
			if a, err := n.AgentState(); err == nil && a.Role != "booting" {
				break
			}
			if err := n.BootErr(); err != nil {
				return "", repaired, fmt.Errorf("lab: reset: %s did not power on: %w", n.Name, err)
			}
			if time.Now().After(deadline) {
				return "", repaired, fmt.Errorf("lab: reset: %s's agent does not answer within %s", n.Name, within)
			}
			if err := sleep(ctx, 250*time.Millisecond); err != nil {
				return "", repaired, err
			}
		}
	}
	var maint bool
	for _, n := range l.Nodes {
		if a, err := n.AgentState(); err == nil && a.Maintenance {
			maint = true
		}
	}
	if maint {
		if _, err := l.Maintenance(false); err != nil {
			return "", repaired, err
		}
		repaired = append(repaired, "maintenance off")
	}
	for _, n := range l.Nodes {
		a, err := n.AgentState()
		if err != nil {
			return "", repaired, fmt.Errorf("lab: reset %s: %w", n.Name, err)
		}
		if a.Breaker || a.Takeovers > 0 {
			if ans, err := check.Ask(filepath.Join(n.Dir, "agent.sock"), "breaker reset", 10*time.Second); err != nil || !strings.HasPrefix(ans, "ok") {
				return "", repaired, fmt.Errorf("lab: reset %s's breaker: %q %v", n.Name, ans, err)
			}
			if a.Breaker {
				repaired = append(repaired, n.Name+" breaker reset")
			}
		}
	}
	// The resets are applied by each agent's loop: wait until every history is empty.
	for _, n := range l.Nodes {
		for {
			a, err := n.AgentState()
			if err == nil && !a.Breaker && a.Takeovers == 0 {
				break
			}
			if time.Now().After(deadline) {
				return "", repaired, fmt.Errorf("lab: reset: %s's breaker did not reset within %s: %+v %v", n.Name, within, a, err)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return "", repaired, err
			}
		}
	}
	m, err := l.WaitSettled(ctx, time.Until(deadline))
	if err != nil {
		return "", repaired, fmt.Errorf("lab: reset: %w", err)
	}
	return m, repaired, nil
}

// stopped reports whether the node's agent is stopped (SIGSTOP, a hung master).
func (n *Node) stopped() bool {
	pid := n.agent.pid()
	return pid != 0 && reap.Stopped(pid)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// LogMark is where each node's agent log stood at one moment.
type LogMark map[string]int64

// MarkLogs notes where every agent log ends now.
func (l *Lab) MarkLogs() LogMark {
	m := LogMark{}
	for _, n := range l.Nodes {
		if fi, err := os.Stat(filepath.Join(n.Dir, "agent.log")); err == nil {
			m[n.Name] = fi.Size()
		}
	}
	return m
}

// LogsSince returns each agent's log lines written after the mark (mariadbd's and keepalived's own lines left
// out), at most max bytes per node, the last ones.
func (l *Lab) LogsSince(m LogMark, max int) string {
	var b strings.Builder
	for _, n := range l.Nodes {
		f, err := os.Open(filepath.Join(n.Dir, "agent.log"))
		if err != nil {
			fmt.Fprintf(&b, "=== %s: %v\n", n.Name, err)
			continue
		}
		if _, err := f.Seek(m[n.Name], 0); err != nil {
			f.Close()
			continue
		}
		var sb strings.Builder
		buf := make([]byte, 64<<10)
		for {
			k, err := f.Read(buf)
			sb.Write(buf[:k])
			if err != nil {
				break
			}
		}
		f.Close()
		var keep []string
		for _, line := range strings.Split(sb.String(), "\n") {
			if line != "" && !strings.Contains(line, "mariadbd:") && !strings.Contains(line, "keepalived: ") {
				keep = append(keep, line)
			}
		}
		text := strings.Join(keep, "\n")
		if len(text) > max {
			text = "…" + text[len(text)-max:]
		}
		fmt.Fprintf(&b, "=== %s agent log since the scenario began\n%s\n", n.Name, text)
	}
	return b.String()
}
