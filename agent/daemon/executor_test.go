package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// cloudCalls is a Cloud that records when each call came.
type cloudCalls struct {
	mu    sync.Mutex
	calls map[string]time.Time
}

func (c *cloudCalls) note(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.calls[op]; !ok {
		c.calls[op] = time.Now()
	}
}
func (c *cloudCalls) at(op string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.calls[op]
	return t, ok
}
func (c *cloudCalls) FloatingIPOwner(context.Context, int64) (int64, error) { return 0, nil }
func (c *cloudCalls) FloatingIPAddress(context.Context, int64) (netip.Addr, error) {
	return netip.MustParseAddr("203.0.113.100"), nil
}
func (c *cloudCalls) AssignFloatingIP(context.Context, int64, int64) error {
	c.note("assign")
	return nil
}
func (c *cloudCalls) Volume(context.Context, int64) (hcloud.VolumeInfo, error) {
	return hcloud.VolumeInfo{}, nil
}
func (c *cloudCalls) DetachVolume(context.Context, int64, int64) error { return nil }
func (c *cloudCalls) AttachVolume(context.Context, int64, int64) error {
	c.note("attach")
	return nil
}
func (c *cloudCalls) PowerOff(context.Context, int64) error {
	c.note("poweroff")
	return nil
}

func (c *cloudCalls) PowerOn(context.Context, int64) error {
	c.note("poweron")
	return nil
}

type noStorage struct{}

func (noStorage) WaitDevice(context.Context, string) error { return nil }
func (noStorage) Mount(context.Context) error              { return nil }
func (noStorage) Unmount(context.Context) error            { return nil }
func (noStorage) Mounted(context.Context) (bool, error)    { return false, nil }

