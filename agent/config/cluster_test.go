package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const token64 = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl"

// A cluster configuration sets cluster-wide keys only; its problems name its own keys and lines; layered on the
// node's configuration it wins.
func TestCheckCluster(t *testing.T) {
	doc := "[failover]\ncheck_grace = \"45s\"\n[failover.breaker]\nmax = 3\n[mailcow]\ntimezone = \"Europe/Berlin\"\n"
	cfg, probs := CheckCluster("c.toml", []byte(doc), "user-data", []byte(minimal), nil)
	if probs.Err() != nil {
		t.Fatal(probs.Err())
	}
	if cfg.Failover.CheckGrace.D().Seconds() != 45 || cfg.Failover.Breaker.Max != 3 || cfg.Mailcow.Timezone != "Europe/Berlin" ||
		cfg.Node.Name != "mx1" || cfg.Mailcow.Hostname != "mail.example.org" {
		t.Errorf("layered: %+v %+v %+v", cfg.Failover, cfg.Mailcow, cfg.Node)
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"node key", "[failover]\ncheck_grace = \"45s\"\n[node]\nname = \"mx2\"\n", "c.toml:4: node.name: not a cluster-wide setting"},
		{"identity", "[hcloud]\nvolume_id = 9\n", "c.toml:2: hcloud.volume_id: not a cluster-wide setting"},
		{"path", "[failover]\nstate_dir = \"/tmp\"\n", "c.toml:2: failover.state_dir: not a cluster-wide setting"},
		{"cluster secret", "[cluster]\nsecret = \"0f1e2d3c4b5a69788796a5b4c3d2e1f0\"\n", "c.toml:2: cluster.secret: the cluster secret is not rotated by a cluster configuration (every node must switch at once): use mailcow-ha cluster rotate-secret"},
		{"bad value", "[failover]\n\ncheck_grace = \"soon\"\n", "c.toml:3: failover.check_grace: invalid duration"},
		{"bad range", "[keepalived]\ncheck_fall = 0\n", "c.toml:2: keepalived.check_fall: must be 1..10"},
		{"syntax", "[failover\n", "c.toml:1: TOML syntax"},
		{"weak token", "[hcloud]\ntoken = \"abc\"\n", "c.toml:2: hcloud.token: a Hetzner API token has 64 characters"},
	} {
		_, probs := CheckCluster("c.toml", []byte(tc.doc), "user-data", []byte(minimal), nil)
		if err := probs.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// The changes between two revisions say how each is applied, and never show a secret.
func TestClusterChanges(t *testing.T) {
	from := "[failover]\ncheck_grace = \"30s\"\n[hcloud]\ntoken = \"" + token64 + "\"\n"
	to := "[failover]\ncheck_grace = \"45s\"\n[hcloud]\ntoken = \"" + strings.ToUpper(token64) + "\"\n[mailcow]\ntimezone = \"UTC\"\n" +
		"[[alerts.email]]\nname = \"ops\"\nrelay = \"smtp.example.org:587\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]\npassword = \"hunter2hunter2\"\n"
	cs, err := ClusterChanges(from, to)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Key+" "+c.From+" -> "+c.To+" "+string(c.Apply))
	}
	want := []string{
		`alerts.email  -> (secret) restart`,
		`failover.check_grace "30s" -> "45s" live`,
		`hcloud.token (secret) -> (secret) live`,
		`mailcow.timezone  -> "UTC" restart`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !NeedsRestart(cs) || NeedsRestart(cs[1:3]) {
		t.Errorf("NeedsRestart: a restart key needs one, live keys do not")
	}
	if cs, _ := ClusterChanges(from, from); len(cs) != 0 {
		t.Errorf("no change: %+v", cs)
	}
}

// A rotation writes the cluster configuration's secrets over the files, and only the keys it sets.
func TestRotateSecrets(t *testing.T) {
	dir := t.TempDir()
	c := Defaults()
	c.Hcloud.TokenFile, c.Hcloud.Token = filepath.Join(dir, "token"), Secret(token64)
	c.Galera.PasswordFile, c.Galera.Password = filepath.Join(dir, "dbpw"), "from-user-data"
	os.WriteFile(c.Hcloud.TokenFile, []byte("old\n"), 0o600)
	os.WriteFile(c.Galera.PasswordFile, []byte("kept\n"), 0o600)
	got, err := RotateSecrets(&c, []string{"hcloud.token", "failover.check_grace"})
	if err != nil || strings.Join(got, ",") != "hcloud.token" {
		t.Fatalf("rotated %v, %v", got, err)
	}
	b, _ := os.ReadFile(c.Hcloud.TokenFile)
	fi, _ := os.Stat(c.Hcloud.TokenFile)
	if strings.TrimSpace(string(b)) != token64 || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %q %v", b, fi.Mode())
	}
	if b, _ := os.ReadFile(c.Galera.PasswordFile); string(b) != "kept\n" {
		t.Errorf("a secret the cluster configuration does not set was written: %q", b)
	}
	if got, _ := RotateSecrets(&c, []string{"hcloud.token"}); len(got) != 0 {
		t.Errorf("the same token again rotated %v", got)
	}
}

func TestClusterDocFile(t *testing.T) {
	p := ClusterDocPath(t.TempDir())
	if d, err := ReadClusterDoc(p); err != nil || d.Revision != 0 {
		t.Fatalf("missing: %+v %v", d, err)
	}
	d := ClusterDoc{Revision: 4, TOML: "[failover]\ncheck_grace = \"45s\"\n"}
	if err := WriteClusterDoc(p, d); err != nil {
		t.Fatal(err)
	}
	got, err := ReadClusterDoc(p)
	fi, _ := os.Stat(p)
	if err != nil || got != d || got.Hash() != d.Hash() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("read back %+v %v, mode %v", got, err, fi.Mode())
	}
}
