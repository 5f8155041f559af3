package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/galera"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

type fakeAgent struct {
	mu       sync.Mutex
	demoted  []int64
	switchTo string
	maint    bool
}

func (f *fakeAgent) State() PeerState {
	return PeerState{Node: "mx2", Role: "master", GaleraOK: true, Seqno: 42}
}
func (f *fakeAgent) Demote(ctx context.Context, from int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if from == 666 {
		return errors.New("stack would not stop")
	}
	f.demoted = append(f.demoted, from)
	return nil
}
func (f *fakeAgent) Switchover(to string, until time.Time) {
	f.mu.Lock()
	f.switchTo = to
	f.mu.Unlock()
}
func (f *fakeAgent) Maintenance(on bool) { f.mu.Lock(); f.maint = on; f.mu.Unlock() }
func (f *fakeAgent) GaleraReport(context.Context) galera.Report {
	return galera.Report{Node: "mx2", Answered: true, Pos: galera.Position{UUID: "9dd37a7e-eb46-11f1-a9bc-030597b2c8a1", Seqno: 7}}
}

func newPeer(t *testing.T) (*httptest.Server, *fakeAgent) {
	a := &fakeAgent{}
	v := &Verifier{Keys: NewKeyring(secret), Self: "mx2", Nodes: map[string]bool{"mx1": true, "mx2": true, "mx3": true}}
	srv := httptest.NewServer(PeerHandler(v, a, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return srv, a
}

func TestPeerAPI(t *testing.T) {
	srv, a := newPeer(t)
	c := &PeerClient{Keys: NewKeyring(secret), Node: "mx1"}
	ctx := context.Background()
	mx2 := Peer{Name: "mx2", URL: srv.URL}
	st, err := c.State(ctx, mx2)
	if err != nil || st.Node != "mx2" || st.Seqno != 42 {
		t.Fatalf("state = %+v, %v", st, err)
	}
	if r, err := c.GaleraReport(ctx, mx2); err != nil || r.Pos.Seqno != 7 || !r.Answered {
		t.Fatalf("galera report = %+v, %v", r, err)
	}
	if err := c.Demote(ctx, mx2, 1001); err != nil {
		t.Fatal(err)
	}
	if err := c.Demote(ctx, mx2, 666); err == nil || !strings.Contains(err.Error(), "stack would not stop") {
		t.Fatalf("failed demotion: %v", err)
	}
	if err := c.Switchover(ctx, mx2, "mx3", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.Maintenance(ctx, mx2, true); err != nil {
		t.Fatal(err)
	}
	if len(a.demoted) != 1 || a.demoted[0] != 1001 || a.switchTo != "mx3" || !a.maint {
		t.Fatalf("agent saw %+v", a)
	}
}

func TestPeerAuthRefusals(t *testing.T) {
	srv, a := newPeer(t)
	send := func(mut func(r *http.Request), body string, sign func(r *http.Request, b []byte)) int {
		r, _ := http.NewRequest(http.MethodPost, srv.URL+"/peer/v1/demote", strings.NewReader(body))
		sign(r, []byte(body))
		mut(r)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := func(r *http.Request, b []byte) { Sign(r, secret, "mx1", "mx2", b, time.Now()) }
	body := `{"from":1001}`
	for name, tc := range map[string]struct {
		mut  func(r *http.Request)
		sign func(r *http.Request, b []byte)
		body string
	}{
		"no signature": {func(r *http.Request) {}, func(*http.Request, []byte) {}, body},
		"wrong secret": {func(r *http.Request) {}, func(r *http.Request, b []byte) { Sign(r, []byte("wrong"), "mx1", "mx2", b, time.Now()) }, body},
		"stale":        {func(r *http.Request) {}, func(r *http.Request, b []byte) { Sign(r, secret, "mx1", "mx2", b, time.Now().Add(-2*time.Minute)) }, body},
		"future":       {func(r *http.Request) {}, func(r *http.Request, b []byte) { Sign(r, secret, "mx1", "mx2", b, time.Now().Add(2*time.Minute)) }, body},
		"unknown node": {func(r *http.Request) {}, func(r *http.Request, b []byte) { Sign(r, secret, "evil", "mx2", b, time.Now()) }, body},
		"node swapped": {func(r *http.Request) { r.Header.Set(HeaderNode, "mx3") }, good, body},
		"path swapped": {func(r *http.Request) { r.URL.Path = "/peer/v1/maintenance" }, good, body},
		// A request signed for mx3 (captured on its way there, say) is no good at mx2.
		"meant for another node": {func(r *http.Request) {}, func(r *http.Request, b []byte) { Sign(r, secret, "mx1", "mx3", b, time.Now()) }, body},
		"receiver swapped":       {func(r *http.Request) { r.Header.Set(HeaderTo, "mx2") }, func(r *http.Request, b []byte) { Sign(r, secret, "mx1", "mx3", b, time.Now()) }, body},
		"body tampered":          {func(r *http.Request) {}, func(r *http.Request, b []byte) { Sign(r, secret, "mx1", "mx2", []byte(`{"from":1002}`), time.Now()) }, body},
	} {
		if code := send(tc.mut, tc.body, tc.sign); code != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, code)
		}
	}
	// A replayed request is refused the second time.
	r1, _ := http.NewRequest(http.MethodPost, srv.URL+"/peer/v1/demote", strings.NewReader(body))
	Sign(r1, secret, "mx1", "mx2", []byte(body), time.Now())
	hdr := r1.Header.Clone()
	resp, _ := http.DefaultClient.Do(r1)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	r2, _ := http.NewRequest(http.MethodPost, srv.URL+"/peer/v1/demote", bytes.NewReader([]byte(body)))
	r2.Header = hdr
	resp, _ = http.DefaultClient.Do(r2)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replay: %d", resp.StatusCode)
	}
	if len(a.demoted) != 1 {
		t.Fatalf("demotions = %v, want exactly the one good request", a.demoted)
	}
}

// Refused requests are counted one by one, but logged at most once every 10 s with the number left unlogged:
// anyone on the private network can send them.
func TestRefusalsAreSampled(t *testing.T) {
	v := &Verifier{}
	t0 := time.Now()
	logged := 0
	for i := range 1000 {
		if ok, _ := v.refusalLog(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			logged++
		}
	}
	if logged != 1 || v.Refused.Load() != 1000 {
		t.Fatalf("1000 refusals in a second: %d logged, %d counted; want 1 and 1000", logged, v.Refused.Load())
	}
	if ok, skipped := v.refusalLog(t0.Add(11 * time.Second)); !ok || skipped != 999 {
		t.Fatalf("after 10 s: logged %v with %d skipped, want true and 999", ok, skipped)
	}
}

// The asker trusts no answer that the node it asked did not sign for this very request: not one made up by another
// host on the path (which would skip the power-off of a master that never demoted), not a real one replayed for
// another request, not one whose body was changed, and not one signed by another member.
func TestPeerAnswersAreBound(t *testing.T) {
	srv, a := newPeer(t)
	c := &PeerClient{Keys: NewKeyring(secret), Node: "mx1"}
	ctx := context.Background()

	// A host without the secret answers as mx2 would.
	forged := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderAnswer, strings.Repeat("0", 64))
		writeJSON(w, http.StatusOK, DemoteAnswer{Demoted: true})
	}))
	defer forged.Close()
	if err := c.Demote(ctx, Peer{Name: "mx2", URL: forged.URL}, 1001); err == nil || !errors.Is(err, ErrAuth) {
		t.Fatalf("a made-up demotion was accepted: %v", err)
	}

	// A proxy that keeps mx2's first real answer, and serves it again (or altered) for later requests.
	var mu sync.Mutex
	var kept *httptest.ResponseRecorder
	mode := "record"
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if kept == nil {
			kept = httptest.NewRecorder()
			PeerHandler(&Verifier{Keys: NewKeyring(secret), Self: "mx2", Nodes: map[string]bool{"mx1": true}}, a, slog.New(slog.DiscardHandler)).ServeHTTP(kept, r)
		}
		for k, v := range kept.Header() {
			w.Header()[k] = v
		}
		body := kept.Body.Bytes()
		if mode == "alter" {
			body = bytes.Replace(body, []byte(`"seqno":42`), []byte(`"seqno":99`), 1)
		}
		w.WriteHeader(kept.Code)
		w.Write(body)
	}))
	defer proxy.Close()
	via := Peer{Name: "mx2", URL: proxy.URL}
	if st, err := c.State(ctx, via); err != nil || st.Seqno != 42 {
		t.Fatalf("the first, real answer: %+v %v", st, err)
	}
	if _, err := c.State(ctx, via); err == nil || !errors.Is(err, ErrAuth) {
		t.Fatalf("a replayed answer was accepted: %v", err)
	}
	mu.Lock()
	kept, mode = nil, "alter"
	mu.Unlock()
	if _, err := c.State(ctx, via); err == nil || !errors.Is(err, ErrAuth) {
		t.Fatalf("an altered answer was accepted: %v", err)
	}

	// mx3, a member with the secret, answering in mx2's place: its answer is signed as mx3, and mx1 asked mx2.
	mx3 := httptest.NewServer(PeerHandler(&Verifier{Keys: NewKeyring(secret), Self: "mx3", Nodes: map[string]bool{"mx1": true}}, a, slog.New(slog.DiscardHandler)))
	defer mx3.Close()
	if _, err := c.State(ctx, Peer{Name: "mx2", URL: mx3.URL}); err == nil {
		t.Fatal("mx3 answered for mx2")
	}
	// The real mx2 still answers.
	if _, err := c.State(ctx, Peer{Name: "mx2", URL: srv.URL}); err != nil {
		t.Fatal(err)
	}
}

