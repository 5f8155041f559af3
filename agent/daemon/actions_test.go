package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestActionDurationsKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	log := slog.New(slog.DiscardHandler)
	if got := loadActionDurations(dir, log); len(got) != 0 {
		t.Errorf("nothing kept yet: %v", got)
	}
	saveActionDurations(dir, map[string]time.Duration{"assign_floating_ip": 3012 * time.Millisecond, "attach_volume": 2950 * time.Millisecond}, log)
	got := loadActionDurations(dir, log)
	if got["assign_floating_ip"] != 3012*time.Millisecond || got["attach_volume"] != 2950*time.Millisecond || len(got) != 2 {
		t.Errorf("kept %v", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := os.WriteFile(filepath.Join(dir, actionsFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := loadActionDurations(dir, log); len(got) != 0 {
		t.Errorf("an unreadable file gave %v; want the polls from the start", got)
	}
}
