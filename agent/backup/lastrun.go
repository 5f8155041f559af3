package backup

// The last copy a node took, recorded for its agent: the backup command runs apart from the agent (the image's timer
// calls it), and the agent alerts on a failure and shows the last run in /status.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// LastRunFile is where the backup command records its last copy, in the agent's state directory.
func LastRunFile(stateDir string) string { return filepath.Join(stateDir, "backup-last.json") }

// WriteLastRun records run (0600, replaced whole, by config.WriteSecret: a failed run's error may quote a path or a
// repository's address).
func WriteLastRun(stateDir string, run api.BackupRun) error {
	b, err := json.Marshal(run)
	if err != nil {
		return err
	}
	if err := config.WriteSecret(LastRunFile(stateDir), string(b)); err != nil {
		return fmt.Errorf("backup: recording the run: %w", err)
	}
	return nil
}

// ReadLastRun reads what WriteLastRun recorded.
func ReadLastRun(stateDir string) (api.BackupRun, error) {
	var run api.BackupRun
	b, err := os.ReadFile(LastRunFile(stateDir))
	if err != nil {
		return run, err
	}
	if err := json.Unmarshal(b, &run); err != nil {
		return run, fmt.Errorf("backup: %s: %w", LastRunFile(stateDir), err)
	}
	return run, nil
}
