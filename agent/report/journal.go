// Package report is how the agent tells the world what it does: log records as native journald entries (or text on
// stderr), sd_notify messages to systemd, signed webhooks with their queues, the event catalog with its journald
// MESSAGE_IDs, and the Prometheus metrics. The journal and sd_notify go through go-systemd.
package report

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// SendFunc sends one journal entry: go-systemd's journal.Send, which passes an entry too large for a datagram
// as a sealed memfd.
type SendFunc func(message string, priority journal.Priority, vars map[string]string) error

// LogOptions chooses and configures the log output.
type LogOptions struct {
	Stderr     io.Writer    // text output when the journal is not used
	Level      slog.Leveler // default Info
	Identifier string       // SYSLOG_IDENTIFIER, default "mailcow-ha"
	// IsJournalStream tells whether stderr is connected to the journal (default journal.StderrIsJournalStream:
	// $JOURNAL_STREAM names stderr's device and inode). Tests set it.
	IsJournalStream func() (bool, error)
	// Send sends an entry (default journal.Send, when journal.Enabled finds the journal's socket). Tests set it.
	Send SendFunc
}

// NewLogger returns the agent's one logger. It writes native journald entries when the process runs under
// systemd with its stderr connected to the journal and the journal's socket answers, and text on stderr otherwise.
func NewLogger(o LogOptions) *slog.Logger {
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.IsJournalStream == nil {
		o.IsJournalStream = journal.StderrIsJournalStream
	}
	if ok, _ := o.IsJournalStream(); ok {
		if o.Send == nil && journal.Enabled() {
			o.Send = journal.Send
		}
		if o.Send != nil {
			return slog.New(NewJournalHandler(o))
		}
	}
	return slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: o.Level}))
}

// JournalHandler is a slog.Handler that writes journal entries: each attribute becomes a field, its key
// upper-cased (transition_id becomes TRANSITION_ID, a group prefixes its name), and an attribute message_id
// becomes the MESSAGE_ID that journalctl matches on.
type JournalHandler struct {
	send   SendFunc
	ident  string
	level  slog.Leveler
	prefix string  // group prefix, upper-cased with a trailing '_'
	attrs  []field // fields from WithAttrs
}

type field struct{ name, value string }

// NewJournalHandler returns the handler; o.Send must be set.
func NewJournalHandler(o LogOptions) *JournalHandler {
	ident := o.Identifier
	if ident == "" {
		ident = "mailcow-ha"
	}
	lvl := o.Level
	if lvl == nil {
		lvl = slog.LevelInfo
	}
	return &JournalHandler{send: o.Send, ident: ident, level: lvl}
}

// Enabled implements slog.Handler.
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// WithAttrs implements slog.Handler.
func (h *JournalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]field(nil), h.attrs...)
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
	fs := append([]field(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fs = appendAttr(fs, h.prefix, a)
		return true
	})
	vars := make(map[string]string, len(fs)+2)
	for _, f := range fs {
		vars[f.name] = f.value
	}
	// Set last: an attribute cannot pose as the identifier, the message or the priority.
	vars["SYSLOG_IDENTIFIER"] = h.ident
	if !r.Time.IsZero() {
		vars["SYSLOG_TIMESTAMP"] = r.Time.UTC().Format(time.RFC3339Nano)
	}
	delete(vars, "MESSAGE")
	delete(vars, "PRIORITY")
	if err := h.send(messageText(r), priority(r.Level), vars); err != nil {
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

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

func appendAttr(b []field, prefix string, a slog.Attr) []field {
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
	return append(b, field{name, valueString(v)})
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
