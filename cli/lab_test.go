package cli

import (
	"strings"
	"testing"
)

func TestLabUsage(t *testing.T) {
	if code, _, errOut := run(t, "", "lab"); code != ExitUsage || !strings.Contains(errOut, "bench failover") {
		t.Fatalf("lab: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "", "lab", "bogus"); code != ExitUsage || !strings.Contains(errOut, `unknown command "bogus"`) {
		t.Fatalf("lab bogus: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "", "lab", "kill", "--dir", t.TempDir()); code != ExitUsage || !strings.Contains(errOut, "--how") {
		t.Fatalf("lab kill: %d %q", code, errOut)
	}
	dir := t.TempDir()
	if code, _, errOut := run(t, "", "lab", "status", "--dir", dir); code != ExitFailure || !strings.Contains(errOut, "no lab running in "+dir) {
		t.Fatalf("lab status without a lab: %d %q", code, errOut)
	}
	// Flags may follow the node name.
	if code, _, errOut := run(t, "", "lab", "kill", "n1", "--how", "power", "--dir", dir); code != ExitFailure || !strings.Contains(errOut, "no lab running") {
		t.Fatalf("lab kill n1 --how power: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "", "lab", "down", "--dir", dir); code != ExitOK || !strings.Contains(out, "nothing runs") {
		t.Fatalf("lab down without a lab: %d %q", code, out)
	}
}
