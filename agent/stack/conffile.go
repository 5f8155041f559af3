package stack

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
)

// confMark is how a mailcow.conf that the agent wrote begins (mailcowconf.Render's first line).
var confMark = []byte("# Written by mailcow-ha")

// WriteConf writes mailcow.conf (mode 0600) into dir when its content changed, and links .env to it as mailcow's
// scripts want. A mailcow.conf or .env that the agent did not write (a migrated installation, generate_config.sh
// run by hand) is kept once next to it, never overwritten: <name>.before-mailcow-ha-<time>.
func WriteConf(dir string, b []byte, log *slog.Logger) error {
	path := filepath.Join(dir, mailcowconf.File)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stack: %w", err)
	}
	same := err == nil && bytes.Equal(old, b)
	if err == nil && !same && !bytes.HasPrefix(old, confMark) {
		if err := keep(path, log); err != nil {
			return err
		}
	}
	if !same {
		tmp := path + ".tmp"
		os.Remove(tmp) // an old one may have another mode
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return fmt.Errorf("stack: writing %s: %w", mailcowconf.File, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
		log.Info("wrote "+mailcowconf.File, "path", path)
	}
	env := filepath.Join(dir, mailcowconf.Env)
	if target, err := os.Readlink(env); err == nil && target == mailcowconf.File {
		return nil
	}
	if _, err := os.Lstat(env); err == nil {
		if err := keep(env, log); err != nil {
			return err
		}
	}
	if err := os.Symlink(mailcowconf.File, env); err != nil {
		return fmt.Errorf("stack: linking %s: %w", mailcowconf.Env, err)
	}
	return nil
}

// keep moves a file the agent did not write out of the way, with a warning.
func keep(path string, log *slog.Logger) error {
	kept := fmt.Sprintf("%s.before-mailcow-ha-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, kept); err != nil {
		return fmt.Errorf("stack: keeping %s: %w", path, err)
	}
	log.Warn("kept a file the agent did not write; mailcow-ha writes it from the configuration from now on",
		"path", path, "kept_as", kept)
	return nil
}

// configHash is the hash of what the containers were created from: the override, mailcow.conf when the agent
// writes it, and mailcow's compose file when the tree has one (a new release: mailcow update).
func (s *Stack) configHash() string {
	b := append([]byte{}, s.Override...)
	if s.Conf != nil {
		b = append(append(b, 0), s.Conf...)
	}
	if s.composeFile != nil {
		b = append(append(b, 0, 0), s.composeFile...)
	}
	return hash(b)
}
