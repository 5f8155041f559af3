package config

// This file validates [backup]: the restic repository's location and the files restic reads.

import (
	"path/filepath"
	"strings"
	"time"
)

// backup checks the repository: a path, sftp: or s3: (the targets that the backup is tested and documented for).
func (v *validator) backup(c *Config) {
	b := c.Backup
	v.absPath("backup.password_file", b.PasswordFile)
	v.absPath("backup.cache_dir", b.CacheDir)
	if b.MaxAge.D() < time.Hour {
		v.add("backup.max_age", "%s: at least 1h (a copy takes a while, and the daily timer runs once a day)", b.MaxAge)
	}
	r := b.Repository
	if b.RestoreFrom != "" {
		if r == "" {
			v.add("backup.restore_from", "given without backup.repository (the repository that holds the copies)")
		}
		if !nameRE.MatchString(b.RestoreFrom) {
			v.add("backup.restore_from", "%q: a cluster's name (lower-case letters, digits and '-')", b.RestoreFrom)
		}
	}
	if b.RestoreBefore != "" {
		if _, err := time.Parse(time.RFC3339, b.RestoreBefore); err != nil {
			v.add("backup.restore_before", "%q: an RFC 3339 time, such as 2026-12-01T03:00:00Z", b.RestoreBefore)
		} else if b.RestoreFrom == "" {
			v.add("backup.restore_before", "given without backup.restore_from")
		}
	}
	if b.KeepDaily < 1 {
		v.add("backup.keep_daily", "%d: keep at least the newest day's copy", b.KeepDaily)
	}
	if b.KeepWeekly < 0 {
		v.add("backup.keep_weekly", "%d: 0 or more", b.KeepWeekly)
	}
	if b.KeepMonthly < 0 {
		v.add("backup.keep_monthly", "%d: 0 or more", b.KeepMonthly)
	}
	if b.RestoreTimeout.D() < time.Minute {
		v.add("backup.restore_timeout", "%s: at least 1m", b.RestoreTimeout)
	}
	switch {
	case r == "":
		if b.Password.Set() {
			v.add("backup.password", "given without backup.repository")
		}
	case strings.ContainsAny(r, "\n\r\x00"):
		v.add("backup.repository", "%q holds a line break", r)
	case filepath.IsAbs(r):
	case strings.HasPrefix(r, "sftp:"):
		if !strings.Contains(r, "@") || !strings.Contains(r[len("sftp:"):], ":") {
			v.add("backup.repository", "%q: use sftp:user@host:/path", r)
		}
	case strings.HasPrefix(r, "s3:"):
		if !strings.HasPrefix(r, "s3:https://") {
			v.add("backup.repository", "%q: use s3:https://host/bucket (TLS only)", r)
		}
	default:
		v.add("backup.repository", "%q: use an absolute path, sftp:user@host:/path or s3:https://host/bucket", r)
	}
	if b.Password.Set() {
		if why := weakSecret(b.Password.Reveal(), 32); why != "" {
			v.add("backup.password", "%s: use at least 32 random characters (openssl rand -hex 32); keep a copy outside the cluster", why)
		}
	}
}
