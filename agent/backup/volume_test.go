package backup

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// testRepo is a new restic repository in a test's directory.
func testRepo(t *testing.T) Repo {
	t.Helper()
	if _, err := exec.LookPath("restic"); err != nil {
		t.Skip("restic is not installed (Debian package restic; make deps installs it)")
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := config.WriteSecret(pw, "0c4f1a9e7b2d5c8f3e6a1d4b7c0f2e5a"); err != nil {
		t.Fatal(err)
	}
	repo := Repo{Location: filepath.Join(dir, "repo"), PasswordFile: pw, CacheDir: filepath.Join(dir, "cache")}
	if err := repo.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return repo
}

// deliver writes a message into a Maildir as a delivery does (tmp/, then renamed into new/).
func deliver(t *testing.T, maildir, name, body string) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o700); err != nil {
			t.Error(err)
			return
		}
	}
	tmp := filepath.Join(maildir, "tmp", name)
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(maildir, "new", name)); err != nil {
		t.Error(err)
	}
}

// TestVolumeBackupWhileMailFlows copies a Volume while messages arrive and are read (renamed from new/ to cur/ with
// flags): every message that was there when the copy began is in the snapshot, and a restore into an empty
// directory gives them back byte for byte. A restore of one mailbox into the live Volume puts back what was deleted
// and leaves what is there.
func TestVolumeBackupWhileMailFlows(t *testing.T) {
	repo := testRepo(t)
	ctx := context.Background()
	mount := t.TempDir()
	box := filepath.Join(mount, "vmail", "example.org", "alice", "Maildir")
	other := filepath.Join(mount, "vmail", "example.org", "bob", "Maildir")
	const initial = 3000
	for i := 0; i < initial; i++ {
		deliver(t, box, fmt.Sprintf("%d.M%dP1.node1", 1700000000+i, i), fmt.Sprintf("Message-ID: <m%d@lab>\r\n\r\n%s\r\n", i, body(i)))
	}
	deliver(t, other, "1.M1P1.node1", "Message-ID: <b1@lab>\r\n\r\nhi bob\r\n")
	deliver(t, filepath.Join(box, ".Archive"), "1600000000.M1P1.node1", "Message-ID: <a1@lab>\r\n\r\narchived\r\n")
	for _, d := range []string{"redis", "crypt", "postfix/deferred/A"} {
		if err := os.MkdirAll(filepath.Join(mount, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mount, "redis", "dump.rdb"), []byte("REDIS0011"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mount, "crypt", "ecprivkey.pem"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := Messages(mount)
	if err != nil || len(before) != initial+2 {
		t.Fatalf("Messages: %d, %v", len(before), err)
	}

	// While it copies: new mail arrives, and a reader flags messages (new/ → cur/ with ":2,S").
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var delivered, read atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			deliver(t, box, fmt.Sprintf("%d.M%dP2.node1", 1800000000+i, i), "Message-ID: <new@lab>\r\n\r\nnew\r\n")
			delivered.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < initial; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("%d.M%dP1.node1", 1700000000+i, i)
			if os.Rename(filepath.Join(box, "new", name), filepath.Join(box, "cur", name+":2,S")) == nil {
				read.Add(1)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	t0 := time.Now()
	sum, err := BackupVolume(ctx, repo, Volume{Mount: mount, Dirs: []string{"vmail", "redis", "crypt", "postfix", "rspamd"}}, "node1", "cluster=test")
	took := time.Since(t0)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("volume copy while mail flowed: %d passes, %d messages, %d files, %.1f MB read, %.1f MB added, %s; meanwhile %d delivered, %d flagged",
		sum.Passes, sum.Messages, sum.FilesNew+sum.FilesChanged, float64(sum.BytesProcessed)/1e6, float64(sum.DataAdded)/1e6, took.Round(10*time.Millisecond), delivered.Load(), read.Load())
	held, err := repo.messagesIn(ctx, sum.SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	for k := range before {
		if !held[k] {
			t.Errorf("the snapshot lacks %s, which was there before the copy began", k)
		}
	}
	snaps, err := repo.Snapshots(ctx, TagVolume)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("want one volume snapshot, got %d (%v)", len(snaps), err)
	}

	// A second copy of an unchanged Volume adds little.
	sum2, err := BackupVolume(ctx, repo, Volume{Mount: mount, Dirs: []string{"vmail", "redis", "crypt", "postfix"}}, "node1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second copy: %.1f MB read, %.3f MB added, %.2f s", float64(sum2.BytesProcessed)/1e6, float64(sum2.DataAdded)/1e6, sum2.Duration)
	if sum2.DataAdded > sum.DataAdded/4 {
		t.Errorf("the second copy added %d bytes of %d: restic did not deduplicate", sum2.DataAdded, sum.DataAdded)
	}

	// The whole Volume into an empty one; a non-empty target is refused.
	if err := RestoreVolume(ctx, repo, sum.SnapshotID, mount); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a restore over the live Volume: %v", err)
	}
	target := t.TempDir()
	if err := os.Mkdir(filepath.Join(target, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := RestoreVolume(ctx, repo, sum.SnapshotID, target); err != nil {
		t.Fatal(err)
	}
	t.Logf("whole restore: %s", time.Since(t1).Round(10*time.Millisecond))
	restored, err := Messages(target)
	if err != nil {
		t.Fatal(err)
	}
	for k := range before {
		if !restored[k] {
			t.Errorf("the restored Volume lacks %s", k)
		}
	}
	if b, err := os.ReadFile(filepath.Join(target, "crypt", "ecprivkey.pem")); err != nil || string(b) != "key" {
		t.Errorf("crypt/ecprivkey.pem after the restore: %q %v", b, err)
	}

	// One mailbox: alice loses her INBOX's cur/ and her Archive folder; bob is untouched. The restore gives back
	// what was lost and keeps the mail that came after the copy.
	if err := os.RemoveAll(filepath.Join(box, "cur")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(box, ".Archive")); err != nil {
		t.Fatal(err)
	}
	deliver(t, box, "1900000000.M1P3.node1", "Message-ID: <after@lab>\r\n\r\nafter the copy\r\n")
	lost, _ := Messages(mount)
	r, err := RestoreMailbox(ctx, repo, sum.SnapshotID, mount, "Alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mailbox restore: %d restored, %d still present", r.Restored, r.Present)
	now, err := Messages(mount)
	if err != nil {
		t.Fatal(err)
	}
	for k := range before {
		if !now[k] {
			t.Errorf("after the mailbox's restore it lacks %s", k)
		}
	}
	if !now["example.org/alice/1900000000.M1P3.node1"] {
		t.Error("the mailbox's restore lost the message that arrived after the copy")
	}
	if r.Restored != len(now)-len(lost) || r.Restored < initial/2 {
		t.Errorf("restored %d, the mailbox went from %d to %d messages", r.Restored, len(lost), len(now))
	}
	if fi, err := os.Stat(filepath.Join(box, ".Archive", "cur")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the Archive folder after the restore: %v %v", fi, err)
	}
	again, err := RestoreMailbox(ctx, repo, sum.SnapshotID, mount, "alice@example.org")
	if err != nil || again.Restored != 0 {
		t.Errorf("a second restore of the mailbox: %+v %v", again, err)
	}
	if _, err := RestoreMailbox(ctx, repo, sum.SnapshotID, mount, "../x@example.org"); err == nil {
		t.Error("an address that leaves vmail was taken")
	}
	if _, err := RestoreMailbox(ctx, repo, sum.SnapshotID, mount, "nobody@example.org"); err == nil || !strings.Contains(err.Error(), "holds no mailbox") {
		t.Errorf("a mailbox the snapshot does not hold: %v", err)
	}
	ents, _ := os.ReadDir(mount)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".restore-") {
			t.Errorf("the restore left %s", e.Name())
		}
	}
}

// body is a message's text of about 4 KB, different for each i (a mail server's messages do not deduplicate).
func body(i int) string {
	r := rand.New(rand.NewPCG(uint64(i), 1))
	b := make([]byte, 3*1024)
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestMessageKey(t *testing.T) {
	for p, want := range map[string]string{
		"/vmail/ex.org/al/Maildir/new/1.M2.h":           "ex.org/al/1.M2.h",
		"/vmail/ex.org/al/Maildir/cur/1.M2.h:2,RS":      "ex.org/al/1.M2.h",
		"/vmail/ex.org/al/Maildir/.Sent/cur/9.M1.h:2,S": "ex.org/al/9.M1.h",
		"/vmail/ex.org/al/Maildir/tmp/1.M2.h":           "",
		"/vmail/ex.org/al/Maildir/dovecot-uidlist":      "",
		"/postfix/deferred/A/ABC123":                    "",
		"vmail/ex.org/al/Maildir/new/x":                 "ex.org/al/x",
	} {
		if got, _ := messageKey(p); got != want {
			t.Errorf("messageKey(%q) = %q, want %q", p, got, want)
		}
	}
}
