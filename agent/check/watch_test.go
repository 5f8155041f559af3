package check

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The watcher writes keepalived's track file: 1 from the start, 0 after Rise passing answers, 1 after Fall failing
// ones, and 1 when the agent stops answering (a hung agent). A single failure between passes changes nothing.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	sock, file := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "health")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	ok, hang := false, false
	asked := 0
	go Serve(ctx, sock, func() (bool, string) {
		mu.Lock()
		asked++
		h := hang
		v := ok
		mu.Unlock()
		if h {
			time.Sleep(time.Second) // longer than the watcher's timeout
		}
		return v, "test"
	}, nil, slog.New(slog.DiscardHandler))
	var log strings.Builder
	var logMu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, WatchOptions{Socket: sock, File: file, Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond,
			Fall: 3, Rise: 2, Log: writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return log.Write(p) })})
	}()
	read := func() string {
		b, _ := os.ReadFile(file)
		return strings.TrimSpace(string(b))
	}
	// value waits for the file to hold want, for up to 5 s.
	value := func(want string) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if read() == want {
				return
			}
		}
		t.Fatalf("track file holds %q, want %q", read(), want)
	}
	value("1")
	mu.Lock()
	ok = true
	mu.Unlock()
	value("0")
	// One failing answer among passes is not a fall.
	mu.Lock()
	ok, asked = false, 0
	mu.Unlock()
	for {
		mu.Lock()
		n := asked
		mu.Unlock()
		if n >= 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	ok = true
	mu.Unlock()
	time.Sleep(150 * time.Millisecond)
	if v := read(); v != "0" {
		t.Fatalf("one failing answer put %q in the track file", v)
	}
	mu.Lock()
	ok = false
	mu.Unlock()
	value("1")
	mu.Lock()
	ok = true
	mu.Unlock()
	value("0")
	// A hung agent: no answer within the timeout is a failure.
	mu.Lock()
	hang = true
	mu.Unlock()
	value("1")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(log.String(), "verdict fails") || !strings.Contains(log.String(), "verdict passes") {
		t.Errorf("the watcher did not say why the file changed:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".health.tmp")); err == nil {
		t.Error("a temporary file was left beside the track file")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
