package hcloudsim

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// creations records the servers the backend was asked to make real.
type creations struct {
	NopBackend
	mu      sync.Mutex
	servers []Server
}

func (c *creations) ServerCreated(s Server) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers = append(c.servers, s)
	return nil
}

// Creating follows the API's rules: unique names, valid labels, existing references, the user-data limit; a
// created server gets an address in each network, runs after its action, and is handed to the backend with its
// user-data.
func TestCreateFollowsTheAPIRules(t *testing.T) {
	cr := &creations{}
	h := newHarness(t, Options{Backend: cr})
	code, m, _ := h.do("POST", "/v1/networks", `{"name":"mailnet","ip_range":"10.42.0.0/16","labels":{"app":"mailcow-ha"},
		"subnets":[{"type":"cloud","ip_range":"10.42.0.0/24","network_zone":"eu-central"}]}`)
	if code != 201 {
		t.Fatalf("network: %d %v", code, m)
	}
	net := int64(m["network"].(map[string]any)["id"].(float64))
	for _, tc := range []struct {
		path, body, code string
	}{
		{"/v1/networks", `{"name":"mailnet","ip_range":"10.43.0.0/16"}`, "uniqueness_error"},
		{"/v1/networks", `{"name":"pub","ip_range":"8.8.0.0/16"}`, "invalid_input"},
		{"/v1/placement_groups", `{"name":"pg","type":"cluster"}`, "invalid_input"},
		{"/v1/firewalls", `{"name":"fw","rules":[{"direction":"in","protocol":"tcp","source_ips":["0.0.0.0/0"]}]}`, "invalid_input"},
		{"/v1/volumes", `{"name":"v","size":5,"location":"fsn1"}`, "invalid_input"},
		{"/v1/volumes", `{"name":"v","size":10,"location":"fsn1","labels":{"bad key!":"x"}}`, "invalid_input"},
		{"/v1/servers", `{"name":"s1","server_type":"cx99","image":5002}`, "invalid_input"},
		{"/v1/servers", `{"name":"s1","server_type":"cx22","image":4242}`, "invalid_input"},
		{"/v1/servers", `{"name":"s1","server_type":"cx22","image":5002,"networks":[9999]}`, "invalid_input"},
		{"/v1/servers", `{"name":"s1","server_type":"cx22","image":5002,"user_data":"` + strings.Repeat("x", MaxUserData+1) + `"}`, "invalid_input"},
		{"/v1/servers", `{"name":"mx1","server_type":"cx22","image":5002}`, "uniqueness_error"},
	} {
		code, m, _ := h.do("POST", tc.path, tc.body)
		if code < 400 || errCode(m) != tc.code {
			t.Errorf("POST %s %.60s: %d %v, want %s", tc.path, tc.body, code, m, tc.code)
		}
	}
	code, m, _ = h.do("POST", "/v1/firewalls", `{"name":"fw","labels":{"cluster":"c"},"rules":[{"direction":"in","protocol":"tcp","port":"25","source_ips":["0.0.0.0/0","::/0"]}]}`)
	if code != 201 {
		t.Fatalf("firewall: %d %v", code, m)
	}
	code, m, _ = h.do("POST", "/v1/servers", `{"name":"node-1","server_type":"cx32","image":5002,"location":"fsn1","user_data":"# mailcow-ha\nversion = 1\n",
		"labels":{"cluster":"c"},"networks":[`+itoa(net)+`],"firewalls":[{"firewall":7001}]}`)
	if code != 201 {
		t.Fatalf("server: %d %v", code, m)
	}
	id := int64(m["server"].(map[string]any)["id"].(float64))
	action := int64(m["action"].(map[string]any)["id"].(float64))
	h.waitAction(action)
	_, m, _ = h.do("GET", "/v1/servers/"+itoa(id), "")
	sv := m["server"].(map[string]any)
	priv := sv["private_net"].([]any)[0].(map[string]any)
	if sv["status"] != "running" || priv["ip"] != "10.42.0.2" || sv["server_type"].(map[string]any)["name"] != "cx32" {
		t.Fatalf("the created server: %v", sv)
	}
	cr.mu.Lock()
	got := cr.servers
	cr.mu.Unlock()
	if len(got) != 1 || got[0].Name != "node-1" || got[0].UserData != "# mailcow-ha\nversion = 1\n" {
		t.Fatalf("the backend saw %+v", got)
	}
	// The metadata service answers for it with its user-data.
	resp, _, _ := h.raw("GET", "/_metadata/node-1/hetzner/v1/userdata")
	if resp != "# mailcow-ha\nversion = 1\n" {
		t.Fatalf("its user-data: %q", resp)
	}
	// Deleting: a firewall in use and a network with servers are refused; the server goes by an action.
	if code, m, _ := h.do("DELETE", "/v1/firewalls/7001", ""); code != 409 || errCode(m) != "resource_in_use" {
		t.Fatalf("delete a firewall in use: %d %v", code, m)
	}
	if code, m, _ := h.do("DELETE", "/v1/networks/"+itoa(net), ""); code != 409 || errCode(m) != "resource_in_use" {
		t.Fatalf("delete a network in use: %d %v", code, m)
	}
	code, m, _ = h.do("DELETE", "/v1/servers/"+itoa(id), "")
	if code != 200 {
		t.Fatalf("delete the server: %d %v", code, m)
	}
	h.waitAction(int64(m["action"].(map[string]any)["id"].(float64)))
	for _, p := range []string{"/v1/firewalls/7001", "/v1/networks/" + itoa(net)} {
		if code, m, _ := h.do("DELETE", p, ""); code != 204 {
			t.Fatalf("DELETE %s: %d %v", p, code, m)
		}
	}
	// An attached Volume must be detached first.
	h.do("POST", "/v1/volumes/3001/actions/attach", `{"server":1001}`)
	time.Sleep(200 * time.Millisecond)
	if code, m, _ := h.do("DELETE", "/v1/volumes/3001", ""); code < 400 {
		t.Fatalf("delete an attached volume: %d %v", code, m)
	}
}

// waitAction polls an action until it is no longer running.
func (h *harness) waitAction(id int64) {
	h.t.Helper()
	for range 200 {
		_, m, _ := h.do("GET", "/v1/actions/"+itoa(id), "")
		if a, _ := m["action"].(map[string]any); a != nil && a["status"] != "running" {
			if a["status"] != "success" {
				h.t.Fatalf("action %d: %v", id, a)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("action %d still running", id)
}

// raw GETs a path without a token and returns the body.
func (h *harness) raw(method, path string) (string, int, error) {
	req, _ := http.NewRequest(method, h.srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
