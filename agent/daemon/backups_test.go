package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/backup"
)

// The MASTER's reading of the repository: the newest copy of each kind, and stale when one is missing or too old.
func TestBackupView(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	snap := func(age time.Duration, id, host string, tags ...string) backup.Snapshot {
		return backup.Snapshot{Time: now.Add(-age), ShortID: id, Hostname: host, Tags: tags}
	}
	snaps := []backup.Snapshot{
		snap(50*time.Hour, "v1", "mx1", backup.TagVolume, "cluster=mail"),
		snap(49*time.Hour, "d1", "mx2", backup.TagDatabase, "cluster=mail"),
		snap(3*time.Hour, "v2", "mx2", backup.TagVolume, "cluster=mail"),
		snap(3*time.Hour, "c2", "mx2", backup.TagConfig, "cluster=mail"),
	}
	st := backupView(snaps, nil, now, 26*time.Hour)
	if st.Volume.Snapshot != "v2" || st.Volume.Node != "mx2" || st.Database.Snapshot != "d1" {
		t.Errorf("newest copies: %+v %+v", st.Volume, st.Database)
	}
	if !strings.Contains(st.Problem, "the database's newest copy is 49h0m0s old") || strings.Contains(st.Problem, "Volume") {
		t.Errorf("problem: %q", st.Problem)
	}
	snaps = append(snaps, snap(2*time.Hour, "d3", "mx3", backup.TagDatabase, "cluster=mail"))
	if st := backupView(snaps, nil, now, 26*time.Hour); st.Problem != "" || st.Database.Snapshot != "d3" {
		t.Errorf("fresh: %+v", st)
	}
	if st := backupView(nil, nil, now, 26*time.Hour); !strings.Contains(st.Problem, "no copy of the Volume; no copy of the database") {
		t.Errorf("an empty repository: %q", st.Problem)
	}
	if st := backupView(nil, errors.New("repository does not exist"), now, 26*time.Hour); !strings.Contains(st.Problem, "cannot be read: repository does not exist") {
		t.Errorf("an unreadable repository: %q", st.Problem)
	}
}
