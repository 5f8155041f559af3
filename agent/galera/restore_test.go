package galera

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// fakeServer is a Control that starts nothing: it records the start asked for.
type fakeServer struct {
	dir     string
	started chan Position // the position of a bootstrap start
	marked  Position
	done    chan struct{}
}

func (f *fakeServer) Start(bootstrap bool, from Position) error {
	if !bootstrap {
		return errors.New("fake: only a bootstrap is expected")
	}
	f.started <- from
	return nil
}
func (f *fakeServer) Done() <-chan struct{}                      { return f.done }
func (f *fakeServer) Stop(time.Duration)                         {}
func (f *fakeServer) Position(context.Context) (Position, error) { return Position{}, nil }
func (f *fakeServer) MarkSafeToBootstrap(p Position) error       { f.marked = p; return nil }
func (f *fakeServer) Dir() string                                { return f.dir }

// A new cluster made from a backup: the bootstrap node restores before it bootstraps, from the copy's position. A
// restore that fails alerts once per reason and starts nothing; the next round tries again.
func TestFirstBootstrapRestores(t *testing.T) {
	srv := &fakeServer{dir: t.TempDir(), started: make(chan Position, 1), done: make(chan struct{})}
	close(srv.done) // not running
	copyPos := Position{UUID: "0b5d5c5e-1111-2222-3333-444455556666", Seqno: 4711}
	var mu sync.Mutex
	var alerts []string
	tries := 0
	m := &Manager{
		Name: "mx1", Bootstrap: true, Peers: []string{"mx2", "mx3"}, Server: srv, Socket: filepath.Join(t.TempDir(), "none.sock"),
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Retry: 20 * time.Millisecond,
		Ask: func(_ context.Context, peer string) (Report, error) {
			return Report{Node: peer, Answered: true, Pos: Position{UUID: ZeroUUID, Seqno: -1}}, nil // new nodes: no history
		},
		Alert: func(name event.Name, detail string) {
			mu.Lock()
			alerts = append(alerts, string(name)+": "+detail)
			mu.Unlock()
		},
		OnFirstBootstrap: func(context.Context) error { return nil },
		Restore: func(context.Context) (Position, error) {
			tries++
			if tries <= 3 {
				return Position{}, errors.New("the repository did not answer")
			}
			// The restore replaced the datadir: the copy's database is in it.
			if err := os.MkdirAll(filepath.Join(srv.dir, "mailcow"), 0o755); err != nil {
				return Position{}, err
			}
			return copyPos, nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	var from Position
	select {
	case from = <-srv.started:
	case err := <-ran:
		t.Fatalf("Run ended before a start: %v", err)
	case <-ctx.Done():
		t.Fatal("no start within 10 s")
	}
	cancel()
	<-ran
	if from != copyPos || srv.marked.Seqno != copyPos.Seqno || srv.marked.UUID != copyPos.UUID {
		t.Errorf("bootstrapped from %s (marked safe: %s), want the copy's position %s", from, srv.marked, copyPos)
	}
	if tries != 4 {
		t.Errorf("restore tried %d times, want 4 (three failures, then the one that worked)", tries)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(alerts) != 1 || !strings.HasPrefix(alerts[0], string(event.RestoreFailed)+": ") || !strings.Contains(alerts[0], "did not answer") {
		t.Errorf("alerts %q, want one restore_failed for the one reason", alerts)
	}
	if _, err := os.Stat(filepath.Join(srv.dir, setupMark)); err != nil {
		t.Errorf("the new cluster's setup (mailcow's user with this cluster's password) is not pending after the restore: %v", err)
	}
}
