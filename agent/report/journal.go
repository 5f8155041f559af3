// Package report is how the agent tells the world what it does: log records as native journald entries (or text on
// stderr), sd_notify messages to systemd, signed webhooks with their queues, the event catalog with its journald
// MESSAGE_IDs, and the Prometheus metrics.
package report

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultJournalSocket is journald's native protocol socket.
const DefaultJournalSocket = "/run/systemd/journal/socket"

// LogOptions chooses and configures the log output.
type LogOptions struct {
	Stderr        io.Writer              // text output when the journal is not used
	JournalSocket string                 // default DefaultJournalSocket
	Getenv        func(string) string    // default os.Getenv
	Level         slog.Leveler           // default Info
	Identifier    string                 // SYSLOG_IDENTIFIER, default "mailcow-ha"
	Dial          func() (Sender, error) // for tests; default dials JournalSocket
}

// NewLogger returns the agent's one logger. It writes native journald entries when the process runs under
// systemd with its stderr connected to the journal (JOURNAL_STREAM is set) and the journal socket answers, and
// text on stderr otherwise.
func NewLogger(o LogOptions) *slog.Logger {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Getenv("JOURNAL_STREAM") != "" {
		if h, err := NewJournalHandler(o); err == nil {
			return slog.New(h)
		}
	}
	return slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: o.Level}))
}

// Sender sends one datagram, with a file descriptor for entries too large for a datagram.
type Sender interface {
	Send(b []byte) error
	SendFD(f *os.File) error
	Close() error
}

// unixSender sends to a unixgram socket.
type unixSender struct {
	conn *net.UnixConn
	addr *net.UnixAddr
}

