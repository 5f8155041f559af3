package check

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheckSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	ok, why := true, "ok"
	go Serve(ctx, path, func() (bool, string) { mu.Lock(); defer mu.Unlock(); return ok, why },
		func(ctx context.Context, verb string, args []string) string {
			return "done " + verb + " " + strings.Join(args, ",")
		},
		slog.New(slog.DiscardHandler))
	var err error
	for i := 0; i < 100; i++ {
		if _, err = Verdict(path, time.Second); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	ok, why = false, "galera not Primary and Synced: non-Primary"
	mu.Unlock()
	reason, err := Verdict(path, time.Second)
	if !errors.Is(err, ErrCheckFailed) || reason != "galera not Primary and Synced: non-Primary" {
		t.Fatalf("failing verdict: %q %v", reason, err)
	}
	if ans, err := Ask(path, "maintenance on", time.Second); err != nil || ans != "done maintenance on" {
		t.Fatalf("command: %q %v", ans, err)
	}
	// Fail closed: no agent, or an agent that does not answer.
	if _, err := Verdict(filepath.Join(t.TempDir(), "none.sock"), 200*time.Millisecond); err == nil {
		t.Fatal("no agent, yet the check passed")
	}
	hung := filepath.Join(t.TempDir(), "hung.sock")
	l, _ := net.Listen("unix", hung)
	defer l.Close()
	go func() {
		c, _ := l.Accept()
		if c != nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	start := time.Now()
	if _, err := Verdict(hung, 200*time.Millisecond); err == nil || time.Since(start) > time.Second {
		t.Fatalf("hung agent: %v after %s", err, time.Since(start))
	}
}

// BenchmarkCheck measures one `check` round trip over the socket, as keepalived's vrrp_script pays it each
// second (without the process start of mailcow-ha check).
func BenchmarkCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, path, func() (bool, string) { return true, "ok" }, nil, slog.New(slog.DiscardHandler))
	for i := 0; i < 100; i++ {
		if _, err := Verdict(path, time.Second); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := Verdict(path, time.Second); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
}
