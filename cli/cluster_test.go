package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

// emptyProject is a Hetzner project with nothing but the appliance's snapshots and one SSH key, as a new user has
// it after building the image.
func emptyProject(t *testing.T) (*hcloudsim.Sim, string) {
	t.Helper()
	st := hcloudsim.EmptyProject()
	st.SSHKeys = []hcloudsim.SSHKey{{ID: 8001, Name: "ops",
		PublicKey:   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7m4OZQ0jRyyqWsn3qK0OzvDq7fYyM1cQ0Jm9VvBq8l ops@example",
		Fingerprint: "b7:16:3b:1c:5e:f2:8a:22:34:1e:aa:10:44:9d:0f:3a", Labels: map[string]string{}}}
	sim, err := hcloudsim.New(hcloudsim.Options{State: st, Latencies: hcloudsim.DefaultLatencies().Scale(0.01)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	t.Setenv("HCLOUD_ENDPOINT", srv.URL+"/v1")
	t.Setenv("HCLOUD_TOKEN", hcloudsim.DemoToken)
	return sim, srv.URL
}

// From an empty project to every resource of a cluster in one command; the real hcloud CLI sees them; a second
// run changes nothing; the one user-data validates and makes each server find itself and its members.
func TestClusterCreate(t *testing.T) {
	sim, url := emptyProject(t)
	out := filepath.Join(t.TempDir(), "mail")
	args := []string{"cluster", "create", "--name", "mail", "--hostname", "mx.example.org", "--ssh-key", "ops",
		"--admin-cidr", "198.51.100.0/24", "--out", out}

	// A wrong token: a clear message, nothing made, nothing written.
	t.Setenv("HCLOUD_TOKEN", strings.Repeat("x", 64))
	code, _, errs := run(t, "", args...)
	if code != ExitFailure || !strings.Contains(errs, "the API refused the token (unauthorized)") || strings.Contains(errs, strings.Repeat("x", 64)) {
		t.Fatalf("wrong token: %d %q", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused run wrote --out")
	}
	if _, routes := sim.Requests(); anyWrite(routes) {
		t.Fatalf("a refused run wrote: %v", routes)
	}
	t.Setenv("HCLOUD_TOKEN", hcloudsim.DemoToken)

	// The dry run plans and makes nothing.
	sim.ResetRequests()
	code, stdout, errs := run(t, "", append(args, "--dry-run")...)
	if code != ExitOK || !strings.Contains(stdout, "create   server          mail-3") || !strings.Contains(stdout, "nothing was created") {
		t.Fatalf("dry run: %d\n%s%s", code, stdout, errs)
	}
	if _, routes := sim.Requests(); anyWrite(routes) {
		t.Fatalf("the dry run wrote: %v", routes)
	}

	start := time.Now()
	code, stdout, errs = run(t, "", args...)
	if code != ExitOK {
		t.Fatalf("create: %d\n%s%s", code, stdout, errs)
	}
	t.Logf("create took %s:\n%s", time.Since(start).Round(time.Millisecond), stdout)
	if !strings.Contains(stdout, "11 resources created, 0 existed") {
		t.Errorf("create's output lacks the count")
	}
	records := map[string]bool{}
	for _, line := range strings.Split(stdout, "\n") {
		records[strings.Join(strings.Fields(line), " ")] = true
	}
	for _, w := range []string{"mx.example.org. A 203.0.113.100", "example.org. MX 10 mx.example.org.", "autoconfig.example.org. CNAME mx.example.org."} {
		if !records[w] {
			t.Errorf("create's DNS records lack %q", w)
		}
	}

	// The secrets and the user-data: mode 0600, no placeholder, and validate accepts the user-data.
	for _, f := range []string{provision.ClusterSecretFile, provision.GaleraPasswordFile, provision.UserDataFile, provision.APIKeyFile} {
		fi, err := os.Stat(filepath.Join(out, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	// mailcow's API key for the portal is the one every node's agent derives from the cluster secret.
	sec, _ := os.ReadFile(filepath.Join(out, provision.ClusterSecretFile))
	key, _ := os.ReadFile(filepath.Join(out, provision.APIKeyFile))
	if want, err := mailcowconf.Derive([]byte(strings.TrimSpace(string(sec))), "mail", "API_KEY", mailcowconf.APIKeyLen); err != nil ||
		strings.TrimSpace(string(key)) != want {
		t.Errorf("%s holds another key than the agents derive (%v)", provision.APIKeyFile, err)
	}
	ud, _ := os.ReadFile(filepath.Join(out, provision.UserDataFile))
	if code, stdout, errs := run(t, "", "validate", "--config", filepath.Join(out, provision.UserDataFile)); code != ExitOK ||
		!strings.Contains(stdout, "members from the API: the servers labelled app=mailcow-ha,cluster=mail") {
		t.Fatalf("validate: %d\n%s%s\n%s", code, stdout, errs, ud)
	}
	if strings.Contains(strings.ToLower(string(ud)), "replace") {
		t.Fatalf("a placeholder in the user-data:\n%s", ud)
	}
	// A new cluster speaks VRRPv3; the key's absence would mean VRRPv2, the protocol of clusters made before it.
	if !strings.Contains(string(ud), "[keepalived]\nvrrp_version = 3\n") {
		t.Errorf("the user-data does not name VRRPv3:\n%s", ud)
	}

	// What the API holds, as the real hcloud CLI shows it.
	st := sim.State()
	if len(st.Servers) != 3 || len(st.Networks) != 1 || len(st.PlacementGroups) != 1 || len(st.Firewalls) != 1 ||
		len(st.Volumes) != 4 || len(st.FloatingIPs) != 1 {
		t.Fatalf("resources: %+v", st)
	}
	// Each node's own Volume for its Galera datadir, attached to it (the agent mounts it: galera.data_volume).
	for _, v := range st.Volumes {
		if v.Name == "mail-data" {
			continue
		}
		node := strings.Replace(v.Name, "-db-", "-", 1)
		i := slices.IndexFunc(st.Servers, func(s hcloudsim.Server) bool { return s.Name == node })
		if i < 0 || v.Server != st.Servers[i].ID || v.Labels["purpose"] != "galera" || v.Labels["node"] != node || v.Labels["cluster"] != "mail" {
			t.Errorf("volume %s: %+v", v.Name, v)
		}
	}
	for _, s := range st.Servers {
		if s.UserData != string(ud) || s.PlacementGroup != st.PlacementGroups[0].ID || len(s.PrivateNet) != 1 ||
			s.PrivateNet[0].Network != st.Networks[0].ID || !slices.Equal(s.Firewalls, []int64{st.Firewalls[0].ID}) ||
			!slices.Equal(s.SSHKeys, []int64{8001}) || s.Image != 5002 || s.Status != "running" {
			t.Errorf("server %s: %+v", s.Name, s)
		}
	}
	if st.FloatingIPs[0].DNSPtr != "mx.example.org" {
		t.Errorf("the Floating IP's reverse DNS: %q", st.FloatingIPs[0].DNSPtr)
	}
	if bin, err := exec.LookPath("hcloud"); err != nil {
		t.Log("the hcloud CLI is not installed (Debian's hcloud-cli; make deps installs it): its view is not checked")
	} else {
		cli := func(args ...string) string {
			t.Helper()
			cmd := exec.Command(bin, args...)
			home := t.TempDir()
			cmd.Env = append(os.Environ(), "HOME="+home, "HCLOUD_CONFIG="+home+"/cli.toml")
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("hcloud %s: %v\n%s", strings.Join(args, " "), err, b)
			}
			return string(b)
		}
		for _, kind := range []string{"server", "network", "placement-group", "firewall", "volume", "floating-ip"} {
			var items []struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			}
			raw := cli(kind, "list", "-l", "app=mailcow-ha,cluster=mail", "-o", "json")
			if err := json.Unmarshal([]byte(raw), &items); err != nil || len(items) == 0 {
				t.Fatalf("hcloud %s list: %v\n%s", kind, err, raw)
			}
			for _, it := range items {
				if it.Labels["app"] != "mailcow-ha" || it.Labels["cluster"] != "mail" {
					t.Errorf("hcloud %s list: %s has labels %v", kind, it.Name, it.Labels)
				}
			}
		}
		for _, name := range []string{"mail-1", "mail-2", "mail-3"} {
			var sv struct {
				PlacementGroup *struct {
					ID int64 `json:"id"`
				} `json:"placement_group"`
				PrivateNet []struct {
					Network int64  `json:"network"`
					IP      string `json:"ip"`
				} `json:"private_net"`
			}
			raw := cli("server", "describe", name, "-o", "json")
			if err := json.Unmarshal([]byte(raw), &sv); err != nil {
				t.Fatalf("hcloud server describe %s: %v\n%s", name, err, raw)
			}
			if sv.PlacementGroup == nil || sv.PlacementGroup.ID != st.PlacementGroups[0].ID || len(sv.PrivateNet) != 1 ||
				sv.PrivateNet[0].Network != st.Networks[0].ID || !strings.HasPrefix(sv.PrivateNet[0].IP, "10.42.0.") {
				t.Errorf("hcloud server describe %s: not in the placement group and the network:\n%s", name, raw)
			}
		}
		fw := cli("firewall", "describe", "mail")
		for _, w := range []string{"198.51.100.0/24", "4190", "993"} {
			if !strings.Contains(fw, w) {
				t.Errorf("hcloud firewall describe lacks %q:\n%s", w, fw)
			}
		}
	}

	// Each server, booting with the one user-data, knows itself and its members.
	for _, s := range st.Servers {
		c, probs := config.Parse("user-data", ud)
		if probs.Err() != nil {
			t.Fatal(probs.Err())
		}
		c.Failover.StateDir = t.TempDir()
		api, err := hcloud.New(hcloud.Options{Endpoint: c.Hcloud.Endpoint, Token: c.Hcloud.Token.Reveal()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := membership.Resolve(context.Background(), &c, membership.Options{API: api,
			Metadata: hcloud.NewMetadata(url+"/_metadata/"+s.Name+"/hetzner/v1", nil)}); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		self, _ := c.Self()
		if c.Node.Name != s.Name || self.PrivateIP != s.PrivateNet[0].IP || len(c.Cluster.Nodes) != 3 || self.Bootstrap != (s.Name == "mail-1") {
			t.Errorf("%s resolved as %q %+v of %d", s.Name, c.Node.Name, self, len(c.Cluster.Nodes))
		}
	}

	// Again: nothing new, nothing changed.
	sim.ResetRequests()
	code, stdout, errs = run(t, "", args...)
	if code != ExitOK || !strings.Contains(stdout, "0 resources created, 11 existed") {
		t.Fatalf("second run: %d\n%s%s", code, stdout, errs)
	}
	if _, routes := sim.Requests(); anyWrite(routes) {
		t.Fatalf("the second run wrote: %v", routes)
	}
	if ud2, _ := os.ReadFile(filepath.Join(out, provision.UserDataFile)); string(ud2) != string(ud) {
		t.Fatal("the second run changed the user-data")
	}

	// list shows the cluster; destroy without --yes deletes nothing; with it, everything but the Volume.
	if code, stdout, _ := run(t, "", "cluster", "list"); code != ExitOK || strings.Count(stdout, "\nmail ") != 11 {
		t.Fatalf("list: %d\n%s", code, stdout)
	}
	if code, _, errs := run(t, "", "cluster", "destroy", "--name", "mail"); code != ExitUsage || !strings.Contains(errs, "nothing deleted") {
		t.Fatalf("destroy without --yes: %d %s", code, errs)
	}
	if code, stdout, errs := run(t, "", "cluster", "destroy", "--name", "mail", "--yes"); code != ExitOK || !strings.Contains(stdout, "kept     volume") {
		t.Fatalf("destroy: %d\n%s%s", code, stdout, errs)
	}
	st = sim.State()
	if len(st.Servers)+len(st.Networks)+len(st.PlacementGroups)+len(st.Firewalls)+len(st.FloatingIPs) != 0 || len(st.Volumes) != 4 {
		t.Fatalf("after destroy: %+v", st)
	}
	if code, stdout, errs := run(t, "", "cluster", "destroy", "--name", "mail", "--yes", "--delete-volume"); code != ExitOK || len(sim.State().Volumes) != 0 {
		t.Fatalf("destroy --delete-volume: %d\n%s%s", code, stdout, errs)
	}
}

// A run that fails halfway leaves labelled resources; the next run makes the rest. Missing servers without the
// first run's secrets, and a resource of the same name that is not the cluster's, stop the run before anything is
// made.
func TestClusterCreateResumesAndRefusesOthers(t *testing.T) {
	sim, url := emptyProject(t)
	out := filepath.Join(t.TempDir(), "c")
	args := []string{"cluster", "create", "--name", "c", "--hostname", "mail.example.org", "--out", out}
	// The project is at its server limit: the run stops at the first server.
	sim.SetFaults(hcloudsim.Faults{AtLimit: []string{"POST /v1/servers"}})
	code, stdout, errs := run(t, "", args...)
	sim.SetFaults(hcloudsim.Faults{})
	if code != ExitFailure || !strings.Contains(errs, "create server c-1") || !strings.Contains(errs, "resource_limit_exceeded") {
		t.Fatalf("the failing run: %d\n%s%s", code, stdout, errs)
	}
	if st := sim.State(); len(st.Networks) != 1 || len(st.Volumes) != 4 || len(st.FloatingIPs) != 1 || len(st.Servers) != 0 {
		t.Fatalf("after the failing run: %+v", st)
	}
	code, stdout, errs = run(t, "", args...)
	if code != ExitOK || !strings.Contains(stdout, "3 resources created, 8 existed") {
		t.Fatalf("the resuming run: %d\n%s%s", code, stdout, errs)
	}

	// Every server there, another --out: refused, and that directory gets no secrets that no node has.
	other := filepath.Join(t.TempDir(), "other")
	if code, _, errs := run(t, "", "cluster", "create", "--name", "c", "--hostname", "mail.example.org", "--out", other); code != ExitFailure ||
		!strings.Contains(errs, "3 of 3 servers exist, but") {
		t.Fatalf("all servers there, another --out: %d %s", code, errs)
	}
	if _, err := os.Stat(other); err == nil {
		t.Fatal("the refused run wrote its --out")
	}
	sim.ResetRequests()
	code, stdout, errs = run(t, "", "cluster", "create", "--name", "c", "--hostname", "mail.example.org", "--out", t.TempDir(), "--nodes", "5")
	if code != ExitFailure || !strings.Contains(errs, "3 of 5 servers exist, but") {
		t.Fatalf("missing servers without the first run's secrets: %d\n%s%s", code, stdout, errs)
	}
	if _, routes := sim.Requests(); anyWrite(routes) {
		t.Fatalf("the refused run wrote: %v", routes)
	}

	// A network "d" that someone made by hand, without the labels.
	hc := hcloudClient(t, url)
	if _, _, err := hc.Network.Create(context.Background(), hcNetworkOpts("d")); err != nil {
		t.Fatal(err)
	}
	sim.ResetRequests()
	code, _, errs = run(t, "", "cluster", "create", "--name", "d", "--hostname", "mail.example.org", "--out", t.TempDir())
	if code != ExitFailure || !strings.Contains(errs, `network "d" exists but is not labelled app=mailcow-ha,cluster=d`) {
		t.Fatalf("a network of another: %d %s", code, errs)
	}
	if _, routes := sim.Requests(); anyWrite(routes) {
		t.Fatalf("the refused run wrote: %v", routes)
	}
}

func anyWrite(routes map[string]int) bool {
	for r := range routes {
		if !strings.HasPrefix(r, "GET ") {
			return true
		}
	}
	return false
}

func hcloudClient(t *testing.T, url string) *hc.Client {
	t.Helper()
	return hc.NewClient(hc.WithEndpoint(url+"/v1"), hc.WithToken(hcloudsim.DemoToken))
}

func hcNetworkOpts(name string) hc.NetworkCreateOpts {
	_, rng, _ := net.ParseCIDR("10.5.0.0/16")
	return hc.NetworkCreateOpts{Name: name, IPRange: rng}
}

// A cluster grows with cluster create and a larger --nodes (only the new servers and their Volumes are made), and
// loses a node with remove-node: never the one that serves the mail, never below three, the bootstrap label moved
// to another member, the node's Galera Volume kept unless asked.
func TestClusterGrowAndRemoveNode(t *testing.T) {
	sim, _ := emptyProject(t)
	out := filepath.Join(t.TempDir(), "c")
	create := []string{"cluster", "create", "--name", "c", "--hostname", "mail.example.org", "--out", out}
	if code, stdout, errs := run(t, "", create...); code != ExitOK {
		t.Fatalf("create: %d\n%s%s", code, stdout, errs)
	}
	if code, _, errs := run(t, "", "cluster", "remove-node", "--name", "c", "--yes", "--node", "c-2"); code != ExitFailure ||
		!strings.Contains(errs, "would leave 2 nodes") {
		t.Fatalf("removing one of three: %d %s", code, errs)
	}
	if code, _, errs := run(t, "", "cluster", "remove-node", "--name", "c", "--node", "c-2"); code != ExitUsage || !strings.Contains(errs, "add --yes") {
		t.Fatalf("without --yes: %d %s", code, errs)
	}
	code, stdout, errs := run(t, "", append(create, "--nodes", "5")...)
	if code != ExitOK || !strings.Contains(stdout, "4 resources created, 11 existed") {
		t.Fatalf("grow to 5: %d\n%s%s", code, stdout, errs)
	}
	st := sim.State()
	if len(st.Servers) != 5 || len(st.Volumes) != 6 || st.Servers[3].UserData != st.Servers[0].UserData {
		t.Fatalf("after the growth: %d servers, %d volumes", len(st.Servers), len(st.Volumes))
	}

	// The node that holds the Floating IP serves the mail: refused, nothing changed.
	if code, body := sim.Do("POST", "/v1/floating_ips/"+strconv.FormatInt(st.FloatingIPs[0].ID, 10)+"/actions/assign",
		fmt.Sprintf(`{"server":%d}`, st.Servers[1].ID)); code != 201 {
		t.Fatalf("assign: %d %s", code, body)
	}
	waitState(t, sim, func(st hcloudsim.State) bool { return st.FloatingIPs[0].Server == st.Servers[1].ID })
	if code, _, errs := run(t, "", "cluster", "remove-node", "--name", "c", "--yes", "--node", "c-2"); code != ExitFailure ||
		!strings.Contains(errs, "c-2 holds the Floating IP") || !strings.Contains(errs, "switchover") {
		t.Fatalf("removing the MASTER: %d %s", code, errs)
	}

	// The bootstrap node: its label goes to the member with the highest priority, the server goes, its Volume stays.
	code, stdout, errs = run(t, "", "cluster", "remove-node", "--name", "c", "--yes", "--node", "c-1")
	if code != ExitOK || !strings.Contains(stdout, "bootstrap=true  moved from c-1 to c-2") || !strings.Contains(stdout, "kept     volume          c-db-1") {
		t.Fatalf("remove c-1: %d\n%s%s", code, stdout, errs)
	}
	st = sim.State()
	if slices.ContainsFunc(st.Servers, func(s hcloudsim.Server) bool { return s.Name == "c-1" }) || len(st.Volumes) != 6 {
		t.Fatalf("after removing c-1: %+v", st)
	}
	for _, s := range st.Servers {
		if (s.Labels["bootstrap"] == "true") != (s.Name == "c-2") {
			t.Errorf("%s's labels after the removal: %v", s.Name, s.Labels)
		}
	}
	if code, stdout, errs := run(t, "", "cluster", "remove-node", "--name", "c", "--yes", "--delete-volume", "--node", "c-5"); code != ExitOK ||
		!strings.Contains(stdout, "deleted  volume          c-db-5") {
		t.Fatalf("remove c-5 with its Volume: %d\n%s%s", code, stdout, errs)
	}
	if st := sim.State(); len(st.Servers) != 3 || len(st.Volumes) != 5 {
		t.Fatalf("after removing c-5: %d servers, %d volumes", len(st.Servers), len(st.Volumes))
	}
}

// waitState waits up to 10 s for the simulator's state to satisfy ok.
func waitState(t *testing.T, sim *hcloudsim.Sim, ok func(hcloudsim.State) bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !ok(sim.State()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the simulator's state did not change within 10 s")
		}
	}
}

// --config layers settings for every node on the user-data (alerts, failover timings); what cluster create writes
// itself, unknown keys and syntax errors are refused by name or line before anything is made.
func TestClusterCreateSettings(t *testing.T) {
	sim, _ := emptyProject(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "c")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	create := func(settings string) (int, string, string) {
		return run(t, "", "cluster", "create", "--name", "c", "--hostname", "mail.example.org", "--out", out, "--config", settings)
	}
	for _, tc := range []struct{ text, want string }{
		{"[cluster]\nname = \"other\"\n", "cluster.name is cluster create's own"},
		{"[hcloud]\ntoken = \"x\"\n", "hcloud.token is cluster create's own"},
		{"[failover]\ncheck_grace = \"45s\"\nno_such_key = 1\n", "unknown key failover.no_such_key"},
		{"[failover\n", "toml: line"},
	} {
		code, _, errs := create(write("bad.toml", tc.text))
		if code != ExitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("--config %q: %d %q, want %q", tc.text, code, errs, tc.want)
		}
	}
	if st := sim.State(); len(st.Networks) != 0 || len(st.Servers) != 0 {
		t.Fatalf("a refused --config made resources: %+v", st)
	}
	good := write("settings.toml", "[failover]\ncheck_grace = \"45s\"\n[[alerts.webhooks]]\nname = \"ntfy\"\nurl = \"https://ntfy.example.org/mail\"\n")
	if code, stdout, errs := create(good); code != ExitOK {
		t.Fatalf("create with --config: %d\n%s%s", code, stdout, errs)
	}
	ud, err := os.ReadFile(filepath.Join(out, provision.UserDataFile))
	if err != nil {
		t.Fatal(err)
	}
	c, probs := config.Parse("user-data", ud)
	if len(probs) > 0 {
		t.Fatalf("the user-data with --config's settings does not parse: %v\n%s", probs.Err(), ud)
	}
	if c.Failover.CheckGrace.D() != 45*time.Second || len(c.Alerts.Webhooks) != 1 || c.Alerts.Webhooks[0].Name != "ntfy" ||
		c.Cluster.Name != "c" || !c.Cluster.Secret.Set() || !c.Galera.DataVolume || !strings.HasPrefix(string(ud), "# mailcow-ha\n") {
		t.Errorf("the user-data lacks --config's settings or its own:\n%s", ud)
	}
	for _, s := range sim.State().Servers {
		if s.UserData != string(ud) {
			t.Errorf("%s boots with another user-data", s.Name)
		}
	}
}

// --nodes 2 --arbitrator: two mail servers and a small one that only votes; it gets no Volume, its label says
// role=arbitrator, and with the one user-data it resolves itself as the arbitrator. An even count without it, and
// an odd one with it, are refused by flag.
func TestClusterCreateArbitrator(t *testing.T) {
	sim, url := emptyProject(t)
	out := filepath.Join(t.TempDir(), "a")
	args := []string{"cluster", "create", "--name", "a", "--hostname", "mail.example.org", "--out", out}
	if code, _, errs := run(t, "", append(args, "--nodes", "2")...); code != ExitUsage || !strings.Contains(errs, "--nodes: 2: 3, 5 or 7") || !strings.Contains(errs, "or 2 with --arbitrator") {
		t.Fatalf("--nodes 2 alone: %d %s", code, errs)
	}
	if code, _, errs := run(t, "", append(args, "--nodes", "3", "--arbitrator")...); code != ExitUsage ||
		!strings.Contains(errs, "--nodes: 3 with --arbitrator: 2, 4 or 6") {
		t.Fatalf("--nodes 3 --arbitrator: %d %s", code, errs)
	}
	code, stdout, errs := run(t, "", append(args, "--nodes", "2", "--arbitrator")...)
	if code != ExitOK || !strings.Contains(stdout, "created  server          a-arb") || !strings.Contains(stdout, "cx22, image 5002, arbitrator") {
		t.Fatalf("create: %d\n%s%s", code, stdout, errs)
	}
	st := sim.State()
	if len(st.Servers) != 3 || len(st.Volumes) != 3 {
		t.Fatalf("%d servers, %d volumes; want 3 and 3 (the shared one, a-db-1, a-db-2)", len(st.Servers), len(st.Volumes))
	}
	arb := st.Servers[slices.IndexFunc(st.Servers, func(s hcloudsim.Server) bool { return s.Name == "a-arb" })]
	if arb.Labels["role"] != "arbitrator" || arb.Labels["bootstrap"] != "" || arb.ServerType != "cx22" || arb.UserData != st.Servers[0].UserData {
		t.Errorf("the arbitrator: %+v", arb)
	}
	ud, _ := os.ReadFile(filepath.Join(out, provision.UserDataFile))
	c, probs := config.Parse("user-data", ud)
	if probs.Err() != nil {
		t.Fatal(probs.Err())
	}
	c.Failover.StateDir = t.TempDir()
	api, err := hcloud.New(hcloud.Options{Endpoint: c.Hcloud.Endpoint, Token: c.Hcloud.Token.Reveal()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := membership.Resolve(context.Background(), &c, membership.Options{API: api,
		Metadata: hcloud.NewMetadata(url+"/_metadata/a-arb/hetzner/v1", nil)}); err != nil {
		t.Fatal(err)
	}
	if self, _ := c.Self(); !self.IsArbitrator() || len(c.Cluster.Nodes) != 3 {
		t.Errorf("a-arb resolved as %+v of %d", self, len(c.Cluster.Nodes))
	}
	if code, stdout, errs := run(t, "", append(args, "--nodes", "2", "--arbitrator")...); code != ExitOK ||
		!strings.Contains(stdout, "0 resources created") {
		t.Fatalf("second run: %d\n%s%s", code, stdout, errs)
	}
}

// --ipv6: an IPv6 Floating IP (a /64, as the API names it) with the cluster's labels and the reverse DNS of its ::1,
// its id in the user-data (which validates), and an AAAA record in the DNS table; a second run makes nothing.
func TestClusterCreateIPv6(t *testing.T) {
	sim, _ := emptyProject(t)
	out := filepath.Join(t.TempDir(), "six")
	args := []string{"cluster", "create", "--name", "six", "--hostname", "mail.example.org", "--ipv6", "--out", out}
	code, stdout, errs := run(t, "", args...)
	if code != ExitOK {
		t.Fatalf("create: %d\n%s%s", code, stdout, errs)
	}
	var v6 hcloudsim.FloatingIP
	for _, f := range sim.State().FloatingIPs {
		if f.Type == "ipv6" {
			v6 = f
		}
	}
	addr := strings.TrimSuffix(v6.IP, "/64") + "1"
	if v6.Name != "six-ipv6" || !strings.HasSuffix(v6.IP, "::/64") || v6.Labels["cluster"] != "six" || v6.Labels["app"] != "mailcow-ha" ||
		v6.DNSPtr != "mail.example.org" || v6.DNSPtrIP != addr {
		t.Fatalf("the IPv6 Floating IP: %+v", v6)
	}
	fields := map[string]bool{}
	for _, line := range strings.Split(stdout, "\n") {
		fields[strings.Join(strings.Fields(line), " ")] = true
	}
	if !fields["mail.example.org. AAAA "+addr] {
		t.Errorf("no AAAA record for %s:\n%s", addr, stdout)
	}
	ud, _ := os.ReadFile(filepath.Join(out, provision.UserDataFile))
	c, probs := config.Parse("user-data", ud)
	if probs.Err() != nil || c.Hcloud.FloatingIPv6ID != v6.ID {
		t.Fatalf("user-data: floating_ipv6_id %d, want %d (%v)\n%s", c.Hcloud.FloatingIPv6ID, v6.ID, probs.Err(), ud)
	}
	if code, stdout, errs := run(t, "", args...); code != ExitOK || !strings.Contains(stdout, "0 resources created") {
		t.Fatalf("second run: %d\n%s%s", code, stdout, errs)
	}
}
