package cli

// mailcow-ha backup: the cluster's backups in a restic repository (docs/backup.md). Built so far: the database's
// hot copy from a BACKUP member, the list, the repository's check, and the database's restore into an empty datadir.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/backup"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
)

const backupUsage = `Usage:
  mailcow-ha backup database [--repository R --password-file F] [--config PATH]
      on a BACKUP node: a hot copy of its Galera member (mariabackup) into the repository; refused on the MASTER
  mailcow-ha backup list [--repository R --password-file F] [--config PATH]
      the repository's snapshots
  mailcow-ha backup check [--read-data 10%] [--repository R --password-file F] [--config PATH]
      verify the repository's structure, and read back that share of its data
  mailcow-ha backup restore-database --snapshot ID --datadir DIR [--repository R --password-file F] [--config PATH]
      unpack and prepare a database copy into an empty datadir, owned by mysql; print the Galera position to
      bootstrap a new cluster from

The repository and its password file come from the configuration's [backup] unless given (a restore drill on a
machine that has no cluster configuration gives both).
`

// Backup runs the backup subcommands.
func Backup(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprint(stdio.Stderr, backupUsage)
		return ExitUsage
	}
	switch args[0] {
	case "database":
		return backupDatabase(ctx, args[1:], stdio)
	case "list":
		return backupList(ctx, args[1:], stdio)
	case "check":
		return backupCheck(ctx, args[1:], stdio)
	case "restore-database":
		return backupRestoreDatabase(ctx, args[1:], stdio)
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdio.Stdout, backupUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Stderr, "mailcow-ha backup: unknown command %q\n\n%s", args[0], backupUsage)
	return ExitUsage
}

// repoFlags registers --repository and --password-file beside the configuration's flags, and returns what opens the
// repository: the flags, or else the configuration's [backup].
func repoFlags(fs *flag.FlagSet) func(context.Context, *config.Sources, bool) (backup.Repo, config.Config, error) {
	loc := fs.String("repository", "", "the restic repository (default: backup.repository)")
	pw := fs.String("password-file", "", "its password, mode 0600 (default: backup.password_file)")
	return func(ctx context.Context, src *config.Sources, needConfig bool) (backup.Repo, config.Config, error) {
		var c config.Config
		if needConfig || *loc == "" || *pw == "" {
			var err error
			if c, _, err = loadConfig(ctx, *src); err != nil {
				return backup.Repo{}, c, err
			}
		}
		r := backup.Repo{Location: c.Backup.Repository, PasswordFile: c.Backup.PasswordFile, CacheDir: c.Backup.CacheDir}
		if *loc != "" {
			r.Location = *loc
		}
		if *pw != "" {
			r.PasswordFile = *pw
		}
		if r.Location == "" {
			return r, c, errors.New("no repository: set backup.repository, or give --repository")
		}
		if err := (config.SecretFiles{Owner: os.Geteuid()}).CheckSecretFile(r.PasswordFile); err != nil {
			return r, c, fmt.Errorf("the repository's password: %w", err)
		}
		return r, c, nil
	}
}

// backupDatabase copies this node's Galera member into the repository: on a BACKUP (the MASTER serves mail and
// does not pay for the copy), whose member is Synced.
func backupDatabase(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("backup database", "backup database [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup database: "+format+"\n", a...)
		return code
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, true)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	sess, code, err := openSession(ctx, *src)
	if err != nil {
		return fail(code, "%v", err)
	}
	self, _ := sess.cfg.Member(sess.self)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := sess.peers.State(qctx, sess.peer(self))
	cancel()
	if err != nil {
		return fail(ExitFailure, "this node's agent: %v", err)
	}
	if st.Role == string(failover.RoleMaster) {
		return fail(ExitFailure, "%s is the MASTER: take the copy on a BACKUP (the MASTER serves the mail)", self.Name)
	}
	if !st.GaleraOK {
		return fail(ExitFailure, "%s's Galera member is not serving (%s): take the copy on a Synced member", self.Name, st.Galera)
	}
	if err := repo.Init(ctx); err != nil {
		return fail(ExitFailure, "%v", err)
	}
	t0 := time.Now()
	sum, err := backup.BackupDatabase(ctx, repo, backup.Database{Socket: sess.cfg.Galera.Socket, Desync: true}, self.Name, "cluster="+sess.cfg.Cluster.Name)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	fmt.Fprintf(stdio.Stdout, "database copied from %s: snapshot %s, %.1f MB read, %.1f MB new in the repository, %s\n", self.Name, sum.SnapshotID,
		float64(sum.BytesProcessed)/1e6, float64(sum.DataAdded)/1e6, time.Since(t0).Round(10*time.Millisecond))
	return ExitOK
}

// backupList prints the repository's snapshots.
func backupList(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("backup list", "backup list [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, false)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup list: %v\n", err)
		return ExitUsage
	}
	snaps, err := repo.Snapshots(ctx)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup list: %v\n", err)
		return ExitFailure
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tTIME\tNODE\tTAGS\tPATHS")
	for _, s := range snaps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ShortID, s.Time.UTC().Format(time.RFC3339), s.Hostname, strings.Join(s.Tags, ","), strings.Join(s.Paths, ","))
	}
	tw.Flush()
	return ExitOK
}

// backupCheck verifies the repository.
func backupCheck(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("backup check", "backup check [--read-data 10%] [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	subset := fs.String("read-data", "10%", "the share of the data to read back and verify (\"100%\": all; \"0\": structure only)")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, false)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup check: %v\n", err)
		return ExitUsage
	}
	if *subset == "0" {
		*subset = ""
	}
	t0 := time.Now()
	if err := repo.Check(ctx, *subset); err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup check: %v\n", err)
		return ExitFailure
	}
	read := *subset
	if read == "" {
		read = "none"
	}
	fmt.Fprintf(stdio.Stdout, "repository %s: no errors (data read back: %s) in %s\n", repo.Location, read, time.Since(t0).Round(10*time.Millisecond))
	return ExitOK
}

// backupRestoreDatabase unpacks a database copy into an empty datadir.
func backupRestoreDatabase(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("backup restore-database", "backup restore-database --snapshot ID --datadir DIR [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	snap := fs.String("snapshot", "", "the snapshot (backup list), or latest: the newest database copy")
	dir := fs.String("datadir", "", "an empty or missing directory for the datadir (required)")
	user := fs.String("user", "mysql", "the user mariadbd runs as, who gets the files")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup restore-database: "+format+"\n", a...)
		return code
	}
	if *snap == "" || *dir == "" {
		return fail(ExitUsage, "--snapshot and --datadir are required")
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, false)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	id := *snap
	if id == "latest" {
		snaps, err := repo.Snapshots(ctx, backup.TagDatabase)
		if err != nil {
			return fail(ExitFailure, "%v", err)
		}
		if len(snaps) == 0 {
			return fail(ExitFailure, "the repository holds no database copy")
		}
		id = snaps[len(snaps)-1].ID
	}
	t0 := time.Now()
	pos, err := backup.RestoreDatabase(ctx, repo, id, *dir, *user)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	fmt.Fprintf(stdio.Stdout, "restored snapshot %s into %s in %s: Galera position %s\n", id, *dir, time.Since(t0).Round(10*time.Millisecond), pos)
	fmt.Fprintf(stdio.Stdout, "a new cluster bootstraps from it: its grastate.dat must say seqno %d and safe_to_bootstrap: 1 (docs/backup.md)\n", pos.Seqno)
	return ExitOK
}
