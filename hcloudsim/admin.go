package hcloudsim

import (
	"encoding/json"
	"net/http"
)

// The admin endpoint lives under /_sim/, off the API, and needs no token: bind the simulator to loopback or a
// test network only.
//
//	GET    /_sim/state      the project as JSON
//	GET    /_sim/faults     the injected faults
//	PUT    /_sim/faults     replace them (JSON Faults; extra_latency in nanoseconds)
//	DELETE /_sim/faults     clear them
//	GET    /_sim/requests   API request counters: {"total": N, "by_route": {...}}
//	DELETE /_sim/requests   reset the counters
//	PUT    /_sim/rate_limit {"limit": N, "remaining": M}
func (s *Sim) serveAdmin(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "GET /_sim/state":
		writeJSON(w, http.StatusOK, s.State())
	case "GET /_sim/faults":
		writeJSON(w, http.StatusOK, s.Faults())
	case "PUT /_sim/faults", "POST /_sim/faults":
		var f Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			http.Error(w, "faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFaults(f)
		writeJSON(w, http.StatusOK, s.Faults())
	case "DELETE /_sim/faults":
		s.SetFaults(Faults{})
		w.WriteHeader(http.StatusNoContent)
	case "GET /_sim/requests":
		total, by := s.Requests()
		writeJSON(w, http.StatusOK, map[string]any{"total": total, "by_route": by})
	case "DELETE /_sim/requests":
		s.ResetRequests()
		w.WriteHeader(http.StatusNoContent)
	case "PUT /_sim/rate_limit":
		var rl struct {
			Limit     int `json:"limit"`
			Remaining int `json:"remaining"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<12)).Decode(&rl); err != nil || rl.Limit <= 0 || rl.Remaining < 0 {
			http.Error(w, "rate_limit: want {\"limit\": N>0, \"remaining\": M>=0}", http.StatusBadRequest)
			return
		}
		s.SetRateLimit(rl.Limit, rl.Remaining)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}
