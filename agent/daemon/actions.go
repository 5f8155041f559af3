package daemon

// The shortest Hetzner action of each kind this node has seen, kept across restarts: the hcloud adapter aligns its
// first poll of an action with it (hcloud.Options.Fastest), and a node's first takeover after a boot is the one
// that matters (the master before it was powered off, and its memory with it).

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// actionsFile is the table's file in the state directory: milliseconds by the action's command.
const actionsFile = "hcloud-actions.json"

// loadActionDurations reads the kept table; a missing or unreadable file is an empty one (the polls then start
// exponential, as on a node's first takeover ever).
func loadActionDurations(dir string, log *slog.Logger) map[string]time.Duration {
	b, err := os.ReadFile(filepath.Join(dir, actionsFile))
	if err != nil {
		return nil
	}
	var ms map[string]int64
	if err := json.Unmarshal(b, &ms); err != nil {
		log.Warn("the kept action durations are unreadable; polling from the start", "file", filepath.Join(dir, actionsFile), "err", err)
		return nil
	}
	out := map[string]time.Duration{}
	for k, v := range ms {
		if v > 0 {
			out[k] = time.Duration(v) * time.Millisecond
		}
	}
	return out
}

// saveActionDurations keeps the table (write and rename: a crash leaves the old one or the new one).
func saveActionDurations(dir string, table map[string]time.Duration, log *slog.Logger) {
	ms := map[string]int64{}
	for k, v := range table {
		ms[k] = v.Milliseconds()
	}
	b, _ := json.Marshal(ms)
	err := os.MkdirAll(dir, 0o755)
	var f *os.File
	if err == nil {
		f, err = os.CreateTemp(dir, "."+actionsFile+".*")
	}
	if err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, actionsFile))
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}
	if err != nil {
		// Only the next boot's first takeover polls a little more.
		log.Warn("the action durations were not kept", "err", fmt.Errorf("%s: %w", actionsFile, err))
	}
}
