package mailcowtree

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A tree made by git archive, as ../shared/mailcow holds it: extracted once, checked against SHA256SUMS and the
// commit id in the tarball; a tarball of another commit, or one whose checksum is not listed, is refused.
func TestDirFromTarball(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git to make a tarball as git archive does")
	}
	root := t.TempDir()
	src := filepath.Join(root, "src")
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	os.MkdirAll(filepath.Join(src, "data"), 0o755)
	os.WriteFile(filepath.Join(src, "docker-compose.yml"), []byte("services: {}\n"), 0o644)
	os.WriteFile(filepath.Join(src, "data", "x"), []byte("x"), 0o644)
	run(src, "init", "-q")
	run(src, "add", ".")
	run(src, "commit", "-qm", "r")
	run(src, "tag", "r1")
	commit := run(src, "rev-parse", "HEAD")
	top := filepath.Join(root, "main")
	shared := filepath.Join(root, "shared", "mailcow")
	os.MkdirAll(filepath.Join(top, "imagebuild"), 0o755)
	os.MkdirAll(shared, 0o755)
	tarball := filepath.Join(shared, "mailcow-dockerized-r1.tar.gz")
	run(src, "archive", "--format=tar.gz", "--prefix=mailcow-dockerized/", "-o", tarball, "r1")
	b, _ := os.ReadFile(tarball)
	sum := sha256.Sum256(b)
	os.WriteFile(filepath.Join(shared, "SHA256SUMS"), []byte(hex.EncodeToString(sum[:])+"  mailcow-dockerized-r1.tar.gz\n"), 0o644)
	pin := func(c string) {
		os.WriteFile(filepath.Join(top, "imagebuild", "manifest.toml"),
			[]byte("[mailcow]\nrepo = \"https://example.invalid/mailcow.git\"\ntag = \"r1\"\ncommit = \""+c+"\"\n"), 0o644)
	}
	pin(commit)
	// Packages that read the tree run side by side in make test: first calls at the same time each get the whole
	// tree (without the lock they extracted into one temporary folder, and one removed it under the other).
	var wg sync.WaitGroup
	dirs, errs := make([]string, 4), make([]error, 4)
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = Dir(context.Background(), top) })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("concurrent call %d: %q %v", i, dirs[i], errs[i])
		}
	}
	dir, err := Dir(context.Background(), top)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml")); err != nil || string(b) != "services: {}\n" {
		t.Fatalf("docker-compose.yml: %q %v", b, err)
	}
	// Extracted once: a second call reuses the tree.
	os.WriteFile(filepath.Join(dir, "kept"), nil, 0o644)
	if again, err := Dir(context.Background(), top); err != nil || again != dir {
		t.Fatalf("second call: %q %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kept")); err != nil {
		t.Errorf("the tree was extracted again: %v", err)
	}
	// Another pin: the same tarball holds another commit.
	pin(strings.Repeat("0", 40))
	if _, err := Dir(context.Background(), top); err == nil || !strings.Contains(err.Error(), commit) {
		t.Errorf("a tarball of another commit: %v", err)
	}
	// A checksum that SHA256SUMS does not list.
	pin(commit)
	os.RemoveAll(filepath.Join(top, "build"))
	os.WriteFile(filepath.Join(shared, "SHA256SUMS"), []byte(strings.Repeat("1", 64)+"  mailcow-dockerized-r1.tar.gz\n"), 0o644)
	if _, err := Dir(context.Background(), top); err == nil || !strings.Contains(err.Error(), "SHA256SUMS") {
		t.Errorf("an unlisted checksum: %v", err)
	}
	// No tarball and a clone that cannot be made: the error says both.
	os.Remove(tarball)
	if _, err := Dir(context.Background(), top); err == nil || !strings.Contains(err.Error(), "is absent") || !strings.Contains(err.Error(), "git clone") {
		t.Errorf("no tarball, no clone: %v", err)
	}
}

// The manifest's pin is complete.
func TestReadPin(t *testing.T) {
	p, err := ReadPin("..")
	if err != nil {
		t.Fatal(err)
	}
	if p.Tag == "" || len(p.Commit) != 40 {
		t.Fatalf("%+v", p)
	}
}
