package release

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo makes a repository with two tags: r1, and r2 that changes a.txt, adds b.txt and makes run.sh executable.
func gitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write(t, filepath.Join(dir, "a.txt"), "one\n", 0o644)
	write(t, filepath.Join(dir, "data/conf/x.conf"), "x=1\n", 0o644)
	write(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\n", 0o644)
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	git("init", "-q", "-b", "master")
	git("add", ".")
	git("commit", "-q", "-m", "r1")
	git("tag", "r1")
	write(t, filepath.Join(dir, "a.txt"), "two\n", 0o644)
	write(t, filepath.Join(dir, "b.txt"), "new\n", 0o644)
	os.Chmod(filepath.Join(dir, "run.sh"), 0o755)
	git("add", ".")
	git("commit", "-q", "-m", "r2")
	git("tag", "r2")
	return dir
}

func write(t *testing.T, path, s string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}

func TestStageSwitchRevert(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: " + err.Error())
	}
	ctx := context.Background()
	repo := gitRepo(t)
	top := t.TempDir()
	tr := Tree{Dir: filepath.Join(top, "mailcow")}
	// The tree holds r1 with the node's own files: mailcow.conf and .env (the agent's), a file mailcow wrote.
	for path, s := range map[string]string{"a.txt": "one\n", "data/conf/x.conf": "x=1\n", "run.sh": "#!/bin/sh\n",
		"mailcow.conf": "MAILCOW_HOSTNAME=mx\n", "data/conf/user.conf": "mine\n"} {
		write(t, filepath.Join(tr.Dir, path), s, 0o644)
	}
	os.Symlink("a.txt", filepath.Join(tr.Dir, "link"))
	os.Symlink("mailcow.conf", filepath.Join(tr.Dir, ".env"))
	if err := WriteRecord(tr.Dir, Release{Tag: "r1", Commit: "c1"}); err != nil {
		t.Fatal(err)
	}
	var pulledIn string
	s := Stager{Tree: tr, Repo: repo,
		// The pull reads the node's settings in the staged tree.
		Pull: []string{"sh", "-c", "test -f mailcow.conf && test -L .env && pwd > " + filepath.Join(top, "pulled")},
		Missing: func(ctx context.Context, dir string) ([]string, error) {
			pulledIn = strings.TrimSpace(read(t, filepath.Join(top, "pulled")))
			if pulledIn != dir {
				return []string{"everything (pulled in " + pulledIn + ")"}, nil
			}
			return nil, nil
		}}

	for _, bad := range []string{"", "--upload-pack=touch /tmp/x", "a..b", "r 2"} {
		if _, err := s.Stage(ctx, bad, ""); err == nil {
			t.Errorf("Stage(%q): no error", bad)
		}
	}
	if _, err := s.Stage(ctx, "r2", strings.Repeat("0", 40)); err == nil || !strings.Contains(err.Error(), "was asked for") {
		t.Errorf("Stage with another commit: %v, want a refusal", err)
	}
	if _, err := s.Stage(ctx, "nope", ""); err == nil {
		t.Error("Stage of a tag that does not exist: no error")
	}
	r, err := s.Stage(ctx, "r2", "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Tag != "r2" || len(r.Commit) != 40 {
		t.Fatalf("staged %+v", r)
	}
	if got, _ := tr.Staged(); got != r {
		t.Errorf("Staged() = %+v, want %+v", got, r)
	}
	if got, _ := tr.Current(); got.Tag != "r1" {
		t.Errorf("staging changed the tree's release: %+v", got)
	}
	if read(t, filepath.Join(tr.Dir, "a.txt")) != "one\n" {
		t.Error("staging changed the tree")
	}
	if _, err := os.Stat(filepath.Join(tr.Next(), ".git")); err == nil {
		t.Error("the staged tree kept .git")
	}
	if _, err := os.Lstat(filepath.Join(tr.Next(), "mailcow.conf")); err == nil {
		t.Error("the staged tree kept a copy of mailcow.conf after the pull")
	}
	s.Missing = func(context.Context, string) ([]string, error) { return []string{"ghcr.io/mailcow/x:1"}, nil }
	if _, err := s.Stage(ctx, "r2", ""); err == nil || !strings.Contains(err.Error(), "ghcr.io/mailcow/x:1") {
		t.Errorf("Stage with an image missing: %v", err)
	}
	if got, _ := tr.Staged(); got != r {
		t.Errorf("a failed stage replaced the staged release: %+v", got)
	}

	if _, err := tr.Switch("r3"); err == nil {
		t.Error("Switch to a release not staged: no error")
	}
	before, err := tr.Switch("r2")
	if err != nil {
		t.Fatal(err)
	}
	if before.Tag != "r1" {
		t.Errorf("Switch returned %+v, want r1", before)
	}
	for path, want := range map[string]string{"a.txt": "two\n", "b.txt": "new\n", "mailcow.conf": "MAILCOW_HOSTNAME=mx\n",
		"data/conf/user.conf": "mine\n", "data/conf/x.conf": "x=1\n", ".env": "MAILCOW_HOSTNAME=mx\n"} {
		if got := read(t, filepath.Join(tr.Dir, path)); got != want {
			t.Errorf("after the switch, %s = %q, want %q", path, got, want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(tr.Dir, "run.sh")); fi == nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh's mode was not taken: %v", fi)
	}
	if got, _ := tr.Current(); got != r {
		t.Errorf("Current() = %+v after the switch, want %+v", got, r)
	}
	if again, err := tr.Switch("r2"); err != nil || again != r {
		t.Errorf("a second switch: %+v, %v", again, err)
	}

	back, err := tr.Revert()
	if err != nil {
		t.Fatal(err)
	}
	if back.Tag != "r1" {
		t.Errorf("Revert returned %+v", back)
	}
	for path, want := range map[string]string{"a.txt": "one\n", "mailcow.conf": "MAILCOW_HOSTNAME=mx\n", "data/conf/user.conf": "mine\n"} {
		if got := read(t, filepath.Join(tr.Dir, path)); got != want {
			t.Errorf("after the revert, %s = %q, want %q", path, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(tr.Dir, "b.txt")); err == nil {
		t.Error("the revert left b.txt, which the switch added")
	}
	if fi, _ := os.Stat(filepath.Join(tr.Dir, "run.sh")); fi == nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("run.sh's mode was not put back: %v", fi)
	}
	if got, _ := tr.Current(); got.Tag != "r1" {
		t.Errorf("Current() = %+v after the revert", got)
	}
}

// With the tree's manifest (the image writes it), a file whose hash is the same in both releases is not compared
// or written: a local edit of it stays, as a merge would keep it. The manifest follows the switch and its revert.
func TestSwitchWithManifest(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: " + err.Error())
	}
	ctx := context.Background()
	repo := gitRepo(t)
	tr := Tree{Dir: filepath.Join(t.TempDir(), "mailcow")}
	for path, s := range map[string]string{"a.txt": "one\n", "data/conf/x.conf": "x=1\n", "run.sh": "#!/bin/sh\n"} {
		write(t, filepath.Join(tr.Dir, path), s, 0o644)
	}
	os.Symlink("a.txt", filepath.Join(tr.Dir, "link"))
	WriteRecord(tr.Dir, Release{Tag: "r1", Commit: "c1"})
	if err := WriteManifest(tr.Dir, nil); err != nil {
		t.Fatal(err)
	}
	m, err := readManifest(tr.Dir)
	if err != nil || len(m.paths) != 4 || m.sums["link"] != "-" || len(m.sums["a.txt"]) != 64 {
		t.Fatalf("the image's manifest: %+v %v", m, err)
	}
	write(t, filepath.Join(tr.Dir, "data/conf/x.conf"), "x=local\n", 0o644) // an edit after the image was made
	if _, err := (Stager{Tree: tr, Repo: repo}).Stage(ctx, "r2", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Switch("r2"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(tr.Dir, "data/conf/x.conf")); got != "x=local\n" {
		t.Errorf("a file the release did not change was written over: %q", got)
	}
	if got := read(t, filepath.Join(tr.Dir, "a.txt")); got != "two\n" {
		t.Errorf("a.txt = %q after the switch", got)
	}
	if got, _ := readManifest(tr.Dir); got.sums["b.txt"] == "" {
		t.Errorf("the tree's manifest is not the release's after the switch: %v", got.paths)
	}
	if _, err := tr.Revert(); err != nil {
		t.Fatal(err)
	}
	if got, _ := readManifest(tr.Dir); got.sums["b.txt"] != "" || len(got.paths) != 4 {
		t.Errorf("the revert did not put the manifest back: %v", got.paths)
	}
}
