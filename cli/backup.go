package cli

// mailcow-ha backup: the cluster's backups in a restic repository (docs/backup.md): the database's hot copy from a
// BACKUP member, the Volume's from the MASTER, the list, the repository's check, and the restores (a database into an
// empty datadir, a Volume into an empty directory, one mailbox into the live Volume).

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/backup"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

const backupUsage = `Usage:
  mailcow-ha backup run [--repository R --password-file F] [--config PATH]
      what this node's role copies: the Volume and the configuration on the MASTER, the database on the first
      serving BACKUP, nothing on the others (a timer calls it on every node)
  mailcow-ha backup database [--repository R --password-file F] [--config PATH]
      on a BACKUP node: a hot copy of its Galera member (mariabackup) into the repository; refused on the MASTER
  mailcow-ha backup volume [--repository R --password-file F] [--config PATH]
      on the MASTER: the Volume's data, checked to hold every message, and the configuration's files
  mailcow-ha backup prune [--repository R --password-file F] [--config PATH]
      on the MASTER: forget the cluster's copies that backup.keep_daily, keep_weekly and keep_monthly do not keep,
      and give back their space (a weekly timer calls it on every node; the others have nothing to do)
  mailcow-ha backup list [--repository R --password-file F] [--config PATH]
      the repository's snapshots
  mailcow-ha backup check [--read-data 10%] [--repository R --password-file F] [--config PATH]
      verify the repository's structure, and read back that share of its data
  mailcow-ha backup restore-database --snapshot ID --datadir DIR [--repository R --password-file F] [--config PATH]
      unpack and prepare a database copy into an empty datadir, owned by mysql; print the Galera position to
      bootstrap a new cluster from
  mailcow-ha backup restore-volume --snapshot ID --target DIR [--repository R --password-file F]
      a Volume's copy into an empty directory (a new Volume's mount point), verified
  mailcow-ha backup restore-mailbox --snapshot ID --mailbox local@domain [--repository R --password-file F] [--config PATH]
      on the MASTER while mail flows: put back the mailbox's messages that the copy holds and it no longer does

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
	case "database", "volume", "run":
		return backupTake(ctx, args[0], args[1:], stdio)
	case "prune":
		return backupPrune(ctx, args[1:], stdio)
	case "list":
		return backupList(ctx, args[1:], stdio)
	case "check":
		return backupCheck(ctx, args[1:], stdio)
	case "restore-database":
		return backupRestoreDatabase(ctx, args[1:], stdio)
	case "restore-volume":
		return backupRestoreVolume(ctx, args[1:], stdio)
	case "restore-mailbox":
		return backupRestoreMailbox(ctx, args[1:], stdio)
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdio.Stdout, backupUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Stderr, "mailcow-ha backup: unknown command %q\n\n%s", args[0], backupUsage)
	return ExitUsage
}

// errNoRepository: neither the configuration nor the flags name a repository.
var errNoRepository = errors.New("no repository: set backup.repository, or give --repository")

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
			return r, c, errNoRepository
		}
		if err := (config.SecretFiles{Owner: os.Geteuid()}).CheckSecretFile(r.PasswordFile); err != nil {
			return r, c, fmt.Errorf("the repository's password: %w", err)
		}
		return r, c, nil
	}
}

// backupTake takes a copy on this node, by kind: "database" (a BACKUP's Galera member), "volume" (the MASTER's
// Volume and the configuration) or "run" (what this node's role takes: the Volume on the MASTER, the database on the
// first serving BACKUP by the configuration's order, nothing elsewhere), as a timer on every node calls it.
func backupTake(ctx context.Context, kind string, args []string, stdio Stdio) int {
	fs := newFlags("backup "+kind, "backup "+kind+" [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup "+kind+": "+format+"\n", a...)
		return code
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, true)
	if kind == "run" && errors.Is(err, errNoRepository) {
		fmt.Fprintln(stdio.Stdout, "backups are not configured (backup.repository is not set): nothing to do")
		return ExitOK // the image's timer runs on every node, configured or not
	}
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	sess, self, st, code, err := thisNode(ctx, *src)
	if err != nil {
		return fail(code, "%v", err)
	}
	master := st.Role == string(failover.RoleMaster)
	if kind == "run" {
		switch {
		case master:
			kind = "volume"
		case self.IsArbitrator():
			fmt.Fprintf(stdio.Stdout, "%s is an arbitrator: it holds no data to copy\n", self.Name)
			return ExitOK
		default:
			if by := sess.databaseCopier(ctx); by != self.Name {
				fmt.Fprintf(stdio.Stdout, "%s is a BACKUP, and %s takes the database's copy: nothing to do here\n", self.Name, cmp.Or(by, "no serving BACKUP"))
				return ExitOK
			}
			kind = "database"
		}
	}
	switch {
	case kind == "database" && master:
		return fail(ExitFailure, "%s is the MASTER: take the copy on a BACKUP (the MASTER serves the mail)", self.Name)
	case kind == "database" && !st.GaleraOK:
		return fail(ExitFailure, "%s's Galera member is not serving (%s): take the copy on a Synced member", self.Name, st.Galera)
	case kind == "volume" && (!master || !st.Mounted):
		return fail(ExitFailure, "%s is not the MASTER with the Volume mounted (%s, mounted %t): run it on the MASTER", self.Name, st.Role, st.Mounted)
	}
	// From here on, a failure is a failed backup: the agent hears of it.
	if err := repo.Init(ctx); err != nil {
		record(sess.cfg, kind, "", err, stdio)
		return fail(ExitFailure, "%v", err)
	}
	tag := "cluster=" + sess.cfg.Cluster.Name
	t0 := time.Now()
	switch kind {
	case "database":
		sum, err := backup.BackupDatabase(ctx, repo, backup.Database{Socket: sess.cfg.Galera.Socket, Desync: true}, self.Name, tag)
		record(sess.cfg, kind, sum.SnapshotID, err, stdio)
		if err != nil {
			return fail(ExitFailure, "%v", err)
		}
		fmt.Fprintf(stdio.Stdout, "database copied from %s: snapshot %s, %.1f MB read, %.1f MB new in the repository, %s\n", self.Name, sum.SnapshotID,
			float64(sum.BytesProcessed)/1e6, float64(sum.DataAdded)/1e6, time.Since(t0).Round(10*time.Millisecond))
	case "volume":
		sum, err := backup.BackupVolume(ctx, repo, backup.Volume{Mount: sess.cfg.Mailcow.DataMount, Dirs: stack.DataDirs}, self.Name, tag)
		if err != nil {
			record(sess.cfg, kind, "", err, stdio)
			return fail(ExitFailure, "%v", err)
		}
		fmt.Fprintf(stdio.Stdout, "Volume copied from %s: snapshot %s, %d messages, %d files, %.1f MB read, %.1f MB new in the repository, %s, %s\n",
			self.Name, sum.SnapshotID, sum.Messages, sum.FilesNew+sum.FilesChanged+sum.FilesUnmodified, float64(sum.BytesProcessed)/1e6, float64(sum.DataAdded)/1e6,
			passes(sum.Passes), time.Since(t0).Round(10*time.Millisecond))
		files := configFiles(sess.cfg, src.Path)
		csum, err := backup.BackupFiles(ctx, repo, files, self.Name, backup.TagConfig, tag)
		if err != nil {
			err = fmt.Errorf("the configuration: %w", err)
		}
		record(sess.cfg, kind, sum.SnapshotID, err, stdio)
		if err != nil {
			return fail(ExitFailure, "%v", err)
		}
		fmt.Fprintf(stdio.Stdout, "configuration copied from %s: snapshot %s (%s)\n", self.Name, csum.SnapshotID, strings.Join(files, ", "))
	default:
		return fail(ExitUsage, "unknown kind %q", kind)
	}
	return ExitOK
}

// thisNode opens the node's session and asks its agent for its state (its role, its Galera member, the mount).
func thisNode(ctx context.Context, src config.Sources) (memberSession, config.Member, api.PeerState, int, error) {
	sess, code, err := openSession(ctx, src)
	if err != nil {
		return sess, config.Member{}, api.PeerState{}, code, err
	}
	self, _ := sess.cfg.Member(sess.self)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := sess.peers.State(qctx, sess.peer(self))
	if err != nil {
		return sess, self, st, ExitFailure, fmt.Errorf("this node's agent: %w", err)
	}
	return sess, self, st, ExitOK, nil
}

// record leaves the copy's outcome for this node's agent, which alerts on a failure and shows it in /status.
func record(c config.Config, kind, snapshot string, err error, stdio Stdio) {
	run := api.BackupRun{Time: time.Now().UTC(), Kind: kind, OK: err == nil, Snapshot: snapshot}
	if err != nil {
		run.Error = err.Error()
	}
	if werr := backup.WriteLastRun(c.Failover.StateDir, run); werr != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup %s: %v (the agent does not learn of this copy)\n", kind, werr)
	}
}

// databaseCopier names the BACKUP that takes the database's copy in `backup run`: the first data member, in the
// configuration's order, that answers as a BACKUP with its Galera member serving ("" when none does).
func (s memberSession) databaseCopier(ctx context.Context) string {
	for _, m := range s.cfg.DataMembers() {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := s.peers.State(qctx, s.peer(m))
		cancel()
		if err == nil && st.Role != string(failover.RoleMaster) && st.GaleraOK && !st.Maintenance {
			return m.Name
		}
	}
	return ""
}

// configFiles are the configuration's files a Volume's copy takes beside it: mailcow's choices (mailcow.conf, its
// data/conf) and this node's configuration file. Secret files are not among them: a new cluster makes its own.
func configFiles(c config.Config, path string) []string {
	if path == "" || path == "-" {
		path = config.DefaultPath
	}
	return []string{filepath.Join(c.Mailcow.Dir, "mailcow.conf"), filepath.Join(c.Mailcow.Dir, "data", "conf"), path}
}

// backupPrune applies the retention on the MASTER: one node prunes, and the role decides which (as for the Volume's
// copy). A failed prune is recorded for the agent, which alerts; a good one leaves the last copy's record as it is.
func backupPrune(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("backup prune", "backup prune [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup prune: "+format+"\n", a...)
		return code
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, true)
	if errors.Is(err, errNoRepository) {
		fmt.Fprintln(stdio.Stdout, "backups are not configured (backup.repository is not set): nothing to do")
		return ExitOK
	}
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	sess, self, st, code, err := thisNode(ctx, *src)
	if err != nil {
		return fail(code, "%v", err)
	}
	if st.Role != string(failover.RoleMaster) {
		fmt.Fprintf(stdio.Stdout, "%s is not the MASTER, which prunes: nothing to do here\n", self.Name)
		return ExitOK
	}
	b := sess.cfg.Backup
	keep := backup.Keep{Daily: b.KeepDaily, Weekly: b.KeepWeekly, Monthly: b.KeepMonthly}
	res, err := backup.Prune(ctx, repo, keep, "cluster="+sess.cfg.Cluster.Name)
	if err != nil {
		record(sess.cfg, "prune", "", err, stdio)
		return fail(ExitFailure, "%v", err)
	}
	fmt.Fprintf(stdio.Stdout, "pruned cluster %s's copies (daily %d, weekly %d, monthly %d): %d snapshots before, %d kept, %s\n", sess.cfg.Cluster.Name,
		keep.Daily, keep.Weekly, keep.Monthly, res.Before, res.After, res.Took.Round(10*time.Millisecond))
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
	id, err := snapshotID(ctx, repo, *snap, backup.TagDatabase)
	if err != nil {
		return fail(ExitFailure, "%v", err)
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

// snapshotID resolves "latest" to the newest snapshot tagged tag; any other id is restic's to resolve.
func snapshotID(ctx context.Context, repo backup.Repo, id, tag string) (string, error) {
	if id != "latest" {
		return id, nil
	}
	s, err := repo.Latest(ctx, tag)
	return s.ID, err
}

// backupRestoreVolume puts a Volume's copy into an empty directory: a new Volume's mount point before its cluster's
// first MASTER starts mailcow on it.
func backupRestoreVolume(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("backup restore-volume", "backup restore-volume --snapshot ID --target DIR [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	snap := fs.String("snapshot", "", "the snapshot (backup list), or latest: the newest Volume's copy")
	target := fs.String("target", "", "the empty directory to restore into: the new Volume's mount point (required)")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup restore-volume: "+format+"\n", a...)
		return code
	}
	if *snap == "" || *target == "" {
		return fail(ExitUsage, "--snapshot and --target are required")
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, false)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	id, err := snapshotID(ctx, repo, *snap, backup.TagVolume)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	t0 := time.Now()
	if err := backup.RestoreVolume(ctx, repo, id, *target); err != nil {
		return fail(ExitFailure, "%v", err)
	}
	n, err := backup.Messages(*target)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	fmt.Fprintf(stdio.Stdout, "restored the Volume's snapshot %s into %s in %s: %d messages, verified\n", id, *target, time.Since(t0).Round(10*time.Millisecond), len(n))
	return ExitOK
}

// backupRestoreMailbox puts back, on the MASTER while mail flows, the messages of one mailbox that a Volume's copy
// holds and the mailbox no longer does.
func backupRestoreMailbox(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("backup restore-mailbox", "backup restore-mailbox --snapshot ID --mailbox local@domain [--repository R --password-file F] [--config PATH]", stdio)
	src := sourceFlags(fs)
	open := repoFlags(fs)
	snap := fs.String("snapshot", "", "the snapshot (backup list), or latest: the newest Volume's copy")
	box := fs.String("mailbox", "", "the mailbox's address (required)")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha backup restore-mailbox: "+format+"\n", a...)
		return code
	}
	if *snap == "" || *box == "" {
		return fail(ExitUsage, "--snapshot and --mailbox are required")
	}
	src.Stdin = stdio.Stdin
	repo, _, err := open(ctx, src, true)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	sess, self, st, code, err := thisNode(ctx, *src)
	if err != nil {
		return fail(code, "%v", err)
	}
	if st.Role != string(failover.RoleMaster) || !st.Mounted {
		return fail(ExitFailure, "%s is not the MASTER with the Volume mounted (%s, mounted %t): run it on the MASTER", self.Name, st.Role, st.Mounted)
	}
	id, err := snapshotID(ctx, repo, *snap, backup.TagVolume)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	t0 := time.Now()
	r, err := backup.RestoreMailbox(ctx, repo, id, sess.cfg.Mailcow.DataMount, *box)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	fmt.Fprintf(stdio.Stdout, "mailbox %s from snapshot %s: %d messages put back, %d were still there, %s\n", *box, id, r.Restored, r.Present, time.Since(t0).Round(10*time.Millisecond))
	return ExitOK
}

// passes says how many passes a Volume copy took.
func passes(n int) string {
	if n == 1 {
		return "1 pass"
	}
	return fmt.Sprintf("%d passes", n)
}
