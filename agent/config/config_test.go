package config

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const minimal = `# mailcow-ha
version = 1
[node]
name = "mx1"
[cluster]
name = "c1"
[[cluster.nodes]]
name = "mx1"
private_ip = "10.99.0.11"
server_id = 1
priority = 150
bootstrap = true
[[cluster.nodes]]
name = "mx2"
private_ip = "10.99.0.12"
server_id = 2
priority = 100
[[cluster.nodes]]
name = "mx3"
private_ip = "10.99.0.13"
server_id = 3
priority = 50
[mailcow]
hostname = "mail.example.org"
[hcloud]
floating_ip_id = 7
volume_id = 8
`

// discovering is one user-data for every node: no node.name, no cluster.nodes (agent/membership fills them).
const discovering = `# mailcow-ha
version = 1
[cluster]
name = "c1"
discover = "hcloud"
[mailcow]
hostname = "mail.example.org"
[hcloud]
floating_ip_id = 7
volume_id = 8
`

// One user-data for every node passes without members, and CheckMembers checks them once they are known.
func TestDiscoveringConfigDefersTheMembers(t *testing.T) {
	c, probs := Parse("t.toml", []byte(discovering+"network_id = 9\n"))
	if err := probs.Err(); err != nil {
		t.Fatal(err)
	}
	if !c.Discovers() {
		t.Fatal("Discovers() = false")
	}
	if err := CheckMembers("api", &c).Err(); err == nil || !strings.Contains(err.Error(), "node.name: missing") {
		t.Fatalf("no members yet: %v", err)
	}
	c.Node.Name = "mx1"
	c.Cluster.Nodes = []Member{{Name: "mx1", PrivateIP: "10.0.0.2", ServerID: 1, Priority: 150, Bootstrap: true},
		{Name: "mx2", PrivateIP: "10.0.0.3", ServerID: 2, Priority: 140}, {Name: "mx3", PrivateIP: "10.0.0.4", ServerID: 3, Priority: 130}}
	if err := CheckMembers("api", &c).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestExamplesValidate(t *testing.T) {
	paths, err := filepath.Glob("../../cloud-init/examples/*.toml")
	if err != nil || len(paths) != 3 {
		t.Fatalf("want 3 examples, got %v (%v)", paths, err)
	}
	for _, p := range paths {
		pl, err := Sources{Path: p}.Read(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		// As shipped, the examples hold placeholders where the secrets go: refused, each named.
		_, probs := Check(p, pl.Data, SecretFiles{Owner: os.Getuid()})
		if len(probs) != 3 {
			t.Errorf("%s: want the three placeholders refused, got:\n%v", p, probs.Err())
		}
		for i, key := range []string{"cluster.secret", "hcloud.token", "galera.password"} {
			if i >= len(probs) || probs[i].Key != key || !strings.Contains(probs[i].Msg, "placeholder") {
				t.Errorf("%s: want %s refused as a placeholder, got:\n%v", p, key, probs.Err())
			}
		}
		// Filled in, they are valid.
		cfg, probs := Check(p, []byte(filledExample(string(pl.Data))), SecretFiles{Owner: os.Getuid()})
		if err := probs.Err(); err != nil {
			t.Errorf("%s:\n%v", p, err)
		}
		want := strings.TrimSuffix(filepath.Base(p), ".toml")
		if cfg.Node.Name != want {
			t.Errorf("%s: node.name = %q, want %q", p, cfg.Node.Name, want)
		}
		if len(cfg.Peers()) != 2 {
			t.Errorf("%s: peers = %v", p, cfg.Peers())
		}
	}
}

// The webhook examples in docs/examples validate as part of a configuration.
func TestWebhookExamplesValidate(t *testing.T) {
	paths, _ := filepath.Glob("../../docs/examples/webhook-*.toml")
	if len(paths) < 2 {
		t.Fatalf("want the ntfy and Slack examples, got %v", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, probs := Parse(p, append([]byte(minimal), b...))
		if err := probs.Err(); err != nil {
			t.Errorf("%s:\n%v", p, err)
			continue
		}
		if w := cfg.Alerts.Webhooks; len(w) != 1 || w[0].Template == "" || w[0].ContentType == "" {
			t.Errorf("%s: %+v", p, w)
		}
	}
}

func TestDefaultsApplyAndOverride(t *testing.T) {
	cfg, probs := Parse("t.toml", []byte(strings.Replace(minimal, "[mailcow]\n", "[mailcow]\ncritical_services = [\"postfix-mailcow\"]\n", 1)+"[failover]\ncheck_grace = \"45s\"\n"))
	if err := probs.Err(); err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if cfg.Failover.CheckGrace.D() != 45*time.Second {
		t.Errorf("check_grace = %s", cfg.Failover.CheckGrace)
	}
	if cfg.Failover.QuorumGrace != d.Failover.QuorumGrace || cfg.Galera.SSTMethod != "rsync" {
		t.Errorf("defaults not kept: %+v %+v", cfg.Failover, cfg.Galera)
	}
	if got := cfg.Mailcow.CriticalServices; len(got) != 1 || got[0] != "postfix-mailcow" {
		t.Errorf("critical_services = %v, want the file's list only", got)
	}
	if self, ok := cfg.Self(); !ok || self.PrivateIP != "10.99.0.11" || !self.Bootstrap {
		t.Errorf("self = %+v %v", self, ok)
	}
}

// TestBadConfigs checks that each broken file gives problems that name the line and the key.
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []string // each must appear in the output
	}{
		{"syntax", minimal + "[failover\n", []string{"t.toml:28: TOML syntax"}},
		{"unknown key", minimal + "[failover]\nchek_grace = \"1s\"\n", []string{"t.toml:29: failover.chek_grace: unknown key (did you mean \"check_grace\"?)"}},
		{"unknown table", minimal + "[galeera]\nx = 1\n", []string{"t.toml:28: galeera: unknown key"}},
		{"wrong type", strings.Replace(minimal, "server_id = 2", "server_id = \"2\"", 1), []string{"t.toml:16: cluster.nodes[1].server_id: wrong type: want integer, got string"}},
		{"bad duration", minimal + "[failover]\nfence_timeout = \"20 seconds\"\n", []string{"t.toml:29: failover.fence_timeout: invalid duration"}},
		{"duration as int", minimal + "[failover]\nfence_timeout = 20\n", []string{"t.toml:29: failover.fence_timeout: wrong type: want a duration"}},
		{"bad ip", strings.Replace(minimal, "10.99.0.12", "10.99.0.300", 1), []string{"t.toml:15: cluster.nodes[1].private_ip: invalid IP address \"10.99.0.300\""}},
		{"duplicate node", strings.Replace(minimal, `name = "mx3"`, `name = "mx2"`, 1), []string{"t.toml:19: cluster.nodes[2].name: duplicate node \"mx2\""}},
		{"duplicate ip", strings.Replace(minimal, "10.99.0.13", "10.99.0.12", 1), []string{"t.toml:20: cluster.nodes[2].private_ip: duplicate private IP"}},
		{"not in list", strings.Replace(minimal, "name = \"mx1\"\n[cluster]", "name = \"mx9\"\n[cluster]", 1), []string{"t.toml:4: node.name: \"mx9\" is not in cluster.nodes"}},
		{"two nodes", minimal[:strings.LastIndex(minimal, "[[cluster.nodes]]")] + "[hcloud]\nfloating_ip_id = 7\nvolume_id = 8\n", []string{"cluster.nodes: 2 node(s): a cluster needs at least 3 nodes, or 2 and an arbitrator"}},
		{"breaker", minimal + "[failover]\nfence_timeout = \"30s\"\n[failover.breaker]\nwindow = \"10s\"\n", []string{"t.toml:31: failover.breaker.window: 10s is shorter than failover.fence_timeout (30s)"}},
		{"version", strings.Replace(minimal, "version = 1", "version = 2", 1), []string{"t.toml:2: version: unsupported schema version 2"}},
		{"version not first", strings.Replace(minimal, "version = 1\n", "", 1) + "version = 1\n", []string{"version: the first key must be version = 1"}},
		{"arbitrator bootstrap", minimal + "[[cluster.nodes]]\nname = \"arb\"\nrole = \"arbitrator\"\nprivate_ip = \"10.99.0.14\"\nbootstrap = true\n", []string{"cluster.nodes[3].bootstrap: an arbitrator (garbd) cannot bootstrap"}},
		{"keepalived", minimal + "[keepalived]\nrouter_id = 300\npreempt = \"sometimes\"\n", []string{"t.toml:29: keepalived.router_id: must be 1..255", "t.toml:30: keepalived.preempt:"}},
		{"advert interval", minimal + "[keepalived]\nvrrp_version = 3\nadvert_interval = \"155ms\"\n", []string{"t.toml:30: keepalived.advert_interval: must be whole centiseconds from 10ms to 40.95s (VRRPv3), got 155ms"}},
		{"advert interval v2", minimal + "[keepalived]\nadvert_interval = \"200ms\"\n", []string{"t.toml:29: keepalived.advert_interval: must be whole seconds from 1s to 255s with vrrp_version = 2 (set vrrp_version = 3 for shorter ones), got 200ms"}},
		{"vrrp version", minimal + "[keepalived]\nvrrp_version = 4\n", []string{"t.toml:29: keepalived.vrrp_version: must be 2 or 3, got 4"}},
		{"keepalived check", minimal + "[keepalived]\ncheck_timeout = \"500ms\"\ncheck_fall = 0\n", []string{"t.toml:29: keepalived.check_timeout: must be whole seconds", "t.toml:30: keepalived.check_fall: must be 1..10"}},
		{"webhook template", minimal + "[[alerts.webhooks]]\nname = \"x\"\nurl = \"ftp://x\"\ntemplate = \"{{ .Event \"\n", []string{"t.toml:30: alerts.webhooks[0].url", "t.toml:31: alerts.webhooks[0].template: invalid Go template"}},
		{"webhook headers", minimal + "[[alerts.webhooks]]\nname = \"x\"\nurl = \"https://x\"\ncontent_type = \"no type\"\nheaders = { \"Bad Name\" = \"1\", Host = \"h\", X-Mailcow-HA-Event = \"e\" }\n",
			[]string{"alerts.webhooks[0].content_type: not a media type", "alerts.webhooks[0].headers.Bad Name: not a valid header name",
				"alerts.webhooks[0].headers.Host: set by the agent", "alerts.webhooks[0].headers.X-Mailcow-HA-Event: reserved",
			}},
		{"webhook header type", minimal + "[[alerts.webhooks]]\nname = \"x\"\nurl = \"https://x\"\nheaders = { Priority = 5 }\n",
			[]string{"t.toml:31: alerts.webhooks[0].headers.Priority: wrong type: want string, got integer"}},
		{"email", minimal + "[[alerts.webhooks]]\nname = \"ops\"\nurl = \"https://x\"\n[[alerts.email]]\nname = \"ops\"\nrelay = \"smtp.example.org\"\nfrom = \"Ops <ops@example.org>\"\ntls = \"none\"\nusername = \"u\"\n",
			[]string{"alerts.email[0].name: duplicate alert target \"ops\"", "alerts.email[0].relay: \"smtp.example.org\": host:port",
				"alerts.email[0].from: \"Ops <ops@example.org>\": one bare address", "alerts.email[0].to: missing",
				"alerts.email[0].password_file: a username needs password or password_file", "alerts.email[0].tls: \"none\" with a username"}},
		{"short token", minimal + "token = \"abc\"\n", []string{"hcloud.token: a Hetzner API token has 64 characters, this one has 3"}},
		{"discover", strings.Replace(minimal, "[cluster]\n", "[cluster]\ndiscover = \"api\"\n", 1), []string{`t.toml:6: cluster.discover: must be "static" or "hcloud", got "api"`}},
		{"discover without a network", discovering, []string{`hcloud.network_id: missing: with cluster.discover = "hcloud"`}},
		{"discover bad node name", strings.Replace(discovering, "[cluster]", "[node]\nname = \"MX 1\"\n[cluster]", 1), []string{`node.name: "MX 1": use lower-case`}},
		{"mailcow.conf", strings.Replace(minimal, "[mailcow]\n", "[mailcow]\ntimezone = \"Mars/Olympus\"\nhostname = \"mail\"\n[mailcow.conf]\nDBPASS = \"x\"\nSKIP_CLAMDD = \"y\"\nADDITIONAL_SAN = \"$(id)\"\n", 1),
			[]string{"mailcow.conf.DBPASS: set by mailcow-ha (galera.password)", "mailcow.conf.SKIP_CLAMDD: not a variable of mailcow.conf",
				"mailcow.conf.ADDITIONAL_SAN: newlines, quotes", "mailcow.timezone: \"Mars/Olympus\" is not a time zone"}},
		{"backup restore and retention", minimal + "[backup]\nrestore_from = \"Old Cluster\"\nrestore_timeout = \"10s\"\nkeep_daily = 0\nkeep_monthly = -1\nrestore_before = \"yesterday\"\n",
			[]string{"t.toml:29: backup.restore_from: given without backup.repository", "backup.restore_from: \"Old Cluster\": a cluster's name",
				"t.toml:30: backup.restore_timeout: 10s: at least 1m", "t.toml:31: backup.keep_daily: 0: keep at least", "t.toml:32: backup.keep_monthly: -1: 0 or more",
				"t.toml:33: backup.restore_before: \"yesterday\": an RFC 3339 time"}},
		{"restore_before alone", minimal + "[backup]\nrestore_before = \"2026-12-01T03:00:00Z\"\n", []string{"t.toml:29: backup.restore_before: given without backup.restore_from"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, probs := Parse("t.toml", []byte(tc.src))
			err := probs.Err()
			if err == nil {
				t.Fatal("no problem found")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("output lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	src := strings.NewReplacer(
		"10.99.0.12", "not-an-ip",
		"priority = 50", "priority = 150",
		"floating_ip_id = 7", "floating_ip_id = 0",
	).Replace(minimal) + "[failover.breaker]\nmax = 0\n"
	_, probs := Parse("t.toml", []byte(src))
	if len(probs) != 4 {
		t.Fatalf("want 4 problems, got %d:\n%v", len(probs), probs.Err())
	}
	lines := strings.Split(probs.Err().Error(), "\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "t.toml:") {
			t.Errorf("problem without a file position: %q", l)
		}
	}
	// Unknown keys, wrong types and rule violations are all reported together too, and a key dropped for its
	// type is not reported again as missing.
	src = strings.Replace(minimal, "volume_id = 8", "volume_id = \"8\"", 1)
	src = strings.Replace(src, "10.99.0.13", "10.99.0.12", 1)
	_, probs = Parse("t.toml", []byte(src+"[failover]\nfoo = 1\nbar = 2\ncheck_grace = 3\n"))
	want := []string{
		"t.toml:20: cluster.nodes[2].private_ip: duplicate private IP 10.99.0.12 (also cluster.nodes[1])",
		"t.toml:27: hcloud.volume_id: wrong type: want integer, got string",
		"t.toml:29: failover.foo: unknown key",
		"t.toml:30: failover.bar: unknown key",
		"t.toml:31: failover.check_grace: wrong type: want a duration string such as \"30s\", got integer",
	}
	got := strings.Split(probs.Err().Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("want %d problems, got:\n%v", len(want), probs.Err())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("problem %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestSecretFileChecks(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "hcloud.token")
	sec := filepath.Join(dir, "cluster.secret")
	pw := filepath.Join(dir, "db.password")
	src := minimal + fmt.Sprintf("token_file = %q\n[galera]\npassword_file = %q\n[cluster]\n", tok, pw)
	src = strings.Replace(src, "[cluster]\nname = \"c1\"\n", fmt.Sprintf("[cluster]\nname = \"c1\"\nsecret_file = %q\n", sec), 1)
	src = strings.TrimSuffix(src, "[cluster]\n")
	owner := SecretFiles{Owner: os.Getuid()}

	_, probs := Check("t.toml", []byte(src), owner)
	if err := probs.Err(); err == nil || !strings.Contains(err.Error(), "hcloud.token_file: "+tok+" does not exist") {
		t.Fatalf("missing token file not reported: %v", err)
	}
	must(t, os.WriteFile(tok, []byte("s3cr3t-token-value\n"), 0o644))
	must(t, os.WriteFile(sec, []byte("cluster-secret-value\n"), 0o600))
	// A short secret file is refused by its length, and never shown.
	if _, probs := Check("t.toml", []byte(src), owner); probs.Err() == nil || !strings.Contains(probs.Err().Error(), "cluster.secret_file: "+sec+" holds too short") ||
		strings.Contains(probs.Err().Error(), "cluster-secret-value") {
		t.Fatalf("short secret file: %v", probs.Err())
	}
	must(t, os.WriteFile(sec, []byte("c1d4e7f0a3b6c9d2e5f8a1b4c7d0e3f6a9b2c5d8e1f4a7b0c3d6e9f2a5b8c1d4\n"), 0o600))
	_, probs = Check("t.toml", []byte(src), owner)
	err := probs.Err()
	if err == nil || !strings.Contains(err.Error(), "has mode 0644: it must not be readable by group or others") {
		t.Fatalf("loose mode not reported: %v", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Fatal("a problem shows the secret")
	}
	must(t, os.Chmod(tok, 0o600))
	// No database password: the first bootstrap could not create mailcow's user.
	if _, probs = Check("t.toml", []byte(src), owner); probs.Err() == nil || !strings.Contains(probs.Err().Error(), "galera.password_file: "+pw+" does not exist") {
		t.Fatalf("missing database password not reported: %v", probs.Err())
	}
	must(t, os.WriteFile(pw, []byte("mailcow-db-password\n"), 0o600))
	if _, probs = Check("t.toml", []byte(src), owner); probs.Err() != nil {
		t.Fatalf("good files refused: %v", probs.Err())
	}
	if _, probs = Check("t.toml", []byte(src), SecretFiles{Owner: os.Getuid() + 1}); probs.Err() == nil ||
		!strings.Contains(probs.Err().Error(), "is owned by uid") {
		t.Fatalf("wrong owner not reported: %v", probs.Err())
	}
	got, err := owner.ReadSecret(tok)
	if err != nil || got.Reveal() != "s3cr3t-token-value" {
		t.Fatalf("ReadSecret = %v, %v", got, err)
	}
}

// A syntax error on a secret's line (the value not quoted) does not put the value in the problem, which the agent
// logs to the journal.
func TestSyntaxErrorHidesTheToken(t *testing.T) {
	src := "# mailcow-ha\nversion = 1\n[hcloud]\ntoken = abcdefSECRETvalue\n"
	_, probs := Parse("t.toml", []byte(src))
	err := probs.Err()
	if err == nil || !strings.Contains(err.Error(), "t.toml:4: TOML syntax") {
		t.Fatalf("want a syntax error on line 4: %v", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("the problem shows the unquoted secret: %v", err)
	}
	if got := redactTokens(`expected "=" but found "xyzzy" instead`); got != `expected "=" but found a token (not shown: it may be a secret) instead` {
		t.Errorf("redactTokens: %q", got)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	token := strings.Repeat("T", 64)
	cfg, probs := Parse("t.toml", []byte(minimal+fmt.Sprintf("token = %q\n", token)))
	if probs.Err() != nil {
		t.Fatal(probs.Err())
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("cfg", "hcloud", cfg.Hcloud, "token", cfg.Hcloud.Token)
	js, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.Hcloud.Token), logs.String(), string(js)} {
		if strings.Contains(s, token) {
			t.Fatalf("token printed: %s", s)
		}
	}
	if cfg.Hcloud.Token.Reveal() != token {
		t.Fatal("Reveal lost the value")
	}
}

func TestMaterializeSecrets(t *testing.T) {
	dir := t.TempDir()
	token := strings.Repeat("a", 64)
	cfg, probs := Parse("t.toml", []byte(strings.Replace(minimal, "[cluster]\n", "[cluster]\nsecret = \""+strongSecret+"\"\n", 1)+"token = \""+token+"\"\n"))
	if probs.Err() != nil {
		t.Fatal(probs.Err())
	}
	cfg.Hcloud.TokenFile = filepath.Join(dir, "sub", "hcloud.token")
	cfg.Cluster.SecretFile = filepath.Join(dir, "sub", "cluster.secret")
	cfg.Galera.PasswordFile = filepath.Join(dir, "sub", "db.password")
	cfg.Galera.Password = "inline-db-password"
	cfg.Alerts.Email = []Email{{Name: "ops", Password: "smtp-password", PasswordFile: filepath.Join(dir, "sub", "smtp.password")}}
	var logs bytes.Buffer
	must(t, MaterializeSecrets(&cfg, slog.New(slog.NewTextHandler(&logs, nil))))
	if cfg.Hcloud.Token.Set() || cfg.Cluster.Secret.Set() || cfg.Galera.Password.Set() || cfg.Alerts.Email[0].Password.Set() {
		t.Error("inline secrets kept in memory after writing them")
	}
	if got, err := (SecretFiles{Owner: os.Getuid()}).ReadSecret(cfg.Alerts.Email[0].PasswordFile); err != nil || got.Reveal() != "smtp-password" {
		t.Errorf("the e-mail password's file: %v", err)
	}
	for _, p := range []string{cfg.Hcloud.TokenFile, cfg.Cluster.SecretFile, cfg.Galera.PasswordFile} {
		if err := (SecretFiles{Owner: os.Getuid()}).CheckSecretFile(p); err != nil {
			t.Error(err)
		}
	}
	got, err := SecretFiles{Owner: os.Getuid()}.ReadSecret(cfg.Hcloud.TokenFile)
	if err != nil || got.Reveal() != token {
		t.Errorf("token file = %v %v", got, err)
	}
	if n := strings.Count(logs.String(), "were written to files"); n != 1 || !strings.Contains(logs.String(), "hcloud.token cluster.secret galera.password alerts.email[0].password") {
		t.Errorf("want one line naming the keys written, got %d: %s", n, logs.String())
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the log shows the token")
	}
	// The operator rotates the token file; the next start, with the old token still in user-data, keeps the file
	// and says that the two differ.
	must(t, os.WriteFile(cfg.Hcloud.TokenFile, []byte(strings.Repeat("b", 64)+"\n"), 0o600))
	cfg.Hcloud.Token, cfg.Cluster.Secret, cfg.Galera.Password = Secret(token), Secret(strongSecret), "inline-db-password"
	cfg.Alerts.Email[0].Password = "smtp-password"
	logs.Reset()
	must(t, MaterializeSecrets(&cfg, slog.New(slog.NewTextHandler(&logs, nil))))
	if got, _ := (SecretFiles{Owner: os.Getuid()}).ReadSecret(cfg.Hcloud.TokenFile); got.Reveal() != strings.Repeat("b", 64) {
		t.Error("a rotated token file was overwritten with the old inline token")
	}
	if !strings.Contains(logs.String(), "differ") || !strings.Contains(logs.String(), "hcloud.token") ||
		strings.Contains(logs.String(), "cluster.secret") || strings.Contains(logs.String(), token) {
		t.Errorf("want one warning naming hcloud.token only: %s", logs.String())
	}
	if cfg.Hcloud.Token.Set() {
		t.Error("the inline token was kept in memory")
	}
}

func TestDecodePayload(t *testing.T) {
	toml := []byte(minimal)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(toml)
	zw.Close()
	b64 := base64.StdEncoding.EncodeToString(toml)
	wrapped := ""
	for i := 0; i < len(b64); i += 76 {
		wrapped += b64[i:min(i+76, len(b64))] + "\n"
	}
	mime := "Content-Type: multipart/mixed; boundary=\"XX\"\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/cloud-config\n\n#cloud-config\nruncmd: [ls]\n--XX\nContent-Type: application/toml\n\n" + minimal + "\n--XX--\n"
	good := map[string][]byte{
		"plain":       toml,
		"gzip":        gz.Bytes(),
		"base64":      []byte(wrapped),
		"base64+gzip": []byte(base64.StdEncoding.EncodeToString(gz.Bytes())),
		"mime":        []byte(mime),
	}
	for name, in := range good {
		out, err := DecodePayload(in)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, probs := Parse(name, out); probs.Err() != nil {
			t.Errorf("%s: %v", name, probs.Err())
		}
	}
	bad := map[string]struct {
		in   string
		want string
	}{
		"shebang":      {"#!/bin/sh\nrm -rf /\n", `line 1: starts with "#!"`},
		"cloud-config": {"#cloud-config\nruncmd: [ls]\n", `"#cloud-config"`},
		"include":      {"#include\nhttp://x\n", `"#include"`},
		"boothook":     {"#cloud-boothook\n", `"#cloud-boothook"`},
		"part-handler": {"#part-handler\n", `"#part-handler"`},
		"jinja":        {"## template: jinja\n#cloud-config\n", `"## template"`},
		"b64 shebang":  {base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n")), `"#!"`},
		"big":          {"# mailcow-ha\n" + strings.Repeat("#", MaxUserData), "at most 32768"},
		"mime no toml": {"Content-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n--XX--\n", "has no TOML part"},
	}
	for name, tc := range bad {
		_, err := DecodePayload([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
	bomb := bytes.Buffer{}
	zw = gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte("a"), 10<<20))
	zw.Close()
	if _, err := DecodePayload(bomb.Bytes()); err == nil || !strings.Contains(err.Error(), "expands beyond") {
		t.Errorf("gzip bomb: %v", err)
	}
}

func TestSourcesOrder(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "config.toml")
	ud := filepath.Join(dir, "user-data.txt")
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hetzner/v1/userdata" {
			http.NotFound(w, r)
			return
		}
		if hits.Add(1) <= 2 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("# mailcow-ha\nversion = 1\n# from metadata\n"))
	}))
	defer srv.Close()
	s := Sources{DefaultPath: def, UserDataPath: ud, MetadataURL: srv.URL + "/hetzner/v1", MetadataDeadline: 10 * time.Second}
	ctx := context.Background()

	pl, err := s.Read(ctx)
	if err != nil || !strings.Contains(string(pl.Data), "from metadata") || pl.Name != "metadata userdata" {
		t.Fatalf("metadata: %q %v", pl.Data, err)
	}
	if hits.Load() != 3 {
		t.Errorf("metadata tried %d times, want 3 (two 503s, then 200)", hits.Load())
	}
	must(t, os.WriteFile(ud, []byte("# mailcow-ha\n# user-data copy\n"), 0o600))
	if pl, err = s.Read(ctx); err != nil || pl.Name != ud {
		t.Fatalf("user-data copy: %v %v", pl.Name, err)
	}
	must(t, os.WriteFile(def, []byte("# mailcow-ha\n# etc\n"), 0o600))
	if pl, err = s.Read(ctx); err != nil || pl.Name != def {
		t.Fatalf("default path: %v %v", pl.Name, err)
	}
	s.Path = "-"
	s.Stdin = strings.NewReader("# mailcow-ha\n# stdin\n")
	if pl, err = s.Read(ctx); err != nil || pl.Name != "-" || !strings.Contains(string(pl.Data), "stdin") {
		t.Fatalf("stdin: %v %v", pl.Name, err)
	}
	s.Path = filepath.Join(dir, "missing.toml")
	if _, err = s.Read(ctx); err == nil {
		t.Fatal("an explicit --config that is missing must fail, not fall back")
	}
}

func TestMetadataNoUserData(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	_, err := Sources{MetadataURL: srv.URL, MetadataDeadline: 5 * time.Second}.Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no user-data") || hits.Load() != 1 {
		t.Fatalf("got %v after %d requests", err, hits.Load())
	}
}

func TestLineIndex(t *testing.T) {
	src := "version = 1\n[a]\nx = 1\ns = \"\"\"\nfake = 2\n\"\"\"\n[[b.c]]\ny = 2\n[[b.c]]\ny = 3\n\"q.k\" = 4\n[b.c.d]\nz = 5\n"
	idx := indexLines(src)
	for key, want := range map[string]int{
		"version": 1, "a.x": 3, "a.fake": 2, "b.c[0].y": 8, "b.c[1].y": 10, "b.c[1].q.k": 11, "b.c[1].d.z": 13, "b.c[1].nope": 9, "zzz": 0,
	} {
		if got := idx.line(key); got != want {
			t.Errorf("line(%q) = %d, want %d", key, got, want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// filledExample puts strong made-up secrets where an example has its placeholders, as a user would.
func filledExample(src string) string {
	return strings.NewReplacer(
		"REPLACE-with-the-output-of-openssl-rand-hex-32-0000", "9f2c4e7a1b3d5f6081a2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e",
		"REPLACE-with-your-64-character-Hetzner-Cloud-API-token-000000000", "Hx7kP2mQ9vR4tW8yZ3aB6cD1eF5gJ0hK2nL4pS7uV9wX3zA8bC6dE1fG5hJ7kM2n",
		"REPLACE-with-the-output-of-openssl-rand-hex-32-0001", "4b8e1c7f2a9d3e6b5c0f8a7d2e1b4c9f3a6d8e0b7c5f2a1d9e4b3c8f6a0d7e2b",
	).Replace(src)
}

// strongSecret is a made-up cluster secret that passes the strength checks.
const strongSecret = "5e2a9c7f1d4b8e3a6c0f2d9b7e1a4c8f3b6d0e9a2c5f7b1e4d8a3c6f0b9e2d7a"

// Placeholders and secrets that random output never looks like are refused; openssl's output and a long
// passphrase-like string pass.
func TestWeakSecrets(t *testing.T) {
	for s, want := range map[string]string{
		"REPLACE-with-the-output-of-openssl-rand-hex-32-0000": "placeholder",
		"changeme-changeme-changeme-changeme":                 "placeholder",
		"0123456789abcdef":                                    "too short",
		"lab-cluster-secret-xxxxxxxxxxxxxxxxxxxxxxxx":         "variety",
		"abababababababababababababababababababab":            "variety",
		strongSecret: "",
		"vm-cluster-secret-0123456789abcdef0123456789": "",
	} {
		got := weakSecret(s, 32)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("weakSecret(%q) = %q, want %q", s, got, want)
		}
	}
}

// The advert interval in force follows the VRRP version unless set: VRRPv2's 1 s for a cluster made before VRRPv3
// (no vrrp_version in its user-data), 200 ms for one cluster create makes.
func TestAdvertByVersion(t *testing.T) {
	k := Defaults().Keepalived
	if k.VRRPVersion != 2 || k.Advert() != time.Second {
		t.Errorf("default: VRRPv%d every %s, want VRRPv2 every 1s", k.VRRPVersion, k.Advert())
	}
	k.VRRPVersion = 3
	if k.Advert() != 200*time.Millisecond {
		t.Errorf("VRRPv3: every %s, want 200ms", k.Advert())
	}
	k.AdvertInterval = Duration(50 * time.Millisecond)
	if k.Advert() != 50*time.Millisecond {
		t.Errorf("set to 50ms: every %s", k.Advert())
	}
}
