package hcloudsim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type harness struct {
	t       *testing.T
	sim     *Sim
	srv     *httptest.Server
	rebuilt func() string // what the backend saw rebuilt, where the test records it
}

func newHarness(t *testing.T, o Options) *harness {
	t.Helper()
	if o.Latencies == nil {
		o.Latencies = DefaultLatencies().Scale(0.01)
	}
	sim, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return &harness{t: t, sim: sim, srv: srv}
}

// do sends a request with the demo token and decodes the JSON answer.
func (h *harness) do(method, path, body string) (int, map[string]any, http.Header) {
	h.t.Helper()
	return h.doToken(DemoToken, method, path, body)
}

func (h *harness) doToken(token, method, path, body string) (int, map[string]any, http.Header) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, out, resp.Header
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func ids(m map[string]any, key string) []int64 {
	var out []int64
	list, _ := m[key].([]any)
	for _, it := range list {
		out = append(out, int64(it.(map[string]any)["id"].(float64)))
	}
	return out
}

func eq(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestListsFiltersPagination(t *testing.T) {
	h := newHarness(t, Options{})
	code, m, hdr := h.do("GET", "/v1/servers?per_page=2", "")
	if code != 200 || !eq(ids(m, "servers"), []int64{1001, 1002}) {
		t.Fatalf("page 1: %d %v", code, m)
	}
	p := m["meta"].(map[string]any)["pagination"].(map[string]any)
	if p["next_page"].(float64) != 2 || p["previous_page"] != nil || p["last_page"].(float64) != 2 || p["total_entries"].(float64) != 3 {
		t.Fatalf("pagination = %v", p)
	}
	if hdr.Get("X-Correlation-Id") == "" || hdr.Get("RateLimit-Limit") != "3600" {
		t.Fatalf("headers = %v", hdr)
	}
	_, m, _ = h.do("GET", "/v1/servers?per_page=2&page=2", "")
	if !eq(ids(m, "servers"), []int64{1003}) {
		t.Fatalf("page 2: %v", m)
	}
	for sel, want := range map[string][]int64{
		"cluster=mailcow-ha": {1001, 1002, 1003}, "cluster!=mailcow-ha": nil, "cluster": {1001, 1002, 1003},
		"!cluster": nil, "cluster in (a,mailcow-ha)": {1001, 1002, 1003}, "cluster notin (mailcow-ha)": nil,
	} {
		_, m, _ = h.do("GET", "/v1/servers?label_selector="+urlq(sel), "")
		if got := ids(m, "servers"); !eq(got, want) {
			t.Errorf("selector %q: %v, want %v", sel, got, want)
		}
	}
	_, m, _ = h.do("GET", "/v1/servers?name=mx2", "")
	if !eq(ids(m, "servers"), []int64{1002}) {
		t.Fatalf("name filter: %v", m)
	}
	_, m, _ = h.do("GET", "/v1/images?type=snapshot&label_selector=app%3Dmailcow-ha,channel%3Dstable&sort=created:desc", "")
	if got := ids(m, "images"); !eq(got, []int64{5002, 5001}) {
		t.Fatalf("snapshots newest first: %v", got)
	}
	_, m, _ = h.do("GET", "/v1/images?type=snapshot&sort=id:desc", "")
	if got := ids(m, "images"); !eq(got, []int64{5004, 5003, 5002, 5001}) {
		t.Fatalf("snapshots by id desc: %v", got)
	}
	code, m, _ = h.do("GET", "/v1/images?sort=size", "")
	if code != 400 || errCode(m) != "invalid_input" {
		t.Fatalf("bad sort: %d %v", code, m)
	}
	_, m, _ = h.do("GET", "/v1/volumes/3001", "")
	v := m["volume"].(map[string]any)
	if v["linux_device"] != "/dev/disk/by-id/scsi-0HC_Volume_3001" || v["server"] != nil {
		t.Fatalf("volume = %v", v)
	}
	_, m, _ = h.do("GET", "/v1/networks/4001", "")
	n := m["network"].(map[string]any)
	if len(n["servers"].([]any)) != 3 || n["ip_range"] != "10.99.0.0/16" {
		t.Fatalf("network = %v", n)
	}
}

func urlq(s string) string {
	return strings.NewReplacer(" ", "%20", "=", "%3D", "(", "%28", ")", "%29", ",", "%2C", "!", "%21").Replace(s)
}

func TestErrors(t *testing.T) {
	h := newHarness(t, Options{})
	for _, tc := range []struct {
		token, method, path, body string
		status                    int
		code                      string
	}{
		{"", "GET", "/v1/servers", "", 401, "unauthorized"},
		{strings.Repeat("x", 64), "GET", "/v1/servers", "", 401, "unauthorized"},
		{DemoToken, "GET", "/v1/servers/999", "", 404, "not_found"},
		{DemoToken, "GET", "/v1/servers/abc", "", 400, "invalid_input"},
		{DemoToken, "GET", "/v1/load_balancers", "", 404, "not_found"},
		{DemoToken, "POST", "/v1/servers/1001/actions/explode", "{}", 404, "not_found"},
		{DemoToken, "POST", "/v1/floating_ips/2001/actions/assign", "{}", 400, "invalid_input"},
		{DemoToken, "POST", "/v1/floating_ips/2001/actions/assign", `{"server":999}`, 404, "not_found"},
		{DemoToken, "POST", "/v1/floating_ips/2001/actions/assign", `{"server":`, 400, "json_error"},
		{DemoToken, "POST", "/v1/volumes/9/actions/detach", "", 404, "not_found"},
	} {
		code, m, _ := h.doToken(tc.token, tc.method, tc.path, tc.body)
		if code != tc.status || errCode(m) != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s (%v)", tc.method, tc.path, code, errCode(m), tc.status, tc.code, m)
		}
		if msg := m["error"].(map[string]any)["message"]; msg == "" || msg == nil {
			t.Errorf("%s %s: no message", tc.method, tc.path)
		}
	}
}

