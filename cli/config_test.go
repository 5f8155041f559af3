package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// config apply needs FILE first, and a node of the cluster to run on (it signs as that member); it changes nothing
// elsewhere.
func TestConfigApplyUsage(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cluster.toml")
	if err := os.WriteFile(f, []byte("[failover]\ncheck_grace = \"45s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config"}, "usage: mailcow-ha config apply FILE"},
		{[]string{"config", "rollback"}, `unknown command "rollback"`},
		{[]string{"config", "apply", "--config", "-"}, "give one FILE first"},
		{[]string{"config", "apply", filepath.Join(t.TempDir(), "missing.toml"), "--config", "-"}, "no such file"},
		{[]string{"config", "apply", f, "--config", "-"}, "run it on a node of the cluster"},
		{[]string{"config", "diff", f, "--config", "-"}, "run it on a node of the cluster"},
	} {
		code, out, errs := run(t, example(t, "mx1"), tc.args...)
		if code != ExitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want %d and %q", tc.args, code, errs, out, ExitUsage, tc.want)
		}
	}
}
