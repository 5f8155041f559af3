package migrate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfChoices(t *testing.T) {
	c := ConfChoices(map[string]string{
		"MAILCOW_HOSTNAME": "mail.example.org", "TZ": "Europe/Berlin", "DBPASS": "secret", "DBNAME": "mailcow",
		"SKIP_CLAMD": "y", "HTTP_PORT": "80", "ADDITIONAL_SAN": "imap.example.org", "OLD_ONLY": "1", "MAILCOW_PASS_SCHEME": "BLF-CRYPT",
		"SKIP_SOGO": "y$(reboot)",
	})
	want := map[string]string{"SKIP_CLAMD": "y", "ADDITIONAL_SAN": "imap.example.org"}
	if len(c.Settings) != len(want) || c.Settings["SKIP_CLAMD"] != "y" || c.Settings["ADDITIONAL_SAN"] != "imap.example.org" {
		t.Errorf("settings %v, want %v (defaults and owned variables left out)", c.Settings, want)
	}
	if c.Hostname != "mail.example.org" || c.Timezone != "Europe/Berlin" {
		t.Errorf("hostname %q timezone %q", c.Hostname, c.Timezone)
	}
	left := strings.Join(c.Left, "\n")
	for _, w := range []string{"DBPASS: set by mailcow-ha", "DBNAME: set by mailcow-ha", "OLD_ONLY: not a variable", "SKIP_SOGO: newlines, quotes, $"} {
		if !strings.Contains(left, w) {
			t.Errorf("left lacks %q:\n%s", w, left)
		}
	}
	toml := c.TOML()
	for _, w := range []string{"[mailcow]\nhostname = \"mail.example.org\"\ntimezone = \"Europe/Berlin\"", "[mailcow.conf]\nADDITIONAL_SAN = \"imap.example.org\"\nSKIP_CLAMD = \"y\"\n", "# not carried: DBPASS"} {
		if !strings.Contains(toml, w) {
			t.Errorf("TOML lacks %q:\n%s", w, toml)
		}
	}
	if strings.Contains(toml, "secret") {
		t.Errorf("the TOML carries the old database password:\n%s", toml)
	}
}

func TestPlacesCoverTheVolume(t *testing.T) {
	s := Source{MailcowDir: "/opt/mailcow-dockerized", VolumesDir: "/var/lib/docker/volumes"}
	var dirs []string
	for _, p := range s.Places("mailcowdockerized") {
		dirs = append(dirs, p.Dir)
		switch p.Dir {
		case "vmail":
			if p.From != "/var/lib/docker/volumes/mailcowdockerized_vmail-vol-1/_data" {
				t.Errorf("vmail from %s", p.From)
			}
		case "ssl":
			if p.From != "/opt/mailcow-dockerized/data/assets/ssl" {
				t.Errorf("ssl from %s", p.From)
			}
		}
	}
	slices.Sort(dirs)
	want := []string{"crypt", "postfix", "postfix-tlspol", "redis", "rspamd", "sogo", "ssl", "vmail", "vmail-index"}
	if !slices.Equal(dirs, want) {
		t.Errorf("places %v, want every directory on the Volume once: %v", dirs, want)
	}
	if got := (Source{Host: "old.example.org"}).Destination(); got != "root@old.example.org" {
		t.Errorf("destination %q", got)
	}
	if got := SQLAddress(map[string]string{"SQL_PORT": "13306"}); got != "127.0.0.1:13306" {
		t.Errorf("SQL address %q", got)
	}
}

// A switch needs a final stage, and a failed import leaves the Volume's directories where they were.
func TestSwitchLeavesTheVolumeOnAFailedImport(t *testing.T) {
	mount := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Switch(ctx, mount, "/nonexistent.sock", "mailcow"); err == nil || !strings.Contains(err.Error(), "migrate --final") {
		t.Errorf("a switch without a final stage: %v", err)
	}
	for _, d := range []string{filepath.Join(mount, "vmail", "example.org"), filepath.Join(mount, Dir, Stage, "vmail", "example.org")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mount, "vmail", "example.org", "live"), []byte("live"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mount, Dir, Dump), []byte("CREATE TABLE t (id INT PRIMARY KEY);\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MarkReady(mount, Staged{Host: "old", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err := Switch(ctx, mount, filepath.Join(mount, "no-server.sock"), "mailcow")
	if err == nil || !strings.Contains(err.Error(), "mailcow") {
		t.Fatalf("a switch with no database server: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(mount, "vmail", "example.org", "live")); err != nil || string(b) != "live" {
		t.Errorf("the Volume's mail after a failed import: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mount, Dir, Stage, "vmail")); err != nil {
		t.Errorf("the stage after a failed import: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(mount, Dir, "replaced-*")); len(m) != 0 {
		t.Errorf("a failed import moved the Volume's directories: %v", m)
	}
}
