package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Test doubles for Galera, the mailcow stack and the Volume, for the agent's component tests. Each is driven by
// files, so that a test can flip its state from outside the agent. They live in this test-only command and never
// in the shipped one: DirStorage's "mount" is a file, and a real stack must never start on it.

// FileGalera reports Primary and Synced while its file holds "Primary Synced"; anything else, or no file, is
// reported as not Primary.
type FileGalera struct{ Path string }

// Status implements Galera.
func (g FileGalera) Status(context.Context) (bool, bool, string, error) {
	b, err := os.ReadFile(g.Path)
	if err != nil {
		return false, false, "", fmt.Errorf("galera status file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	ok := s == "Primary Synced"
	return ok, ok, s, nil
}

// FileStack is a stack whose failed service is the content of Path (empty: healthy). Start and Stop write
// "running" or "stopped" to Path.state, which tests read.
type FileStack struct{ Path string }

// Failed implements Stack.
func (s FileStack) Failed(context.Context) (string, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Start implements Stack.
func (s FileStack) Start(context.Context) error {
	return os.WriteFile(s.Path+".state", []byte("running\n"), 0o644)
}

// Stop implements Stack.
func (s FileStack) Stop(context.Context) error {
	return os.WriteFile(s.Path+".state", []byte("stopped\n"), 0o644)
}

// DirStorage "mounts" by writing Dir/mounted.
type DirStorage struct{ Dir string }

// WaitDevice implements Storage.
func (d DirStorage) WaitDevice(context.Context, string) error { return nil }

// Mount implements Storage.
func (d DirStorage) Mount(context.Context) error {
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.Dir, "mounted"), []byte("mounted\n"), 0o644)
}

// Mounted implements Storage.
func (d DirStorage) Mounted(context.Context) (bool, error) {
	_, err := os.Stat(filepath.Join(d.Dir, "mounted"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Unmount implements Storage.
func (d DirStorage) Unmount(context.Context) error {
	err := os.Remove(filepath.Join(d.Dir, "mounted"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
