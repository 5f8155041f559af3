package config

// This file validates secrets: their files (mode, owner, content) and the values given inline, which must not be a
// template's placeholder or too weak for a random secret.

import (
	"errors"
	"fmt"
	"strings"
)

// secretFiles checks every secret that is read from a file.
func (v *validator) secretFiles(c *Config, fsys FileChecker) {
	if !c.Hcloud.Token.Set() {
		if err := fsys.CheckSecretFile(c.Hcloud.TokenFile); err != nil {
			v.add("hcloud.token_file", "%v", err)
		}
	}
	if !c.Cluster.Secret.Set() {
		if err := fsys.CheckSecretFile(c.Cluster.SecretFile); err != nil {
			v.add("cluster.secret_file", "%v", err)
		} else if r, ok := fsys.(interface{ ReadSecret(string) (Secret, error) }); ok {
			if s, err := r.ReadSecret(c.Cluster.SecretFile); err != nil {
				v.add("cluster.secret_file", "%v", err)
			} else if why := weakSecret(s.Reveal(), 32); why != "" {
				v.add("cluster.secret_file", "%s holds %s: use at least 32 random characters (openssl rand -hex 32)", c.Cluster.SecretFile, why)
			}
		}
	}
	// Without mailcow's database password the first bootstrap cannot create mailcow's user, and mailcow cannot
	// reach its database: refuse at the start, not in the middle of a bootstrap.
	if !c.Galera.Password.Set() {
		if err := fsys.CheckSecretFile(c.Galera.PasswordFile); err != nil {
			v.add("galera.password_file", "%v (or give galera.password)", err)
		}
	}
	for i, w := range c.Alerts.Webhooks {
		if w.SecretFile != "" {
			if err := fsys.CheckSecretFile(w.SecretFile); err != nil {
				v.add(fmt.Sprintf("alerts.webhooks[%d].secret_file", i), "%v", err)
			}
		}
	}
	if c.Backup.Repository != "" && !c.Backup.Password.Set() {
		if err := fsys.CheckSecretFile(c.Backup.PasswordFile); err != nil {
			v.add("backup.password_file", "%v (or give backup.password)", err)
		}
	}
	for i, e := range c.Alerts.Email {
		if e.PasswordFile != "" && !e.Password.Set() {
			if err := fsys.CheckSecretFile(e.PasswordFile); err != nil {
				v.add(fmt.Sprintf("alerts.email[%d].password_file", i), "%v", err)
			}
		}
	}
}

// placeholderMarks are words that the examples and common templates put where a secret belongs.
var placeholderMarks = []string{"replace", "changeme", "change-me", "change_me", "placeholder", "example", "your-", "secret-here", "todo"}

// placeholder reports whether s looks like a template's placeholder rather than a secret.
func placeholder(s string) bool {
	l := strings.ToLower(s)
	for _, m := range placeholderMarks {
		if strings.Contains(l, m) {
			return true
		}
	}
	return false
}

// weakSecret says why s is no good secret of at least min characters, or "": a placeholder, too short, or too
// little variety (fewer than 10 different characters, or one character making up more than a quarter of it) for
// what random output (openssl rand -hex 32: 64 characters of 16) always has.
func weakSecret(s string, min int) string {
	if placeholder(s) {
		return "a placeholder, not a secret"
	}
	if len(s) < min {
		return fmt.Sprintf("too short (%d characters)", len(s))
	}
	count := map[rune]int{}
	for _, r := range s {
		count[r]++
	}
	most := 0
	for _, n := range count {
		most = max(most, n)
	}
	if len(count) < 10 || most*4 > len(s) {
		return "too little variety for a random secret"
	}
	return ""
}

// CheckClusterSecret says why s cannot be a cluster secret (a placeholder, too short or too plain for a random
// secret, or holding white space, which a secret file's reader would trim), or nil.
func CheckClusterSecret(s string) error {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("the cluster secret holds white space or control characters")
	}
	if why := weakSecret(s, 32); why != "" {
		return fmt.Errorf("the cluster secret is %s: use at least 32 random characters (openssl rand -hex 32)", why)
	}
	return nil
}
