package check

// The watcher: keepalived's track_file, kept by one long-running process instead of a check command forked every
// second.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// Watch asks the agent for its verdict every Interval and keeps keepalived's track file: "1" (FAULT, weight 0)
// from the start, "0" once Rise answers in a row passed, "1" again once Fall in a row failed, where a failure is a
// "fail" answer or none within Timeout (fail closed). These are the semantics keepalived gave the check script
// this replaces, without forking a process every second: on an emulated guest the fork alone outlasted the
// interval, and three guests on two cores spent a large part of their CPU on it.
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
	ok := false
	if err := writeValue(o.File, ok); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "check watch: %s holds 1 (FAULT) until the verdict passed %d times in a row\n", o.File, o.Rise)
	passes, fails := 0, 0
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		reason, err := Verdict(o.Socket, o.Timeout)
		if err == nil {
			passes, fails = passes+1, 0
		} else {
			passes, fails = 0, fails+1
			reason = err.Error()
		}
		switch {
		case !ok && passes >= o.Rise, ok && fails >= o.Fall:
			ok = !ok
			if err := writeValue(o.File, ok); err != nil {
				fmt.Fprintf(o.Log, "check watch: %v\n", err)
				ok = !ok // try again at the next answer
				break
			}
			fmt.Fprintf(o.Log, "check watch: verdict %s (%s): %s holds %s\n", word(ok), reason, o.File, value(ok))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
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
