package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
)

// `mailcow config` writes what the agent would write for an example's user-data and mailcow's real tree:
// mailcow.conf (0600, with the example's hostname, the Galera password and the time zone), .env linked to it, and
// the override with the Volume's binds and the Floating IP to send from. Every node of the example writes the same
// mailcow.conf. Missing inputs are errors that name them.
func TestMailcowConfig(t *testing.T) {
	tree, err := mailcowtree.Dir(context.Background(), "..")
	if err != nil {
		t.Skipf("needs mailcow's release tree: %v", err)
	}
	var confs []string
	for _, n := range []string{"mx1", "mx2"} {
		cfg := filepath.Join(t.TempDir(), n+".toml")
		os.WriteFile(cfg, []byte(example(t, n)), 0o600)
		out := t.TempDir()
		code, stdout, stderr := run(t, "", "mailcow", "config", "--config", cfg, "--out", out, "--mailcow-dir", tree, "--floating-ip", "203.0.113.100")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s%s", n, code, stdout, stderr)
		}
		b, err := os.ReadFile(filepath.Join(out, "mailcow.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(out, "mailcow.conf")); fi.Mode().Perm() != 0o600 {
			t.Errorf("mailcow.conf mode %v", fi.Mode().Perm())
		}
		for _, want := range []string{"\nMAILCOW_HOSTNAME=mail.example.org\n", "\nTZ=Etc/UTC\n", "\nCOMPOSE_PROJECT_NAME=mailcowdockerized\n", "\nDBPASS=4b8e1c7f"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: mailcow.conf lacks %q", n, want)
			}
		}
		if l, err := os.Readlink(filepath.Join(out, ".env")); err != nil || l != "mailcow.conf" {
			t.Errorf(".env: %q %v", l, err)
		}
		ov, _ := os.ReadFile(filepath.Join(out, "docker-compose.override.yml"))
		for _, want := range []string{"source: /var/lib/mailcow-ha/data/vmail", "SNAT_TO_SOURCE=203.0.113.100", "volumes: !override"} {
			if !strings.Contains(string(ov), want) {
				t.Errorf("%s: the override lacks %q", n, want)
			}
		}
		confs = append(confs, string(b))
	}
	if confs[0] != confs[1] {
		t.Error("mx1 and mx2 write different mailcow.conf files")
	}
	cfg := filepath.Join(t.TempDir(), "mx1.toml")
	os.WriteFile(cfg, []byte(example(t, "mx1")), 0o600)
	if code, _, stderr := run(t, "", "mailcow", "config", "--config", cfg, "--out", t.TempDir(), "--mailcow-dir", tree); code != ExitUsage || !strings.Contains(stderr, "--floating-ip") {
		t.Errorf("SNAT without --floating-ip: exit %d: %s", code, stderr)
	}
	if code, _, stderr := run(t, "", "mailcow", "config", "--config", cfg); code != ExitUsage || !strings.Contains(stderr, "--out") {
		t.Errorf("no --out: exit %d: %s", code, stderr)
	}
	noHost := strings.Replace(example(t, "mx1"), "hostname = \"mail.example.org\"\n", "", 1)
	os.WriteFile(cfg, []byte(noHost), 0o600)
	if code, _, stderr := run(t, "", "mailcow", "config", "--config", cfg, "--out", t.TempDir(), "--floating-ip", "203.0.113.100"); code != ExitUsage || !strings.Contains(stderr, "mailcow.hostname") {
		t.Errorf("no hostname: exit %d: %s", code, stderr)
	}
}

// `mailcow update` refuses a tag git would read as something else and a commit that is not one, before it reads
// anything; off a node it says where to run it.
func TestMailcowUpdateInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"mailcow", "update"}, "--to: the release tag is empty"},
		{[]string{"mailcow", "update", "--to", "--upload-pack=x"}, "--to: release tag"},
		{[]string{"mailcow", "update", "--to", "2026-09", "--commit", "abc"}, `--commit: "abc" is not 40 hex digits`},
	} {
		code, _, stderr := run(t, "", c.args...)
		if code != ExitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want usage and %q", c.args, code, stderr, c.want)
		}
	}
	cfg := filepath.Join(t.TempDir(), "mx1.toml")
	os.WriteFile(cfg, []byte(example(t, "mx1")), 0o600)
	if code, _, stderr := run(t, "", "mailcow", "update", "--to", "2026-09", "--config", cfg); code != ExitUsage || !strings.Contains(stderr, "run it on a node of the cluster") {
		t.Errorf("off a node: exit %d, %q", code, stderr)
	}
	if code, stdout, _ := run(t, "", "mailcow", "--help"); code != ExitOK || !strings.Contains(stdout, "mailcow update --to TAG") {
		t.Errorf("help: exit %d, %q", code, stdout)
	}
}
