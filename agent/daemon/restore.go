package daemon

// A new cluster made from a backup (backup.restore_from): the bootstrap node's first database and the first
// MASTER's new Volume come from the newest copies of the named cluster in the repository.

import (
	"context"
	"fmt"

	"github.com/mailcow-ha/mailcow-ha/agent/backup"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
	"github.com/mailcow-ha/mailcow-ha/agent/volume"
)

// restoreRepo is the repository a new cluster is made from.
func (a *Agent) restoreRepo() backup.Repo {
	b := a.c.Backup
	return backup.Repo{Location: b.Repository, PasswordFile: b.PasswordFile, CacheDir: b.CacheDir}
}

// restoreDatabase is galera.Manager.Restore: the new datadir (system tables only, the manager checked) becomes the
// newest database copy of backup.restore_from, and the member bootstraps from its position.
func (a *Agent) restoreDatabase(ctx context.Context) (galera.Position, error) {
	from := a.c.Backup.RestoreFrom
	repo := a.restoreRepo()
	snap, err := repo.LatestBefore(ctx, a.c.Backup.RestoreBeforeTime(), backup.TagDatabase, "cluster="+from)
	if err != nil {
		return galera.Position{}, fmt.Errorf("the newest database copy of cluster %s: %w", from, err)
	}
	pos, err := backup.ReplaceNewDataDir(ctx, repo, snap.ID, a.c.Galera.DataDir, "mysql")
	if err != nil {
		return pos, fmt.Errorf("snapshot %s of cluster %s: %w", snap.ShortID, from, err)
	}
	a.alert(event.Restored, report.SeverityInfo, "", 0, fmt.Sprintf("the new cluster's database is cluster %s's copy %s (taken %s on %s), at Galera position %s",
		from, snap.ShortID, snap.Time.UTC().Format("2006-01-02 15:04:05Z"), snap.Hostname, pos), map[string]string{"snapshot": snap.ID, "from": from})
	return pos, nil
}

// fillVolume is volume.Volume.Fill on the first MASTER: the new, empty Volume gets the newest Volume copy of
// backup.restore_from before mailcow starts on it.
func (a *Agent) fillVolume(ctx context.Context, dir string) error {
	from := a.c.Backup.RestoreFrom
	repo := a.restoreRepo()
	fail := func(err error) error {
		a.alert(event.RestoreFailed, report.SeverityCritical, "", 0, fmt.Sprintf("the new Volume could not be filled from cluster %s's backup "+
			"(it stays empty and unmounted; mailcow does not start on it): %v", from, err), map[string]string{"from": from})
		return err
	}
	snap, err := repo.LatestBefore(ctx, a.c.Backup.RestoreBeforeTime(), backup.TagVolume, "cluster="+from)
	if err != nil {
		return fail(fmt.Errorf("the newest Volume copy of cluster %s: %w", from, err))
	}
	if err := backup.RestoreVolume(ctx, repo, snap.ID, dir); err != nil {
		return fail(fmt.Errorf("snapshot %s of cluster %s: %w", snap.ShortID, from, err))
	}
	msgs, err := backup.Messages(dir)
	if err != nil {
		return fail(err)
	}
	a.alert(event.Restored, report.SeverityInfo, "", 0, fmt.Sprintf("the new Volume holds cluster %s's copy %s (taken %s on %s): %d messages, verified",
		from, snap.ShortID, snap.Time.UTC().Format("2006-01-02 15:04:05Z"), snap.Hostname, len(msgs)), map[string]string{"snapshot": snap.ID, "from": from})
	return nil
}

// databaseRestore is the Galera manager's Restore when backup.restore_from names a cluster, else nil.
func (a *Agent) databaseRestore() func(context.Context) (galera.Position, error) {
	if a.c.Backup.RestoreFrom == "" {
		return nil
	}
	return a.restoreDatabase
}

// armVolumeRestore makes the shared Volume, when backup.restore_from names a cluster, be filled from its copy at
// its first mount, and gives the mount step backup.restore_timeout for it.
func (a *Agent) armVolumeRestore() {
	if a.c.Backup.RestoreFrom == "" {
		return
	}
	if v, ok := a.o.Storage.(*volume.Volume); ok {
		v.Fill = a.fillVolume
		a.exec.MountTimeout = a.c.Backup.RestoreTimeout.D()
	}
	a.log.Info("this cluster is made from a backup: a new database and a new Volume take the newest copies", "from", a.c.Backup.RestoreFrom,
		"repository", a.c.Backup.Repository)
}
