package hcloud

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// fixture is a simulator with short action latencies and a client on it, through the real hcloud-go client.
type fixture struct {
	sim     *hcloudsim.Sim
	srv     *httptest.Server
	c       *Client
	backend *recorder
}

// recorder is a backend that records what the simulator made real.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
	return nil
}
func (r *recorder) FloatingIPRouted(ip hcloudsim.FloatingIP, server int64) error {
	return r.add("route " + ip.IP + " " + itoa(server))
}
func (r *recorder) VolumeAttached(v hcloudsim.Volume, server int64) error {
	return r.add("attach " + itoa(v.ID) + " " + itoa(server))
}
func (r *recorder) VolumeDetached(v hcloudsim.Volume, server int64) error {
	return r.add("detach " + itoa(v.ID) + " " + itoa(server))
}
func (r *recorder) ServerPower(s hcloudsim.Server, on bool) error {
	return r.add("power " + s.Name + " " + map[bool]string{true: "on", false: "off"}[on])
}
func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func newFixture(t *testing.T, token string, wrap func(http.Handler) http.Handler) *fixture {
	t.Helper()
	rec := &recorder{}
	sim, err := hcloudsim.New(hcloudsim.Options{Latencies: hcloudsim.DefaultLatencies().Scale(0.01), Backend: rec})
	if err != nil {
		t.Fatal(err)
	}
	h := sim.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	if token == "" {
		token = hcloudsim.DemoToken
	}
	c, err := New(Options{Endpoint: srv.URL + "/v1", Token: token,
		PollBase: 10 * time.Millisecond, PollCap: 100 * time.Millisecond, PollFactor: 2,
		FastWait: 20 * time.Millisecond, SlowBase: 20 * time.Millisecond, SlowCap: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{sim: sim, srv: srv, c: c, backend: rec}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantKind(t *testing.T, err error, kind Kind, code string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error of kind %s, got %v", kind, err)
	}
	if e.Kind != kind || (code != "" && e.Code != code) {
		t.Fatalf("want %s/%s, got %s/%s: %v", kind, code, e.Kind, e.Code, err)
	}
	return e
}

func TestFloatingIP(t *testing.T) {
	f := newFixture(t, "", nil)
	ctx := ctxT(t, 10*time.Second)
	owner, err := f.c.FloatingIPOwner(ctx, 2001)
	if err != nil || owner != 0 {
		t.Fatalf("owner = %d, %v", owner, err)
	}
	if err := f.c.AssignFloatingIP(ctx, 2001, 1002); err != nil {
		t.Fatal(err)
	}
	if owner, _ = f.c.FloatingIPOwner(ctx, 2001); owner != 1002 {
		t.Fatalf("owner after assign = %d", owner)
	}
	if ev := f.backend.list(); len(ev) != 1 || ev[0] != "route 203.0.113.100 1002" {
		t.Fatalf("backend = %v", ev)
	}
	// Assigning it where it is already: the assign alone, no read first, and the owner stays.
	f.sim.ResetRequests()
	if err := f.c.AssignFloatingIP(ctx, 2001, 1002); err != nil {
		t.Fatal(err)
	}
	if _, by := f.sim.Requests(); by["POST /v1/floating_ips/{id}/actions/assign"] != 1 || by["GET /v1/floating_ips/{id}"] != 0 {
		t.Fatalf("assign again: want one POST and no read, got %v", by)
	}
	if owner, _ = f.c.FloatingIPOwner(ctx, 2001); owner != 1002 {
		t.Fatalf("owner after the assign again = %d", owner)
	}
	if err := f.c.UnassignFloatingIP(ctx, 2001); err != nil {
		t.Fatal(err)
	}
	if owner, _ = f.c.FloatingIPOwner(ctx, 2001); owner != 0 {
		t.Fatalf("owner after unassign = %d", owner)
	}
	_, err = f.c.FloatingIPOwner(ctx, 9999)
	wantKind(t, err, Fatal, "not_found")
	st := f.c.Stats()
	if st.ByOp["assign_floating_ip"].Calls != 2 || st.ActionsAwaited != 3 || st.RateLimit != 3600 || st.RateRemaining <= 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// The Floating IP's reverse DNS: Hetzner's default name first, then the one set (an action the client waits
// for), as the simulator answers it through the real hcloud-go; the simulator refuses another address than the
// Floating IP's own.
func TestFloatingIPPTR(t *testing.T) {
	f := newFixture(t, "", nil)
	ctx := ctxT(t, 10*time.Second)
	ptr, err := f.c.FloatingIPPTR(ctx, 2001)
	if err != nil || ptr != "static.203.0.113.100.clients.your-server.de" {
		t.Fatalf("default = %q, %v", ptr, err)
	}
	if err := f.c.SetFloatingIPPTR(ctx, 2001, "mail.example.org"); err != nil {
		t.Fatal(err)
	}
	if ptr, err = f.c.FloatingIPPTR(ctx, 2001); err != nil || ptr != "mail.example.org" {
		t.Fatalf("after the change = %q, %v", ptr, err)
	}
	if f.sim.State().FloatingIPs[0].DNSPtr != "mail.example.org" {
		t.Fatalf("simulator state: %+v", f.sim.State().FloatingIPs[0])
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/floating_ips/2001/actions/change_dns_ptr",
		strings.NewReader(`{"ip": "203.0.113.7", "dns_ptr": "x.example.org"}`))
	req.Header.Set("Authorization", "Bearer "+hcloudsim.DemoToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("another address: HTTP %d, want 400", resp.StatusCode)
	}
	_, err = f.c.FloatingIPPTR(ctx, 9999)
	wantKind(t, err, Fatal, "not_found")
}

func TestVolume(t *testing.T) {
	f := newFixture(t, "", nil)
	ctx := ctxT(t, 10*time.Second)
	v, err := f.c.Volume(ctx, 3001)
	if err != nil || v.Server != 0 || v.LinuxDevice != "/dev/disk/by-id/scsi-0HC_Volume_3001" {
		t.Fatalf("volume = %+v, %v", v, err)
	}
	if err := f.c.AttachVolume(ctx, 3001, 1001); err != nil {
		t.Fatal(err)
	}
	if err := f.c.AttachVolume(ctx, 3001, 1001); err != nil {
		t.Fatalf("attach where attached: %v", err)
	}
	err = f.c.AttachVolume(ctx, 3001, 1002)
	wantKind(t, err, Fatal, "volume_already_attached") // the API's own refusal: no read before the attach
	err = f.c.DetachVolume(ctx, 3001, 1003)
	wantKind(t, err, Fatal, "unexpected_owner")
	if err := f.c.DetachVolume(ctx, 3001, 1001); err != nil {
		t.Fatal(err)
	}
	if err := f.c.DetachVolume(ctx, 3001, 1001); err != nil {
		t.Fatalf("detach when free: %v", err)
	}
	if err := f.c.AttachVolume(ctx, 3001, 1002); err != nil {
		t.Fatal(err)
	}
	want := []string{"attach 3001 1001", "detach 3001 1001", "attach 3001 1002"}
	if got := f.backend.list(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("backend = %v, want %v", got, want)
	}
}

// TestVolumeAlreadyAttachedByAPI checks the API's own refusal: the volume is attached elsewhere between our
// read and our POST, and the API answers volume_already_attached.
func TestVolumeAlreadyAttachedByAPI(t *testing.T) {
	var once sync.Once
	f := newFixture(t, "", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/volumes/3001/actions/attach") {
				once.Do(func() {
					// Another client attaches it to mx3 first (straight into the simulator, past this wrapper).
					req := httptest.NewRequest(http.MethodPost, "/v1/volumes/3001/actions/attach", strings.NewReader(`{"server":1003}`))
					req.Header.Set("Authorization", "Bearer "+hcloudsim.DemoToken)
					h.ServeHTTP(httptest.NewRecorder(), req)
					time.Sleep(100 * time.Millisecond) // let that attach finish
				})
			}
			h.ServeHTTP(w, r)
		})
	})
	err := f.c.AttachVolume(ctxT(t, 10*time.Second), 3001, 1001)
	e := wantKind(t, err, Fatal, "volume_already_attached")
	if e.CorrelationID == "" {
		t.Error("the error lost the correlation id")
	}
}

