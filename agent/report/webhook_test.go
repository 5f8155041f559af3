package report

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// receiver records what a webhook receives.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	hdrs   []http.Header
	status []int // answers to give, in order; then 200
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	code := 200
	if len(r.status) > 0 {
		code, r.status = r.status[0], r.status[1:]
	}
	if code == 200 {
		r.bodies = append(r.bodies, b)
		r.hdrs = append(r.hdrs, req.Header.Clone())
	}
	r.mu.Unlock()
	w.WriteHeader(code)
}

func (r *receiver) events(t *testing.T) []Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, b := range r.bodies {
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
		out = append(out, ev)
	}
	return out
}

// roundTripper hands requests to a handler in memory, so that synctest's fake clock drives the backoff.
type roundTripper struct{ h http.Handler }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	rt.h.ServeHTTP(w, req)
	return w.Result(), nil
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWebhookJSONAndSignature(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	secret := []byte("s3cret-key")
	a, err := NewAlerter("mail", "mx1", []Webhook{{Name: "ops", URL: srv.URL, Secret: secret}}, AlerterOptions{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	a.Send(Event{Event: "failover_started", Severity: SeverityInfo, TransitionID: 7, Message: "taking over",
		Details: map[string]string{"peer": "mx2"}})
	waitFor(t, "delivery", func() bool { return len(rec.events(t)) == 1 })
	a.Close(time.Second)
	ev := rec.events(t)[0]
	if ev.Schema != EventSchema || ev.Event != "failover_started" || ev.Node != "mx1" || ev.Cluster != "mail" ||
		ev.Subject != "mx1" || ev.TransitionID != 7 || ev.Repeat != 1 || ev.Details["peer"] != "mx2" || ev.ID == "" || ev.Time.IsZero() {
		t.Errorf("event: %+v", ev)
	}
	h := rec.hdrs[0]
	if h.Get("Content-Type") != "application/json" || h.Get(HeaderEvent) != "failover_started" || h.Get(HeaderDelivery) != ev.ID {
		t.Errorf("headers: %v", h)
	}
	if err := Verify(secret, rec.bodies[0], h.Get(HeaderSignature), time.Now(), time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
	if err := Verify([]byte("other"), rec.bodies[0], h.Get(HeaderSignature), time.Now(), 0); err == nil {
		t.Error("a signature with another key verified")
	}
	tampered := append([]byte{}, rec.bodies[0]...)
	tampered[len(tampered)-2] ^= 1
	if err := Verify(secret, tampered, h.Get(HeaderSignature), time.Now(), 0); err == nil {
		t.Error("a tampered body verified")
	}
	if err := Verify(secret, rec.bodies[0], h.Get(HeaderSignature), time.Now().Add(time.Hour), time.Minute); err == nil {
		t.Error("an hour-old signature passed a one-minute limit")
	}
	if st := a.Stats()[0]; st.Sent != 1 || len(st.Dropped) != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestWebhookSeverityFilter(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	a, _ := NewAlerter("mail", "mx1", []Webhook{{Name: "pager", URL: srv.URL, MinSeverity: SeverityWarning}}, AlerterOptions{}, quiet())
	a.Send(Event{Event: "ready", Severity: SeverityInfo})
	a.Send(Event{Event: "quorum_lost", Severity: SeverityWarning})
	a.Send(Event{Event: "breaker_tripped", Severity: SeverityCritical})
	waitFor(t, "two deliveries", func() bool { return len(rec.events(t)) == 2 })
	a.Close(time.Second)
	got := rec.events(t)
	if len(got) != 2 || got[0].Event != "quorum_lost" || got[1].Event != "breaker_tripped" {
		t.Errorf("got %+v", got)
	}
}

func TestWebhookDedupWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &receiver{}
		a, _ := NewAlerter("mail", "mx1", []Webhook{{Name: "ops", URL: "http://receiver.invalid/hook", DedupWindow: time.Minute}},
			AlerterOptions{Client: &http.Client{Transport: roundTripper{rec}}}, quiet())
		defer a.Close(time.Second)
		for range 5 {
			a.Send(Event{Event: "stack_degraded", Severity: SeverityWarning, Message: "postfix down"})
			time.Sleep(time.Second)
		}
		// Another subject is another alert.
		a.Send(Event{Event: "stack_degraded", Severity: SeverityWarning, Subject: "mx2"})
		synctest.Wait()
		if got := rec.events(t); len(got) != 2 || got[0].Repeat != 1 || got[1].Subject != "mx2" {
			t.Fatalf("within the window: %+v", got)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		got := rec.events(t)
		if len(got) != 3 || got[2].Event != "stack_degraded" || got[2].Subject != "mx1" || got[2].Repeat != 4 {
			t.Fatalf("after the window: %+v", got)
		}
		if st := a.Stats()[0]; st.Suppressed != 4 || st.Sent != 3 {
			t.Errorf("stats: %+v", st)
		}
		// Quiet for a window: the next one goes out at once again.
		time.Sleep(2 * time.Minute)
		a.Send(Event{Event: "stack_degraded", Severity: SeverityWarning})
		synctest.Wait()
		if got := rec.events(t); len(got) != 4 || got[3].Repeat != 1 {
			t.Fatalf("after a quiet window: %+v", got)
		}
	})
}

func TestWebhookRetriesAndDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &receiver{status: []int{503, 500, 429}}
		a, _ := NewAlerter("mail", "mx1", []Webhook{{Name: "ops", URL: "http://receiver.invalid/hook"}},
			AlerterOptions{Client: &http.Client{Transport: roundTripper{rec}}}, quiet())
		start := time.Now()
		a.Send(Event{Event: "failover_failed", Severity: SeverityCritical})
		for len(rec.events(t)) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		// 1 s + 2 s + 4 s of backoff.
		if d := time.Since(start); d < 7*time.Second || d > 8*time.Second {
			t.Errorf("delivered after %s, want 7 s of backoff", d)
		}
		if st := a.Stats()[0]; st.Sent != 1 || st.Retries != 3 {
			t.Errorf("stats: %+v", st)
		}
		// 4xx is final: no retry.
		rec.mu.Lock()
		rec.status = []int{400}
		rec.mu.Unlock()
		a.Send(Event{Event: "x", Severity: SeverityInfo})
		synctest.Wait()
		if st := a.Stats()[0]; st.Dropped[DropRejected] != 1 || st.Retries != 3 {
			t.Errorf("after a 400: %+v", st)
		}
		a.Close(time.Second)
	})
}

