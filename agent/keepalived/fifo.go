package keepalived

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Event is one line of vrrp_notify_fifo about a VRRP instance: INSTANCE "VI_1" MASTER 150.
type Event struct {
	Instance string
	State    string // MASTER, BACKUP, FAULT, STOP, MASTER_RX_LOWER_PRI, DELETED
	Priority int
}

// ParseLine reads one fifo line. Lines about groups and virtual servers are not instance events (ok false).
func ParseLine(line string) (Event, bool, error) {
	f := fields(strings.TrimSpace(line))
	if len(f) == 0 {
		return Event{}, false, nil
	}
	if f[0] != "INSTANCE" {
		return Event{}, false, nil
	}
	if len(f) < 3 {
		return Event{}, false, fmt.Errorf("notify fifo: short INSTANCE line %q", line)
	}
	e := Event{Instance: f[1], State: f[2]}
	if len(f) > 3 {
		p, err := strconv.Atoi(f[3])
		if err != nil {
			return Event{}, false, fmt.Errorf("notify fifo: priority in %q", line)
		}
		e.Priority = p
	}
	return e, true, nil
}

// fields splits on blanks and removes the quotes around a quoted field.
func fields(s string) []string {
	var out []string
	for s != "" {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				out = append(out, s[1:])
				break
			}
			out = append(out, s[1:end+1])
			s = s[end+2:]
			continue
		}
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

// MakeFIFO creates the fifo with mode 0600 unless a fifo is already there; a regular file in its place is
// replaced.
func MakeFIFO(path string) error {
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
		return nil
	}
	if err == nil {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace %s: %w", path, err)
		}
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mkfifo %s: %w", path, err)
	}
	return nil
}

// ReadFIFO is the one reader of the notify fifo: it sends the events of instance to out until ctx ends. It opens
// the fifo read-write, so that it never sees end-of-file when keepalived closes its end, and it reopens the fifo
// when the path points to a new one (keepalived re-creates it on reload).
func ReadFIFO(ctx context.Context, path, instance string, out chan<- Event, bad func(error)) error {
	for ctx.Err() == nil {
		if err := MakeFIFO(path); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		readUntilReplaced(ctx, f, path, instance, out, bad)
		f.Close()
	}
	return ctx.Err()
}

func readUntilReplaced(ctx context.Context, f *os.File, path, instance string, out chan<- Event, bad func(error)) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return
	}
	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	go func() {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
		close(lines)
	}()
	check := time.NewTicker(500 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			var now syscall.Stat_t
			if err := syscall.Stat(path, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
				return
			}
		case l, ok := <-lines:
			if !ok {
				return
			}
			e, ok, err := ParseLine(l)
			if err != nil && bad != nil {
				bad(err)
			}
			if ok && e.Instance == instance {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}
