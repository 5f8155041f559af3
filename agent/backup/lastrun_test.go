package backup

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
)

// TestLastRun: the record is read back as written, 0600, and a second run replaces the first.
func TestLastRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // created on first use
	at := time.Date(2026, 12, 4, 3, 15, 0, 0, time.UTC)
	for _, run := range []api.BackupRun{
		{Time: at, Kind: "volume", OK: true, Snapshot: "cb6186ef"},
		{Time: at.Add(24 * time.Hour), Kind: "database", Error: "restic init: exit status 1"},
	} {
		if err := WriteLastRun(dir, run); err != nil {
			t.Fatal(err)
		}
		got, err := ReadLastRun(dir)
		if err != nil || got != run {
			t.Fatalf("read back %+v, %v; wrote %+v", got, err, run)
		}
		fi, err := os.Stat(LastRunFile(dir))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v; want 0600", LastRunFile(dir), fi.Mode().Perm(), err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the state directory holds %d files, want the record alone", len(entries))
	}
}