func TestActionsLockAndFinish(t *testing.T) {
	h := newHarness(t, Options{})
	h.sim.SetLatency(CmdAssignFloatingIP, 300*time.Millisecond)
	code, m, _ := h.do("POST", "/v1/floating_ips/2001/actions/assign", `{"server":1002}`)
	if code != 201 {
		t.Fatalf("assign: %d %v", code, m)
	}
	a := m["action"].(map[string]any)
	id := int64(a["id"].(float64))
	if a["status"] != "running" || a["command"] != "assign_floating_ip" || len(a["resources"].([]any)) != 2 {
		t.Fatalf("action = %v", a)
	}
	code, m, _ = h.do("POST", "/v1/floating_ips/2001/actions/assign", `{"server":1003}`)
	if code != 423 || errCode(m) != "locked" {
		t.Fatalf("second assign while running: %d %v", code, m)
	}
	// The owner changes when the action finishes, not before.
	_, m, _ = h.do("GET", "/v1/floating_ips/2001", "")
	if m["floating_ip"].(map[string]any)["server"] != nil {
		t.Fatalf("owner changed before the action finished: %v", m)
	}
	// The Floating IP's lock does not lock the server: a Volume can be attached to it meanwhile.
	if code, m, _ = h.do("POST", "/v1/volumes/3001/actions/attach", `{"server":1002}`); code != 201 {
		t.Fatalf("attach beside a running assign: %d %v", code, m)
	}
	_, m, _ = h.do("GET", "/v1/actions?status=running&id="+strconv.FormatInt(id, 10), "")
	if !eq(ids(m, "actions"), []int64{id}) {
		t.Fatalf("running actions: %v", m)
	}
	time.Sleep(400 * time.Millisecond)
	_, m, _ = h.do("GET", "/v1/actions/"+strconv.FormatInt(id, 10), "")
	a = m["action"].(map[string]any)
	if a["status"] != "success" || a["progress"].(float64) != 100 || a["finished"] == nil {
		t.Fatalf("finished action = %v", a)
	}
	_, m, _ = h.do("GET", "/v1/floating_ips/2001/actions", "")
	if !eq(ids(m, "actions"), []int64{id}) {
		t.Fatalf("the Floating IP's actions: %v", m)
	}
	_, m, _ = h.do("GET", "/v1/floating_ips/2001", "")
	if m["floating_ip"].(map[string]any)["server"].(float64) != 1002 {
		t.Fatalf("owner after the action: %v", m)
	}
	_, m, _ = h.do("GET", "/v1/servers/1002", "")
	s := m["server"].(map[string]any)
	if pn := s["public_net"].(map[string]any); len(pn["floating_ips"].([]any)) != 1 || len(s["volumes"].([]any)) != 1 {
		t.Fatalf("server 1002 = %v", s)
	}
}

func TestVolumeAlreadyAttached(t *testing.T) {
	h := newHarness(t, Options{})
	if code, m, _ := h.do("POST", "/v1/volumes/3001/actions/attach", `{"server":1001}`); code != 201 {
		t.Fatalf("attach: %d %v", code, m)
	}
	time.Sleep(100 * time.Millisecond)
	code, m, _ := h.do("POST", "/v1/volumes/3001/actions/attach", `{"server":1002}`)
	if code != 422 || errCode(m) != "volume_already_attached" {
		t.Fatalf("double attach: %d %v", code, m)
	}
}

