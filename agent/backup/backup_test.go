package backup

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// member is a one-member Galera cluster on loopback: real mariadbd with galera-4, as on a node.
type member struct {
	dir, sock string
	srv       *galera.Server
}

func startMember(t *testing.T, name, dataDir string, port int, bootstrap bool, from galera.Position) *member {
	t.Helper()
	m := &member{dir: filepath.Dir(dataDir), sock: filepath.Join(filepath.Dir(dataDir), name+".sock")}
	conf, err := galera.Render(galera.Spec{ClusterName: "bk", NodeName: name, NodeIP: "127.0.0.1", Members: []string{"127.0.0.1"},
		DataDir: dataDir, Socket: m.sock, PidFile: filepath.Join(m.dir, name+".pid"), ErrorLog: filepath.Join(m.dir, name+".err"),
		Port: port, GroupPort: port + 1, ISTPort: port + 2, SSTPort: port + 3, SSTMethod: "rsync", User: "mysql"})
	if err != nil {
		t.Fatal(err)
	}
	cnf := filepath.Join(m.dir, name+".cnf")
	if err := os.WriteFile(cnf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	m.srv = &galera.Server{DefaultsFile: cnf, DataDir: dataDir}
	if err := m.srv.InitDataDir(context.Background(), "mysql"); err != nil {
		t.Fatal(err)
	}
	if err := m.srv.Start(bootstrap, from); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.srv.Stop(30 * time.Second) })
	deadline := time.Now().Add(90 * time.Second)
	for {
		if st, err := m.status(); err == nil && st.PrimarySynced() {
			return m
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(m.dir, name+".err"))
			t.Fatalf("%s did not come up Synced:\n%s", name, tail.Bytes(string(b), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *member) status() (galera.Status, error) {
	db, err := galera.Open(m.sock)
	if err != nil {
		return galera.Status{}, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return galera.Query(ctx, db)
}

func (m *member) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	db, err := galera.Open(m.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (m *member) count(t *testing.T) int {
	t.Helper()
	db, err := galera.Open(m.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM mailcow.mail").Scan(&n); err != nil && err != sql.ErrNoRows {
		t.Fatal(err)
	}
	return n
}

// A hot copy of a serving Galera member goes into a restic repository and comes out as a datadir that a new cluster
// bootstraps from at the copy's position, with every row. The second copy adds only what changed; a copy that
// mariabackup cannot make leaves no snapshot; a restore never writes into a datadir that has files.
func TestDatabaseBackupAndRestore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mariadbd runs as mysql, and mariabackup reads its datadir")
	}
	for _, bin := range []string{"mariadbd", "mariadb-install-db", "mariabackup", "mbstream", "restic"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (Debian packages mariadb-server, mariadb-backup, restic; make deps installs them)", bin)
		}
	}
	if _, err := os.Stat(galera.Provider); err != nil {
		t.Skip("galera-4 is not installed (make deps installs it)")
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o755)
	}
	if out, err := exec.Command("chown", "mysql:mysql", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	ctx := context.Background()
	a := startMember(t, "db1", filepath.Join(dir, "data1"), 24306, true, galera.Position{})
	a.exec(t, "CREATE DATABASE mailcow")
	a.exec(t, "CREATE TABLE mailcow.mail (id INT PRIMARY KEY, body TEXT)")
	insert := func(from, to int) {
		for i := from; i < to; i++ {
			a.exec(t, "INSERT INTO mailcow.mail VALUES (?, ?)", i, strings.Repeat(fmt.Sprintf("mail %d ", i), 200))
		}
	}
	insert(0, 50)

	pw := filepath.Join(dir, "restic.pw")
	if err := config.WriteSecret(pw, "7f3a9c2e5b1d8f4a6c0e2b9d7f5a3c1e"); err != nil {
		t.Fatal(err)
	}
	repo := Repo{Location: filepath.Join(dir, "repo"), PasswordFile: pw, CacheDir: filepath.Join(dir, "cache")}
	for range 2 {
		if err := repo.Init(ctx); err != nil {
			t.Fatalf("init: %v", err)
		}
	}
	t0 := time.Now()
	first, err := BackupDatabase(ctx, repo, Database{Socket: a.sock}, "db1", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first copy: %d bytes read, %d added, in %s", first.BytesProcessed, first.DataAdded, time.Since(t0).Round(10*time.Millisecond))
	insert(50, 100)
	before, err := a.status()
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	second, err := BackupDatabase(ctx, repo, Database{Socket: a.sock, Desync: true}, "db1", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.status(); err != nil || st.LocalState != "Synced" {
		t.Errorf("after a copy with Desync the member is %q (%v), want Synced again", st.LocalState, err)
	}
	t.Logf("second copy: %d bytes read, %d added, in %s", second.BytesProcessed, second.DataAdded, time.Since(t1).Round(10*time.Millisecond))
	if second.DataAdded <= 0 || second.DataAdded*2 > second.BytesProcessed {
		t.Errorf("the second copy added %d of %d bytes: not incremental", second.DataAdded, second.BytesProcessed)
	}
	if _, err := BackupDatabase(ctx, repo, Database{Socket: filepath.Join(dir, "none.sock")}, "db1"); err == nil {
		t.Error("a copy of a database that is not there succeeded")
	}
	snaps, err := repo.Snapshots(ctx, TagDatabase)
	if err != nil || len(snaps) != 2 || !strings.HasPrefix(snaps[1].ID, second.SnapshotID) || snaps[1].Hostname != "db1" {
		t.Fatalf("snapshots: %+v %v (want the two copies, the failed one left none)", snaps, err)
	}

	os.MkdirAll(filepath.Join(dir, "busy"), 0o755)
	os.WriteFile(filepath.Join(dir, "busy", "ibdata1"), []byte("data"), 0o644)
	if _, err := RestoreDatabase(ctx, repo, second.SnapshotID, filepath.Join(dir, "busy"), "mysql"); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a restore into a datadir with files: %v", err)
	}
	t2 := time.Now()
	restored := filepath.Join(dir, "data2")
	pos, err := RestoreDatabase(ctx, repo, second.SnapshotID, restored, "mysql")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored and prepared in %s at %s", time.Since(t2).Round(10*time.Millisecond), pos)
	if pos.UUID != before.StateUUID || pos.Seqno != before.LastCommitted {
		t.Errorf("the copy's position %s, want the member's %s:%d when it was taken", pos, before.StateUUID, before.LastCommitted)
	}
	if b, _ := os.ReadFile(filepath.Join(restored, "ibdata1")); len(b) == 0 {
		t.Fatal("the restored datadir has no ibdata1")
	}
	a.srv.Stop(30 * time.Second)
	if err := (&galera.Server{DataDir: restored}).MarkSafeToBootstrap(pos); err != nil {
		t.Fatal(err)
	}
	b := startMember(t, "db2", restored, 24316, true, pos)
	if n := b.count(t); n != 100 {
		t.Errorf("the restored cluster holds %d rows, want 100", n)
	}
	if st, err := b.status(); err != nil || st.StateUUID != pos.UUID || st.LastCommitted < pos.Seqno {
		t.Errorf("the restored cluster's history: %+v %v, want it to go on from %s", st, err, pos)
	}
	if err := repo.Check(ctx, "100%"); err != nil {
		t.Errorf("check: %v", err)
	}

	// A new member's datadir (system tables only) replaced by the newest copy, as a cluster made from a backup
	// does: a failed restore leaves it as it was; a good one swaps it in whole, with nothing left beside it.
	fresh := filepath.Join(dir, "fresh")
	os.MkdirAll(filepath.Join(fresh, "mysql"), 0o750)
	os.WriteFile(filepath.Join(fresh, "mysql", "new-member-only"), []byte("system tables"), 0o640)
	if _, err := ReplaceNewDataDir(ctx, repo, "0000000000000000000000000000000000000000000000000000000000000000", fresh, "mysql"); err == nil {
		t.Error("a restore of a snapshot that is not there succeeded")
	} else if b, _ := os.ReadFile(filepath.Join(fresh, "mysql", "new-member-only")); string(b) != "system tables" {
		t.Errorf("a failed restore changed the datadir: %v", err)
	}
	latest, err := repo.Latest(ctx, TagDatabase, "nightly")
	if err != nil || !strings.HasPrefix(latest.ID, second.SnapshotID) {
		t.Fatalf("Latest: %+v %v, want the second copy %s", latest, err, second.SnapshotID)
	}
	if _, err := repo.Latest(ctx, TagDatabase, "cluster=none"); err == nil {
		t.Error("Latest of a tag that no snapshot carries succeeded")
	}
	rpos, err := ReplaceNewDataDir(ctx, repo, latest.ID, fresh, "mysql")
	if err != nil || rpos != pos {
		t.Fatalf("ReplaceNewDataDir: %s %v, want %s", rpos, err, pos)
	}
	if _, err := os.Stat(filepath.Join(fresh, "mysql", "new-member-only")); err == nil {
		t.Error("the new member's system tables are still there")
	}
	if b, _ := os.ReadFile(filepath.Join(fresh, "ibdata1")); len(b) == 0 {
		t.Error("the replaced datadir has no ibdata1")
	}
	for _, side := range []string{fresh + ".restore", fresh + ".replaced"} {
		if _, err := os.Stat(side); err == nil {
			t.Errorf("%s is left beside the datadir", side)
		}
	}
}
