package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// Stager stages a release beside a tree, while the node goes on serving: a clone of the tag, the tree's own
// files beside it (mailcow.conf, .env and the override: the pull reads them), then its images pulled and checked.
type Stager struct {
	Tree Tree
	// Repo is mailcow's git repository (mailcow.repo).
	Repo string
	// Pull fetches the staged tree's images (mailcow.pull_command, run in the staged tree); empty: none.
	Pull []string
	// Missing lists the images the staged tree's compose file names that the node does not hold (nil: no check).
	Missing func(ctx context.Context, dir string) ([]string, error)
	Log     *slog.Logger
}

// CheckTag refuses a tag that git would read as something else (an option, a range, a path outside refs/tags).
func CheckTag(tag string) error {
	switch {
	case tag == "":
		return errors.New("the release tag is empty")
	case strings.HasPrefix(tag, "-") || strings.HasPrefix(tag, "."):
		return fmt.Errorf("release tag %q: must not start with a dash or a dot", tag)
	case strings.ContainsAny(tag, " \t\n~^:?*[\\") || strings.Contains(tag, ".."):
		return fmt.Errorf("release tag %q: not a git tag name", tag)
	}
	return nil
}

// Stage clones tag from the repository into Tree.Next (replacing what was staged there), pulls its images and
// checks that the node holds all of them. With commit set, the tag must name that commit (a tag moved upstream is
// a release nobody reviewed).
func (s Stager) Stage(ctx context.Context, tag, commit string) (Release, error) {
	if err := CheckTag(tag); err != nil {
		return Release{}, fmt.Errorf("release: %w", err)
	}
	next := s.Tree.Next()
	tmp := next + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return Release{}, fmt.Errorf("release: %w", err)
	}
	defer os.RemoveAll(tmp)
	begin := s.log()
	begin.Info("staging a mailcow release", "tag", tag, "repo", s.Repo)
	if _, err := run(ctx, "", "git", "clone", "--quiet", "--depth", "1", "--single-branch", "--branch", tag, "--", s.Repo, tmp); err != nil {
		return Release{}, err
	}
	head, err := run(ctx, tmp, "git", "rev-parse", "HEAD")
	if err != nil {
		return Release{}, err
	}
	r := Release{Tag: tag, Commit: strings.TrimSpace(head)}
	if commit != "" && r.Commit != commit {
		return r, fmt.Errorf("release: %s is at commit %s in %s, and %s was asked for", tag, r.Commit, s.Repo, commit)
	}
	list, err := run(ctx, tmp, "git", "ls-files", "-z")
	if err != nil {
		return r, err
	}
	names := strings.Split(strings.TrimRight(list, "\x00"), "\x00")
	if err := os.RemoveAll(filepath.Join(tmp, ".git")); err != nil {
		return r, fmt.Errorf("release: %w", err)
	}
	if err := WriteManifest(tmp, names); err != nil {
		return r, err
	}
	own, err := s.copyOwn(tmp, names)
	if err != nil {
		return r, err
	}
	if err := WriteRecord(tmp, r); err != nil {
		return r, err
	}
	if len(s.Pull) > 0 {
		if _, err := run(ctx, tmp, s.Pull[0], s.Pull[1:]...); err != nil {
			return r, fmt.Errorf("release: pulling %s's images: %w", tag, err)
		}
	}
	if s.Missing != nil {
		missing, err := s.Missing(ctx, tmp)
		if err != nil {
			return r, fmt.Errorf("release: %s's images: %w", tag, err)
		}
		if len(missing) > 0 {
			return r, fmt.Errorf("release: %s: images missing after the pull: %s", tag, strings.Join(missing, ", "))
		}
	}
	// The node's own files were there for the pull only: no copy of mailcow.conf (0600, with the database
	// password) stays beside the tree.
	for _, n := range own {
		if err := os.Remove(filepath.Join(tmp, n)); err != nil {
			return r, fmt.Errorf("release: %w", err)
		}
	}
	if err := os.RemoveAll(next); err != nil {
		return r, fmt.Errorf("release: %w", err)
	}
	if err := os.Rename(tmp, next); err != nil {
		return r, fmt.Errorf("release: %w", err)
	}
	begin.Info("mailcow release staged", "release", r.String(), "dir", next)
	return r, nil
}

// copyOwn copies the tree's top-level files that are not the release's (mailcow.conf, .env, the override) into
// the staged tree, so that its compose reads the node's settings; it returns their names.
func (s Stager) copyOwn(dst string, names []string) ([]string, error) {
	ours := map[string]bool{}
	for _, n := range names {
		ours[n] = true
	}
	es, err := os.ReadDir(s.Tree.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no tree yet: nothing of its own
	}
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	var own []string
	for _, e := range es {
		n := e.Name()
		if ours[n] || n == RecordFile || n == ManifestFile || e.IsDir() {
			continue
		}
		if err := copyPath(filepath.Join(s.Tree.Dir, n), filepath.Join(dst, n)); err != nil {
			return own, err
		}
		own = append(own, n)
	}
	return own, nil
}

func (s Stager) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// run runs a command in dir and returns its standard output; a failure carries the end of its output.
func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := child.Command(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("release: %s %s: %w: %s", name, strings.Join(args, " "), err, tail.Bytes(stderr.String()+string(out), 800))
	}
	return string(out), nil
}
