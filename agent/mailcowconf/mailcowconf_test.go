package mailcowconf

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var values = Values{Hostname: "mail.example.org", Timezone: "Europe/Berlin", ComposeProject: "mailcowdockerized",
	DBPassword: "db-password-0123456789", Secret: []byte("cluster-secret-0123456789abcdef0123456789"), Cluster: "c1",
	Settings: map[string]string{"SKIP_CLAMD": "y", "ADDITIONAL_SAN": "imap.example.org,smtp.example.org"}}

// The rendering, as a golden file: every variable once, in mailcow's order; the cluster's own values, the
// derived secrets, the settings, and mailcow's defaults for the rest.
func TestRenderGolden(t *testing.T) {
	b, err := Render(values)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join("testdata", "mailcow.conf.golden")
	if *update {
		os.WriteFile(p, b, 0o644)
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if string(b) != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", p, b)
	}
	vars := parse(string(b))
	for k, want := range map[string]string{"MAILCOW_HOSTNAME": "mail.example.org", "TZ": "Europe/Berlin", "DBNAME": "mailcow",
		"DBUSER": "mailcow", "DBPASS": "db-password-0123456789", "COMPOSE_PROJECT_NAME": "mailcowdockerized", "SKIP_CLAMD": "y",
		"SKIP_SOGO": "n", "API_ALLOW_FROM": PortalAddress, "IPV4_NETWORK": "172.22.1", "ADDITIONAL_SAN": "imap.example.org,smtp.example.org"} {
		if vars[k] != want {
			t.Errorf("%s=%q, want %q", k, vars[k], want)
		}
	}
	for _, s := range Shared {
		if !regexp.MustCompile(`^[A-Za-z0-9]+$`).MatchString(vars[s.Var]) || len(vars[s.Var]) != s.Len {
			t.Errorf("%s=%q: want %d letters and digits", s.Var, vars[s.Var], s.Len)
		}
	}
	for _, v := range Vars {
		if n := strings.Count(string(b), "\n"+v.Name+"="); (v.Optional && n != 0) || (!v.Optional && n != 1) {
			t.Errorf("%s written %d times", v.Name, n)
		}
	}
}

// Every node derives the same shared secrets from the same TOML; another secret or cluster gives others.
func TestSharedSecretsFollowTheClusterSecret(t *testing.T) {
	a, _ := Render(values)
	b, _ := Render(values)
	if string(a) != string(b) {
		t.Fatal("two renders of the same values differ")
	}
	rotated := values
	rotated.Secret = []byte("another-cluster-secret-0123456789abcdef")
	other := values
	other.Cluster = "c2"
	for name, v := range map[string]Values{"rotated secret": rotated, "other cluster": other} {
		c, _ := Render(v)
		for _, s := range Shared {
			if parse(string(c))[s.Var] == parse(string(a))[s.Var] {
				t.Errorf("%s: %s did not change", name, s.Var)
			}
		}
	}
}

// Settings the cluster owns, names mailcow.conf does not have, and values that a shell or Compose would read
// otherwise are refused, each named.
func TestCheckSettings(t *testing.T) {
	got := strings.Join(CheckSettings(map[string]string{"DBPASS": "x", "SKIP_CLAMDD": "y", "ADDITIONAL_SAN": "a\nB=1",
		"SPAMHAUS_DQS_KEY": "$(reboot)", "SKIP_SOGO": "y", "IPV4_NETWORK": "10.0.0"}), "\n")
	for _, want := range []string{"mailcow.conf.DBPASS: set by mailcow-ha (galera.password)", "mailcow.conf.SKIP_CLAMDD: not a variable",
		"mailcow.conf.ADDITIONAL_SAN: newlines", "mailcow.conf.SPAMHAUS_DQS_KEY: newlines", "mailcow.conf.IPV4_NETWORK: set by mailcow-ha"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "SKIP_SOGO") {
		t.Errorf("a valid setting refused:\n%s", got)
	}
	bad := values
	bad.Settings = map[string]string{"DBUSER": "root"}
	if _, err := Render(bad); err == nil {
		t.Error("Render accepted an owned variable")
	}
	bad = values
	bad.DBPassword = ""
	if _, err := Render(bad); err == nil || !strings.Contains(err.Error(), "DBPASS") {
		t.Errorf("an empty database password: %v", err)
	}
}

// The table is the pinned release's: every variable that generate_config.sh writes (set or commented out) is in
// Vars and the other way round, and where it writes a literal default, Vars has the same. A new release that adds,
// drops or changes one fails here.
func TestVarsAreTheReleases(t *testing.T) {
	tree, err := mailcowtree.Dir(context.Background(), "../..")
	if err != nil {
		t.Skipf("needs mailcow's release tree: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(tree, "generate_config.sh"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	start := strings.Index(src, "cat << EOF > mailcow.conf")
	end := strings.Index(src[start:], "\nEOF\n")
	if start < 0 || end < 0 {
		t.Fatal("generate_config.sh: no mailcow.conf here-document")
	}
	release := map[string]string{}
	commented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^(#?)([A-Z][A-Z0-9_]*)=(.*)$`).FindAllStringSubmatch(src[start:start+end], -1) {
		if _, seen := release[m[2]]; seen {
			continue // the first mention (a commented example may follow)
		}
		release[m[2]] = m[3]
		commented[m[2]] = m[1] == "#"
	}
	for _, v := range Vars {
		def, ok := release[v.Name]
		if !ok {
			t.Errorf("%s is in Vars but not in the release's mailcow.conf", v.Name)
			continue
		}
		if !strings.ContainsAny(def, "$") && !commented[v.Name] && v.Default != def {
			t.Errorf("%s: Vars has the default %q, the release %q", v.Name, v.Default, def)
		}
		delete(release, v.Name)
	}
	for name := range release {
		t.Errorf("the release's mailcow.conf has %s, which Vars lacks", name)
	}
}

func parse(s string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			out[k] = v
		}
	}
	return out
}