func TestPowerStaysOff(t *testing.T) {
	rec := &powerLog{}
	h := newHarness(t, Options{Backend: rec})
	if code, _, _ := h.do("POST", "/v1/servers/1001/actions/poweroff", ""); code != 201 {
		t.Fatal(code)
	}
	time.Sleep(100 * time.Millisecond)
	for range 2 {
		_, m, _ := h.do("GET", "/v1/servers/1001", "")
		if st := m["server"].(map[string]any)["status"]; st != "off" {
			t.Fatalf("status = %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.do("POST", "/v1/servers/1001/actions/poweron", "")
	time.Sleep(150 * time.Millisecond)
	_, m, _ := h.do("GET", "/v1/servers/1001", "")
	if st := m["server"].(map[string]any)["status"]; st != "running" {
		t.Fatalf("status after poweron = %v", st)
	}
	if got := rec.String(); got != "mx1 off,mx1 on" {
		t.Fatalf("backend = %s", got)
	}
}

type powerLog struct {
	NopBackend
	mu  sync.Mutex
	log []string
	err error
}

func (p *powerLog) ServerPower(s Server, on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, s.Name+map[bool]string{true: " on", false: " off"}[on])
	return nil
}

func (p *powerLog) VolumeAttached(Volume, int64) error { return p.err }

func (p *powerLog) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, ",")
}

func TestBackendErrorFailsAction(t *testing.T) {
	rec := &powerLog{err: errors.New("no loop device free")}
	h := newHarness(t, Options{Backend: rec})
	_, m, _ := h.do("POST", "/v1/volumes/3001/actions/attach", `{"server":1001}`)
	id := strconv.FormatInt(int64(m["action"].(map[string]any)["id"].(float64)), 10)
	time.Sleep(100 * time.Millisecond)
	_, m, _ = h.do("GET", "/v1/volumes/actions/"+id, "")
	a := m["action"].(map[string]any)
	e, _ := a["error"].(map[string]any)
	if a["status"] != "error" || e["code"] != "action_failed" || e["message"] != "no loop device free" {
		t.Fatalf("action = %v", a)
	}
	if _, m, _ = h.do("GET", "/v1/volumes/3001", ""); m["volume"].(map[string]any)["server"] != nil {
		t.Fatal("a failed attach changed the owner")
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, Options{RateLimit: 3600})
	_, _, h1 := h.do("GET", "/v1/servers", "")
	_, _, h2 := h.do("GET", "/v1/servers", "")
	r1, _ := strconv.Atoi(h1.Get("RateLimit-Remaining"))
	r2, _ := strconv.Atoi(h2.Get("RateLimit-Remaining"))
	if r1 != 3599 || r2 != 3598 {
		t.Fatalf("remaining %d then %d", r1, r2)
	}
	reset, _ := strconv.ParseInt(h2.Get("RateLimit-Reset"), 10, 64)
	if d := time.Until(time.Unix(reset, 0)); d < 0 || d > 4*time.Second {
		t.Fatalf("reset in %s, want about 2 s (two requests at one a second)", d)
	}
	h.sim.SetRateLimit(3600, 1)
	if code, _, _ := h.do("GET", "/v1/servers", ""); code != 200 {
		t.Fatal(code)
	}
	code, m, hdr := h.do("GET", "/v1/servers", "")
	if code != 429 || errCode(m) != "rate_limit_exceeded" || hdr.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("over the limit: %d %v %v", code, m, hdr)
	}
}