// TestOwnAttachFinishedBeforeThePOST: an attach of ours that was still running when a retry read the Volume
// (TestStuckAction, a CI run) finishes between that read and the retry's POST; the API answers
// volume_already_attached, and the Volume is attached to us: that is success, not a fatal refusal.
func TestOwnAttachFinishedBeforeThePOST(t *testing.T) {
	var once sync.Once
	f := newFixture(t, "", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/volumes/3001/actions/attach") {
				once.Do(func() {
					req := httptest.NewRequest(http.MethodPost, "/v1/volumes/3001/actions/attach", strings.NewReader(`{"server":1001}`))
					req.Header.Set("Authorization", "Bearer "+hcloudsim.DemoToken)
					h.ServeHTTP(httptest.NewRecorder(), req)
					time.Sleep(100 * time.Millisecond) // let that attach finish
				})
			}
			h.ServeHTTP(w, r)
		})
	})
	if err := f.c.AttachVolume(ctxT(t, 10*time.Second), 3001, 1001); err != nil {
		t.Fatalf("attached to us by our own earlier action: %v", err)
	}
	if got := f.sim.State().Volumes[0].Server; got != 1001 {
		t.Fatalf("the API has the Volume at %d, want 1001", got)
	}
}

func TestPowerOff(t *testing.T) {
	f := newFixture(t, "", nil)
	ctx := ctxT(t, 10*time.Second)
	if err := f.c.PowerOff(ctx, 1001); err != nil {
		t.Fatal(err)
	}
	if s, err := f.c.ServerStatus(ctx, 1001); err != nil || s != "off" {
		t.Fatalf("status = %q, %v", s, err)
	}
	f.sim.ResetRequests()
	if err := f.c.PowerOff(ctx, 1001); err != nil {
		t.Fatal(err)
	}
	if _, by := f.sim.Requests(); by["POST /v1/servers/{id}/actions/poweroff"] != 0 {
		t.Fatalf("poweroff of an off server posted an action: %v", by)
	}
	f.sim.SetFaults(hcloudsim.Faults{NoPoweroff: []int64{1002}})
	err := f.c.PowerOff(ctx, 1002)
	wantKind(t, err, Fatal, "action_failed")
	if s, _ := f.c.ServerStatus(ctx, 1002); s != "running" {
		t.Fatalf("status after failed poweroff = %q", s)
	}
	if err := f.c.PowerOn(ctx, 1001); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.backend.list(), ","); got != "power mx1 off,power mx1 on" {
		t.Fatalf("backend = %s", got)
	}
}

