package check

// The watcher: keepalived's track_file, kept by one long-running process instead of a check command forked every
// second.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WatchOptions configures Watch.
type WatchOptions struct {
	Socket   string        // the agent's socket
	File     string        // keepalived's track_file
	Interval time.Duration // between two questions; default 1 s
	Timeout  time.Duration // for one answer; default 800 ms
	Fall     int           // failures in a row that write "1"; default 2
	Rise     int           // passes in a row that write "0"; default 2
	Log      io.Writer     // one line per change of the file's value
}

// Watch keeps keepalived's track file from the agent's verdict: "1" (FAULT, weight 0) from the start, then what the
// agent says. It holds one connection to the agent's socket ("watch"): the agent writes its verdict at once, again
// within 100 ms of any change (pushed, not polled), and at least every second. A verdict is written to the file as
// soon as it arrives: the agent's own graces (check_grace, quorum_grace) already decided it. Rise and Fall apply to
// an agent that does not answer: no line within Timeout after the heartbeat was due is a failure, and Fall failures
// in a row write "1" (a hung agent means FAULT). An agent that is gone (its connection closed, nothing listening on
// the socket: its process ended) writes "1" at once, keepalived's FAULT within milliseconds. After either, Rise verdict lines in a row are needed
// before a passing one is written again. This replaces the check command that keepalived forked every second: on an
// emulated guest the fork alone outlasted the interval, and three guests on two cores spent a large part of their CPU
// on it. Interval is the pause before a new connection.
//
// The watcher is a process of its own, not a goroutine of the agent: a hung agent (a deadlock, SIGSTOP) answers
// nothing, and the watcher then writes "1" so that keepalived leaves MASTER. The file is written only when its value
// changes, as a new file renamed over the old one, so that keepalived (inotify) never reads half a value. Watch
// returns when ctx ends, leaving the file as it is.
func Watch(ctx context.Context, o WatchOptions) error {
	if o.Socket == "" || o.File == "" {
		return errors.New("check watch: a socket and a file are needed")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 800 * time.Millisecond
	}
	if o.Fall <= 0 {
		o.Fall = 2
	}
	if o.Rise <= 0 {
		o.Rise = 2
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	w := &watcher{o: o}
	if err := writeValue(o.File, false); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "check watch: %s holds 1 (FAULT) until the agent's verdict passes\n", o.File)
	go func() { <-ctx.Done(); w.closeConn() }()
	for ctx.Err() == nil {
		err := w.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errAgentGone) {
			// Nothing listens on the socket, or the agent closed the connection: its process ended (the kernel
			// closes its sockets at once). FAULT now, without waiting out Fall silent periods.
			w.gone(err)
		} else {
			w.silent(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(o.Interval):
		}
	}
	return nil
}

// watcher is Watch's state: the file's value, and the agent's silence.
type watcher struct {
	o       WatchOptions
	ok      bool // the file holds 0
	fails   int  // silent periods in a row
	answers int  // verdict lines since the last silence
	// wasSilent: the file holds 1 because the agent did not answer (a passing verdict then needs Rise lines).
	wasSilent bool
	mu        sync.Mutex
	conn      net.Conn
}

// errAgentGone marks a session that ended because no agent was there: nothing listened on the socket (refused, or
// no socket file), or the agent's end closed the connection.
var errAgentGone = errors.New("the agent is gone")

// session reads verdict lines from one connection until it fails; each missing heartbeat counts as silence.
func (w *watcher) session(ctx context.Context) error {
	c, err := net.DialTimeout("unix", w.o.Socket, w.o.Timeout)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("agent socket %s: %w (%w)", w.o.Socket, errAgentGone, err)
		}
		return fmt.Errorf("agent socket %s: %w", w.o.Socket, err)
	}
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	defer w.closeConn()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.SetWriteDeadline(time.Now().Add(w.o.Timeout))
	if _, err := io.WriteString(c, "watch\n"); err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(WatchBeat + w.o.Timeout))
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return fmt.Errorf("agent socket: the agent closed the connection: %w", errAgentGone)
		}
		if err != nil {
			return fmt.Errorf("agent socket: no verdict within %s: %w", WatchBeat+w.o.Timeout, err)
		}
		word, reason, _ := strings.Cut(strings.TrimSpace(line), " ")
		w.verdict(word == "ok", reason)
	}
}

func (w *watcher) closeConn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// verdict applies one line of the agent's: at once, unless the agent was silent before and has not answered Rise
// times since.
func (w *watcher) verdict(ok bool, reason string) {
	w.answers++
	w.fails = 0
	if ok == w.ok || (ok && w.answers < w.o.Rise && w.wasSilent) {
		return
	}
	w.set(ok, reason)
}

// silent counts a period without an answer; Fall of them in a row write 1.
func (w *watcher) silent(err error) {
	w.answers = 0
	w.fails++
	if w.ok && w.fails >= w.o.Fall {
		w.wasSilent = true
		w.set(false, err.Error())
	}
}

// gone writes 1 at once: the agent's process ended.
func (w *watcher) gone(err error) {
	w.answers = 0
	w.fails = w.o.Fall
	if w.ok {
		w.wasSilent = true
		w.set(false, err.Error())
	}
}

func (w *watcher) set(ok bool, reason string) {
	if err := writeValue(w.o.File, ok); err != nil {
		fmt.Fprintf(w.o.Log, "check watch: %v\n", err)
		return
	}
	w.ok = ok
	if ok {
		w.wasSilent = false
	}
	fmt.Fprintf(w.o.Log, "check watch: verdict %s (%s): %s holds %s\n", word(ok), reason, w.o.File, value(ok))
}

func word(ok bool) string {
	if ok {
		return "passes"
	}
	return "fails"
}

// value is the track file's content: 0 passes, anything else is FAULT with weight 0.
func value(ok bool) string {
	if ok {
		return "0"
	}
	return "1"
}

func writeValue(path string, ok bool) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(value(ok)+"\n"), 0o644); err != nil {
		return fmt.Errorf("check watch: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("check watch: %w", err)
	}
	return nil
}
