// Package release keeps the mailcow-dockerized release a node runs: it stages a release (a tag of mailcow's git
// repository, cloned beside the tree, its images pulled and checked), lays a staged release over the tree in place
// (as mailcow's update.sh merges it), takes that back, and records which release the tree holds.
package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// ManifestFile, in a tree and in a staged one, lists the release's own files (git ls-files), each with its
	// content's SHA-256 ("-" for a link), as sha256sum writes them: only they are laid over the tree, and one whose
	// hash is the same in both releases is not read again. The image writes it for the release it carries.
	ManifestFile = ".mailcow-ha-files"
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

// manifest is a tree's list of its release's files: path → SHA-256 ("-" for a link), and the paths in order.
type manifest struct {
	sums  map[string]string
	paths []string
}

// readManifest reads dir's manifest (empty, with no error, when dir has none).
func readManifest(dir string) (manifest, error) {
	m := manifest{sums: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("release: %w", err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		sum, path, ok := strings.Cut(l, "  ")
		if !ok || path == "" {
			return m, fmt.Errorf("release: %s line %d: want \"SHA256  PATH\"", filepath.Join(dir, ManifestFile), i+1)
		}
		path = strings.TrimPrefix(path, "./")
		if _, dup := m.sums[path]; !dup {
			m.paths = append(m.paths, path)
		}
		m.sums[path] = sum
	}
	return m, nil
}

// WriteManifest writes dir's manifest of the files named (every regular file and link below dir but .git and this
// package's own files, when names is nil), with their hashes.
func WriteManifest(dir string, names []string) error {
	if names == nil {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			switch {
			case d.IsDir() && d.Name() == ".git":
				return filepath.SkipDir
			case d.IsDir(), rel == RecordFile || rel == ManifestFile:
				return nil
			}
			names = append(names, rel)
			return nil
		})
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
	}
	var b strings.Builder
	for _, n := range names {
		sum, err := sumOf(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		if sum == "" {
			continue // a directory (a submodule's entry)
		}
		b.WriteString(sum + "  " + n + "\n")
	}
	return writeFile(filepath.Join(dir, ManifestFile), []byte(b.String()), 0o644)
}

// sumOf is a regular file's SHA-256, "-" for a link, "" for a directory.
func sumOf(path string) (string, error) {
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		return "", fmt.Errorf("release: %w", err)
	case fi.IsDir():
		return "", nil
	case !fi.Mode().IsRegular():
		return "-", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("release: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("release: %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
