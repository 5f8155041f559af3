package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// FileChecker checks a file that holds a secret. Validation calls it; tests give their own owner.
type FileChecker interface {
	CheckSecretFile(path string) error
}

// SecretFiles checks secret files on the local file system: each must be a regular file, mode 0600 or stricter
// (no bits for group or others), and owned by Owner (root on a node).
type SecretFiles struct {
	Owner int
}

// CheckSecretFile implements FileChecker. Its errors name the path and the mode, never the content.
func (s SecretFiles) CheckSecretFile(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist", path)
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: it must not be readable by group or others (chmod 600)", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != s.Owner {
		return fmt.Errorf("%s is owned by uid %d, not %d", path, st.Uid, s.Owner)
	}
	return nil
}

// ReadSecret checks a secret file as CheckSecretFile does and returns its content without surrounding blanks.
func (s SecretFiles) ReadSecret(path string) (Secret, error) {
	if err := s.CheckSecretFile(path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "", fmt.Errorf("%s is empty", path)
	}
	return Secret(b), nil
}

// MaterializeSecrets writes the secrets that the configuration carries inline (hcloud.token, cluster.secret,
// galera.password, alerts.email[].password) to their files with mode 0600, then forgets them, so that the rest of the agent reads every
// secret from a file. A file that exists already is left alone: it was written at an earlier start, or rotated by
// the operator since, and the old value still in user-data must not undo a rotation. When the two differ it says
// so (keys only, never a value), and it says which keys it wrote (the user-data stays in the metadata service,
// which the appliance's firewall keeps to the agent: agent/firewall).
func MaterializeSecrets(c *Config, log *slog.Logger) error {
	var wrote, differ []string
	for _, s := range inlineSecrets(c) {
		if !s.val.Set() {
			continue
		}
		if old, err := os.ReadFile(s.path); err == nil {
			if string(bytes.TrimSpace(old)) != s.val.Reveal() {
				differ = append(differ, s.key)
			}
			*s.val = ""
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		if err := WriteSecret(s.path, s.val.Reveal()); err != nil {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		*s.val = ""
		wrote = append(wrote, s.key)
	}
	if len(differ) > 0 {
		log.Warn("secrets given inline differ from their files, which were kept (a rotation?): the files are used; "+
			"update or remove the inline values", "keys", differ)
	}
	if len(wrote) > 0 {
		log.Info("secrets given inline in the configuration were written to files with mode 0600; "+
			"user-data stays in the metadata service, which the appliance's firewall keeps to the agent",
			"keys", wrote)
	}
	return nil
}

type inlineSecret struct {
	key, path string
	val       *Secret
}

// inlineSecrets are the secrets a configuration may carry inline, with their files.
func inlineSecrets(c *Config) []inlineSecret {
	all := []inlineSecret{
		{"hcloud.token", c.Hcloud.TokenFile, &c.Hcloud.Token},
		{"cluster.secret", c.Cluster.SecretFile, &c.Cluster.Secret},
		{"galera.password", c.Galera.PasswordFile, &c.Galera.Password},
		{"backup.password", c.Backup.PasswordFile, &c.Backup.Password},
	}
	for i := range c.Alerts.Email {
		e := &c.Alerts.Email[i]
		if e.Password.Set() && e.PasswordFile == "" {
			e.PasswordFile = fmt.Sprintf("%s/alerts-email-%d.password", DefaultSecretDir, i)
		}
		all = append(all, inlineSecret{fmt.Sprintf("alerts.email[%d].password", i), e.PasswordFile, &e.Password})
	}
	return all
}

// RotateSecrets writes the secrets that a cluster configuration carries inline (hcloud.token,
// alerts.email[].password) to their files, replacing what they held: unlike the user-data's, a cluster
// configuration's secrets are the newest (config apply is how a token is rotated). It returns the keys whose files
// changed, never a value.
func RotateSecrets(c *Config, keys []string) ([]string, error) {
	var rotated []string
	for _, s := range inlineSecrets(c) {
		if !s.val.Set() || !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(s.key, k) }) {
			continue
		}
		if old, err := os.ReadFile(s.path); err == nil && string(bytes.TrimSpace(old)) == s.val.Reveal() {
			continue
		}
		if err := WriteSecret(s.path, s.val.Reveal()); err != nil {
			return rotated, fmt.Errorf("%s: %w", s.key, err)
		}
		rotated = append(rotated, s.key)
	}
	return rotated, nil
}

// WriteSecret replaces path atomically with content, mode 0600, creating the directory with mode 0700.
func WriteSecret(path, content string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".secret-*")
	if err != nil {
		return fmt.Errorf("write secret beside %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.WriteString(content + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

// ClusterSecrets is the cluster secrets a node holds: the one in cluster.secret_file, which it signs with, and
// during a rotation (`cluster rotate-secret`) the one staged next (file ".next" beside it) and the one before the
// switch (".prev"), which it also accepts.
type ClusterSecrets struct{ Cur, Next, Prev []byte }

// ReadClusterSecrets reads cluster.secret_file at path and the rotation's files beside it, which may be missing.
func (s SecretFiles) ReadClusterSecrets(path string) (ClusterSecrets, error) {
	cur, err := s.ReadSecret(path)
	if err != nil {
		return ClusterSecrets{}, fmt.Errorf("cluster.secret_file: %w", err)
	}
	cs := ClusterSecrets{Cur: []byte(cur.Reveal())}
	for _, f := range []struct {
		path string
		to   *[]byte
	}{{path + ".next", &cs.Next}, {path + ".prev", &cs.Prev}} {
		v, err := s.ReadSecret(f.path)
		if err == nil {
			*f.to = []byte(v.Reveal())
		} else if _, serr := os.Stat(f.path); !errors.Is(serr, os.ErrNotExist) {
			return ClusterSecrets{}, fmt.Errorf("cluster.secret_file: %w", err)
		}
	}
	return cs, nil
}
