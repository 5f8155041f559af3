// Package mailcowtree finds the source tree of mailcow-dockerized's release that imagebuild/manifest.toml pins (tag
// and commit), for the tests and the local image: the tarball in ../shared/mailcow/ next to the repository
// (machines without GitHub), or else a shallow clone of the tag. Either is checked against the pinned commit.
package mailcowtree

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

// Pin is the release the manifest pins.
type Pin struct {
	Repo   string `toml:"repo"`
	Tag    string `toml:"tag"`
	Commit string `toml:"commit"`
}

// ReadPin reads the [mailcow] table of top's imagebuild/manifest.toml.
func ReadPin(top string) (Pin, error) {
	var m struct {
		Mailcow Pin `toml:"mailcow"`
	}
	path := filepath.Join(top, "imagebuild", "manifest.toml")
	if _, err := toml.DecodeFile(path, &m); err != nil {
		return Pin{}, fmt.Errorf("mailcowtree: %w", err)
	}
	p := m.Mailcow
	if p.Repo == "" || p.Tag == "" || len(p.Commit) != 40 {
		return p, fmt.Errorf("mailcowtree: %s: mailcow.repo, mailcow.tag and mailcow.commit (40 hex digits) are required", path)
	}
	return p, nil
}

// Dir returns the directory of the pinned tree (mailcow-dockerized's top, with docker-compose.yml), extracted or
// cloned once into top/build/mailcow/<commit>/.
func Dir(ctx context.Context, top string) (string, error) {
	p, err := ReadPin(top)
	if err != nil {
		return "", err
	}
	base := filepath.Join(top, "build", "mailcow", p.Commit)
	dir := filepath.Join(base, "mailcow-dockerized")
	// One extraction at a time: make test runs packages that read the tree side by side, and two extractions
	// into the same temporary folder would mix.
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(base), ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("mailcowtree: lock: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "commit")); err == nil && strings.SplitN(string(b), "\n", 2)[0] == p.Commit {
		return dir, nil
	}
	os.RemoveAll(base)
	tmp := base + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	tarball := filepath.Join(top, "..", "shared", "mailcow", "mailcow-dockerized-"+p.Tag+".tar.gz")
	var how string
	if _, err := os.Stat(tarball); err == nil {
		if err := extract(tarball, p.Commit, tmp); err != nil {
			return "", fmt.Errorf("mailcowtree: %s: %w", tarball, err)
		}
		how = tarball
	} else {
		if err := clone(ctx, p, filepath.Join(tmp, "mailcow-dockerized")); err != nil {
			return "", fmt.Errorf("mailcowtree: %s is absent, and %w", tarball, err)
		}
		how = p.Repo
	}
	if err := os.WriteFile(filepath.Join(tmp, "commit"), []byte(p.Commit+"\n"+how+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, base); err != nil {
		return "", err
	}
	return dir, nil
}

// extract unpacks a `git archive` tarball after checking it against its SHA256SUMS and the commit id that git
// archive records in the tarball's global header.
func extract(tarball, commit, into string) error {
	sums, err := os.ReadFile(filepath.Join(filepath.Dir(tarball), "SHA256SUMS"))
	if err != nil {
		return err
	}
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if !strings.Contains(string(sums), sum+"  "+filepath.Base(tarball)) {
		return fmt.Errorf("its checksum %s is not in SHA256SUMS", sum)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	checked := false
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if hd.Typeflag == tar.TypeXGlobalHeader {
			if got := hd.PAXRecords["comment"]; got != commit {
				return fmt.Errorf("it holds commit %q, the manifest pins %s", got, commit)
			}
			checked = true
			continue
		}
		if !checked {
			return errors.New("it has no commit id (not made by git archive)")
		}
		name := filepath.Clean(hd.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("entry %q leaves the tree", hd.Name)
		}
		path := filepath.Join(into, name)
		switch hd.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			err = writeFile(path, tr, hd.FileInfo().Mode().Perm())
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(path), 0o755)
			err = os.Symlink(hd.Linkname, path)
		}
		if err != nil {
			return err
		}
	}
	if !checked {
		return errors.New("it is empty")
	}
	return nil
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// clone makes a shallow clone of the tag and checks it against the commit.
func clone(ctx context.Context, p Pin, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "clone", "--quiet", "--depth", "1", "--branch", p.Tag, p.Repo, dir)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git clone of %s at %s failed: %w: %s", p.Repo, p.Tag, err, strings.TrimSpace(string(out)))
	}
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return fmt.Errorf("git rev-parse: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != p.Commit {
		return fmt.Errorf("the clone of %s at %s is commit %s, the manifest pins %s", p.Repo, p.Tag, got, p.Commit)
	}
	return nil
}
