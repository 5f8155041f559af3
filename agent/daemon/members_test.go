package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
)

// A membership change is applied to everything that follows the members: the failover brain's and the peer API's
// peers, the peer API's known nodes, Galera's peers and my.cnf's address, and keepalived's unicast peers. A member
// that left is no longer a peer.
func TestApplyMembers(t *testing.T) {
	dir := t.TempDir()
	c := config.Defaults()
	c.Cluster.Name = "mail"
	c.Node.Name = "mx1"
	c.Cluster.Nodes = []config.Member{{Name: "mx1", ServerID: 1, PrivateIP: "10.0.0.2", Role: "member", Priority: 150, Bootstrap: true},
		{Name: "mx2", ServerID: 2, PrivateIP: "10.0.0.3", Role: "member", Priority: 140},
		{Name: "mx3", ServerID: 3, PrivateIP: "10.0.0.4", Role: "member", Priority: 130}}
	c.Keepalived.ConfigFile = filepath.Join(dir, "keepalived.conf")
	c.Galera.ConfigFile = filepath.Join(dir, "my.cnf")
	a := &Agent{c: c, log: slog.New(slog.DiscardHandler), verifier: &api.Verifier{Nodes: map[string]bool{"mx1": true, "mx2": true, "mx3": true}},
		mgr: &galera.Manager{Peers: []string{"mx2", "mx3"}}, privIf: "eth1",
		galeraSpec: galera.Spec{ClusterName: "mail", NodeName: "mx1", NodeIP: "10.0.0.2", DataDir: dir, Socket: filepath.Join(dir, "sock"),
			PidFile: filepath.Join(dir, "pid"), SSTMethod: "rsync", GroupPort: 4567, ISTPort: 4568, SSTPort: 4444}}
	// mx3 replaced by mx4, mx5 added.
	now := []config.Member{c.Cluster.Nodes[0], c.Cluster.Nodes[1],
		{Name: "mx4", ServerID: 4, PrivateIP: "10.0.0.5", Role: "member", Priority: 120},
		{Name: "mx5", ServerID: 5, PrivateIP: "10.0.0.6", Role: "member", Priority: 110}}
	if err := a.applyMembers(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if got := a.p.Peers; len(got) != 3 || got[2] != "mx2" || got[4] != "mx4" || got[5] != "mx5" {
		t.Errorf("the brain's peers: %v", got)
	}
	if _, ok := a.peerAPI()[3]; ok || a.peerAPI()[5].Name != "mx5" {
		t.Errorf("the peer API's peers: %v", a.peerAPI())
	}
	if _, ok := a.peerNamed("mx3"); ok {
		t.Error("mx3 left, and is still asked")
	}
	if v := a.verifier.Nodes; v["mx3"] || !v["mx4"] || !v["mx5"] || !v["mx1"] {
		t.Errorf("the peer API's nodes: %v", v)
	}
	if got := a.mgr.Peers; !slices.Equal(got, []string{"mx2", "mx4", "mx5"}) {
		t.Errorf("Galera's peers: %v", got)
	}
	cnf, err := os.ReadFile(c.Galera.ConfigFile)
	if err != nil || !strings.Contains(string(cnf), "gcomm://10.0.0.2:4567,10.0.0.3:4567,10.0.0.5:4567,10.0.0.6:4567") {
		t.Errorf("my.cnf's address: %v\n%s", err, cnf)
	}
	ka, err := os.ReadFile(c.Keepalived.ConfigFile)
	if err != nil || strings.Contains(string(ka), "10.0.0.4") || !strings.Contains(string(ka), "10.0.0.6") {
		t.Errorf("keepalived's unicast peers: %v\n%s", err, ka)
	}
}
