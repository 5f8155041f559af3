package backup

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Retention by kind: the copies of one day, whichever node took them, are one day's copy of their kind; another
// cluster's copies in the same repository are not touched.
func TestPrune(t *testing.T) {
	repo := testRepo(t)
	ctx := context.Background()
	src := t.TempDir()
	for i, c := range []struct{ host, kind, cluster string }{
		{"mx1", TagVolume, "a"}, {"mx2", TagVolume, "a"}, {"mx1", TagVolume, "a"},
		{"mx1", TagConfig, "a"}, {"mx2", TagConfig, "a"},
		{"mx1", TagVolume, "b"}, {"mx1", TagVolume, "b"},
	} {
		if err := os.WriteFile(filepath.Join(src, "file"), []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := BackupFiles(ctx, repo, []string{filepath.Join(src, "file")}, c.host, c.kind, "cluster="+c.cluster); err != nil {
			t.Fatal(err)
		}
	}
	newest, err := repo.Latest(ctx, TagVolume, "cluster=a")
	if err != nil {
		t.Fatal(err)
	}
	// A point in time: the newest copy taken before it (backup.restore_before).
	vols, err := repo.Snapshots(ctx, TagVolume, "cluster=a")
	if err != nil || len(vols) != 3 {
		t.Fatalf("cluster a's Volume copies: %d %v", len(vols), err)
	}
	if s, err := repo.LatestBefore(ctx, vols[1].Time.Add(time.Nanosecond), TagVolume, "cluster=a"); err != nil || s.ID != vols[1].ID {
		t.Errorf("the newest copy before the second one's time: %s %v, want %s", s.ShortID, err, vols[1].ShortID)
	}
	if _, err := repo.LatestBefore(ctx, vols[0].Time, TagVolume, "cluster=a"); err == nil {
		t.Error("a copy taken before the first one was found")
	}
	if _, err := Prune(ctx, repo, Keep{Daily: 0, Weekly: 4, Monthly: 6}, "cluster=a"); err == nil {
		t.Error("a retention that keeps no daily copy was accepted")
	}
	res, err := Prune(ctx, repo, Keep{Daily: 7, Weekly: 4, Monthly: 6}, "cluster=a")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune: %d snapshots of cluster a before, %d after, in %s", res.Before, res.After, res.Took)
	if res.Before != 5 || res.After != 2 {
		t.Errorf("cluster a: %d snapshots before, %d after; want 5 and 2 (one Volume copy and one configuration copy for the day)", res.Before, res.After)
	}
	if kept, err := repo.Latest(ctx, TagVolume, "cluster=a"); err != nil || kept.ID != newest.ID {
		t.Errorf("the Volume copy kept is %s (%v), want the newest %s", kept.ShortID, err, newest.ShortID)
	}
	if b, err := repo.Snapshots(ctx, "cluster=b"); err != nil || len(b) != 2 {
		t.Errorf("cluster b has %d snapshots (%v) after cluster a's prune, want its 2", len(b), err)
	}
	if err := repo.Check(ctx, "100%"); err != nil {
		t.Errorf("check after the prune: %v", err)
	}
}