// TestLockedRetriesFast: a second assign while the first runs gets 423 locked, retries, and wins after it.
func TestLockedRetriesFast(t *testing.T) {
	f := newFixture(t, "", nil)
	f.sim.SetLatency(hcloudsim.CmdAssignFloatingIP, 300*time.Millisecond)
	ctx := ctxT(t, 10*time.Second)
	done := make(chan error)
	go func() { done <- f.c.AssignFloatingIP(ctx, 2001, 1002) }()
	time.Sleep(50 * time.Millisecond)
	if err := f.c.AssignFloatingIP(ctx, 2001, 1003); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if owner, _ := f.c.FloatingIPOwner(ctx, 2001); owner != 1003 {
		t.Fatalf("owner = %d, want the later assignment 1003", owner)
	}
	if _, by := f.sim.Requests(); by["POST /v1/floating_ips/{id}/actions/assign"] < 3 {
		t.Fatalf("want at least one locked retry: %v", by)
	}
}

func TestServerErrorsRetrySlowly(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		f := newFixture(t, "", nil)
		f.sim.SetFaults(hcloudsim.Faults{Fail5xx: 3, FailStatus: status})
		if _, err := f.c.FloatingIPOwner(ctxT(t, 5*time.Second), 2001); err != nil {
			t.Fatalf("%d: %v", status, err)
		}
		if total, _ := f.sim.Requests(); total != 4 {
			t.Fatalf("%d: %d requests, want 3 failures and 1 success", status, total)
		}
		// With a deadline shorter than the failures last, the error is RetrySlow with the API's code.
		f.sim.SetFaults(hcloudsim.Faults{Fail5xx: 1000, FailStatus: status})
		_, err := f.c.FloatingIPOwner(ctxT(t, 100*time.Millisecond), 2001)
		e := wantKind(t, err, RetrySlow, "")
		if e.CorrelationID == "" {
			t.Errorf("%d: no correlation id in %v", status, err)
		}
	}
}

