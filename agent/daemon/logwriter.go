package daemon

import (
	"bytes"
	"log/slog"
	"sync"
)

// logWriter sends a child's console lines (keepalived, mariadbd, garbd) to the agent's log, each line under the
// child's name. A line that arrives in pieces is held until its newline (or until 64 KiB of it have come).
type logWriter struct {
	log  *slog.Logger
	name string
	mu   sync.Mutex
	buf  []byte
}

func newLogWriter(log *slog.Logger, name string) *logWriter { return &logWriter{log: log, name: name} }

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimRight(w.buf[:i], "\r"); len(line) > 0 {
			w.log.Info(w.name + ": " + string(line))
		}
		w.buf = w.buf[i+1:]
	}
	// A child that never ends its line must not grow the buffer without bound.
	if len(w.buf) > 64<<10 {
		w.log.Info(w.name + ": " + string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(b), nil
}