// A webhook receiver that accepts connections and never answers must not delay a takeover: the executor applies
// a step's actions at once although the step also reports, and the reports pile up in the webhook's queue.
func TestDeadWebhookDoesNotDelayTakeover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	log := slog.New(slog.DiscardHandler)
	alerts, err := report.NewAlerter("c1", "mx1", []report.Webhook{{Name: "dead", URL: "http://" + ln.Addr().String() + "/hook"}},
		report.AlerterOptions{QueueSize: 8}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer alerts.Close(0)
	cloud := &cloudCalls{calls: map[string]time.Time{}}
	observed := make(chan failover.Observation, 64)
	e := &Executor{Cloud: cloud, Storage: noStorage{}, Log: log, Self: 1001, FloatingID: 1, VolumeID: 2,
		FloatingIP: netip.MustParseAddr("203.0.113.100"),
		Report: func(a failover.Action) {
			alerts.Send(report.Event{Event: string(a.Event), Severity: string(a.Severity), TransitionID: a.TID, Message: a.Detail})
		},
		Observe: func(o failover.Observation) { observed <- o }}
	var acts []failover.Action
	for i := 0; i < 50; i++ {
		acts = append(acts, failover.Action{Kind: failover.ActReport, TID: 2, Event: "failover_started", Severity: "info", Detail: "x"})
	}
	acts = append(acts, failover.Action{Kind: failover.ActPowerOff, TID: 2, Server: 1002},
		failover.Action{Kind: failover.ActAttachVolume, TID: 2}, failover.Action{Kind: failover.ActAssignFIP, TID: 2})
	start := time.Now()
	e.Apply(context.Background(), acts)
	applied := time.Since(start)
	for _, op := range []string{"poweroff", "attach", "assign"} {
		deadline := time.Now().Add(2 * time.Second)
		for {
			if at, ok := cloud.at(op); ok {
				if d := at.Sub(start); d > 200*time.Millisecond {
					t.Errorf("%s began %s after Apply", op, d)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never began", op)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if applied > 50*time.Millisecond {
		t.Errorf("Apply took %s with a dead webhook", applied)
	}
	st := alerts.Stats()[0]
	if st.Sent != 0 || st.Dropped[report.DropQueueFull] < 40 {
		t.Errorf("the dead receiver's queue: %+v", st)
	}
	e.Wait()
}

// The Floating IP's address cache names the Floating IP: a cache of another one, or one without the id (as it was
// written before), is not used.
func TestAddressCacheNamesTheFloatingIP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fip")
	if err := os.WriteFile(path, []byte("2001 203.0.113.100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ip, ok := readAddressCache(path, 2001); !ok || ip.String() != "203.0.113.100" {
		t.Errorf("own cache: %v %v", ip, ok)
	}
	if ip, ok := readAddressCache(path, 2002); ok {
		t.Errorf("another Floating IP's cache was used: %v", ip)
	}
	if err := os.WriteFile(path, []byte("203.0.113.100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ip, ok := readAddressCache(path, 2001); ok {
		t.Errorf("a cache without the id was used: %v", ip)
	}
}

// v6Cloud is a cloud whose Floating IP 2 is an IPv6 /64 (the API names it by its network address).
type v6Cloud struct {
	cloudCalls
	assigned []int64
}

func (c *v6Cloud) FloatingIPAddress(_ context.Context, id int64) (netip.Addr, error) {
	if id == 2 {
		return netip.MustParseAddr("2001:db8:f002::"), nil
	}
	return netip.MustParseAddr("203.0.113.100"), nil
}

func (c *v6Cloud) AssignFloatingIP(_ context.Context, id, _ int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.assigned = append(c.assigned, id)
	return nil
}

// addrs records the addresses put on and taken off the interface.
type addrs struct {
	mu       sync.Mutex
	on       map[netip.Addr]bool
	announce []netip.Addr
}

func (a *addrs) Present(ip netip.Addr) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.on[ip], nil
}
func (a *addrs) Add(ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.on[ip] = true
	return nil
}
func (a *addrs) Remove(ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.on, ip)
	return nil
}
func (a *addrs) Announce(ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.announce = append(a.announce, ip)
	return nil
}

// With an IPv6 Floating IP, the takeover's assign step routes both to this server, the address step puts the IPv4
// address and the /64's ::1 on the interface and announces both, and the demotion's step takes both off; the IPv6
// address is cached for a boot without the API.
func TestIPv6FloatingIPFollows(t *testing.T) {
	cloud := &v6Cloud{cloudCalls: cloudCalls{calls: map[string]time.Time{}}}
	ad := &addrs{on: map[netip.Addr]bool{}}
	observed := make(chan failover.Observation, 8)
	cache := filepath.Join(t.TempDir(), "floating-ip")
	e := &Executor{Cloud: cloud, Address: ad, Storage: noStorage{}, Log: slog.New(slog.DiscardHandler), Self: 1001,
		FloatingID: 1, FloatingV6ID: 2, VolumeID: 3, AddressCache: cache,
		Report: func(failover.Action) {}, Observe: func(o failover.Observation) { observed <- o }}
	step := func(kind failover.ActionKind) {
		t.Helper()
		e.Apply(context.Background(), []failover.Action{{Kind: kind, TID: 2}})
		select {
		case o := <-observed:
			if d, ok := o.(failover.Done); !ok || d.Err != "" {
				t.Fatalf("%s: %+v", kind, o)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no result", kind)
		}
	}
	v4, v6 := netip.MustParseAddr("203.0.113.100"), netip.MustParseAddr("2001:db8:f002::1")
	step(failover.ActAssignFIP)
	if got := slices.Sorted(slices.Values(cloud.assigned)); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("assigned %v, want both Floating IPs", got)
	}
	step(failover.ActAddAddress)
	if !ad.on[v4] || !ad.on[v6] || !slices.Contains(ad.announce, v6) {
		t.Errorf("on the interface %v, announced %v; want %s and %s", ad.on, ad.announce, v4, v6)
	}
	if ip, ok := readAddressCache(cache+"6", 2); !ok || ip != v6 {
		t.Errorf("the IPv6 address cache: %v %v", ip, ok)
	}
	step(failover.ActRemoveAddr)
	if len(ad.on) != 0 {
		t.Errorf("left on the interface: %v", ad.on)
	}
	e.Wait()
}

// slowWarm is a Stack whose warm start takes a while and notes when each call began and ended.
type slowWarm struct {
	mu     sync.Mutex
	events []string
}

func (s *slowWarm) note(e string) { s.mu.Lock(); s.events = append(s.events, e); s.mu.Unlock() }
func (s *slowWarm) Warm(ctx context.Context) error {
	s.note("warm begins")
	select { // a ContainerStart that finishes although its context ended
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		time.Sleep(300 * time.Millisecond)
	}
	s.note("warm ends")
	return nil
}
func (s *slowWarm) Start(context.Context) error            { return nil }
func (s *slowWarm) Stop(context.Context) error             { s.note("stop"); return nil }
func (s *slowWarm) Failed(context.Context) (string, error) { return "", nil }

// A takeover cancelled while its warm start runs: the demotion's stop comes only after the warm start has ended,
// so that no container it was starting outlives the stop.
func TestStopWaitsForTheWarmStart(t *testing.T) {
	st := &slowWarm{}
	observed := make(chan failover.Observation, 16)
	e := &Executor{Cloud: &cloudCalls{calls: map[string]time.Time{}}, Storage: noStorage{}, Stack: st,
		Log: slog.New(slog.DiscardHandler), Self: 1001, FloatingID: 1, VolumeID: 2,
		Observe: func(o failover.Observation) { observed <- o }}
	ctx := context.Background()
	e.Apply(ctx, []failover.Action{{Kind: failover.ActWarmStack, TID: 2}})
	time.Sleep(50 * time.Millisecond)
	e.Apply(ctx, []failover.Action{{Kind: failover.ActCancel, TID: 2}, {Kind: failover.ActStopStack, TID: 3}})
	e.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	if want := []string{"warm begins", "warm ends", "stop"}; !slices.Equal(st.events, want) {
		t.Fatalf("events %v, want %v", st.events, want)
	}
}
