package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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