func TestRateLimitHonoursReset(t *testing.T) {
	f := newFixture(t, "", nil)
	f.sim.SetRateLimit(36000, 0) // 10 requests a second come back
	start := time.Now()
	if _, err := f.c.FloatingIPOwner(ctxT(t, 10*time.Second), 2001); err != nil {
		t.Fatal(err)
	}
	st := f.c.Stats()
	if st.RateLimit != 36000 || st.ErrorsByCode["rate_limit_exceeded"] != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("retried after %s, before the bucket refilled", took)
	}
	f.sim.SetRateLimit(3600, 0)
	_, err := f.c.FloatingIPOwner(ctxT(t, 200*time.Millisecond), 2001)
	e := wantKind(t, err, RetrySlow, "rate_limit_exceeded")
	if e.RetryAfter <= 0 || e.RetryAfter > 2*time.Second {
		t.Fatalf("RetryAfter = %s, want about 1s from RateLimit-Reset", e.RetryAfter)
	}
}

func TestUnauthorizedIsFatalAndHidesToken(t *testing.T) {
	wrong := strings.Repeat("w", 64)
	f := newFixture(t, wrong, nil)
	_, err := f.c.FloatingIPOwner(ctxT(t, 5*time.Second), 2001)
	wantKind(t, err, Fatal, "unauthorized")
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), hcloudsim.DemoToken) {
		t.Fatalf("error shows a token: %v", err)
	}
	if total, _ := f.sim.Requests(); total != 1 {
		t.Fatalf("a fatal error was retried: %d requests", total)
	}
}

func TestAPIDown(t *testing.T) {
	f := newFixture(t, "", nil)
	f.sim.SetFaults(hcloudsim.Faults{Down: true})
	_, err := f.c.Volume(ctxT(t, 300*time.Millisecond), 3001)
	e := wantKind(t, err, RetrySlow, "")
	if e.Code != "network" && e.Code != "timeout" {
		t.Fatalf("code = %s: %v", e.Code, err)
	}
	f.sim.SetFaults(hcloudsim.Faults{})
	if _, err := f.c.Volume(ctxT(t, 5*time.Second), 3001); err != nil {
		t.Fatalf("after the API came back: %v", err)
	}
	f.srv.Close()
	_, err = f.c.Volume(ctxT(t, 200*time.Millisecond), 3001)
	wantKind(t, err, RetrySlow, "")
}

func TestStuckAction(t *testing.T) {
	f := newFixture(t, "", nil)
	f.sim.SetFaults(hcloudsim.Faults{Stuck: []string{hcloudsim.CmdAttachVolume}})
	err := f.c.AttachVolume(ctxT(t, 300*time.Millisecond), 3001, 1001)
	e := wantKind(t, err, RetryFast, "action_running")
	if !errors.Is(e, ErrActionRunning) {
		t.Fatal(err)
	}
	// While it is stuck the volume is locked: another attach is refused as locked, and retried until its deadline.
	// Which error the call ends with depends on where the deadline falls (after a "locked" answer, or during the
	// next request: a timeout), so the attempts count the refusals; a 100 ms deadline once ended before the first
	// answer in CI (-race, a loaded machine).
	lockedKey := OpCode{"attach_volume", "locked"}
	before := f.c.Stats().Attempts[lockedKey]
	err = f.c.AttachVolume(ctxT(t, time.Second), 3001, 1001)
	if e := (*Error)(nil); !errors.As(err, &e) || e.Kind == Fatal {
		t.Fatalf("want a retryable error while the Volume is locked, got %v", err)
	}
	if n := f.c.Stats().Attempts[lockedKey] - before; n < 1 {
		t.Fatalf("no attempt was refused as locked: %v (attempts %v)", err, f.c.Stats().Attempts)
	}
	f.sim.SetFaults(hcloudsim.Faults{})
	if err := f.c.AttachVolume(ctxT(t, 5*time.Second), 3001, 1001); err != nil {
		t.Fatalf("after the action came unstuck: %v", err)
	}
}

