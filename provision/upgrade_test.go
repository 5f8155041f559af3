package provision

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// fakeCluster answers /status for the demo project's three servers from the simulator: a server rebuilt from the
// new image answers with a later start once the rebuild action is done, unless it is stuck; a switchover moves
// MASTER.
type fakeCluster struct {
	sim     *hcloudsim.Sim
	mu      sync.Mutex
	master  string
	started map[string]time.Time
	seen    map[string]int64 // the image each node's agent started from
	stuck   string
	calls   []string
	release map[string]string // the mailcow release each node states ("" for none)
}

func (f *fakeCluster) status(_ context.Context, m config.Member) (api.PeerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, sv := range f.sim.State().Servers {
		if sv.ID == m.ServerID && sv.Image != f.seen[m.Name] && sv.Status == "running" && m.Name != f.stuck {
			f.seen[m.Name], f.started[m.Name] = sv.Image, time.Now()
		}
	}
	st := api.PeerState{Node: m.Name, Role: "backup", Started: f.started[m.Name], GaleraOK: true, Galera: "Primary Synced size=3"}
	for _, sv := range f.sim.State().Servers {
		if m.Name == f.stuck && sv.ID == m.ServerID && sv.Image == 5004 {
			return st, context.DeadlineExceeded // rebuilt, and never back
		}
	}
	if m.Name == f.master {
		st.Role, st.Mounted = "master", true
	}
	st.Mailcow = f.release[m.Name]
	return st, nil
}

func (f *fakeCluster) switchover(_ context.Context, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "switchover "+to)
	f.master = to
	return nil
}

func newFake(t *testing.T) (*fakeCluster, *hc.Client, []config.Member) {
	t.Helper()
	st := hcloudsim.DemoState()
	for i := range st.Servers {
		st.Servers[i].Image = 5002
	}
	sim, err := hcloudsim.New(hcloudsim.Options{State: st, Latencies: hcloudsim.DefaultLatencies().Scale(0.01)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	c := hc.NewClient(hc.WithToken(hcloudsim.DemoToken), hc.WithEndpoint(srv.URL+"/v1"),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ConstantBackoff(10 * time.Millisecond)}))
	var members []config.Member
	f := &fakeCluster{sim: sim, started: map[string]time.Time{}, seen: map[string]int64{}}
	t0 := time.Now().Add(-time.Hour)
	for i, sv := range st.Servers {
		members = append(members, config.Member{Name: sv.Name, ServerID: sv.ID, Priority: 150 - 10*i})
		f.started[sv.Name], f.seen[sv.Name] = t0, 5002
	}
	f.master = members[0].Name
	return f, c, members
}

// The order: the BACKUP that is not this node, one switchover to it, the old MASTER, this node last; a second run
// has nothing to do; a node that does not come back stops the roll with the cluster untouched beyond it.
func TestUpgradeOrder(t *testing.T) {
	f, c, members := newFake(t)
	img := &hc.Image{ID: 5004}
	self := members[2].Name
	var log strings.Builder
	o := UpgradeOptions{Image: img, Roll: Roll{Members: members, Self: self, Status: f.status, Switchover: f.switchover,
		Within: 5 * time.Second, Poll: 10 * time.Millisecond, Log: &log}}
	res, err := Upgrade(context.Background(), c, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	want := []string{members[1].Name, members[0].Name, self}
	if strings.Join(res.Rebuilt, " ") != strings.Join(want, " ") || res.Switchovers != 1 || !res.SelfLast {
		t.Fatalf("rebuilt %v, %d switchovers, self last %v; want %v, 1, true\n%s", res.Rebuilt, res.Switchovers, res.SelfLast, want, log.String())
	}
	if strings.Join(f.calls, ";") != "switchover "+members[1].Name {
		t.Errorf("switchovers: %v", f.calls)
	}
	t.Logf("the roll:\n%s", log.String())

	waitImage(t, f.sim, 5004)
	log.Reset()
	if res, err := Upgrade(context.Background(), c, o); err != nil || len(res.Rebuilt) != 0 || !strings.Contains(log.String(), "nothing to do") {
		t.Fatalf("second run: %+v %v\n%s", res, err, log.String())
	}

	// A BACKUP that does not come back: the roll stops there, the MASTER untouched.
	f2, c2, members2 := newFake(t)
	f2.stuck = members2[1].Name
	o2 := UpgradeOptions{Image: img, Roll: Roll{Members: members2, Self: members2[2].Name, Status: f2.status, Switchover: f2.switchover,
		Within: 300 * time.Millisecond, Poll: 10 * time.Millisecond}}
	res, err = Upgrade(context.Background(), c2, o2)
	if err == nil || !strings.Contains(err.Error(), members2[1].Name+" did not come back") || len(res.Rebuilt) != 0 || len(f2.calls) != 0 {
		t.Fatalf("a stuck BACKUP: %+v %v %v", res, err, f2.calls)
	}
	// An unhealthy cluster: nothing rebuilt.
	f3, c3, members3 := newFake(t)
	f3.master = ""
	o3 := UpgradeOptions{Image: img, Roll: Roll{Members: members3, Status: f3.status, Switchover: f3.switchover, Poll: 10 * time.Millisecond}}
	if res, err := Upgrade(context.Background(), c3, o3); err == nil || !strings.Contains(err.Error(), "no MASTER serves: nothing rebuilt") || len(res.Rebuilt) != 0 {
		t.Fatalf("no MASTER: %+v %v", res, err)
	}
	// A node on another mailcow release (rebuilt from an older image, not caught up): nothing rebuilt; an agent
	// that states none (older than the field) counts as any.
	f4, c4, members4 := newFake(t)
	f4.release = map[string]string{members4[0].Name: "2026-09 (0123456789ab)", members4[1].Name: "2026-07a (489db905122d)"}
	o4 := UpgradeOptions{Image: img, Roll: Roll{Members: members4, Status: f4.status, Switchover: f4.switchover, Poll: 10 * time.Millisecond}}
	if res, err := Upgrade(context.Background(), c4, o4); err == nil || !strings.Contains(err.Error(), "different mailcow releases") || len(res.Rebuilt) != 0 {
		t.Fatalf("mixed mailcow releases: %+v %v", res, err)
	}
}

func waitImage(t *testing.T, sim *hcloudsim.Sim, image int64) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		ok := true
		for _, sv := range sim.State().Servers {
			ok = ok && sv.Image == image && sv.Status == "running"
		}
		if ok {
			return
		}
	}
	t.Fatal("the servers did not all run the image")
}
