package child

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Keeper brings a daemon up again after it ended, tries again after a failed start, stops when told, and
// every wait ends with the context.
func TestKeeper(t *testing.T) {
	var mu sync.Mutex
	var log []string
	note := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	ups := 0
	k := Keeper{
		Up: func(context.Context) (<-chan struct{}, error) {
			ups++
			switch ups {
			case 1:
				return nil, errors.New("no socket yet")
			case 2, 3:
				d := make(chan struct{})
				close(d) // ends at once
				return d, nil
			default:
				cancel()
				return make(chan struct{}), nil // runs until the context ends
			}
		},
		Running:      func() { note("running") },
		Ended:        func() { note("ended") },
		Failed:       func(err error) bool { note("failed: " + err.Error()); return true },
		RestartDelay: time.Millisecond, RetryDelay: time.Millisecond,
	}
	if err := k.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := "failed: no socket yet;running;ended;running;ended;running"
	if got := strings.Join(log, ";"); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}

	// Failed says stop: Run returns Up's error.
	boom := errors.New("bad binary")
	k = Keeper{Up: func(context.Context) (<-chan struct{}, error) { return nil, boom }, Failed: func(error) bool { return false }}
	if err := k.Run(context.Background()); !errors.Is(err, boom) {
		t.Errorf("stop on failure: %v", err)
	}

	// A long restart delay ends with the context.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	closed := make(chan struct{})
	close(closed)
	k = Keeper{Up: func(context.Context) (<-chan struct{}, error) { return closed, nil }, RestartDelay: time.Hour}
	start := time.Now()
	if err := k.Run(ctx); err != nil || time.Since(start) > 10*time.Second {
		t.Errorf("a restart delay outlived the context: %v after %s", err, time.Since(start))
	}
}
