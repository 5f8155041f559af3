// Package release keeps the mailcow-dockerized release a node runs: it stages a release (a tag of mailcow's git
// repository, cloned beside the tree, its images pulled and checked), lays a staged release over the tree in place
// (as mailcow's update.sh merges it), takes that back, and records which release the tree holds.
package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Release is one release of mailcow-dockerized: its tag and the commit the tag named when it was staged.
type Release struct {
	Tag    string `json:"tag"`
	Commit string `json:"commit"`
}

func (r Release) String() string {
	if r.Tag == "" {
		return "unknown"
	}
	c := r.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return r.Tag + " (" + c + ")"
}

const (
	// RecordFile, in a tree, names the release it holds (the image writes it for the release it carries).
	RecordFile = ".mailcow-ha-release"
	// filesFile, in a staged tree, lists the release's own files (git ls-files): only they are laid over the tree.
	filesFile = ".mailcow-ha-files"
	// addedFile, in the undo directory, lists the files the switch added (a revert removes them).
	addedFile = ".mailcow-ha-added"
)

// Tree is a node's mailcow directory and the two beside it: Dir.next (a staged release) and Dir.prev (what the
// last switch replaced, to take it back).
type Tree struct {
	Dir string
}

// Next is the staged release's directory.
func (t Tree) Next() string { return t.Dir + ".next" }

// Prev is the last switch's undo directory.
func (t Tree) Prev() string { return t.Dir + ".prev" }

// Current is the release the tree holds (zero when it records none).
func (t Tree) Current() (Release, error) { return readRecord(t.Dir) }

// Staged is the release staged beside the tree (zero when none is).
func (t Tree) Staged() (Release, error) { return readRecord(t.Next()) }

func readRecord(dir string) (Release, error) {
	var r Release
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("release: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("release: %s: %w", filepath.Join(dir, RecordFile), err)
	}
	return r, nil
}

// WriteRecord records in dir that it holds r.
func WriteRecord(dir string, r Release) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, RecordFile), append(b, '\n'), 0o644)
}

// writeFile replaces path atomically (a temporary file beside it, renamed over it).
func writeFile(path string, b []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("release: writing %s: %w", path, err)
	}
	return nil
}

// files reads a staged tree's list of the release's own files.
func files(next string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(next, filesFile))
	if err != nil {
		return nil, fmt.Errorf("release: the staged release's file list: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}
