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
	if code, _, errOut := run(t, "", "lab", "kill", "lab-1", "--how", "power", "--dir", dir); code != ExitFailure || !strings.Contains(errOut, "no lab running") {
		t.Fatalf("lab kill lab-1 --how power: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "", "lab", "down", "--dir", dir); code != ExitOK || !strings.Contains(out, "nothing runs") {
		t.Fatalf("lab down without a lab: %d %q", code, out)
	}
}

// The lab's arguments are checked before anything reaches the supervisor: a bad number or word is a usage error
// that names it, never a silent default.
func TestLabArguments(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"send-mail", "ten"}, `N is a number of mails, not "ten"`},
		{[]string{"send-mail", "0"}, `not "0"`},
		{[]string{"partition", "lab-1"}, "partition lab-1 / lab-2,lab-3"},
		{[]string{"partition", "lab-1", "/"}, "partition lab-1 / lab-2,lab-3"},
		{[]string{"maintenance", "maybe"}, "maintenance on|off"},
		{[]string{"start"}, "start NODE"},
		{[]string{"grow", "9"}, "grow N: N is the new number of nodes, 4 to 5"},
		{[]string{"remove-node"}, "remove-node NODE"},
		{[]string{"heal", "now"}, "lab heal"},
		{[]string{"bench", "failover", "--runs", "0"}, "bench failover [--runs N]"},
		{[]string{"create-stub", "--docker-host", "unix:///nonexistent", "--data", "/d", "--socket-dir", "/s", "--mail-user", "a@b.test"}, "--mail-user needs --mail-image"},
	} {
		code, _, errOut := run(t, "", append(append([]string{"lab"}, c.args...), "--dir", dir)...)
		if code != ExitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("lab %v: %d %q, want a usage error with %q", c.args, code, errOut, c.want)
		}
	}
	// Well-formed, they reach for the supervisor (none runs here).
	for _, args := range [][]string{{"send-mail", "3"}, {"partition", "lab-1", "/", "lab-2,lab-3"}, {"maintenance", "on"}, {"alerts", "--since", "5m", "--json"}} {
		if code, _, errOut := run(t, "", append(append([]string{"lab"}, args...), "--dir", dir)...); code != ExitFailure || !strings.Contains(errOut, "no lab running") {
			t.Errorf("lab %v: %d %q", args, code, errOut)
		}
	}
}
