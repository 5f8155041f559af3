package daemon

// The backups as the agent watches them (docs/backup.md). The copies are taken by `mailcow-ha backup run` (the
// image's timer), which records each attempt in the state directory (backup.LastRunFile). Every node alerts on its
// own failed copy; the MASTER also reads the repository hourly, and after each copy it takes, and alerts when the
// newest copy of the Volume or of the database is older than backup.max_age.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/backup"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// backupRecheck is how often the MASTER reads the repository when no copy of its own asks it to sooner.
const backupRecheck = time.Hour

// backupWatch is what the agent last learnt of the backups.
type backupWatch struct {
	mu      sync.Mutex
	run     *api.BackupRun
	runMod  time.Time
	repo    *api.BackupStatus // the MASTER's last read of the repository
	problem string            // the problem last alerted ("" when none)
}

// watchBackups looks at this node's last copy every 10 s and, on the MASTER, at the repository (see the file's
// comment).
func (a *Agent) watchBackups(ctx context.Context) {
	every(ctx, 5*time.Second, 10*time.Second, func() bool { a.checkBackups(ctx, time.Now()); return false })
}

func (a *Agent) checkBackups(ctx context.Context, now time.Time) {
	a.mu.Lock()
	c, role := a.c, a.s.Role
	a.mu.Unlock()
	w := &a.backups
	if c.Backup.Repository == "" {
		w.mu.Lock()
		w.repo, w.problem = nil, ""
		w.mu.Unlock()
		return
	}
	fresh := false
	if fi, err := os.Stat(backup.LastRunFile(c.Failover.StateDir)); err == nil {
		w.mu.Lock()
		seen := w.runMod
		w.mu.Unlock()
		if !fi.ModTime().Equal(seen) {
			run, err := backup.ReadLastRun(c.Failover.StateDir)
			w.mu.Lock()
			w.runMod = fi.ModTime()
			if err == nil {
				w.run = &run
			}
			w.mu.Unlock()
			if err == nil && !run.OK && run.Time.After(a.started) {
				a.alert(event.BackupFailed, report.SeverityWarning, "", 0, fmt.Sprintf("the %s backup failed: %s", run.Kind, run.Error),
					map[string]string{"kind": run.Kind})
			}
			fresh = err == nil && run.Time.After(a.started) // a copy taken since the agent started
		}
	}
	if role != failover.RoleMaster {
		w.mu.Lock()
		w.repo, w.problem = nil, ""
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	due := w.repo == nil || fresh || now.Sub(w.repo.Checked) >= backupRecheck
	w.mu.Unlock()
	if !due {
		return
	}
	repo := backup.Repo{Location: c.Backup.Repository, PasswordFile: c.Backup.PasswordFile, CacheDir: c.Backup.CacheDir}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	snaps, err := repo.Snapshots(qctx, "cluster="+c.Cluster.Name)
	cancel()
	if ctx.Err() != nil {
		return
	}
	st := backupView(snaps, err, now, c.Backup.MaxAge.D())
	w.mu.Lock()
	prev := w.problem
	w.repo, w.problem = &st, st.Problem
	w.mu.Unlock()
	switch {
	case st.Problem != "" && st.Problem != prev:
		a.alert(event.BackupStale, report.SeverityWarning, "", 0, st.Problem, nil)
	case st.Problem == "" && prev != "":
		a.alert(event.BackupRecovered, report.SeverityInfo, "", 0,
			fmt.Sprintf("the backups are fresh again: the Volume's copy of %s, the database's of %s", st.Volume.Time.Format(time.RFC3339), st.Database.Time.Format(time.RFC3339)), nil)
	}
}

// backupView reads the repository's snapshots of the cluster (oldest first, as restic lists them): the newest copy of
// each kind, and what is wrong when either is missing or older than maxAge, or the repository could not be read.
func backupView(snaps []backup.Snapshot, err error, now time.Time, maxAge time.Duration) api.BackupStatus {
	st := api.BackupStatus{Checked: now.UTC(), MaxAge: api.Duration(maxAge)}
	if err != nil {
		st.Problem = fmt.Sprintf("the backup repository cannot be read: %v", err)
		return st
	}
	for _, s := range snaps {
		cp := api.BackupCopy{Time: s.Time.UTC(), Snapshot: s.ShortID, Node: s.Hostname}
		for _, t := range s.Tags {
			switch t {
			case backup.TagVolume:
				st.Volume = cp
			case backup.TagDatabase:
				st.Database = cp
			}
		}
	}
	var why []string
	for _, k := range []struct {
		name string
		cp   api.BackupCopy
	}{{"Volume", st.Volume}, {"database", st.Database}} {
		switch age := now.Sub(k.cp.Time); {
		case k.cp.Time.IsZero():
			why = append(why, "no copy of the "+k.name)
		case age > maxAge:
			why = append(why, fmt.Sprintf("the %s's newest copy is %s old", k.name, age.Round(time.Minute)))
		}
	}
	if len(why) > 0 {
		st.Problem = fmt.Sprintf("backups are stale (backup.max_age %s): %s", maxAge, strings.Join(why, "; "))
	}
	return st
}

// backupStatus is the /status document's part on the backups; nil while backups are not configured.
func (a *Agent) backupStatus(configured bool) *api.BackupStatus {
	if !configured {
		return nil
	}
	w := &a.backups
	w.mu.Lock()
	defer w.mu.Unlock()
	st := api.BackupStatus{}
	if w.repo != nil {
		st = *w.repo
	}
	if w.run != nil {
		r := *w.run
		st.LastRun = &r
	}
	return &st
}
