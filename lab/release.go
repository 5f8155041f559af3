package lab

// The lab's mailcow releases: a git repository that stands for mailcow-dockerized's. Its first tag is the release
// tree the lab was given (Options.MailcowTree), which every node's mailcow directory holds from the start, as the
// appliance image carries it; PublishRelease adds a release, and the nodes stage from the repository (their
// mailcow.repo) with `mailcow-ha mailcow update`.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/mailcow-ha/mailcow-ha/agent/release"
)

// ReleaseRepo is the lab's mailcow repository ("" when the lab was given no release tree).
func (l *Lab) ReleaseRepo() string {
	if l.o.MailcowTree == "" {
		return ""
	}
	return filepath.Join(l.o.Dir, "mailcow-repo")
}

// ImageRelease is the release every node's tree holds from the start (zero without a release tree).
func (l *Lab) ImageRelease() release.Release { return l.imageRelease }

// makeReleaseRepo makes the repository from the release tree, tagged Options.MailcowTag.
func (l *Lab) makeReleaseRepo(ctx context.Context) error {
	repo := l.ReleaseRepo()
	if repo == "" {
		return nil
	}
	if l.o.MailcowTag == "" {
		return fmt.Errorf("lab: Options.MailcowTree without Options.MailcowTag")
	}
	// A lab built again in its directory (a scenario's rebuild, the restore scenario's new cluster) starts from the
	// first release again: the repository an earlier lab made, with its tags, goes.
	if err := os.RemoveAll(repo); err != nil {
		return err
	}
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "sh", "-c", `tar -C "$1" --exclude=./.git -cf - . | tar -C "$2" -xf -`, "sh", l.o.MailcowTree, repo).CombinedOutput(); err != nil {
		return fmt.Errorf("lab: copying the release tree: %w: %s", err, out)
	}
	if _, err := l.git(ctx, "init", "-q", "-b", "master"); err != nil {
		return err
	}
	r, err := l.commitRelease(ctx, l.o.MailcowTag)
	l.imageRelease = r
	return err
}

// PublishRelease changes the repository's tree with edit, commits it and tags it tag: a new mailcow release.
func (l *Lab) PublishRelease(ctx context.Context, tag string, edit func(tree string) error) (release.Release, error) {
	if l.ReleaseRepo() == "" {
		return release.Release{}, fmt.Errorf("lab: no release repository (the lab was given no release tree)")
	}
	if err := edit(l.ReleaseRepo()); err != nil {
		return release.Release{}, err
	}
	return l.commitRelease(ctx, tag)
}

func (l *Lab) commitRelease(ctx context.Context, tag string) (release.Release, error) {
	if _, err := l.git(ctx, "add", "-A"); err != nil {
		return release.Release{}, err
	}
	if _, err := l.git(ctx, "commit", "-q", "--allow-empty", "-m", "release "+tag); err != nil {
		return release.Release{}, err
	}
	if _, err := l.git(ctx, "tag", tag); err != nil {
		return release.Release{}, err
	}
	head, err := l.git(ctx, "rev-parse", "HEAD")
	return release.Release{Tag: tag, Commit: strings.TrimSpace(head)}, err
}

func (l *Lab) git(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "user.name=mailcow-ha lab", "-c", "user.email=lab@lab.invalid",
		"-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
	cmd.Dir = l.ReleaseRepo()
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return "", fmt.Errorf("lab: git %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return string(out), nil
}

// seedTree puts the image's release into a node's mailcow directory, as the appliance image carries it (a tree
// that records a release already is left alone).
func (l *Lab) seedTree(dir string) error {
	if l.imageRelease.Tag == "" {
		return nil
	}
	if r, err := (release.Tree{Dir: dir}).Current(); err != nil || r.Tag != "" {
		return err
	}
	cmd := exec.Command("sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -C "$3" -xf -`, "sh", l.ReleaseRepo(), l.imageRelease.Tag, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: the release tree into %s: %w: %s", dir, err, out)
	}
	if err := release.WriteRecord(dir, l.imageRelease); err != nil {
		return err
	}
	return release.WriteManifest(dir, nil) // as the image writes it
}
