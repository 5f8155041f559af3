package membership

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// project is a simulated Hetzner project with the servers of cluster "mail" on network 4001 (and one server of
// another cluster), served over HTTP.
type project struct {
	sim *hcloudsim.Sim
	url string
}

func newProject(t *testing.T, edit func(st *hcloudsim.State)) project {
	t.Helper()
	st := hcloudsim.DemoState()
	labels := []map[string]string{
		{"app": "mailcow-ha", "cluster": "mail", "priority": "150", "bootstrap": "true"},
		{"app": "mailcow-ha", "cluster": "mail", "priority": "140"},
		{"app": "mailcow-ha", "cluster": "mail", "priority": "130"},
	}
	for i := range st.Servers {
		st.Servers[i].Labels = labels[i]
	}
	st.Servers = append(st.Servers, hcloudsim.Server{ID: 1009, Name: "other-1", Status: "running", PublicIPv4: "203.0.113.19",
		PrivateNet: []hcloudsim.PrivateNet{{Network: 4001, IP: "10.99.0.19"}},
		Labels:     map[string]string{"app": "mailcow-ha", "cluster": "other", "priority": "150", "bootstrap": "true"}})
	if edit != nil {
		edit(&st)
	}
	sim, err := hcloudsim.New(hcloudsim.Options{State: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return project{sim: sim, url: srv.URL}
}

// discoverConfig is the one user-data of cluster "mail": no node.name, no cluster.nodes.
func discoverConfig(t *testing.T) config.Config {
	t.Helper()
	c := config.Defaults()
	c.Cluster.Name = "mail"
	c.Cluster.Discover = config.DiscoverHcloud
	c.Hcloud.NetworkID = 4001
	c.Failover.StateDir = t.TempDir()
	return c
}

// resolve runs Resolve as the server named node would, with the real hcloud adapter and metadata reader.
func (p project) resolve(t *testing.T, c *config.Config, node string) (Source, error) {
	t.Helper()
	api, err := hcloud.New(hcloud.Options{Endpoint: p.url + "/v1", Token: hcloudsim.DemoToken})
	if err != nil {
		t.Fatal(err)
	}
	md := hcloud.NewMetadata(p.url+"/_metadata/"+node+"/hetzner/v1", nil)
	return Resolve(context.Background(), c, Options{API: api, Metadata: md, StateDir: c.Failover.StateDir, APITimeout: time.Second})
}

func TestOneUserDataForEveryNode(t *testing.T) {
	p := newProject(t, nil)
	for _, node := range []string{"mx1", "mx2", "mx3"} {
		c := discoverConfig(t)
		src, err := p.resolve(t, &c, node)
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		if src != FromAPI || c.Node.Name != node {
			t.Fatalf("%s: source %q, node.name %q", node, src, c.Node.Name)
		}
		var got []string
		for _, m := range c.Cluster.Nodes {
			got = append(got, m.Name+" "+m.PrivateIP+" "+m.Role+" "+itoa(m.ServerID)+" "+itoa(int64(m.Priority))+map[bool]string{true: " bootstrap"}[m.Bootstrap])
		}
		want := "mx1 10.99.0.11 member 1001 150 bootstrap|mx2 10.99.0.12 member 1002 140|mx3 10.99.0.13 member 1003 130"
		if strings.Join(got, "|") != want {
			t.Fatalf("%s: members\n got %s\nwant %s", node, strings.Join(got, "|"), want)
		}
		fi, err := os.Stat(filepath.Join(c.Failover.StateDir, CacheFile))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: the cache: %v %v", node, fi, err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A boot while the API is down uses the last membership; a first boot without the API stops with both reasons.
func TestBootWithoutTheAPIUsesTheLastMembership(t *testing.T) {
	p := newProject(t, nil)
	c := discoverConfig(t)
	if _, err := p.resolve(t, &c, "mx2"); err != nil {
		t.Fatal(err)
	}
	p.sim.SetFaults(hcloudsim.Faults{Down: true})
	again := discoverConfig(t)
	again.Failover.StateDir = c.Failover.StateDir
	src, err := p.resolve(t, &again, "mx2")
	if err != nil || src != FromCache || again.Node.Name != "mx2" || len(again.Cluster.Nodes) != 3 {
		t.Fatalf("with the API down: source %q, node %q, %d members, err %v", src, again.Node.Name, len(again.Cluster.Nodes), err)
	}
	first := discoverConfig(t)
	_, err = p.resolve(t, &first, "mx2")
	if err == nil || !strings.Contains(err.Error(), "no membership to fall back on") {
		t.Fatalf("a first boot without the API: %v", err)
	}
	// The cache of another server is not this one's.
	p.sim.SetFaults(hcloudsim.Faults{})
	other := discoverConfig(t)
	other.Failover.StateDir = c.Failover.StateDir
	p.sim.SetFaults(hcloudsim.Faults{Down: true})
	if _, err := p.resolve(t, &other, "mx3"); err == nil || !strings.Contains(err.Error(), "server 1002") {
		t.Fatalf("another server's cache: %v", err)
	}
}

func TestMembershipErrorsNameTheServerAndTheLabel(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(st *hcloudsim.State)
		node string
		want string
	}{
		{"no priority", func(st *hcloudsim.State) { delete(st.Servers[1].Labels, "priority") }, "mx1",
			"server mx2 (id 1002) has no label priority"},
		{"not in the network", func(st *hcloudsim.State) { st.Servers[2].PrivateNet = nil }, "mx1",
			"server mx3 (id 1003) is not in network 4001"},
		{"bad bootstrap", func(st *hcloudsim.State) { st.Servers[2].Labels["bootstrap"] = "yes" }, "mx1",
			`label bootstrap="yes"`},
		{"not labelled", func(st *hcloudsim.State) { st.Servers[2].Labels = map[string]string{} }, "mx3",
			"this server (id 1003) is not among the servers labelled app=mailcow-ha,cluster=mail"},
		{"two bootstraps", func(st *hcloudsim.State) { st.Servers[2].Labels["bootstrap"] = "true" }, "mx1",
			"exactly one member must have bootstrap = true, found 2"},
		{"two members", func(st *hcloudsim.State) { st.Servers[2].Labels["cluster"] = "old" }, "mx1",
			"a cluster needs at least 3 nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProject(t, tc.edit)
			c := discoverConfig(t)
			_, err := p.resolve(t, &c, tc.node)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error with %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(c.Failover.StateDir, CacheFile)); err == nil {
				t.Fatal("a membership that was refused was kept")
			}
		})
	}
}

// A configuration that lists cluster.nodes and asks the API is checked against it, and node.name too.
func TestStaticNodesAreCheckedAgainstTheAPI(t *testing.T) {
	p := newProject(t, nil)
	static := func() config.Config {
		c := discoverConfig(t)
		c.Cluster.Nodes = []config.Member{
			{Name: "mx1", PrivateIP: "10.99.0.11", ServerID: 1001, Priority: 150, Bootstrap: true},
			{Name: "mx2", PrivateIP: "10.99.0.12", ServerID: 1002, Priority: 140},
			{Name: "mx3", PrivateIP: "10.99.0.13", ServerID: 1003, Priority: 130},
		}
		return c
	}
	c := static()
	if _, err := p.resolve(t, &c, "mx1"); err != nil || c.Node.Name != "mx1" {
		t.Fatalf("a matching cluster.nodes: %v (node %q)", err, c.Node.Name)
	}
	c = static()
	c.Cluster.Nodes[1].PrivateIP = "10.99.0.22"
	c.Cluster.Nodes[2].ServerID = 1004
	_, err := p.resolve(t, &c, "mx1")
	if err == nil || !strings.Contains(err.Error(), "mx2: private_ip 10.99.0.22, the API says 10.99.0.12") ||
		!strings.Contains(err.Error(), "mx3: server_id 1004, the API says 1003") {
		t.Fatalf("a cluster.nodes that differs: %v", err)
	}
	c = discoverConfig(t)
	c.Node.Name = "mx2"
	if _, err := p.resolve(t, &c, "mx1"); err == nil || !strings.Contains(err.Error(), `node.name is "mx2", but this server (id 1001) is "mx1"`) {
		t.Fatalf("a node.name that differs: %v", err)
	}
}

// A running agent compares the members it started with to the API's: a server labelled later joins, one whose
// labels went leaves.
func TestCurrentAndDiff(t *testing.T) {
	p := newProject(t, nil)
	c := discoverConfig(t)
	if _, err := p.resolve(t, &c, "mx1"); err != nil {
		t.Fatal(err)
	}
	running := c.Cluster.Nodes
	api, err := hcloud.New(hcloud.Options{Endpoint: p.url + "/v1", Token: hcloudsim.DemoToken})
	if err != nil {
		t.Fatal(err)
	}
	now, err := Current(context.Background(), &c, api)
	if err != nil || len(Diff(running, now)) != 0 {
		t.Fatalf("unchanged: %v %v", Diff(running, now), err)
	}
	if code, body := p.sim.Do("POST", "/v1/servers", `{"name":"mx4","server_type":"cx22","image":5002,"networks":[4001],
		"labels":{"app":"mailcow-ha","cluster":"mail","priority":"120"}}`); code != 201 {
		t.Fatalf("server create: %d %s", code, body)
	}
	now, err = Current(context.Background(), &c, api)
	if err != nil {
		t.Fatal(err)
	}
	d := Diff(running, now)
	if len(d) != 1 || !strings.HasPrefix(d[0], "mx4 (server 1010, 10.99.0.2) joined") {
		t.Fatalf("after a server was labelled in: %q", d)
	}
	if d := Diff(now, running); len(d) != 1 || !strings.HasPrefix(d[0], "mx4 (server 1010) left") {
		t.Fatalf("the other way: %q", d)
	}
}

// A running agent's membership read again: a server labelled in is a change, kept in the cache; this server gone
// from the API, or renamed, is refused with the reason and the change.
func TestUpdate(t *testing.T) {
	p := newProject(t, nil)
	c := discoverConfig(t)
	if _, err := p.resolve(t, &c, "mx1"); err != nil {
		t.Fatal(err)
	}
	self := c.Cluster.Nodes[0].ServerID
	api, err := hcloud.New(hcloud.Options{Endpoint: p.url + "/v1", Token: hcloudsim.DemoToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if now, changes, err := Update(ctx, c, self, api); err != nil || len(changes) != 0 || len(now) != 3 {
		t.Fatalf("unchanged: %d members, %q, %v", len(now), changes, err)
	}
	if code, body := p.sim.Do("POST", "/v1/servers", `{"name":"mx4","server_type":"cx22","image":5002,"networks":[4001],
		"labels":{"app":"mailcow-ha","cluster":"mail","priority":"120"}}`); code != 201 {
		t.Fatalf("server create: %d %s", code, body)
	}
	now, changes, err := Update(ctx, c, self, api)
	if err != nil || len(now) != 4 || len(changes) != 1 || !strings.Contains(changes[0], "mx4") {
		t.Fatalf("mx4 labelled in: %d members, %q, %v", len(now), changes, err)
	}
	kept, err := Cached(&c)
	if err != nil || len(kept) != 4 {
		t.Fatalf("the cache after the change: %d members, %v", len(kept), err)
	}
	// Seen from a server that the API no longer lists under the cluster's labels.
	if _, changes, err := Update(ctx, c, 4242, api); err == nil || len(changes) == 0 || !strings.Contains(err.Error(), "server (id 4242) is no longer among") {
		t.Fatalf("this server gone: %q %v", changes, err)
	}
	c.Node.Name = "mx9"
	if _, _, err := Update(ctx, c, self, api); err == nil || !strings.Contains(err.Error(), `now named "mx1", not "mx9"`) {
		t.Fatalf("this server renamed: %v", err)
	}
}
