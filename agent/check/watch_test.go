package check

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The watcher keeps keepalived's track file from the agent's pushed verdict: 1 from the start, then each verdict
// within a few hundred milliseconds of its change (no question asked), and 1 when the agent stops answering (a hung
// agent), until it answers again.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	sock, file := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "health")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agentCtx, agentDies := context.WithCancel(ctx)
	var mu sync.Mutex
	ok, hang := false, false
	go Serve(agentCtx, sock, func() (bool, string) {
		mu.Lock()
		h, v := hang, ok
		mu.Unlock()
		if h {
			time.Sleep(5 * time.Second) // the agent's loop is stuck
		}
		return v, "test"
	}, nil, slog.New(slog.DiscardHandler))
	var log strings.Builder
	var logMu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, WatchOptions{Socket: sock, File: file, Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond,
			Fall: 2, Rise: 2, Log: writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return log.Write(p) })})
	}()
	read := func() string {
		b, _ := os.ReadFile(file)
		return strings.TrimSpace(string(b))
	}
	// value waits for the file to hold want, for up to within, and returns how long it took.
	value := func(want string, within time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		for time.Since(t0) < within {
			if read() == want {
				return time.Since(t0)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("track file holds %q, want %q after %s", read(), want, within)
		return 0
	}
	set := func(v bool) {
		mu.Lock()
		ok = v
		mu.Unlock()
	}
	value("1", 2*time.Second)
	set(true)
	value("0", 2*time.Second)
	// A changed verdict is pushed: no heartbeat (1 s) to wait for, no fall to count. The median of five changes each
	// way, so that one stall of a loaded machine (make test runs the lab beside this) does not decide.
	var failing, passing []time.Duration
	for range 5 {
		set(false)
		failing = append(failing, value("1", 3*time.Second))
		set(true)
		passing = append(passing, value("0", 3*time.Second))
	}
	for _, c := range []struct {
		what string
		d    []time.Duration
	}{{"failing", failing}, {"passing", passing}} {
		slices.Sort(c.d)
		if med := c.d[len(c.d)/2]; med > 500*time.Millisecond {
			t.Errorf("a %s verdict reached the file after %s (median of %v), want it pushed within 500 ms", c.what, med, c.d)
		}
	}
	// A hung agent: no line within the heartbeat and the timeout, twice, is FAULT; it answers again, and after two
	// lines the passing verdict is written again.
	mu.Lock()
	hang = true
	mu.Unlock()
	d := value("1", 10*time.Second)
	t.Logf("a hung agent: FAULT after %s (heartbeat 1 s, timeout 200 ms, fall 2)", d.Round(10*time.Millisecond))
	mu.Lock()
	hang = false
	mu.Unlock()
	value("0", 15*time.Second)
	// The agent's process ends: its connection closes and nothing listens any more. FAULT at once, not after the
	// heartbeat, the timeout and Fall (1.4 s here).
	agentDies()
	d = value("1", 2*time.Second)
	t.Logf("a dead agent: FAULT after %s", d.Round(time.Millisecond))
	if d > 300*time.Millisecond {
		t.Errorf("a dead agent took %s to FAULT, want it at once (under 300 ms)", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(log.String(), "verdict fails") || !strings.Contains(log.String(), "verdict passes") || !strings.Contains(log.String(), "no verdict within") {
		t.Errorf("the watcher did not say why the file changed:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".health.tmp")); err == nil {
		t.Error("a temporary file was left beside the track file")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
