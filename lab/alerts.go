package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// AlertsAddr is where the lab's webhook receiver listens (in the switch namespace, beside the simulator).
const AlertsAddr = "10.99.0.1:8481"

// Alerts is the lab's webhook receiver: every node's agent sends its events here, signed with the lab's webhook
// secret. It keeps what it received, in order, and counts what failed the signature check.
type Alerts struct {
	secret []byte
	mu     sync.Mutex
	events []Alert
	bad    int
}

// Alert is one received event and when it arrived.
type Alert struct {
	report.Event
	Received time.Time `json:"received"`
}

func (a *Alerts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	if err := report.Verify(a.secret, body, r.Header.Get(report.HeaderSignature), time.Now(), 5*time.Minute); err != nil {
		a.mu.Lock()
		a.bad++
		a.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev report.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.Schema != report.EventSchema {
		a.mu.Lock()
		a.bad++
		a.mu.Unlock()
		http.Error(w, "not a mailcow-ha event", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.events = append(a.events, Alert{Event: ev, Received: time.Now()})
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Since returns the events received at or after t.
func (a *Alerts) Since(t time.Time) []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.IndexFunc(a.events, func(e Alert) bool { return !e.Received.Before(t) })
	if i < 0 {
		return nil
	}
	return slices.Clone(a.events[i:])
}

// Rejected counts deliveries that failed the signature or schema check.
func (a *Alerts) Rejected() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bad
}

// Want is an expected alert: the event, from which node ("" any), about which subject ("" any).
type Want struct{ Event, Node, Subject string }

func (w Want) String() string {
	s := w.Event
	if w.Node != "" {
		s += " from " + w.Node
	}
	if w.Subject != "" {
		s += " about " + w.Subject
	}
	return s
}

// Missing returns the wanted alerts that are not among got.
func Missing(got []Alert, want ...Want) []Want {
	var out []Want
	for _, w := range want {
		if !slices.ContainsFunc(got, func(a Alert) bool {
			return a.Event.Event == w.Event && (w.Node == "" || a.Node == w.Node) && (w.Subject == "" || a.Subject == w.Subject)
		}) {
			out = append(out, w)
		}
	}
	return out
}

// WaitAlerts waits until every wanted alert arrived since t; it returns the missing ones at the deadline.
func (a *Alerts) WaitAlerts(t time.Time, d time.Duration, want ...Want) []Want {
	end := time.Now().Add(d)
	for {
		m := Missing(a.Since(t), want...)
		if len(m) == 0 || time.Now().After(end) {
			return m
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// FormatAlerts renders alerts one per line, relative to t0.
func FormatAlerts(as []Alert, t0 time.Time) string {
	var b strings.Builder
	for _, a := range as {
		subj := ""
		if a.Subject != a.Node {
			subj = " (" + a.Subject + ")"
		}
		fmt.Fprintf(&b, "%+8.1fs  %-4s %-8s %-20s%s %s\n", a.Received.Sub(t0).Seconds(), a.Node, a.Severity, a.Event.Event, subj, a.Message)
	}
	return b.String()
}