// TestPollingIsExponential checks the spacing of the action polls: growing, then capped.
func TestPollingIsExponential(t *testing.T) {
	var mu sync.Mutex
	var polls []time.Time
	f := newFixture(t, "", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/v1/actions" {
				mu.Lock()
				polls = append(polls, time.Now())
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	f.sim.SetLatency(hcloudsim.CmdAssignFloatingIP, time.Second)
	if err := f.c.AssignFloatingIP(ctxT(t, 10*time.Second), 2001, 1001); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(polls) < 4 || len(polls) > 16 {
		t.Fatalf("%d polls for a 1 s action with 10 ms base and 100 ms cap", len(polls))
	}
	var gaps []time.Duration
	for i := 1; i < len(polls); i++ {
		gaps = append(gaps, polls[i].Sub(polls[i-1]))
	}
	if gaps[1] < gaps[0] || gaps[2] < gaps[1] {
		t.Errorf("the first gaps do not grow: %v", gaps)
	}
	for _, g := range gaps {
		if g > 180*time.Millisecond {
			t.Errorf("gap %s beyond the 100 ms cap: %v", g, gaps)
		}
	}
}

// The second action of a kind is first polled when the fastest of its kind so far would have finished: one or two
// polls instead of the first one's many, and no later than the exponential polls would have seen it.
func TestPollsAlignedWithTheFastestAction(t *testing.T) {
	var mu sync.Mutex
	polls := 0
	f := newFixture(t, "", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/v1/actions" {
				mu.Lock()
				polls++
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	const latency = 600 * time.Millisecond
	f.sim.SetLatency(hcloudsim.CmdAssignFloatingIP, latency)
	assign := func(server int64) (int, time.Duration) {
		mu.Lock()
		polls = 0
		mu.Unlock()
		t0 := time.Now()
		if err := f.c.AssignFloatingIP(ctxT(t, 10*time.Second), 2001, server); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		return polls, took
	}
	first, took1 := assign(1001)
	second, took2 := assign(1002)
	t.Logf("polls: %d for the first assignment (%s), %d for the second (%s)", first, took1.Round(time.Millisecond), second, took2.Round(time.Millisecond))
	if first < 4 {
		t.Errorf("the first assignment, a kind never seen, was polled %d times; want the exponential polls from the start", first)
	}
	if second < 1 || second > 2 {
		t.Errorf("the second assignment was polled %d times; want its first poll when the first one's %s had passed", second, latency)
	}
	if took2 > took1+150*time.Millisecond {
		t.Errorf("the aligned polls took longer (%s) than the exponential ones (%s)", took2, took1)
	}
	learned := f.c.fastestOf(hcloudsim.CmdAssignFloatingIP)
	if learned < latency || learned > latency+200*time.Millisecond {
		t.Errorf("learned %s for an action of %s", learned, latency)
	}

	// What a client learned outlives it (the agent keeps it in its state directory): a new client seeded with it
	// aligns its very first poll, and one seeded with a longer duration learns the shorter one and hands it on.
	var kept map[string]time.Duration
	seeded := func(d time.Duration) {
		c, err := New(Options{Endpoint: f.srv.URL + "/v1", Token: hcloudsim.DemoToken,
			PollBase: 10 * time.Millisecond, PollCap: 100 * time.Millisecond, PollFactor: 2,
			Fastest:   map[string]time.Duration{hcloudsim.CmdAssignFloatingIP: d},
			OnFastest: func(m map[string]time.Duration) { kept = m }})
		if err != nil {
			t.Fatal(err)
		}
		f.c = c
	}
	seeded(learned)
	if n, took := assign(1001); n < 1 || n > 2 {
		t.Errorf("a client seeded with %s polled its first assignment %d times (%s); want it aligned", learned, n, took)
	}
	if got, ok := kept[hcloudsim.CmdAssignFloatingIP]; ok && got >= learned {
		t.Errorf("the table was handed on with %s, not shorter than the %s seeded", got, learned)
	}
	seeded(2 * latency)
	assign(1002)
	if got := kept[hcloudsim.CmdAssignFloatingIP]; got < latency || got >= 2*latency {
		t.Errorf("a client seeded with %s handed on %v after an action of %s", 2*latency, kept, latency)
	}
}

func TestLatestImage(t *testing.T) {
	f := newFixture(t, "", nil)
	ctx := ctxT(t, 5*time.Second)
	img, err := f.c.LatestImage(ctx, AppSelector+",channel=stable")
	if err != nil || img.ID != 5002 || img.Labels["version"] != "2026.11" {
		t.Fatalf("latest = %+v, %v", img, err)
	}
	// The newest of all is a testing build: picked only when its channel is asked for.
	if img, err := f.c.LatestImage(ctx, AppSelector+",channel=testing"); err != nil || img.ID != 5004 {
		t.Fatalf("latest testing = %+v, %v", img, err)
	}
	_, err = f.c.LatestImage(ctx, "app=nothing")
	wantKind(t, err, Fatal, "not_found")
}

func TestMetadata(t *testing.T) {
	f := newFixture(t, "", nil)
	ctx := ctxT(t, 5*time.Second)
	md := NewMetadata(f.srv.URL+"/_metadata/mx2/hetzner/v1", nil)
	if id, err := md.InstanceID(ctx); err != nil || id != 1002 {
		t.Fatalf("instance id = %d, %v", id, err)
	}
	if h, err := md.Hostname(ctx); err != nil || h != "mx2" {
		t.Fatalf("hostname = %q, %v", h, err)
	}
	n, ok, err := md.PrivateNetworkByMAC(ctx, "86:00:00:00:00:02")
	if err != nil || !ok || n.IP != "10.99.0.12" || n.NetworkID != 4001 || n.Gateway != "10.99.0.1" || n.Subnet != "10.99.0.0/24" {
		t.Fatalf("private network = %+v %v %v", n, ok, err)
	}
	if _, ok, _ := md.PrivateNetworkByMAC(ctx, "00:00:00:00:00:00"); ok {
		t.Fatal("found a network for an unknown MAC")
	}
	// The demo servers have no user-data: that is final, not retried.
	if _, err := md.UserData(ctx, 2*time.Second); err == nil || !strings.Contains(err.Error(), "no user-data") {
		t.Fatalf("user-data: %v", err)
	}
}

func TestParsePrivateNetworks(t *testing.T) {
	raw := "- ip: 10.0.0.2\n  alias_ips: []\n  interface_num: 1\n  mac_address: 86:00:00:2a:7d:e0\n  network_id: 1234\n  network_name: nw-test1\n  network: 10.0.0.0/8\n  subnet: 10.0.0.0/24\n  gateway: 10.0.0.1\n- ip: 10.1.0.2\n  mac_address: 86:00:00:2a:7d:e1\n  network_id: 5\n"
	nets, err := parsePrivateNetworks(raw)
	if err != nil || len(nets) != 2 || nets[0].MAC != "86:00:00:2a:7d:e0" || nets[1].NetworkID != 5 || nets[0].Gateway != "10.0.0.1" {
		t.Fatalf("%+v %v", nets, err)
	}
	if _, err := parsePrivateNetworks("ip: 1.2.3.4\n"); err == nil {
		t.Fatal("accepted a key before the first item")
	}
}
