package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
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
	a := &Agent{c: c, keys: api.NewKeyring([]byte("0123456789abcdef0123456789abcdef")), log: slog.New(slog.DiscardHandler), verifier: &api.Verifier{Nodes: map[string]bool{"mx1": true, "mx2": true, "mx3": true}},
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

// fakeServers is the API's list of the cluster's servers.
type fakeServers struct {
	mu    sync.Mutex
	list  []hcloud.ServerInfo
	reads int
}

func (f *fakeServers) Servers(context.Context, string) ([]hcloud.ServerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return slices.Clone(f.list), nil
}

// A request signed with the cluster's secret by a node the agent does not know makes it read the members now, not
// at its next interval, and at most once per KickEvery; the new member is applied.
func TestKickReadsTheMembers(t *testing.T) {
	dir := t.TempDir()
	c := config.Defaults()
	c.Cluster.Name, c.Cluster.Discover, c.Hcloud.NetworkID, c.Node.Name = "mail", config.DiscoverHcloud, 4001, "mx1"
	c.Failover.StateDir = dir
	c.Keepalived.ConfigFile = filepath.Join(dir, "keepalived.conf")
	server := func(id int64, name, prio string) hcloud.ServerInfo {
		l := map[string]string{"app": "mailcow-ha", "cluster": "mail", "priority": prio}
		if id == 1 {
			l["bootstrap"] = "true"
		}
		return hcloud.ServerInfo{ID: id, Name: name, Labels: l, PrivateIPs: map[int64]string{4001: fmt.Sprintf("10.0.0.%d", id+1)}}
	}
	cloud := &fakeServers{list: []hcloud.ServerInfo{server(1, "mx1", "150"), server(2, "mx2", "140"), server(3, "mx3", "130")}}
	now, err := membership.Current(context.Background(), &c, cloud)
	if err != nil {
		t.Fatal(err)
	}
	c.Cluster.Nodes = now
	cloud.reads = 0
	a := &Agent{c: c, keys: api.NewKeyring([]byte("0123456789abcdef0123456789abcdef")), log: slog.New(slog.DiscardHandler), p: failover.Params{Self: 1, Name: "mx1"}, privIf: "eth1",
		verifier: &api.Verifier{}, membersKick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); a.watchMembers(ctx, cloud, time.Hour) }()
	cloud.mu.Lock()
	cloud.list = append(cloud.list, server(4, "mx4", "120"))
	cloud.mu.Unlock()
	a.kickMembers("mx4")
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		_, ok := a.p.Peers[4]
		a.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mx4 not applied 10 s after the kick (reads: %d)", cloud.reads)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Kicks within KickEvery of the last read do not read again.
	for range 5 {
		a.kickMembers("mx5")
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if cloud.reads != 1 {
		t.Errorf("%d reads of the API, want 1 (the kick; the others within %s)", cloud.reads, KickEvery)
	}
}
