package hcloudsim

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
)

// This file updates a server (PUT /v1/servers/{id}), as `hcloud server update` and `hcloud server add-label` do:
// its name and its labels. Labels given replace all of them, as in the API.

// update answers PUT /v1/<resources>/{id} for servers.
func (s *Sim) update(kind string, id int64, r *http.Request) (int, any, error) {
	if kind != "server" {
		return 0, nil, apiError{http.StatusMethodNotAllowed, "method_not_allowed", "the simulator updates servers only"}
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<16))
	if err != nil {
		return 0, nil, apiError{http.StatusBadRequest, "json_error", "request too large"}
	}
	var req struct {
		Name   *string            `json:"name"`
		Labels *map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		return 0, nil, apiError{http.StatusBadRequest, "json_error", "invalid JSON: " + err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.server(id)
	if sv == nil {
		return 0, nil, notFound("server")
	}
	if req.Name != nil && *req.Name != sv.Name {
		if err := checkName(*req.Name); err != nil {
			return 0, nil, err
		}
		if slices.ContainsFunc(s.st.Servers, func(v Server) bool { return v.Name == *req.Name }) {
			return 0, nil, uniqueness("server", *req.Name)
		}
		sv.Name = *req.Name
	}
	if req.Labels != nil {
		labels, err := labelsArg(req.Labels)
		if err != nil {
			return 0, nil, err
		}
		sv.Labels = labels
	}
	return http.StatusOK, map[string]any{"server": s.serverJSON(*sv)}, nil
}
