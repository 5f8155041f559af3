package signup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// mailcowDouble answers as mailcow's API does: 401 with {"type":"error"} for a wrong key, HTTP 200 with
// "type": "danger" for a refused action, {} for a mailbox that does not exist, and the policy as strings.
type mailcowDouble struct {
	mu        sync.Mutex
	key       string
	mailboxes map[string]bool
	calls     int
	bodies    []map[string]any
	rl        []map[string]any
}

func (d *mailcowDouble) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("X-API-Key") != d.key {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"type":"error","msg":"authentication failed"}`)
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/v1/get/passwordpolicy":
		io.WriteString(w, `{"length":"6","chars":"1","special_chars":"0","lowerupper":"1","numbers":"1"}`)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/api/v1/get/mailbox/"):
		addr := strings.TrimPrefix(r.URL.Path, "/api/v1/get/mailbox/")
		if d.mailboxes[addr] {
			json.NewEncoder(w).Encode(map[string]any{"username": addr, "active": "1"})
		} else {
			io.WriteString(w, "{}")
		}
	case r.Method == "POST" && r.URL.Path == "/api/v1/add/mailbox":
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		d.bodies = append(d.bodies, m)
		addr := m["local_part"].(string) + "@" + m["domain"].(string)
		if d.mailboxes[addr] {
			io.WriteString(w, `[{"type":"danger","log":["mailbox","add","mailbox",{"local_part":"x"}],"msg":["object_exists","`+addr+`"]}]`)
			return
		}
		d.mailboxes[addr] = true
		io.WriteString(w, `[{"type":"success","log":["mailbox","add","mailbox",{}],"msg":["mailbox_added","`+addr+`"]}]`)
	case r.Method == "POST" && r.URL.Path == "/api/v1/edit/rl-mbox":
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		d.rl = append(d.rl, m)
		io.WriteString(w, `[{"type":"success","msg":["rl_saved","x"]}]`)
	default:
		http.NotFound(w, r)
	}
}

type env struct {
	t     testing.TB
	srv   *httptest.Server
	mc    *mailcowDouble
	log   *bytes.Buffer
	s     *Server
	cfg   Config
	hc    *http.Client
	base  string
	apiMC *Mailcow
}

func newEnv(t testing.TB, mutate ...func(*Config)) *env {
	t.Helper()
	mc := &mailcowDouble{key: "good-key", mailboxes: map[string]bool{"taken@example.org": true}}
	api := httptest.NewServer(mc)
	t.Cleanup(api.Close)
	cfg := DefaultConfig()
	cfg.Domain, cfg.Hostname, cfg.MailcowURL = "example.org", "mail.example.org", api.URL
	cfg.APIKeyFile, cfg.CaptchaKeyFile = "/nonexistent", "/nonexistent"
	cfg.Difficulty = 2000
	cfg.CaptchaUsedFile = filepath.Join(t.TempDir(), "captcha-used")
	for _, f := range mutate {
		f(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	apiMC := &Mailcow{BaseURL: api.URL, Key: "good-key"}
	s, err := NewServer(cfg, apiMC, []byte(strings.Repeat("c", 32)), log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, mc: mc, log: &logb, s: s, cfg: cfg, hc: srv.Client(), base: srv.URL + "/signup", apiMC: apiMC}
}

func (e *env) get(path string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (e *env) solved() string {
	e.t.Helper()
	_, body := e.get("/challenge")
	var ch Challenge
	if err := json.Unmarshal([]byte(body), &ch); err != nil {
		e.t.Fatalf("challenge: %v %s", err, body)
	}
	s, ok := Solve(ch)
	if !ok {
		e.t.Fatal("unsolvable challenge")
	}
	return s.Encode()
}

func (e *env) post(v url.Values, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.base+"/", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func good(e *env, user string) url.Values {
	return url.Values{"name": {"Jane Doe"}, "user": {user}, "password": {"Correct-Horse-Battery-42"}, "saved": {"1"}, "altcha": {e.solved()}}
}

func TestPage(t *testing.T) {
	e := newEnv(t)
	resp, body := e.get("/", "Accept-Language", "de-DE,de;q=0.9")
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP lacks %q: %s", want, csp)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", resp.Header)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "onclick") {
		t.Error("inline script or style in the page")
	}
	for _, want := range []string{`lang="de"`, "Postfach anlegen", "@example.org", `autocomplete="username"`, `autocomplete="new-password"`,
		`aria-live="polite"`, `name="altcha"`, "/signup/static/signup.js"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// A generated password that meets every rule is in the form.
	i := strings.Index(body, `id="password"`)
	v := body[i:]
	v = v[strings.Index(v, `value="`)+7:]
	pw := v[:strings.Index(v, `"`)]
	if bad := Check(pw, Policy{Chars: true, LowerUpper: true, Numbers: true, SpecialChar: true}); len(bad) > 0 || len(pw) < 20 {
		t.Errorf("generated password %q: %v", pw, bad)
	}
	// The static files the page needs are served, with the headers.
	for _, f := range []string{"signup.css", "signup.js", "theme.js", "pow-worker.js", "logo.svg"} {
		if resp, _ := e.get("/static/" + f); resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("static %s: %d", f, resp.StatusCode)
		}
	}
}