// DialJournal opens an unbound unixgram socket that sends to path.
func DialJournal(path string) (Sender, error) {
	addr := &net.UnixAddr{Name: path, Net: "unixgram"}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	if _, err := os.Stat(path); err != nil {
		conn.Close()
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	return &unixSender{conn: conn, addr: addr}, nil
}

func (s *unixSender) Send(b []byte) error {
	_, err := s.conn.WriteToUnix(b, s.addr)
	return err
}

func (s *unixSender) SendFD(f *os.File) error {
	_, _, err := s.conn.WriteMsgUnix(nil, syscall.UnixRights(int(f.Fd())), s.addr)
	return err
}

func (s *unixSender) Close() error { return s.conn.Close() }

// JournalHandler is a slog.Handler that writes journald's native protocol: each attribute becomes a field, its key
// upper-cased (transition_id becomes TRANSITION_ID, a group prefixes its name), and an attribute message_id
// becomes the MESSAGE_ID that journalctl matches on.
type JournalHandler struct {
	s      *journalSink
	level  slog.Leveler
	prefix string // group prefix, upper-cased with a trailing '_'
	attrs  []byte // pre-encoded fields from WithAttrs
}

type journalSink struct {
	mu     sync.Mutex
	sender Sender
	ident  string
}

// NewJournalHandler connects to the journal socket.
func NewJournalHandler(o LogOptions) (*JournalHandler, error) {
	dial := o.Dial
	if dial == nil {
		path := o.JournalSocket
		if path == "" {
			path = DefaultJournalSocket
		}
		dial = func() (Sender, error) { return DialJournal(path) }
	}
	s, err := dial()
	if err != nil {
		return nil, err
	}
	ident := o.Identifier
	if ident == "" {
		ident = "mailcow-ha"
	}
	lvl := o.Level
	if lvl == nil {
		lvl = slog.LevelInfo
	}
	return &JournalHandler{s: &journalSink{sender: s, ident: ident}, level: lvl}, nil
}

// Enabled implements slog.Handler.
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// WithAttrs implements slog.Handler.
func (h *JournalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = slices.Clone(h.attrs)
	for _, a := range as {
		c.attrs = appendAttr(c.attrs, h.prefix, a)
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + fieldName(name) + "_"
	return &c
}

// Handle implements slog.Handler.
func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	var b []byte
	b = appendField(b, "MESSAGE", messageText(r))
	b = appendField(b, "PRIORITY", strconv.Itoa(priority(r.Level)))
	b = appendField(b, "SYSLOG_IDENTIFIER", h.s.ident)
	if !r.Time.IsZero() {
		b = appendField(b, "SYSLOG_TIMESTAMP", r.Time.UTC().Format(time.RFC3339Nano))
	}
	b = append(b, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		b = appendAttr(b, h.prefix, a)
		return true
	})
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	err := h.s.sender.Send(b)
	if err != nil && isTooLarge(err) {
		err = sendViaFile(h.s.sender, b)
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// messageText is the record's message followed by its attributes as key=value, so that plain journalctl (and a
// console that journald forwards to) shows the error and the subject, not only "galera start". The attributes are
// also fields of their own. message_id is left out: it is the entry's MESSAGE_ID.
func messageText(r slog.Record) string {
	var sb strings.Builder
	sb.WriteString(r.Message)
	var walk func(prefix string, a slog.Attr)
	walk = func(prefix string, a slog.Attr) {
		v := a.Value.Resolve()
		if a.Key == "message_id" || (a.Key == "" && v.Kind() != slog.KindGroup) {
			return
		}
		if v.Kind() == slog.KindGroup {
			p := prefix
			if a.Key != "" {
				p += a.Key + "."
			}
			for _, g := range v.Group() {
				walk(p, g)
			}
			return
		}
		s := v.String()
		if s == "" || strings.ContainsAny(s, " \t\"=") {
			s = strconv.Quote(s)
		}
		sb.WriteString(" " + prefix + a.Key + "=" + s)
	}
	r.Attrs(func(a slog.Attr) bool {
		walk("", a)
		return true
	})
	return sb.String()
}

func isTooLarge(err error) bool {
	return errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.ENOBUFS)
}

// sendViaFile passes an entry too large for one datagram as a sealed, unlinked file, as journald allows.
func sendViaFile(s Sender, b []byte) error {
	f, err := os.CreateTemp("/dev/shm", "journal.")
	if err != nil {
		return fmt.Errorf("large entry: %w", err)
	}
	defer f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("large entry: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("large entry: %w", err)
	}
	return s.SendFD(f)
}

func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func appendAttr(b []byte, prefix string, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		return b
	}
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += fieldName(a.Key) + "_"
		}
		for _, g := range v.Group() {
			b = appendAttr(b, p, g)
		}
		return b
	}
	name := prefix + fieldName(a.Key)
	if name == "" {
		return b
	}
	return appendField(b, name, valueString(v))
}

func valueString(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// fieldName upper-cases a key and keeps only what journald allows: A-Z, 0-9 and '_', not leading '_', at most 64.
func fieldName(k string) string {
	var sb strings.Builder
	for _, r := range strings.ToUpper(k) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9' && sb.Len() > 0, r == '_' && sb.Len() > 0:
			sb.WriteRune(r)
		case sb.Len() > 0:
			sb.WriteByte('_')
		}
	}
	s := sb.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// appendField writes NAME=value, or the binary form for values with a newline.
func appendField(b []byte, name, value string) []byte {
	if !strings.Contains(value, "\n") {
		b = append(b, name...)
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, name...)
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}

// ParseJournalEntry decodes one native-protocol entry into its fields. Tests and the lab use it to read what the
// agent sent.
func ParseJournalEntry(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return nil, errors.New("journal entry: field without newline")
		}
		line := b[:nl]
		if eq := bytes.IndexByte(line, '='); eq >= 0 {
			out[string(line[:eq])] = string(line[eq+1:])
			b = b[nl+1:]
			continue
		}
		name := string(line)
		b = b[nl+1:]
		if len(b) < 8 {
			return nil, fmt.Errorf("journal entry: %s: short length", name)
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if uint64(len(b)) < n+1 || b[n] != '\n' {
			return nil, fmt.Errorf("journal entry: %s: bad length %d", name, n)
		}
		out[name] = string(b[:n])
		b = b[n+1:]
	}
	return out, nil
}