func TestAdminFaults(t *testing.T) {
	h := newHarness(t, Options{})
	put := func(body string) {
		req, _ := http.NewRequest("PUT", h.srv.URL+"/_sim/faults", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("put faults %s: %v %v", body, err, resp)
		}
		resp.Body.Close()
	}
	put(`{"fail_5xx": 2, "fail_status": 502}`)
	for range 2 {
		if code, m, _ := h.do("GET", "/v1/servers", ""); code != 502 || errCode(m) != "bad_gateway" {
			t.Fatalf("injected 502: %d %v", code, m)
		}
	}
	if code, _, _ := h.do("GET", "/v1/servers", ""); code != 200 {
		t.Fatalf("after the injected failures: %d", code)
	}
	put(`{"extra_latency": 200000000}`)
	start := time.Now()
	h.do("GET", "/v1/servers", "")
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("extra latency not applied: %s", took)
	}
	put(`{"down": true}`)
	req, _ := http.NewRequest("GET", h.srv.URL+"/v1/servers", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("API down, yet it answered %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("PUT", h.srv.URL+"/_sim/faults", strings.NewReader(`{"bogus": 1}`))
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 400 {
		t.Fatalf("unknown fault field: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("DELETE", h.srv.URL+"/_sim/faults", nil)
	http.DefaultClient.Do(req)
	if code, _, _ := h.do("GET", "/v1/servers", ""); code != 200 {
		t.Fatalf("after clearing faults: %d", code)
	}
	resp, err := http.Get(h.srv.URL + "/_sim/requests")
	if err != nil {
		t.Fatal(err)
	}
	var counts struct {
		Total   int            `json:"total"`
		ByRoute map[string]int `json:"by_route"`
	}
	json.NewDecoder(resp.Body).Decode(&counts)
	resp.Body.Close()
	if counts.Total != 5 || counts.ByRoute["GET /v1/servers"] != 5 {
		t.Fatalf("requests = %+v", counts)
	}
	resp, _ = http.Get(h.srv.URL + "/_sim/state")
	var st State
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Servers) != 3 || st.Volumes[0].ID != 3001 {
		t.Fatalf("state = %+v", st)
	}
}

func TestMetadataService(t *testing.T) {
	st := DemoState()
	st.Servers[1].PrivateNet[0].IP = "127.0.0.1" // the test's requests come from loopback: they are mx2's
	st.Servers[1].UserData = "# mailcow-ha\nversion = 1\n"
	h := newHarness(t, Options{State: st})
	get := func(path string) (int, string) {
		resp, err := http.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for path, want := range map[string]string{
		"/hetzner/v1/metadata/hostname":                   "mx2",
		"/hetzner/v1/metadata/instance-id":                "1002",
		"/hetzner/v1/userdata":                            "# mailcow-ha\nversion = 1\n",
		"/_metadata/mx3/hetzner/v1/metadata/hostname":     "mx3",
		"/_metadata/1001/hetzner/v1/metadata/public-ipv4": "203.0.113.11",
		"/_metadata/mx1/hetzner/v1/userdata":              "",
	} {
		if code, body := get(path); code != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", path, code, body, want)
		}
	}
	_, body := get("/_metadata/mx1/hetzner/v1/metadata")
	for _, w := range []string{"hostname: mx1", "instance-id: 1001", "private-networks:", "  - ip: 10.99.0.11", "mac_address: 86:00:00:00:00:01"} {
		if !strings.Contains(body, w) {
			t.Errorf("metadata document lacks %q:\n%s", w, body)
		}
	}
	if code, _ := get("/_metadata/mx9/hetzner/v1/metadata/hostname"); code != 404 {
		t.Errorf("unknown server: %d", code)
	}
}

func TestLoadState(t *testing.T) {
	dir := t.TempDir()
	js := filepath.Join(dir, "p.json")
	b, _ := json.Marshal(DemoState())
	os.WriteFile(js, b, 0o644)
	if st, err := LoadState(js); err != nil || len(st.Servers) != 3 {
		t.Fatalf("json: %v", err)
	}
	tm := filepath.Join(dir, "p.toml")
	os.WriteFile(tm, []byte("[[servers]]\nid = 7\nname = \"a\"\nstatus = \"running\"\n[[volumes]]\nid = 8\nname = \"v\"\nserver = 7\n"), 0o644)
	if st, err := LoadState(tm); err != nil || st.Volumes[0].Server != 7 {
		t.Fatalf("toml: %+v %v", st, err)
	}
	for name, content := range map[string]string{
		"dup.toml":     "[[servers]]\nid = 7\nstatus = \"running\"\n[[servers]]\nid = 7\nstatus = \"off\"\n",
		"owner.toml":   "[[volumes]]\nid = 8\nserver = 9\n",
		"unknown.toml": "[[servers]]\nid = 7\nstatus = \"running\"\ncolour = \"red\"\n",
		"status.json":  `{"servers": [{"id": 7, "status": "exploded"}]}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		if _, err := LoadState(p); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// A token rotation: a second token works beside the first, and a revoked one is refused.
func TestTokenRotation(t *testing.T) {
	h := newHarness(t, Options{})
	next := strings.Repeat("n", 64)
	if code, _, _ := h.doToken(next, "GET", "/v1/servers", ""); code != 401 {
		t.Fatalf("an unknown token: %d", code)
	}
	h.sim.AddToken(next)
	for _, tok := range []string{DemoToken, next} {
		if code, _, _ := h.doToken(tok, "GET", "/v1/servers", ""); code != 200 {
			t.Fatalf("both tokens during the rotation: %d", code)
		}
	}
	h.sim.RevokeToken(DemoToken)
	if code, m, _ := h.doToken(DemoToken, "GET", "/v1/servers", ""); code != 401 || errCode(m) != "unauthorized" {
		t.Fatalf("the revoked token: %d %v", code, m)
	}
	if code, _, _ := h.doToken(next, "GET", "/v1/servers", ""); code != 200 {
		t.Fatalf("the new token after the revocation: %d", code)
	}
}
