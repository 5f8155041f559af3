package galera

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// A start that blocks (systemctl start mariadb during a state transfer) reports progress while it runs, and none
// after it returned; its error comes through.
func TestWhileProgress(t *testing.T) {
	var n atomic.Int32
	want := errors.New("mariadb.service failed")
	err := whileProgress(func() error { time.Sleep(220 * time.Millisecond); return want }, func() { n.Add(1) }, 50*time.Millisecond)
	if !errors.Is(err, want) {
		t.Fatalf("err %v, want %v", err, want)
	}
	got := n.Load()
	if got < 3 || got > 5 {
		t.Errorf("%d progress calls in 220 ms at 50 ms, want 3–5", got)
	}
	time.Sleep(120 * time.Millisecond)
	if n.Load() != got {
		t.Errorf("progress was called after the start returned")
	}
	if err := whileProgress(func() error { return nil }, nil, time.Millisecond); err != nil {
		t.Errorf("without progress: %v", err)
	}
}
