package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
)

// An arbitrator with members from the API follows them while it runs: a member added is in garbd's peers for its
// next start (and in the firewall's member set where the appliance's firewall is), with a log line that says so.
func TestArbitratorFollowsMembers(t *testing.T) {
	dir := t.TempDir()
	c := config.Defaults()
	c.Cluster.Name, c.Cluster.Discover, c.Hcloud.NetworkID, c.Node.Name = "mail", config.DiscoverHcloud, 4001, "arb"
	c.Failover.StateDir = dir
	server := func(id int64, name, role, prio string) hcloud.ServerInfo {
		l := map[string]string{"app": "mailcow-ha", "cluster": "mail", "role": role}
		if prio != "" {
			l["priority"] = prio
		}
		if id == 1 {
			l["bootstrap"] = "true"
		}
		return hcloud.ServerInfo{ID: id, Name: name, Labels: l, PrivateIPs: map[int64]string{4001: fmt.Sprintf("10.0.0.%d", id+1)}}
	}
	cloud := &fakeServers{list: []hcloud.ServerInfo{server(1, "mx1", "member", "150"), server(2, "mx2", "member", "140"),
		server(3, "arb", "arbitrator", "")}}
	now, err := membership.Current(context.Background(), &c, cloud)
	if err != nil {
		t.Fatal(err)
	}
	c.Cluster.Nodes = now
	self, _ := c.Self()
	g := &galera.Arbitrator{Members: dataMembers(now)}
	var log lockedLog
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		followMembers(ctx, c, self, cloud, g, 20*time.Millisecond, nil, slog.New(slog.NewTextHandler(&log, nil)))
	}()
	cloud.mu.Lock()
	cloud.list = append(cloud.list, server(4, "mx3", "member", "130"), server(5, "mx4", "member", "120"))
	cloud.mu.Unlock()
	want := []string{"10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := g.MemberIPs()
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("garbd's peers %v, want %v; log:\n%s", got, want, log.String())
		}
	}
	cancel()
	<-done
	if !strings.Contains(log.String(), "mx3") || !strings.Contains(log.String(), "applied") {
		t.Errorf("no line says the members were applied:\n%s", log.String())
	}
}

// lockedLog is a log the follower writes while the test reads it.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
