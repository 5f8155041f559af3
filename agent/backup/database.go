package backup

// The database's backup: a hot copy by mariabackup, streamed (xbstream) into restic without touching the disk,
// taken on a BACKUP member so that the MASTER does not pay for it. With --galera-info it records the Galera position
// it is consistent with, which a restore bootstraps from.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
)

// TagDatabase marks the database's snapshots; DatabaseFile is the one file each holds.
const (
	TagDatabase  = "database"
	DatabaseFile = "galera.xbstream"
)

// Database is the member a backup copies: mariabackup reads its datadir through the server on Socket.
type Database struct {
	Socket string
	User   string // default root, by unix_socket authentication (the agent runs as root)
	Bin    string // default mariabackup
	TmpDir string // mariabackup's --target-dir for its own files while it streams; default a new one in os.TempDir
	// Desync takes the member out of Galera's flow control while it copies (wsrep_desync): its short commit block
	// at the copy's end then delays only its own applying, never the MASTER's commits. It catches up afterwards.
	Desync bool
}

// BackupDatabase streams a hot copy of the database into a new snapshot, tagged TagDatabase and tags, of host. A
// copy that mariabackup did not complete leaves no snapshot.
func BackupDatabase(ctx context.Context, repo Repo, db Database, host string, tags ...string) (Summary, error) {
	bin, user := db.Bin, db.User
	if bin == "" {
		bin = "mariabackup"
	}
	if user == "" {
		user = "root"
	}
	if db.Desync {
		undo, err := desync(ctx, db.Socket)
		if err != nil {
			return Summary{}, err
		}
		defer undo()
	}
	tmp := db.TmpDir
	if tmp == "" {
		d, err := os.MkdirTemp("", "mariabackup-")
		if err != nil {
			return Summary{}, fmt.Errorf("backup: %w", err)
		}
		defer os.RemoveAll(d)
		tmp = d
	}
	cmd := child.Command(ctx, bin, "--backup", "--stream=xbstream", "--galera-info", "--socket="+db.Socket,
		"--user="+user, "--target-dir="+tmp)
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = pw, &errb
	if err := cmd.Start(); err != nil {
		return Summary{}, fmt.Errorf("backup: mariabackup: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err == nil && !strings.Contains(errb.String(), "completed OK!") {
			err = errors.New("it did not say completed OK")
		}
		pw.CloseWithError(err) // restic then fails, or ends the file where mariabackup ended
		done <- err
	}()
	sum, err := repo.backupStdin(ctx, pr, DatabaseFile, host, append([]string{TagDatabase}, tags...))
	pr.CloseWithError(errors.New("restic ended")) // mariabackup is not left blocked on a full pipe
	mbErr := <-done
	if mbErr != nil || err != nil {
		if sum.SnapshotID != "" {
			repo.Forget(context.WithoutCancel(ctx), sum.SnapshotID)
		}
		if mbErr != nil {
			return Summary{}, fmt.Errorf("backup: mariabackup: %w: %s", mbErr, lastLines(errb.String(), 3))
		}
		return Summary{}, fmt.Errorf("backup: %w", err)
	}
	return sum, nil
}

// desync sets wsrep_desync on the member unless it is on already, and returns what sets it back.
func desync(ctx context.Context, socket string) (func(), error) {
	db, err := galera.Open(socket)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var on bool
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.wsrep_desync").Scan(&on); err != nil {
		db.Close()
		return nil, fmt.Errorf("backup: wsrep_desync: %w", err)
	}
	if on {
		db.Close()
		return func() {}, nil
	}
	if _, err := db.ExecContext(ctx, "SET GLOBAL wsrep_desync = ON"); err != nil {
		db.Close()
		return nil, fmt.Errorf("backup: wsrep_desync: %w", err)
	}
	return func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "SET GLOBAL wsrep_desync = OFF")
	}, nil
}

// RestoreDatabase unpacks snapshot id's database copy into dir, which must be empty or missing, prepares it
// (mariabackup --prepare) and gives it to user (mysql). It returns the Galera position the copy is consistent with:
// dir is then a datadir that a new cluster bootstraps from at that position.
func RestoreDatabase(ctx context.Context, repo Repo, id, dir, user string) (galera.Position, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return galera.Position{}, fmt.Errorf("restore: %s is not empty: a restore never writes over a datadir", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return galera.Position{}, fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return galera.Position{}, fmt.Errorf("restore: %w", err)
	}
	x := child.Command(ctx, "mbstream", "-x", "-C", dir)
	in, err := x.StdinPipe()
	if err != nil {
		return galera.Position{}, fmt.Errorf("restore: %w", err)
	}
	var xerr bytes.Buffer
	x.Stderr = &xerr
	if err := x.Start(); err != nil {
		return galera.Position{}, fmt.Errorf("restore: mbstream: %w", err)
	}
	derr := repo.Dump(ctx, id, "/"+DatabaseFile, in)
	in.Close()
	if err := x.Wait(); err != nil || derr != nil {
		return galera.Position{}, fmt.Errorf("restore: unpacking snapshot %s: %w", id, errors.Join(derr, err, errors.New(lastLines(xerr.String(), 3))))
	}
	if out, err := child.Command(ctx, "mariabackup", "--prepare", "--target-dir="+dir).CombinedOutput(); err != nil {
		return galera.Position{}, fmt.Errorf("restore: mariabackup --prepare: %w: %s", err, lastLines(string(out), 3))
	}
	pos, err := galeraInfo(dir)
	if err != nil {
		return pos, err
	}
	uid, gid, err := galera.Owner(user)
	if err != nil {
		return pos, fmt.Errorf("restore: %w", err)
	}
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return pos, fmt.Errorf("restore: %w", err)
	}
	return pos, nil
}

// ReplaceNewDataDir gives a member that never joined a cluster the database of snapshot id: the copy is unpacked
// and prepared beside dir (dir + ".restore", on the same file system), and only then swapped in for dir, whose
// system tables (mariadb-install-db's, all a new member holds: the caller checked) are removed. A failed restore
// leaves dir as it was. It returns the copy's Galera position, which the new cluster bootstraps from.
func ReplaceNewDataDir(ctx context.Context, repo Repo, id, dir, user string) (galera.Position, error) {
	staging, old := dir+".restore", dir+".replaced"
	for _, d := range []string{staging, old} {
		if err := os.RemoveAll(d); err != nil {
			return galera.Position{}, fmt.Errorf("restore: a leftover of an earlier attempt: %w", err)
		}
	}
	pos, err := RestoreDatabase(ctx, repo, id, staging, user)
	if err != nil {
		os.RemoveAll(staging)
		return pos, err
	}
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return pos, fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(staging, dir); err != nil {
		return pos, fmt.Errorf("restore: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return pos, fmt.Errorf("restore: removing the new member's system tables: %w", err)
	}
	return pos, nil
}

// galeraInfo reads the position mariabackup --galera-info recorded: "uuid:seqno" (and on MariaDB with GTIDs more
// after a space).
func galeraInfo(dir string) (galera.Position, error) {
	b, err := os.ReadFile(filepath.Join(dir, "xtrabackup_galera_info"))
	if err != nil {
		return galera.Position{}, fmt.Errorf("restore: the copy holds no Galera position: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return galera.Position{}, errors.New("restore: xtrabackup_galera_info is empty")
	}
	uuid, seq, ok := strings.Cut(f[0], ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || len(uuid) != 36 {
		return galera.Position{}, fmt.Errorf("restore: xtrabackup_galera_info: %q is not uuid:seqno", f[0])
	}
	return galera.Position{UUID: uuid, Seqno: n}, nil
}
