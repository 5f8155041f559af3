package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// A node takes a newer revision of the cluster's configuration once it checks on its own configuration: it writes
// the token over its file, keeps the document (0600) and says that a restart is due; older, conflicting and
// invalid revisions are refused and change nothing.
func TestApplyConfig(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"token", "secret", "dbpw"} {
		if err := config.WriteSecret(filepath.Join(dir, f), "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"); err != nil {
			t.Fatal(err)
		}
	}
	nodes := ""
	for i := 1; i <= 3; i++ {
		nodes += fmt.Sprintf("[[cluster.nodes]]\nname = \"mx%d\"\nprivate_ip = \"10.99.0.1%d\"\nserver_id = %d\npriority = %d\nbootstrap = %v\n",
			i, i, i, 200-50*i, i == 1)
	}
	base := fmt.Sprintf(`# mailcow-ha
version = 1
[node]
name = "mx1"
[cluster]
name = "c1"
secret_file = %[1]q
%[5]s
[mailcow]
hostname = "mail.example.org"
[hcloud]
token_file = %[2]q
floating_ip_id = 7
volume_id = 8
[galera]
password_file = %[3]q
[failover]
state_dir = %[4]q
`, filepath.Join(dir, "secret"), filepath.Join(dir, "token"), filepath.Join(dir, "dbpw"), dir, nodes)
	cfg, probs := config.Check("user-data", []byte(base), config.SecretFiles{Owner: os.Geteuid()})
	if probs.Err() != nil {
		t.Fatal(probs.Err())
	}
	alerts, err := report.NewAlerter("c1", "mx1", nil, report.AlerterOptions{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{c: cfg, log: slog.New(slog.DiscardHandler), alerts: alerts,
		o: Options{SecretOwner: os.Geteuid(), ReadBase: func(context.Context) (config.Payload, error) {
			return config.Payload{Name: "user-data", Data: []byte(base)}, nil
		}}}
	ctx := context.Background()
	token := strings.Repeat("t9", 32)
	doc := "[mailcow]\ntimezone = \"Europe/Berlin\"\n[hcloud]\ntoken = \"" + token + "\"\n"

	ans := a.ApplyConfig(ctx, 1, doc)
	if ans.Outcome != api.ConfigRestart || ans.Revision != 1 || strings.Join(ans.Keys, ",") != "hcloud.token,mailcow.timezone" {
		t.Fatalf("first revision: %+v", ans)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "token")); strings.TrimSpace(string(b)) != token {
		t.Errorf("the token file was not rotated")
	}
	kept, err := config.ReadClusterDoc(config.ClusterDocPath(dir))
	fi, _ := os.Stat(config.ClusterDocPath(dir))
	if err != nil || kept.Revision != 1 || kept.TOML != doc || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept %+v %v, mode %v", kept, err, fi.Mode())
	}
	if rev, pending := a.configRevision(); rev != 1 || !pending {
		t.Errorf("revision %d pending %v, want 1 true", rev, pending)
	}
	if ans := a.ApplyConfig(ctx, 1, doc); ans.Outcome != api.ConfigRestart {
		t.Errorf("the same revision again while a restart is due: %+v", ans)
	}
	for _, tc := range []struct {
		rev        int64
		doc, error string
	}{
		{0, doc, "runs revision 1, newer than 0"},
		{1, "[mailcow]\ntimezone = \"UTC\"\n", "another document as revision 1"},
		{2, "[mailcow]\n\n[node]\nname = \"mx2\"\n", "revision 2:4: node.name: not a cluster-wide setting"},
		{2, "[failover]\ncheck_grace = \"soon\"\n", "failover.check_grace: invalid duration"},
	} {
		ans := a.ApplyConfig(ctx, tc.rev, tc.doc)
		if ans.Outcome != api.ConfigRefused || !strings.Contains(ans.Error, tc.error) || ans.Revision != 1 {
			t.Errorf("revision %d %q: %+v, want refused with %q", tc.rev, tc.doc, ans, tc.error)
		}
	}
	if kept, _ := config.ReadClusterDoc(config.ClusterDocPath(dir)); kept.Revision != 1 {
		t.Errorf("a refused revision changed the kept one: %+v", kept)
	}
}

// every waits first, then runs f every interval until f is done or the context ends.
func TestEvery(t *testing.T) {
	ctx := context.Background()
	var at []time.Duration
	begin := time.Now()
	every(ctx, 30*time.Millisecond, 10*time.Millisecond, func() bool {
		at = append(at, time.Since(begin))
		return len(at) == 3
	})
	if len(at) != 3 || at[0] < 30*time.Millisecond || at[2]-at[0] < 20*time.Millisecond {
		t.Errorf("ran at %v; want 3 runs, the first after 30ms, 10ms apart", at)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	n := 0
	every(cctx, time.Millisecond, time.Millisecond, func() bool { n++; return false })
	if n == 0 || cctx.Err() == nil {
		t.Errorf("every returned before its context ended (%d runs)", n)
	}
}