// A peer whose kernel answers no SYN (a crashed server: here a listener with a full accept queue, whose SYNs
// Linux drops) fails the request after DialTimeout, although the request's own deadline is much longer: the asker
// then fences at once instead of waiting out fence_timeout.
func TestPeerDialIsBounded(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue (backlog 0 holds one): nobody accepts.
	for i := 0; i < 4; i++ {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			defer c.Close()
		}
	}
	c := &PeerClient{Keys: NewKeyring(secret), Node: "mx1", DialTimeout: 500 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	err = c.Demote(ctx, Peer{Name: "mx2", URL: "http://" + addr}, 1001)
	took := time.Since(t0)
	if err == nil {
		t.Fatal("a peer that accepts no connection confirmed a demotion")
	}
	if took > 5*time.Second {
		t.Fatalf("the request failed after %s (%v), not after the 500 ms dial timeout", took.Round(time.Millisecond), err)
	}
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
	if PeerDialTimeout >= 30*time.Second || PeerDialTimeout < 5*time.Second {
		t.Errorf("PeerDialTimeout %s: want a few lost SYNs' room, well under Go's 30 s", PeerDialTimeout)
	}
}

// A peer that answered a request and then died (its connection stays open, nothing comes back) does not hold the
// next request: every request makes its own connection, so the next one fails at the dial, not after the
// request's whole deadline on a kept-alive connection.
func TestPeerRequestsDoNotReuseConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	served := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			// One complete answer that keeps the connection open, then silence: a server that died.
			buf := make([]byte, 4096)
			c.Read(buf)
			c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\nbusy"))
			served <- struct{}{}
		}
	}()
	c := &PeerClient{Keys: NewKeyring(secret), Node: "mx1", DialTimeout: 500 * time.Millisecond}
	to := Peer{Name: "mx2", URL: "http://" + ln.Addr().String()}
	if err := c.Demote(context.Background(), to, 1001); err == nil {
		t.Fatal("a 503 confirmed a demotion")
	}
	<-served
	ln.Close() // the peer is gone: no new connection is accepted
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	err = c.Demote(ctx, to, 1001)
	if took := time.Since(t0); err == nil || took > 5*time.Second {
		t.Fatalf("the second request: %v after %s; want a failure at the dial, well before its 20 s deadline", err, took.Round(time.Millisecond))
	}
}

