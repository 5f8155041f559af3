package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/keepalived"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// The rotation's steps on a node keep its files and its keyring in step: stage writes ".next" (0600) and accepts
// it, switch signs with it and keeps the old one as ".prev", finish deletes that; keepalived's VRRP password
// follows the signing secret. Steps out of order are refused and change nothing; a step repeated changes nothing.
func TestSecretRotationSteps(t *testing.T) {
	dir := t.TempDir()
	old := "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	next := "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9"
	for _, f := range []string{"token", "secret", "dbpw"} {
		if err := config.WriteSecret(filepath.Join(dir, f), old); err != nil {
			t.Fatal(err)
		}
	}
	nodes := ""
	for i := 1; i <= 3; i++ {
		nodes += fmt.Sprintf("[[cluster.nodes]]\nname = \"mx%d\"\nprivate_ip = \"10.99.0.1%d\"\nserver_id = %d\npriority = %d\nbootstrap = %v\n",
			i, i, i, 200-50*i, i == 1)
	}
	base := fmt.Sprintf("version = 1\n[node]\nname = \"mx1\"\n[mailcow]\nhostname = \"mail.example.org\"\n[cluster]\nname = \"c1\"\nsecret_file = %q\n%s"+
		"[hcloud]\ntoken_file = %q\nfloating_ip_id = 7\nvolume_id = 8\n[galera]\npassword_file = %q\n"+
		"[keepalived]\nconfig_file = %q\nnotify_fifo = %q\n[failover]\nstate_dir = %q\n",
		filepath.Join(dir, "secret"), nodes, filepath.Join(dir, "token"), filepath.Join(dir, "dbpw"),
		filepath.Join(dir, "keepalived.conf"), filepath.Join(dir, "notify.fifo"), dir)
	cfg, probs := config.Check("user-data", []byte(base), config.SecretFiles{Owner: os.Geteuid()})
	if probs.Err() != nil {
		t.Fatal(probs.Err())
	}
	alerts, err := report.NewAlerter("c1", "mx1", nil, report.AlerterOptions{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	owner := config.SecretFiles{Owner: os.Geteuid()}
	keys, err := loadKeyring(cfg, owner)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{c: cfg, log: slog.New(slog.DiscardHandler), alerts: alerts, keys: keys, privIf: "eth1", o: Options{SecretOwner: os.Geteuid()}}
	ctx := context.Background()
	oldID, id := api.KeyID([]byte(old)), api.KeyID([]byte(next))
	vrrp := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "keepalived.conf"))
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "auth_pass" {
				return strings.Trim(f[1], `"`)
			}
		}
		return ""
	}
	want := func(step string, st api.SecretState, err error, sign, nxt, prev string, accepted int) {
		t.Helper()
		if err != nil || st != (api.SecretState{Signing: sign, Next: nxt, Prev: prev}) || st != a.SecretState() ||
			api.KeyID(keys.Signing()) != sign || len(keys.Accepted()) != accepted {
			t.Fatalf("%s: %+v %v (files say %+v, keyring accepts %d)", step, st, err, a.SecretState(), len(keys.Accepted()))
		}
	}

	if _, err := a.StageSecret(ctx, []byte("short")); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("a weak secret: %v", err)
	}
	if _, err := a.SwitchSecret(ctx, id); err == nil {
		t.Fatal("a switch to a secret not staged")
	}
	st, err := a.StageSecret(ctx, []byte(next))
	want("stage", st, err, oldID, id, "", 2)
	if fi, err := os.Stat(filepath.Join(dir, "secret.next")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret.next: %v", err)
	}
	if vrrp() != keepalived.AuthPass([]byte(old), "c1") {
		t.Errorf("after the stage VRRP's password is %q, want the old secret's", vrrp())
	}
	st, err = a.StageSecret(ctx, []byte(next))
	want("stage again", st, err, oldID, id, "", 2)
	if _, err := a.FinishSecret(ctx, id); err == nil {
		t.Fatal("a finish before the switch")
	}

	st, err = a.SwitchSecret(ctx, id)
	want("switch", st, err, id, "", oldID, 2)
	if vrrp() != keepalived.AuthPass([]byte(next), "c1") || vrrp() == keepalived.AuthPass([]byte(old), "c1") {
		t.Errorf("after the switch VRRP's password is %q, want the new secret's", vrrp())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "secret")); strings.TrimSpace(string(b)) != next {
		t.Errorf("cluster.secret_file does not hold the new secret")
	}
	st, err = a.SwitchSecret(ctx, id)
	want("switch again", st, err, id, "", oldID, 2)
	if _, err := a.StageSecret(ctx, []byte(strings.Repeat("a1b2c3d4e5f6g7h8", 3))); err == nil || !strings.Contains(err.Error(), "finish it first") {
		t.Fatalf("a new rotation before the finish: %v", err)
	}

	st, err = a.FinishSecret(ctx, id)
	want("finish", st, err, id, "", "", 1)
	if _, err := os.Stat(filepath.Join(dir, "secret.prev")); !os.IsNotExist(err) {
		t.Errorf("secret.prev is still there: %v", err)
	}
	st, err = a.FinishSecret(ctx, id)
	want("finish again", st, err, id, "", "", 1)
	// A restart reads the same.
	if k, err := loadKeyring(cfg, owner); err != nil || api.KeyID(k.Signing()) != id || len(k.Accepted()) != 1 {
		t.Fatalf("keyring at a start: %v", err)
	}
}
