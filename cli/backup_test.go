package cli

import (
	"os"
	"strings"
	"testing"
)

// The backup commands' answers before they reach a repository: the image's timer on a node without backups ends
// quietly, and a missing repository or flag is named.
func TestBackupCommandLine(t *testing.T) {
	mx1 := example(t, "mx1")
	if code, out, errs := run(t, mx1, "backup", "run", "--config", "-"); code != ExitOK || !strings.Contains(out, "backups are not configured") {
		t.Errorf("backup run without a repository: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, mx1, "backup", "list", "--config", "-"); code != ExitUsage || !strings.Contains(errs, "set backup.repository, or give --repository") {
		t.Errorf("backup list without a repository: %d %q", code, errs)
	}
	if code, _, errs := run(t, "", "backup", "restore-volume", "--target", t.TempDir()); code != ExitUsage || !strings.Contains(errs, "--snapshot and --target are required") {
		t.Errorf("restore-volume without --snapshot: %d %q", code, errs)
	}
	if code, _, errs := run(t, "", "backup", "restore-mailbox", "--snapshot", "latest"); code != ExitUsage || !strings.Contains(errs, "--snapshot and --mailbox are required") {
		t.Errorf("restore-mailbox without --mailbox: %d %q", code, errs)
	}
	if code, _, errs := run(t, "", "backup", "frobnicate"); code != ExitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown: %d %q", code, errs)
	}
	if code, out, _ := run(t, "", "backup", "--help"); code != ExitOK || !strings.Contains(out, "restore-mailbox") || !strings.Contains(out, "backup run") {
		t.Errorf("--help: %d %q", code, out)
	}
	// A password file that others can read is refused before restic sees it.
	dir := t.TempDir()
	pw := dir + "/pw"
	if err := os.WriteFile(pw, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(t, "", "backup", "list", "--repository", dir+"/repo", "--password-file", pw); code != ExitUsage || !strings.Contains(errs, "the repository's password") {
		t.Errorf("a readable password file: %d %q", code, errs)
	}
}