// A request from a node the verifier does not know is refused; when it is signed with the cluster's secret (a node
// added, not yet read by this agent), OnUnknown is told, and only then.
func TestUnknownNodeSignedWithTheSecret(t *testing.T) {
	var told []string
	v := &Verifier{Keys: NewKeyring(secret), Self: "mx2", Nodes: map[string]bool{"mx1": true, "mx2": true},
		OnUnknown: func(node string) { told = append(told, node) }}
	for _, tc := range []struct {
		key  []byte
		node string
	}{{[]byte("wrong"), "mx4"}, {secret, "mx4"}, {secret, "mx1"}} {
		body := []byte(`{"from":1004}`)
		r := httptest.NewRequest(http.MethodPost, "/peer/v1/demote", bytes.NewReader(body))
		Sign(r, tc.key, tc.node, "mx2", body, time.Now())
		_, err := v.Verify(r)
		if known := tc.node == "mx1"; (err == nil) != known {
			t.Errorf("%s: %v", tc.node, err)
		}
	}
	if !slices.Equal(told, []string{"mx4"}) {
		t.Errorf("OnUnknown told of %v, want only the signed mx4", told)
	}
	v.SetNodes(map[string]bool{"mx1": true, "mx2": true, "mx4": true})
	body := []byte(`{}`)
	r := httptest.NewRequest(http.MethodPost, "/peer/v1/demote", bytes.NewReader(body))
	Sign(r, secret, "mx4", "mx2", body, time.Now())
	if _, err := v.Verify(r); err != nil {
		t.Errorf("mx4 after SetNodes: %v", err)
	}
}
