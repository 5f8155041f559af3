package hcloudsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Handler serves the API under /v1/, the metadata service (see metadata.go) and the admin endpoint under /_sim/.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/", s.serveAPI)
	mux.HandleFunc("/_metadata/", s.serveMetadataByPath)
	mux.HandleFunc("/hetzner/v1/", s.serveMetadataBySource)
	mux.HandleFunc("/_sim/", s.serveAdmin)
	return mux
}

// apiError is an error answer of the API: HTTP status, error code and message.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e apiError) Error() string { return e.msg }

func writeJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, e apiError) {
	writeJSON(w, e.status, map[string]any{"error": map[string]any{"code": e.code, "message": e.msg, "details": map[string]any{}}})
}

// statusCode maps a 5xx status to the API's error code for it.
func statusCode(status int) string {
	switch status {
	case http.StatusInternalServerError:
		return "server_error"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusGatewayTimeout:
		return "timeout"
	}
	return "unavailable"
}

func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.faults
	s.mu.Unlock()
	if f.Down {
		// An unreachable API: the connection closes without an answer.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if f.ExtraLatency > 0 {
		select {
		case <-time.After(f.ExtraLatency):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-Correlation-Id", correlationID())

	route := routeName(r)
	now := time.Now()
	s.mu.Lock()
	s.total++
	s.requests[route]++
	if s.faults.Fail5xx > 0 {
		s.faults.Fail5xx--
		status := s.faults.FailStatus
		s.mu.Unlock()
		writeErr(w, apiError{status, statusCode(status), "injected failure"})
		return
	}
	s.mu.Unlock()

	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || !s.validToken(tok) {
		writeErr(w, apiError{http.StatusUnauthorized, "unauthorized", "unable to authenticate"})
		return
	}

	s.mu.Lock()
	atLimit := slices.Contains(s.faults.AtLimit, route)
	s.mu.Unlock()
	if atLimit {
		writeErr(w, apiError{http.StatusForbidden, "resource_limit_exceeded", "project limit exceeded"})
		return
	}

	s.mu.Lock()
	allowed := s.rate.take(now)
	w.Header().Set("RateLimit-Limit", strconv.Itoa(s.rate.limit))
	w.Header().Set("RateLimit-Remaining", strconv.Itoa(int(s.rate.tokens)))
	w.Header().Set("RateLimit-Reset", strconv.FormatInt(s.rate.reset().Unix(), 10))
	s.mu.Unlock()
	if !allowed {
		writeErr(w, apiError{http.StatusTooManyRequests, "rate_limit_exceeded", "limit of requests per hour reached"})
		return
	}

	status, body, err := s.route(r)
	if err != nil {
		var ae apiError
		if !errors.As(err, &ae) {
			ae = apiError{http.StatusInternalServerError, "server_error", err.Error()}
		}
		writeErr(w, ae)
		return
	}
	writeJSON(w, status, body)
}

// routeName is the request's method and path with ids replaced, for the request counters.
func routeName(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	for i, p := range parts {
		if _, err := strconv.ParseInt(p, 10, 64); err == nil {
			parts[i] = "{id}"
		}
	}
	return r.Method + " /" + strings.Join(parts, "/")
}

var resourceTypes = map[string]string{
	"servers": "server", "floating_ips": "floating_ip", "volumes": "volume", "images": "image", "networks": "network",
	"placement_groups": "placement_group", "firewalls": "firewall", "ssh_keys": "ssh_key",
}

func notFound(what string) error {
	return apiError{http.StatusNotFound, "not_found", what + " not found"}
}

func badInput(format string, args ...any) error {
	return apiError{http.StatusBadRequest, "invalid_input", fmt.Sprintf(format, args...)}
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, badInput("invalid id %q", s)
	}
	return id, nil
}

func (s *Sim) route(r *http.Request) (int, any, error) {
	seg := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1"), "/"), "/")
	q := r.URL.Query()
	get := r.Method == http.MethodGet
	switch {
	case len(seg) == 1 && seg[0] == "actions" && get:
		return s.listActions(q, nil)
	case len(seg) == 2 && seg[0] == "actions" && get:
		id, err := parseID(seg[1])
		if err != nil {
			return 0, nil, err
		}
		return s.getAction(id, "")
	}
	kind, ok := resourceTypes[seg[0]]
	if !ok {
		return 0, nil, notFound("resource " + seg[0])
	}
	switch {
	case len(seg) == 1 && get:
		return s.list(kind, q)
	case len(seg) == 1 && r.Method == http.MethodPost && kind != "image":
		return s.create(kind, r)
	case len(seg) == 2 && r.Method == http.MethodPut:
		id, err := parseID(seg[1])
		if err != nil {
			return 0, nil, err
		}
		return s.update(kind, id, r)
	case len(seg) == 2 && r.Method == http.MethodDelete && kind != "image":
		id, err := parseID(seg[1])
		if err != nil {
			return 0, nil, err
		}
		return s.remove(kind, id)
	case len(seg) == 2 && seg[1] == "actions" && get:
		return s.listActions(q, &resRef{Type: kind})
	case len(seg) == 2 && get:
		id, err := parseID(seg[1])
		if err != nil {
			return 0, nil, err
		}
		return s.get(kind, id)
	case len(seg) == 3 && seg[1] == "actions" && get:
		id, err := parseID(seg[2])
		if err != nil {
			return 0, nil, err
		}
		return s.getAction(id, kind)
	case len(seg) == 3 && seg[2] == "actions" && get:
		id, err := parseID(seg[1])
		if err != nil {
			return 0, nil, err
		}
		if _, _, err := s.get(kind, id); err != nil {
			return 0, nil, err
		}
		return s.listActions(q, &resRef{Type: kind, ID: id})
	case len(seg) == 4 && seg[2] == "actions" && r.Method == http.MethodPost:
		id, err := parseID(seg[1])
		if err != nil {
			return 0, nil, err
		}
		var body map[string]any
		if r.ContentLength != 0 {
			if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				return 0, nil, apiError{http.StatusBadRequest, "json_error", "invalid JSON: " + err.Error()}
			}
		}
		return s.doAction(kind, id, seg[3], body)
	}
	if get {
		return 0, nil, notFound("path " + r.URL.Path)
	}
	return 0, nil, apiError{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
}

