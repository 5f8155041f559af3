package report

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"text/template"
	"time"
)

// EventSchema names the version of the generic JSON body (docs/alerts.md). A change that removes or renames a
// field gets a new version; new fields may be added within one.
const EventSchema = "mailcow-ha.event.v1"

// Severities, from least to most severe.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// SeverityRank orders the severities; an unknown one counts as critical, so that it is never filtered away.
func SeverityRank(s string) int {
	switch s {
	case SeverityInfo:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

// Event is one alert: the generic JSON body sent to every webhook without a template, and the data a template
// sees.
type Event struct {
	Schema       string            `json:"schema"`
	ID           string            `json:"id"` // unique per delivery, for receivers that deduplicate retries
	Event        string            `json:"event"`
	Severity     string            `json:"severity"`
	Cluster      string            `json:"cluster"`
	Node         string            `json:"node"`    // the node that reports
	Subject      string            `json:"subject"` // what the event is about: this node, or a peer
	TransitionID int               `json:"transition_id,omitempty"`
	Time         time.Time         `json:"time"`
	Message      string            `json:"message"`
	Repeat       int               `json:"repeat"` // how many times the event happened since it was last sent
	Details      map[string]string `json:"details,omitempty"`
}

// Webhook is one receiver, with its secret already read.
type Webhook struct {
	Name        string
	URL         string // may carry a token: never logged
	Secret      []byte // HMAC-SHA256 key for the signature header; nil sends no signature
	MinSeverity string
	Template    string // Go text/template for the body; "" sends the JSON Event
	ContentType string // default application/json, or text/plain for a template
	Headers     map[string]string
	DedupWindow time.Duration
	// Mail, when set, delivers by e-mail through an SMTP relay instead of an HTTP POST (alerts.email; URL, Secret,
	// ContentType and Headers are then unused).
	Mail *Mail
}

// WebhookStats counts one webhook's deliveries (the metrics read them).
type WebhookStats struct {
	Name       string
	Sent       int64 // delivered with a 2xx answer
	Retries    int64 // attempts that failed and were tried again
	Suppressed int64 // events folded into a later repeat count
	Dropped    map[string]int64
	Queued     int
}

// Drop reasons.
const (
	DropQueueFull = "queue_full"        // the bounded queue was full: the receiver is slow or dead
	DropExhausted = "retries_exhausted" // every retry failed
	DropRejected  = "rejected"          // the receiver answered 4xx: retrying would not help
	DropTemplate  = "template"          // the template failed on this event
	DropShutdown  = "shutdown"          // the agent stopped before the event went out
)

// AlerterOptions tune delivery; zero values take the defaults.
type AlerterOptions struct {
	Client      *http.Client  // default: 10 s timeout per attempt
	QueueSize   int           // per webhook; default 64
	MaxAttempts int           // default 6
	Backoff     time.Duration // first retry's delay, doubled each time; default 1 s
	MaxBackoff  time.Duration // default 60 s
	UserAgent   string
}

// Alerter sends events to the webhooks. Send never blocks: each webhook has its own bounded queue and worker, so
// a dead receiver delays nobody, and what does not fit is dropped and counted.
type Alerter struct {
	cluster, node string
	o             AlerterOptions
	log           *slog.Logger
	hooks         []*hook
	ctx           context.Context
	cancel        context.CancelFunc
	wg            sync.WaitGroup
}

type hook struct {
	w     Webhook
	tmpl  *template.Template
	queue chan Event
	mu    sync.Mutex
	st    WebhookStats
	dedup map[string]*window
	done  bool
	busy  bool // a delivery is under way
}

// window is the dedup state of one (event, subject).
type window struct {
	start      time.Time
	suppressed int
	last       Event
	timer      *time.Timer
}

// NewAlerter starts one worker per webhook; Close stops them.
func NewAlerter(cluster, node string, hooks []Webhook, o AlerterOptions, log *slog.Logger) (*Alerter, error) {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	// A redirect is not followed: the Go client would send the webhook's own headers (an Authorization, a token)
	// to wherever the receiver points. A 3xx answer is a failed delivery, as the receiver's configuration is wrong.
	c := *o.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.Client = &c
	if o.QueueSize <= 0 {
		o.QueueSize = 64
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 60 * time.Second
	}
	if o.UserAgent == "" {
		o.UserAgent = "mailcow-ha"
	}
	a := &Alerter{cluster: cluster, node: node, o: o, log: log}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	for _, w := range hooks {
		h := &hook{w: w, queue: make(chan Event, o.QueueSize), dedup: map[string]*window{},
			st: WebhookStats{Name: w.Name, Dropped: map[string]int64{}}}
		if w.Template != "" {
			t, err := ParseTemplate(w.Name, w.Template)
			if err != nil {
				a.cancel()
				return nil, fmt.Errorf("webhook %s: template: %w", w.Name, err)
			}
			h.tmpl = t
		}
		a.hooks = append(a.hooks, h)
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.work(h) }()
	}
	return a, nil
}

// Send files an event with every webhook whose severity filter lets it through. Empty fields are filled in:
// schema, cluster, node, subject (this node), time, repeat.
func (a *Alerter) Send(ev Event) {
	if a == nil {
		return
	}
	ev.Schema, ev.Cluster, ev.Node = EventSchema, a.cluster, a.node
	if ev.Subject == "" {
		ev.Subject = a.node
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.Repeat = 1
	for _, h := range a.hooks {
		if h.w.MinSeverity != "" && SeverityRank(ev.Severity) < SeverityRank(h.w.MinSeverity) {
			continue
		}
		a.file(h, ev)
	}
}

// file applies the dedup window, then queues.
func (a *Alerter) file(h *hook, ev Event) {
	if h.w.DedupWindow <= 0 {
		a.enqueue(h, ev)
		return
	}
	key := ev.Event + "\x00" + ev.Subject
	now := time.Now()
	h.mu.Lock()
	if h.done {
		h.mu.Unlock()
		return
	}
	win := h.dedup[key]
	if win != nil && now.Sub(win.start) < h.w.DedupWindow {
		win.suppressed++
		win.last = ev
		h.st.Suppressed++
		if win.timer == nil {
			win.timer = time.AfterFunc(h.w.DedupWindow-now.Sub(win.start), func() { a.flush(h, key) })
		}
		h.mu.Unlock()
		return
	}
	h.dedup[key] = &window{start: now}
	h.mu.Unlock()
	a.enqueue(h, ev)
}

// flush sends the last suppressed event of a window with its repeat count, and opens the next window.
func (a *Alerter) flush(h *hook, key string) {
	h.mu.Lock()
	win := h.dedup[key]
	if win == nil || win.suppressed == 0 || h.done {
		h.mu.Unlock()
		return
	}
	ev := win.last
	ev.Repeat = win.suppressed
	h.dedup[key] = &window{start: time.Now()}
	h.mu.Unlock()
	a.enqueue(h, ev)
}

func (a *Alerter) enqueue(h *hook, ev Event) {
	ev.ID = newID()
	select {
	case h.queue <- ev:
	default:
		a.drop(h, ev, DropQueueFull)
	}
}

func (a *Alerter) drop(h *hook, ev Event, why string) {
	h.mu.Lock()
	h.st.Dropped[why]++
	h.mu.Unlock()
	a.log.Warn("webhook: event dropped", "webhook", h.w.Name, "event", ev.Event, "reason", why)
}

func (a *Alerter) work(h *hook) {
	for {
		select {
		case <-a.ctx.Done():
			return
		case ev, ok := <-h.queue:
			if !ok {
				return
			}
			h.mu.Lock()
			h.busy = true
			h.mu.Unlock()
			a.deliver(h, ev)
			h.mu.Lock()
			h.busy = false
			h.mu.Unlock()
		}
	}
}

// deliver posts one event, retrying with exponential backoff on network errors, 408, 429 and 5xx.
func (a *Alerter) deliver(h *hook, ev Event) {
	body, ctype, err := a.body(h, ev)
	if err != nil {
		a.log.Warn("webhook: template failed", "webhook", h.w.Name, "event", ev.Event, "err", err)
		a.drop(h, ev, DropTemplate)
		return
	}
	if h.w.Mail != nil && h.tmpl == nil {
		body = nil // the standard text (mailMessage), not the JSON body
	}
	delay := a.o.Backoff
	for attempt := 1; ; attempt++ {
		var retry bool
		var wait time.Duration
		if h.w.Mail != nil {
			retry, err = a.sendMail(h, ev, body)
		} else {
			retry, wait, err = a.post(h, ev, body, ctype)
		}
		if err == nil {
			h.mu.Lock()
			h.st.Sent++
			h.mu.Unlock()
			return
		}
		if !retry {
			a.log.Warn("webhook: receiver refused the event", "webhook", h.w.Name, "event", ev.Event, "err", err)
			a.drop(h, ev, DropRejected)
			return
		}
		if attempt >= a.o.MaxAttempts {
			a.log.Warn("webhook: giving up", "webhook", h.w.Name, "event", ev.Event, "attempts", attempt, "err", err)
			a.drop(h, ev, DropExhausted)
			return
		}
		h.mu.Lock()
		h.st.Retries++
		h.mu.Unlock()
		if wait < delay {
			wait = delay
		}
		wait = min(wait, a.o.MaxBackoff)
		select {
		case <-a.ctx.Done():
			a.drop(h, ev, DropShutdown)
			return
		case <-time.After(wait):
		}
		delay = min(delay*2, a.o.MaxBackoff)
	}
}

func (a *Alerter) body(h *hook, ev Event) ([]byte, string, error) {
	if h.tmpl == nil {
		b, err := json.Marshal(ev)
		return b, "application/json", err
	}
	var buf bytes.Buffer
	if err := h.tmpl.Execute(&buf, ev); err != nil {
		return nil, "", err
	}
	ctype := h.w.ContentType
	if ctype == "" {
		ctype = "text/plain; charset=utf-8"
	}
	return buf.Bytes(), ctype, nil
}

// post makes one attempt. It reports whether another attempt may help, and how long the receiver asked to wait.
func (a *Alerter) post(h *hook, ev Event, body []byte, ctype string) (retry bool, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(a.ctx, http.MethodPost, h.w.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("request: %w", redact(err))
	}
	if h.w.ContentType != "" {
		ctype = h.w.ContentType
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", a.o.UserAgent)
	req.Header.Set(HeaderEvent, ev.Event)
	req.Header.Set(HeaderDelivery, ev.ID)
	for k, v := range h.w.Headers {
		req.Header.Set(k, v)
	}
	if h.w.Secret != nil {
		req.Header.Set(HeaderSignature, Sign(h.w.Secret, body, time.Now()))
	}
	resp, err := a.o.Client.Do(req)
	if err != nil {
		return true, 0, redact(err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		return true, wait, fmt.Errorf("HTTP %d", resp.StatusCode)
	default:
		return false, 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
}

// redact drops the URL from a client error: a webhook URL may carry a token.
func redact(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return errors.New("request failed")
}

// Stats returns every webhook's counters.
func (a *Alerter) Stats() []WebhookStats {
	if a == nil {
		return nil
	}
	var out []WebhookStats
	for _, h := range a.hooks {
		h.mu.Lock()
		st := h.st
		st.Dropped = map[string]int64{}
		for k, v := range h.st.Dropped {
			st.Dropped[k] = v
		}
		st.Queued = len(h.queue)
		h.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// Close gives the queued events up to grace to go out (the agent's last "stopped" among them), then stops the
// workers; what is left is dropped and counted.
func (a *Alerter) Close(grace time.Duration) {
	if a == nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		busy := false
		for _, h := range a.hooks {
			h.mu.Lock()
			busy = busy || len(h.queue) > 0 || h.busy
			h.mu.Unlock()
		}
		if !busy {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, h := range a.hooks {
		h.mu.Lock()
		h.done = true
		for _, w := range h.dedup {
			if w.timer != nil {
				w.timer.Stop()
			}
		}
		h.mu.Unlock()
	}
	a.cancel()
	a.wg.Wait()
	for _, h := range a.hooks {
		for len(h.queue) > 0 {
			a.drop(h, <-h.queue, DropShutdown)
		}
	}
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
