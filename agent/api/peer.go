package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/galera"
)

// PeerState is what a node tells its peers about itself.
type PeerState struct {
	Node     string `json:"node"`
	Role     string `json:"role"`
	VRRP     string `json:"vrrp"`
	GaleraOK bool   `json:"galera_ok"`
	Galera   string `json:"galera"`
	Seqno    int64  `json:"seqno"`
	Verdict  bool   `json:"verdict"`
	Reason   string `json:"reason"`
	// StackFailed names the first failed critical service ("" when healthy or deliberately stopped).
	StackFailed string `json:"stack_failed"`
	Breaker     bool   `json:"breaker"`
	Maintenance bool   `json:"maintenance"`
	Takeovers   int    `json:"takeovers"` // within the breaker window
}

// DemoteRequest asks a node to demote and confirm.
type DemoteRequest struct {
	From int64 `json:"from"` // the requester's server id
}

// DemoteAnswer confirms (or not) the demotion.
type DemoteAnswer struct {
	Demoted bool   `json:"demoted"`
	Error   string `json:"error,omitempty"`
}

// SwitchoverRequest hands MASTER to node To until Until.
type SwitchoverRequest struct {
	To    string    `json:"to"`
	Until time.Time `json:"until"`
}

// MaintenanceRequest switches maintenance mode.
type MaintenanceRequest struct {
	On bool `json:"on"`
}

// PeerAgent is what the peer API needs from the agent.
type PeerAgent interface {
	State() PeerState
	// Demote demotes this node for the peer and returns when the demotion is done (or ctx ends).
	Demote(ctx context.Context, from int64) error
	Switchover(to string, until time.Time)
	Maintenance(on bool)
	// GaleraReport is this node's Galera position and whether it runs in a Primary component.
	GaleraReport(ctx context.Context) galera.Report
}

// PeerHandler serves the peer API under /peer/v1/.
func PeerHandler(v *Verifier, a PeerAgent, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	auth := func(h func(w http.ResponseWriter, r *http.Request, body []byte, node string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, node, err := v.Verify(r)
			if err != nil {
				if ok, skipped := v.refusalLog(time.Now()); ok {
					log.Warn("peer API: refused request", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err,
						"refused_unlogged_since_last", skipped)
				}
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, r, body, node)
		}
	}
	mux.HandleFunc("GET /peer/v1/state", auth(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) {
		writeJSON(w, http.StatusOK, a.State())
	}))
	mux.HandleFunc("GET /peer/v1/galera", auth(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) {
		writeJSON(w, http.StatusOK, a.GaleraReport(r.Context()))
	}))
	mux.HandleFunc("POST /peer/v1/demote", auth(func(w http.ResponseWriter, r *http.Request, body []byte, node string) {
		var req DemoteRequest
		if err := json.Unmarshal(body, &req); err != nil || req.From <= 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		log.Warn("peer API: demote requested", "peer", node)
		if err := a.Demote(r.Context(), req.From); err != nil {
			writeJSON(w, http.StatusOK, DemoteAnswer{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, DemoteAnswer{Demoted: true})
	}))
	mux.HandleFunc("POST /peer/v1/switchover", auth(func(w http.ResponseWriter, r *http.Request, body []byte, node string) {
		var req SwitchoverRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a.Switchover(req.To, req.Until) // an empty To ends the hold
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /peer/v1/maintenance", auth(func(w http.ResponseWriter, r *http.Request, body []byte, node string) {
		var req MaintenanceRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a.Maintenance(req.On)
		w.WriteHeader(http.StatusNoContent)
	}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// PeerClient calls other nodes' peer APIs.
type PeerClient struct {
	Secret []byte
	Node   string // this node's name, sent with every request
	HTTP   *http.Client
}

func (c *PeerClient) do(ctx context.Context, method, url string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("peer API: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	Sign(req, c.Secret, c.Node, body, time.Now())
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("peer API %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("peer API %s: HTTP %d: %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(out); err != nil {
			return fmt.Errorf("peer API %s: %w", url, err)
		}
	}
	return nil
}

// State asks a peer (base such as http://10.99.0.12:7481) for its state.
func (c *PeerClient) State(ctx context.Context, base string) (PeerState, error) {
	var s PeerState
	err := c.do(ctx, http.MethodGet, base+"/peer/v1/state", nil, &s)
	return s, err
}

// GaleraReport asks a peer for its Galera report.
func (c *PeerClient) GaleraReport(ctx context.Context, base string) (galera.Report, error) {
	var r galera.Report
	err := c.do(ctx, http.MethodGet, base+"/peer/v1/galera", nil, &r)
	return r, err
}

// Demote asks a peer to demote and waits for its confirmation.
func (c *PeerClient) Demote(ctx context.Context, base string, from int64) error {
	var a DemoteAnswer
	if err := c.do(ctx, http.MethodPost, base+"/peer/v1/demote", DemoteRequest{From: from}, &a); err != nil {
		return err
	}
	if !a.Demoted {
		return errors.New("peer did not demote: " + a.Error)
	}
	return nil
}

// Switchover tells a peer to hand MASTER to node to until until.
func (c *PeerClient) Switchover(ctx context.Context, base, to string, until time.Time) error {
	return c.do(ctx, http.MethodPost, base+"/peer/v1/switchover", SwitchoverRequest{To: to, Until: until}, nil)
}

// Maintenance switches a peer's maintenance mode.
func (c *PeerClient) Maintenance(ctx context.Context, base string, on bool) error {
	return c.do(ctx, http.MethodPost, base+"/peer/v1/maintenance", MaintenanceRequest{On: on}, nil)
}