func (s *Sim) get(kind string, id int64) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch kind {
	case "server":
		if v := s.server(id); v != nil {
			return http.StatusOK, map[string]any{"server": s.serverJSON(*v)}, nil
		}
	case "floating_ip":
		if v := s.floatingIP(id); v != nil {
			return http.StatusOK, map[string]any{"floating_ip": s.floatingIPJSON(*v)}, nil
		}
	case "volume":
		if v := s.volume(id); v != nil {
			return http.StatusOK, map[string]any{"volume": s.volumeJSON(*v)}, nil
		}
	case "image":
		for _, v := range s.st.Images {
			if v.ID == id {
				return http.StatusOK, map[string]any{"image": imageJSON(v)}, nil
			}
		}
	case "network":
		for _, v := range s.st.Networks {
			if v.ID == id {
				return http.StatusOK, map[string]any{"network": s.networkJSON(v)}, nil
			}
		}
	case "placement_group":
		for _, v := range s.st.PlacementGroups {
			if v.ID == id {
				return http.StatusOK, map[string]any{"placement_group": s.placementGroupJSON(v)}, nil
			}
		}
	case "firewall":
		for _, v := range s.st.Firewalls {
			if v.ID == id {
				return http.StatusOK, map[string]any{"firewall": s.firewallJSON(v)}, nil
			}
		}
	case "ssh_key":
		for _, v := range s.st.SSHKeys {
			if v.ID == id {
				return http.StatusOK, map[string]any{"ssh_key": sshKeyJSON(v)}, nil
			}
		}
	}
	return 0, nil, notFound(strings.ReplaceAll(kind, "_", " "))
}

func (s *Sim) server(id int64) *Server {
	for i := range s.st.Servers {
		if s.st.Servers[i].ID == id {
			return &s.st.Servers[i]
		}
	}
	return nil
}

func (s *Sim) floatingIP(id int64) *FloatingIP {
	for i := range s.st.FloatingIPs {
		if s.st.FloatingIPs[i].ID == id {
			return &s.st.FloatingIPs[i]
		}
	}
	return nil
}

func (s *Sim) volume(id int64) *Volume {
	for i := range s.st.Volumes {
		if s.st.Volumes[i].ID == id {
			return &s.st.Volumes[i]
		}
	}
	return nil
}

func (s *Sim) getAction(id int64, kind string) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.actions[id]
	if !ok || (kind != "" && !slices.ContainsFunc(a.Resources, func(r resRef) bool { return r.Type == kind })) {
		return 0, nil, notFound("action")
	}
	return http.StatusOK, map[string]any{"action": actionJSON(a.snapshot(time.Now()))}, nil
}

// listActions lists actions, filtered by id and status, optionally of one resource (or of one resource kind).
func (s *Sim) listActions(q url.Values, of *resRef) (int, any, error) {
	var ids []int64
	for _, v := range q["id"] {
		id, err := parseID(v)
		if err != nil {
			return 0, nil, err
		}
		ids = append(ids, id)
	}
	now := time.Now()
	s.mu.Lock()
	var list []action
	for _, a := range s.actions {
		if len(ids) > 0 && !slices.Contains(ids, a.ID) {
			continue
		}
		if !keep(q, "status", a.Status) {
			continue
		}
		if of != nil && !slices.ContainsFunc(a.Resources, func(r resRef) bool {
			return r.Type == of.Type && (of.ID == 0 || r.ID == of.ID)
		}) {
			continue
		}
		list = append(list, a.snapshot(now))
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b action) int { return compare(a.ID, b.ID) })
	for i := len(q["sort"]) - 1; i >= 0; i-- {
		field, dir, _ := strings.Cut(q["sort"][i], ":")
		var cmp func(a, b action) int
		switch field {
		case "id":
			cmp = func(a, b action) int { return compare(a.ID, b.ID) }
		case "status":
			cmp = func(a, b action) int { return strings.Compare(a.Status, b.Status) }
		case "command":
			cmp = func(a, b action) int { return strings.Compare(a.Command, b.Command) }
		case "started":
			cmp = func(a, b action) int { return a.Started.Compare(b.Started) }
		case "finished":
			cmp = func(a, b action) int { return a.Finished.Compare(b.Finished) }
		case "progress":
			cmp = func(a, b action) int { return compare(a.Progress, b.Progress) }
		default:
			return 0, nil, badInput("invalid sort field %q", field)
		}
		if dir == "desc" {
			asc := cmp
			cmp = func(a, b action) int { return -asc(a, b) }
		}
		slices.SortStableFunc(list, cmp)
	}
	page, meta, err := paginate(list, q)
	if err != nil {
		return 0, nil, err
	}
	out := make([]any, len(page))
	for i := range page {
		out[i] = actionJSON(page[i])
	}
	return http.StatusOK, map[string]any{"actions": out, "meta": meta}, nil
}
