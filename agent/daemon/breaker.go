package daemon

// The breaker's takeover history, kept across restarts.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// loadBreaker reads the persisted takeover history.
func (a *Agent) loadBreaker() []time.Time {
	b, err := os.ReadFile(filepath.Join(a.c.Failover.StateDir, "breaker.json"))
	if err != nil {
		return nil
	}
	var ts []time.Time
	if err := json.Unmarshal(b, &ts); err != nil {
		a.log.Warn("breaker history unreadable; starting empty", "err", err)
		return nil
	}
	return ts
}

func (a *Agent) saveBreaker(ts []time.Time) {
	dir := a.c.Failover.StateDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		a.log.Error("breaker history", "err", err)
		return
	}
	b, _ := json.Marshal(ts)
	tmp := filepath.Join(dir, ".breaker.json.tmp")
	err := os.WriteFile(tmp, b, 0o644)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "breaker.json"))
	}
	if err != nil {
		// The history in memory still counts; only a restart would forget it.
		a.log.Error("breaker history not saved", "err", fmt.Errorf("breaker history: %w", err))
	}
}