func TestCreateMailbox(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendLimit, c.SendFrame = 20, "h" })
	resp, body := e.post(good(e, "Jane.Doe"))
	if resp.StatusCode != 200 || !strings.Contains(body, "jane.doe@example.org") || !strings.Contains(body, "mail.example.org") ||
		!strings.Contains(body, "993") || !strings.Contains(body, "587") {
		t.Fatalf("create: %d\n%s", resp.StatusCode, body)
	}
	e.mc.mu.Lock()
	b := e.mc.bodies[0]
	rl := e.mc.rl
	e.mc.mu.Unlock()
	if b["local_part"] != "jane.doe" || b["domain"] != "example.org" || b["password"] != "Correct-Horse-Battery-42" ||
		b["password2"] != b["password"] || b["quota"] != "1024" || b["active"] != "1" || b["name"] != "Jane Doe" {
		t.Errorf("API body: %v", b)
	}
	if tags, _ := b["tags"].([]any); len(tags) != 1 || tags[0] != "selfservice" {
		t.Errorf("tags: %v", b["tags"])
	}
	if len(rl) != 1 {
		t.Errorf("rate limit calls: %v", rl)
	}
	log := e.log.String()
	if !strings.Contains(log, "user=jane.doe") || !strings.Contains(log, "result=created") || !strings.Contains(log, "source=127.0.0.1") {
		t.Errorf("audit log: %s", log)
	}
	if strings.Contains(log, "Correct-Horse") {
		t.Error("the password is in the log")
	}
}

func TestCreateRefusals(t *testing.T) {
	e := newEnv(t)
	// Taken: mailcow answers 200 with danger/object_exists; the values stay in the form.
	resp, body := e.post(good(e, "taken"))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already taken") || !strings.Contains(body, `value="taken"`) ||
		!strings.Contains(body, `value="Jane Doe"`) || !strings.Contains(body, `aria-describedby="user-help user-status user-error"`) {
		t.Errorf("taken: %d\n%s", resp.StatusCode, body)
	}
	// Form errors: reserved name, weak password, unsaved password; no API call, no captcha used.
	calls := e.mc.calls
	v := good(e, "postmaster")
	v.Set("password", "short")
	v.Del("saved")
	resp, body = e.post(v)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "reserved") || !strings.Contains(body, "too short") ||
		!strings.Contains(body, "saved your password") || e.mc.calls != calls {
		t.Errorf("form: %d calls %d→%d\n%s", resp.StatusCode, calls, e.mc.calls, body)
	}
	// Own password typed twice, differently.
	v = good(e, "newuser")
	v.Set("own", "1")
	v.Set("password2", "Another-Password-123")
	if resp, body = e.post(v); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "differ") {
		t.Errorf("mismatch: %d", resp.StatusCode)
	}
	// No captcha, and a replayed one.
	v = good(e, "newuser2")
	sol := v.Get("altcha")
	v.Del("altcha")
	if resp, _ = e.post(v); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("no captcha: %d", resp.StatusCode)
	}
	v.Set("altcha", sol)
	if resp, _ = e.post(v); resp.StatusCode != 200 {
		t.Errorf("first use: %d", resp.StatusCode)
	}
	v.Set("user", "newuser3")
	if resp, body = e.post(v); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "verification failed") {
		t.Errorf("replay: %d", resp.StatusCode)
	}
}

func TestCrossOriginAndLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PerIP = 2 })
	// A POST from another origin is refused before any work.
	calls := e.mc.calls
	resp, _ := e.post(good(e, "evil"), "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden || e.mc.calls != calls {
		t.Errorf("cross-origin POST: %d", resp.StatusCode)
	}
	// A large body is refused.
	v := good(e, "big")
	v.Set("name", strings.Repeat("x", MaxBody))
	if resp, _ := e.post(v); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("large body: %d", resp.StatusCode)
	}
	// Two mailboxes per address and hour here; the third is refused.
	for i, want := range []int{200, 200, http.StatusTooManyRequests} {
		if resp, _ := e.post(good(e, "user"+string(rune('a'+i))+"x")); resp.StatusCode != want {
			t.Errorf("creation %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	// Behind mailcow's nginx (a trusted proxy) the limit counts X-Real-IP, not the proxy.
	if resp, _ := e.post(good(e, "fromproxy"), "X-Real-IP", "198.51.100.7"); resp.StatusCode != 200 {
		t.Errorf("other client behind the proxy: %d", resp.StatusCode)
	}
}

// A /48 (one site, 65536 /64s) has a limit of its own, and all sources together have a cap that alerts when hit: an
// IPv6 /48 no longer yields a mailbox per /64.
func TestWideLimitAndCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PerIP, c.PerNet, c.PerWide, c.PerHour = 100, 100, 2, 3 })
	for i, c := range []struct {
		src  string
		want int
	}{
		{"2001:db8:1:1::1", 200},
		{"2001:db8:1:2::1", 200},
		{"2001:db8:1:3::1", http.StatusTooManyRequests}, // the third /64 of the same /48
		{"2001:db8:2::1", 200},                          // another /48: the cap's third
		{"2001:db8:3::1", http.StatusTooManyRequests},   // the cap
	} {
		if resp, _ := e.post(good(e, fmt.Sprintf("wide%dx", i)), "X-Real-IP", c.src); resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.src, resp.StatusCode, c.want)
		}
	}
	if !strings.Contains(e.log.String(), "signup_cap_reached") {
		t.Errorf("the cap was hit without a word:\n%s", e.log.String())
	}
}

// X-Real-IP is believed from mailcow's nginx (its pinned address) and loopback only: another container on mailcow's
// network cannot pose as many clients.
func TestRealIPOnlyFromNginx(t *testing.T) {
	e := newEnv(t)
	for peer, want := range map[string]string{
		NginxMailcow + ":40000": "198.51.100.7",
		"127.0.0.1:40000":       "198.51.100.7",
		"172.22.1.5:40000":      "172.22.1.5", // another container
		"10.99.0.30:40000":      "10.99.0.30", // another server of the private network
	} {
		r := httptest.NewRequest(http.MethodPost, "/signup/", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Real-IP", "198.51.100.7")
		if got := e.s.clientIP(r).String(); got != want {
			t.Errorf("from %s: the client is %s, want %s", peer, got, want)
		}
	}
}

func TestAvailabilityCheck(t *testing.T) {
	e := newEnv(t)
	for user, want := range map[string]string{"taken": "user_taken", "free.name": "user_available", "admin": "user_reserved", "x": "user_length"} {
		_, body := e.get("/check?user=" + url.QueryEscape(user))
		var ans struct {
			OK  bool
			Key string
		}
		json.Unmarshal([]byte(body), &ans)
		if ans.Key != want || ans.OK != (want == "user_available") {
			t.Errorf("%s: %s", user, body)
		}
	}
	// It reveals which names exist: 60 per minute and address.
	limited := false
	for range 80 {
		if resp, _ := e.get("/check?user=someone"); resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("the availability check is not rate limited")
	}
}

// After mailcow refuses the key once, the portal stops calling it (repeated 401s get the caller banned).
func TestUnauthorizedStopsCalls(t *testing.T) {
	e := newEnv(t)
	e.apiMC.Key = "wrong"
	resp, body := e.post(good(e, "someone"))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Something went wrong") {
		t.Errorf("first: %d\n%s", resp.StatusCode, body)
	}
	calls := e.mc.calls
	e.post(good(e, "someone2"))
	e.get("/check?user=someone3")
	e.get("/password")
	if e.mc.calls != calls {
		t.Errorf("%d more API calls after a 401", e.mc.calls-calls)
	}
	if !strings.Contains(e.log.String(), "signup_api_unauthorized") || strings.Contains(e.log.String(), "wrong") {
		t.Errorf("log: %s", e.log.String())
	}
}

func TestLanguageSwitch(t *testing.T) {
	e := newEnv(t)
	e.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := e.get("/lang?l=it")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Set-Cookie"), "lang=it") {
		t.Fatalf("switch: %d %v", resp.StatusCode, resp.Header)
	}
	_, body := e.get("/", "Cookie", "lang=it", "Accept-Language", "fr")
	if !strings.Contains(body, "Crea la tua casella") {
		t.Error("the cookie's language is not used")
	}
}

// BenchmarkPage renders the form (the target: p99 ≤ 5 ms).
func BenchmarkPage(b *testing.B) {
	mc := &mailcowDouble{key: "k", mailboxes: map[string]bool{}}
	api := httptest.NewServer(mc)
	defer api.Close()
	cfg := DefaultConfig()
	cfg.Domain, cfg.Hostname, cfg.MailcowURL = "example.org", "mail.example.org", api.URL
	s, err := NewServer(cfg, &Mailcow{BaseURL: api.URL, Key: "k"}, []byte(strings.Repeat("c", 32)), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/signup/", nil))
		times = append(times, time.Since(t0))
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
	b.StopTimer()
	if len(times) >= 100 {
		slices.Sort(times)
		b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
	}
}
