package hcloud

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Stats counts the API requests the adapter made, keeps the rate-limit budget the API reported, and the latency
// of each operation. They become metrics with the observability issue.
type Stats struct {
	Requests       int                // HTTP requests sent, every retry and poll included
	ByOp           map[string]OpStats // per adapter operation
	RateLimit      int                // RateLimit-Limit of the last answer
	RateRemaining  int                // RateLimit-Remaining of the last answer
	RateReset      time.Time          // RateLimit-Reset of the last answer
	ErrorsByCode   map[string]int     // classified errors by code
	ActionLatency  time.Duration      // the sum of awaited actions' durations
	ActionsAwaited int
	// Attempts counts every attempt of every operation by its outcome: the error code, or "ok".
	Attempts map[OpCode]int
	// ActionBuckets counts awaited actions by duration: ActionBuckets[i] counts those ≤ ActionBucketBounds[i]
	// (cumulative, as Prometheus histograms are).
	ActionBuckets []int
}

// OpCode is an operation and the outcome of one attempt.
type OpCode struct{ Op, Code string }

// ActionBucketBounds are the upper bounds of Stats.ActionBuckets.
func ActionBucketBounds() []time.Duration {
	return []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second,
		5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, 60 * time.Second}
}

// OpStats is one operation's count and latency.
type OpStats struct {
	Calls    int
	Requests int
	Total    time.Duration
	Max      time.Duration
}

type statsRecorder struct {
	mu sync.Mutex
	s  Stats
}

func newStatsRecorder() *statsRecorder {
	return &statsRecorder{s: Stats{ByOp: map[string]OpStats{}, ErrorsByCode: map[string]int{}, Attempts: map[OpCode]int{},
		ActionBuckets: make([]int, len(ActionBucketBounds()))}}
}

func (r *statsRecorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.s
	out.ByOp = make(map[string]OpStats, len(r.s.ByOp))
	for k, v := range r.s.ByOp {
		out.ByOp[k] = v
	}
	out.ErrorsByCode = make(map[string]int, len(r.s.ErrorsByCode))
	for k, v := range r.s.ErrorsByCode {
		out.ErrorsByCode[k] = v
	}
	out.Attempts = make(map[OpCode]int, len(r.s.Attempts))
	for k, v := range r.s.Attempts {
		out.Attempts[k] = v
	}
	out.ActionBuckets = append([]int(nil), r.s.ActionBuckets...)
	return out
}

func (r *statsRecorder) op(name string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.s.ByOp[name]
	o.Calls++
	o.Total += took
	o.Max = max(o.Max, took)
	r.s.ByOp[name] = o
	if e, ok := err.(*Error); ok {
		r.s.ErrorsByCode[e.Code]++
	}
}

func (r *statsRecorder) action(took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.ActionLatency += took
	r.s.ActionsAwaited++
	for i, b := range ActionBucketBounds() {
		if took <= b {
			r.s.ActionBuckets[i]++
		}
	}
}

// attempt counts one attempt of op by its outcome.
func (r *statsRecorder) attempt(op string, err error) {
	code := "ok"
	if e, ok := err.(*Error); ok {
		code = e.Code
		if code == "" {
			code = e.Kind.String()
		}
	} else if err != nil {
		code = "error"
	}
	r.mu.Lock()
	r.s.Attempts[OpCode{op, code}]++
	r.mu.Unlock()
}

type opKey struct{}

func withOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// countingTransport counts each request against the operation in its context and reads the rate-limit headers.
type countingTransport struct {
	next http.RoundTripper
	rec  *statsRecorder
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	op, _ := req.Context().Value(opKey{}).(string)
	resp, err := t.next.RoundTrip(req)
	t.rec.mu.Lock()
	defer t.rec.mu.Unlock()
	t.rec.s.Requests++
	if op != "" {
		o := t.rec.s.ByOp[op]
		o.Requests++
		t.rec.s.ByOp[op] = o
	}
	if resp != nil {
		if v, e := strconv.Atoi(resp.Header.Get("RateLimit-Limit")); e == nil {
			t.rec.s.RateLimit = v
		}
		if v, e := strconv.Atoi(resp.Header.Get("RateLimit-Remaining")); e == nil {
			t.rec.s.RateRemaining = v
		}
		if v, e := strconv.ParseInt(resp.Header.Get("RateLimit-Reset"), 10, 64); e == nil {
			t.rec.s.RateReset = time.Unix(v, 0)
		}
	}
	return resp, err
}
