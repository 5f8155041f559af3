package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPublicEndpoints(t *testing.T) {
	master := NodeStatus{Node: "mx1", Role: "master", Verdict: true, Galera: GaleraStatus{OK: true, Detail: "Synced"},
		Stack: StackStatus{Healthy: true}, Volume: VolumeStatus{Mounted: true}, FloatingIP: FIPStatus{OnInterface: true}}
	backup := NodeStatus{Node: "mx2", Role: "backup", Verdict: true, Galera: GaleraStatus{OK: true, Detail: "Synced"}}
	cases := []struct {
		name string
		st   func() NodeStatus
		want map[string]int
	}{
		{"master", func() NodeStatus { return master }, map[string]int{"/health": 200, "/primary": 200, "/replica": 503}},
		{"backup", func() NodeStatus { return backup }, map[string]int{"/health": 200, "/primary": 503, "/replica": 200}},
		{"master with a failed service", func() NodeStatus {
			s := master
			s.Stack = StackStatus{Failed: "postfix-mailcow: exited"}
			return s
		}, map[string]int{"/health": 200, "/primary": 503, "/replica": 503}},
		{"out of quorum", func() NodeStatus {
			s := backup
			s.Galera = GaleraStatus{Detail: "non-Primary"}
			return s
		}, map[string]int{"/health": 503, "/primary": 503, "/replica": 503}},
		{"stalled loop", func() NodeStatus {
			s := master
			s.LoopAge = Duration(time.Minute)
			return s
		}, map[string]int{"/health": 503, "/primary": 503, "/replica": 503}},
		{"backup failing its check", func() NodeStatus {
			s := backup
			s.Verdict, s.Reason = false, "breaker tripped"
			return s
		}, map[string]int{"/health": 200, "/primary": 503, "/replica": 503}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(PublicHandler(func(context.Context) NodeStatus { return tc.st() }, nil))
			defer srv.Close()
			for path, want := range tc.want {
				resp, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				var body struct {
					OK     bool
					Reason string
				}
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != want || body.OK != (want == 200) || body.Reason == "" {
					t.Errorf("%s: %d %+v, want %d", path, resp.StatusCode, body, want)
				}
			}
		})
	}
}

// HAProxy checks with OPTIONS by default (option httpchk): the probes answer it as they answer GET.
func TestProbesAnswerOptions(t *testing.T) {
	srv := httptest.NewServer(PublicHandler(func(context.Context) NodeStatus { return NodeStatus{Role: "backup"} }, nil))
	defer srv.Close()
	for path, want := range map[string]int{"/primary": http.StatusServiceUnavailable, "/health": 0, "/replica": 0} {
		get, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		get.Body.Close()
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != get.StatusCode || (want != 0 && resp.StatusCode != want) {
			t.Errorf("OPTIONS %s: %d, GET: %d", path, resp.StatusCode, get.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("OPTIONS /status: %d, want 405", resp.StatusCode)
	}
}

func TestPublicEndpointsReadOnly(t *testing.T) {
	srv := httptest.NewServer(PublicHandler(func(context.Context) NodeStatus { return NodeStatus{Role: "backup"} }, nil))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %d", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st NodeStatus
	if err := json.Unmarshal(b, &st); err != nil || st.Role != "backup" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /status: %s %v", b, err)
	}
	if resp, _ := http.Get(srv.URL + "/metrics"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics without metrics: %d", resp.StatusCode)
	}
}
