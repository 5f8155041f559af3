package cli

import (
	"strings"
	"testing"
)

func TestMigrateUsage(t *testing.T) {
	if code, _, errs := run(t, "", "migrate", "--final"); code != ExitUsage || !strings.Contains(errs, "--from is required") {
		t.Errorf("migrate without --from: %d %q", code, errs)
	}
	if code, out, _ := run(t, "", "migrate", "--help"); code != ExitOK || !strings.Contains(out, "--stop-command") || !strings.Contains(out, "On the MASTER") {
		t.Errorf("--help: %d %q", code, out)
	}
}