// A dead receiver never slows Send: the queue fills, the rest is dropped and counted, and the retries give up.
func TestWebhookDeadReceiver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dead := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) })
		a, _ := NewAlerter("mail", "mx1", []Webhook{{Name: "dead", URL: "http://receiver.invalid/hook"}},
			AlerterOptions{Client: &http.Client{Transport: roundTripper{dead}}, QueueSize: 4}, quiet())
		start := time.Now()
		for range 20 {
			a.Send(Event{Event: "failover_started", Severity: SeverityInfo})
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Send blocked for %s", d)
		}
		synctest.Wait()
		st := a.Stats()[0]
		// At most one in flight and four queued: the rest was dropped at once.
		full := st.Dropped[DropQueueFull]
		if full < 15 || full+int64(st.Queued)+1 != 20 {
			t.Errorf("stats: %+v", st)
		}
		time.Sleep(10 * time.Minute)
		st = a.Stats()[0]
		if st.Dropped[DropExhausted] != 20-full || st.Sent != 0 || st.Queued != 0 {
			t.Errorf("after the retries: %+v", st)
		}
		a.Close(0)
	})
}

func TestWebhookTemplates(t *testing.T) {
	ev := Event{Event: "failover_succeeded", Severity: SeverityInfo, Node: "mx2", Cluster: "mail", Subject: "mx2",
		Message: `MASTER after 9.1s ("fast")`, TransitionID: 3, Repeat: 1}
	for _, name := range []string{"ntfy", "slack"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile("../../docs/examples/webhook-" + name + ".toml")
			if err != nil {
				t.Fatal(err)
			}
			// The example is a TOML snippet; its template is between the triple quotes.
			_, rest, _ := strings.Cut(string(b), "template = '''\n")
			text, _, ok := strings.Cut(rest, "'''")
			if !ok {
				t.Fatalf("no template in the example")
			}
			rec := &receiver{}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			w := Webhook{Name: name, URL: srv.URL, Template: text}
			if name == "slack" {
				w.ContentType = "application/json"
			}
			a, err := NewAlerter("mail", "mx2", []Webhook{w}, AlerterOptions{}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			a.Send(ev)
			waitFor(t, "delivery", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.bodies) == 1 })
			a.Close(time.Second)
			body := string(rec.bodies[0])
			if !strings.Contains(body, "failover_succeeded") || !strings.Contains(body, "mx2") {
				t.Errorf("body %q", body)
			}
			if name == "slack" {
				var v struct{ Text string }
				if err := json.Unmarshal(rec.bodies[0], &v); err != nil || !strings.Contains(v.Text, `("fast")`) {
					t.Errorf("slack body is not JSON with the message: %q %v", body, err)
				}
			}
		})
	}
	if _, err := ParseTemplate("bad", "{{ .Nope"); err == nil {
		t.Error("a broken template parsed")
	}
}

// A receiver that redirects does not get the webhook's headers sent on to the redirect's target: the redirect is
// not followed, and the delivery counts as rejected.
func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer other.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/collect", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	a, err := NewAlerter("mail", "mx1", []Webhook{{Name: "ops", URL: redirect.URL, Headers: map[string]string{"Authorization": "Bearer hook-token"}}},
		AlerterOptions{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	a.Send(Event{Event: "failover_started", Severity: SeverityInfo})
	waitFor(t, "the delivery to end", func() bool {
		st := a.Stats()[0]
		return st.Dropped[DropRejected] == 1 || st.Sent == 1
	})
	a.Close(time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Fatalf("the redirect was followed, with Authorization %q", leaked)
	}
	if st := a.Stats()[0]; st.Dropped[DropRejected] != 1 {
		t.Errorf("stats after a redirect: %+v", st)
	}
}
