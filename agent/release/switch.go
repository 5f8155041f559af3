package release

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Switch lays the staged release (which must be tag) over the tree in place, as mailcow's update.sh merges one:
// each of the release's files that differs is replaced atomically, and what it replaced is kept in Prev (Revert
// puts it back); the tree's other files (mailcow.conf, the override, what mailcow writes into data/) stay. In
// place, not a swap of directories: the running containers' binds of the tree's directories see the new files,
// as they would after update.sh. It returns the release the tree held before; a tree that holds tag already is
// left alone.
func (t Tree) Switch(tag string) (Release, error) {
	staged, err := t.Staged()
	if err != nil {
		return Release{}, err
	}
	if staged.Tag != tag {
		return Release{}, fmt.Errorf("release: %s is not staged here (staged: %s)", tag, staged)
	}
	cur, err := t.Current()
	if err != nil {
		return cur, err
	}
	if cur == staged {
		return cur, nil
	}
	next, err := readManifest(t.Next())
	if err != nil {
		return cur, err
	}
	if len(next.paths) == 0 {
		return cur, fmt.Errorf("release: the staged release lists no files (%s)", filepath.Join(t.Next(), ManifestFile))
	}
	// The tree's own manifest (the release it holds): a file whose hash is the same in both releases is left
	// alone without reading it. Without one (an older image), every file is compared.
	held, err := readManifest(t.Dir)
	if err != nil {
		return cur, err
	}
	prev := t.Prev()
	if err := os.RemoveAll(prev); err != nil {
		return cur, fmt.Errorf("release: %w", err)
	}
	if err := os.MkdirAll(prev, 0o755); err != nil {
		return cur, fmt.Errorf("release: %w", err)
	}
	if err := WriteRecord(prev, cur); err != nil {
		return cur, err
	}
	var added []string
	if len(held.paths) > 0 {
		if err := copyPath(filepath.Join(t.Dir, ManifestFile), filepath.Join(prev, ManifestFile)); err != nil {
			return cur, err
		}
	} else {
		added = append(added, ManifestFile) // a revert removes the manifest this switch writes
	}
	if err := writeFile(filepath.Join(prev, addedFile), []byte(strings.Join(added, "\n")+"\n"), 0o644); err != nil {
		return cur, err
	}
	for _, n := range next.paths {
		src, dst := filepath.Join(t.Next(), n), filepath.Join(t.Dir, n)
		if sum := next.sums[n]; sum != "-" && held.sums[n] == sum {
			if fi, err := os.Lstat(dst); err == nil && fi.Mode().IsRegular() {
				continue
			}
		}
		same, exists, err := samePath(src, dst)
		if err != nil {
			return cur, err
		}
		if same {
			continue
		}
		if exists {
			if err := copyPath(dst, filepath.Join(prev, n)); err != nil {
				return cur, err
			}
		} else {
			added = append(added, n)
		}
		// The list of what was added is written before each addition: a revert after a crash removes them all.
		if err := writeFile(filepath.Join(prev, addedFile), []byte(strings.Join(added, "\n")+"\n"), 0o644); err != nil {
			return cur, err
		}
		if err := copyPath(src, dst); err != nil {
			return cur, err
		}
	}
	if err := copyPath(filepath.Join(t.Next(), ManifestFile), filepath.Join(t.Dir, ManifestFile)); err != nil {
		return cur, err
	}
	return cur, WriteRecord(t.Dir, staged)
}

// Revert takes the last switch back: the files it replaced are put back, the ones it added removed, and the
// tree records the release it held before.
func (t Tree) Revert() (Release, error) {
	prev := t.Prev()
	before, err := readRecord(prev)
	if err != nil {
		return before, err
	}
	if _, err := os.Stat(prev); err != nil {
		return before, fmt.Errorf("release: nothing to take back: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(prev, addedFile)); err == nil {
		for _, n := range strings.Split(string(b), "\n") {
			if n = strings.TrimSpace(n); n != "" {
				if err := os.Remove(filepath.Join(t.Dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return before, fmt.Errorf("release: %w", err)
				}
			}
		}
	}
	err = filepath.WalkDir(prev, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(prev, path)
		if err != nil || rel == addedFile || rel == RecordFile {
			return err
		}
		return copyPath(path, filepath.Join(t.Dir, rel))
	})
	if err != nil {
		return before, fmt.Errorf("release: taking the switch back: %w", err)
	}
	if before.Tag == "" {
		err = os.Remove(filepath.Join(t.Dir, RecordFile))
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else {
		err = WriteRecord(t.Dir, before)
	}
	if err != nil {
		return before, err
	}
	return before, os.RemoveAll(prev)
}

// samePath says whether dst holds what src holds (a regular file's bytes and permissions, or a link's target),
// and whether dst exists.
func samePath(src, dst string) (same, exists bool, err error) {
	si, err := os.Lstat(src)
	if err != nil {
		return false, false, fmt.Errorf("release: %w", err)
	}
	di, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("release: %w", err)
	}
	if si.Mode().Type() != di.Mode().Type() {
		if di.IsDir() {
			return false, true, fmt.Errorf("release: %s is a directory in the tree and a file in the release", dst)
		}
		return false, true, nil
	}
	if si.Mode()&fs.ModeSymlink != 0 {
		a, err1 := os.Readlink(src)
		b, err2 := os.Readlink(dst)
		return err1 == nil && err2 == nil && a == b, true, errors.Join(err1, err2)
	}
	if si.Mode().Perm() != di.Mode().Perm() || si.Size() != di.Size() {
		return false, true, nil
	}
	a, err1 := os.ReadFile(src)
	b, err2 := os.ReadFile(dst)
	if err := errors.Join(err1, err2); err != nil {
		return false, true, fmt.Errorf("release: %w", err)
	}
	return bytes.Equal(a, b), true, nil
}

// copyPath copies a regular file (with its permissions) or a symbolic link to dst, replacing dst atomically.
func copyPath(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		tmp := dst + ".mailcow-ha-link"
		os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("release: %w", err)
		}
		return nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("release: %s is neither a file nor a link", src)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return writeFile(dst, b, fi.Mode().Perm())
}
