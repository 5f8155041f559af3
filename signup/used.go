package signup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UsedStore remembers solved challenges until they expire.
type UsedStore interface {
	// Use records key as used until exp, and reports whether it was fresh (not used before).
	Use(key string, exp, now time.Time) (fresh bool, err error)
}

// memUsed is the in-memory store: good for one process, forgotten on a restart.
type memUsed struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (u *memUsed) Use(key string, exp, now time.Time) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, e := range u.m {
		if now.After(e) {
			delete(u.m, k)
		}
	}
	if _, ok := u.m[key]; ok {
		return false, nil
	}
	u.m[key] = exp
	return true, nil
}

// FileUsed keeps the used challenges in a file, one "<challenge> <expiry unix>" line each, appended and synced
// before the challenge counts as used: a restart, or the portal starting on the next MASTER (the file is on the
// Volume), still refuses them. The file is rewritten without the expired lines when they are most of it.
type FileUsed struct {
	Path string

	mu     sync.Mutex
	m      map[string]time.Time
	lines  int // lines in the file
	loaded bool
}

// NewFileUsed returns the store of path (created with its directory on first use).
func NewFileUsed(path string) *FileUsed { return &FileUsed{Path: path} }

func (u *FileUsed) load() error {
	u.m = map[string]time.Time{}
	f, err := os.Open(u.Path)
	if errors.Is(err, os.ErrNotExist) {
		u.loaded = true
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		k, e, ok := strings.Cut(sc.Text(), " ")
		sec, err := strconv.ParseInt(e, 10, 64)
		if !ok || err != nil || k == "" {
			return fmt.Errorf("%s: line %d: not \"<challenge> <expiry>\"", u.Path, n)
		}
		u.m[k] = time.Unix(sec, 0)
		u.lines++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	u.loaded = true
	return nil
}

// Use implements UsedStore.
func (u *FileUsed) Use(key string, exp, now time.Time) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.loaded {
		if err := u.load(); err != nil {
			return false, fmt.Errorf("used challenges: %w", err)
		}
	}
	if e, ok := u.m[key]; ok && !now.After(e) {
		return false, nil
	}
	for k, e := range u.m {
		if now.After(e) {
			delete(u.m, k)
		}
	}
	u.m[key] = exp
	if u.lines > 64 && u.lines > 2*len(u.m) {
		if err := u.rewrite(); err != nil {
			delete(u.m, key)
			return false, fmt.Errorf("used challenges: %w", err)
		}
		return true, nil
	}
	if err := u.appendLine(key, exp); err != nil {
		delete(u.m, key)
		return false, fmt.Errorf("used challenges: %w", err)
	}
	return true, nil
}

func (u *FileUsed) appendLine(key string, exp time.Time) error {
	if err := os.MkdirAll(filepath.Dir(u.Path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%s %d\n", key, exp.Unix()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	u.lines++
	return f.Close()
}

// rewrite writes the live entries to a new file and renames it over the old one.
func (u *FileUsed) rewrite() error {
	var b strings.Builder
	for k, e := range u.m {
		fmt.Fprintf(&b, "%s %d\n", k, e.Unix())
	}
	tmp := u.Path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, u.Path); err != nil {
		return err
	}
	u.lines = len(u.m)
	return nil
}
