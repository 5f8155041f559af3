package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
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
	// Mounted: the shared Volume is mounted here. Started and Version: when this agent started and its build (a
	// rolling upgrade tells a rebuilt node's new agent by them). Zero from an agent older than these fields.
	Mounted bool      `json:"mounted"`
	Started time.Time `json:"started"`
	Version string    `json:"version"`
	// ConfigRevision is the cluster configuration's revision this node runs (config apply), and ConfigPending
	// says that the agent must restart to run all of it.
	ConfigRevision int64 `json:"config_revision"`
	ConfigPending  bool  `json:"config_pending"`
	// Mailcow is the mailcow release this node's tree holds (mailcow update), such as "2026-07a (489db905122d)".
	Mailcow string `json:"mailcow,omitempty"`
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

// Peer is another node as the peer API reaches it: its name (which requests are bound to, and which signs its
// answers) and its base URL, such as http://10.99.0.12:7481.
type Peer struct {
	Name string
	URL  string
}

// authWrap turns a handler of a verified request (its body and the asking node) into a handler of the peer API.
type authWrap func(h func(w http.ResponseWriter, r *http.Request, body []byte, node string)) http.HandlerFunc

// PeerHandler serves the peer API under /peer/v1/. Every answer to an accepted request is signed (see Sign). An
// agent that is a ConfigAgent serves the cluster's configuration too, a ReleaseAgent the mailcow release routes, and a MigrateAgent the migration's switch.
func PeerHandler(v *Verifier, a PeerAgent, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	var auth authWrap = func(h func(w http.ResponseWriter, r *http.Request, body []byte, node string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			req, err := v.Verify(r)
			if err != nil {
				if ok, skipped := v.refusalLog(time.Now()); ok {
					log.Warn("peer API: refused request", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err,
						"refused_unlogged_since_last", skipped)
				}
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			ans := &answer{header: w.Header(), status: http.StatusOK}
			h(ans, r, req.Body, req.From)
			w.Header().Set(HeaderAnswer, answerSignature(v.Keys.Signing(), v.Self, req.From, req.Nonce, ans.status, ans.body.Bytes()))
			w.WriteHeader(ans.status)
			w.Write(ans.body.Bytes())
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
	if ca, ok := a.(ConfigAgent); ok {
		configRoutes(mux, v.Keys, ca, auth)
	}
	if ra, ok := a.(ReleaseAgent); ok {
		releaseRoutes(mux, ra, auth)
	}
	if sa, ok := a.(SecretAgent); ok {
		secretRoutes(mux, v.Keys, sa, auth)
	}
	if ma, ok := a.(MigrateAgent); ok {
		migrateRoutes(mux, ma, auth)
	}
	return mux
}

// answer collects a handler's answer, so that its signature can cover the status and the whole body.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *answer) Header() http.Header         { return a.header }
func (a *answer) WriteHeader(status int)      { a.status = status }
func (a *answer) Write(b []byte) (int, error) { return a.body.Write(b) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// PeerClient calls other nodes' peer APIs. It accepts an answer only when the node it asked signed it for this
// request.
type PeerClient struct {
	Keys *Keyring // signs the requests; an answer must be signed with one of its secrets
	Node string   // this node's name, sent with every request
	// HTTP is the client; nil: one whose connections must be made within DialTimeout.
	HTTP *http.Client
	// DialTimeout bounds the TCP connection to a peer (0: PeerDialTimeout), apart from the request's own deadline.
	DialTimeout time.Duration

	once    sync.Once
	defHTTP *http.Client
}

// PeerDialTimeout is how long a peer may take to accept a connection. A peer whose kernel does not answer a SYN
// within it is down (a crashed or powered-off server: packets to it vanish), and a MASTER that asks it to
// demote powers it off instead of waiting out failover.fence_timeout. On the private network a round trip takes
// under a millisecond; ten seconds leave room for three lost SYNs (sent after 0, 1, 3 and 7 s). Go's default,
// 30 s, cost every failover after a crash 30 s before the fence (the VM tier, 2026-12-01: "dial tcp
// 10.99.0.11:7481: i/o timeout" 30.5 s after the MASTER was killed). A peer that accepted the connection still
// gets the request's whole deadline to demote.
const PeerDialTimeout = 10 * time.Second

func (c *PeerClient) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	c.once.Do(func() {
		d := c.DialTimeout
		if d <= 0 {
			d = PeerDialTimeout
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the private network: never through a proxy from the environment
		// A connection per request: a kept-alive connection to a peer that has since died takes a request without a
		// dial, and the request then waits for the whole fence_timeout instead of failing after DialTimeout (the VM
		// tier, 2026-12-01: the new MASTER had talked to the old one 11 s before it was killed, and its demotion
		// request hung, silent, past the test's 5-minute limit). Peer requests are few; a handshake on the private
		// network costs a millisecond.
		t.DisableKeepAlives = true
		t.DialContext = (&net.Dialer{Timeout: d, KeepAlive: 30 * time.Second}).DialContext
		c.defHTTP = &http.Client{Transport: t}
	})
	return c.defHTTP
}

func (c *PeerClient) do(ctx context.Context, method string, to Peer, path string, in, out any) error {
	url := to.URL + path
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
	nonce := Sign(req, c.Keys.Signing(), c.Node, to.Name, body, time.Now())
	resp, err := c.client().Do(req)
	if err != nil {
		return fmt.Errorf("peer API %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("peer API %s: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		// Failures count as failures, signed or not: a forged one can only make this node take the safe way (power
		// the peer off rather than trust its word).
		return fmt.Errorf("peer API %s: HTTP %d: %s", url, resp.StatusCode, bytes.TrimSpace(b[:min(len(b), 512)]))
	}
	if len(b) > maxBody {
		return fmt.Errorf("peer API %s: answer over %d bytes", url, maxBody)
	}
	if err := VerifyAnswer(c.Keys.Accepted(), to.Name, c.Node, nonce, resp.StatusCode, resp.Header, b); err != nil {
		return fmt.Errorf("peer API %s: %w", url, err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("peer API %s: %w", url, err)
		}
	}
	return nil
}

// State asks a peer for its state.
func (c *PeerClient) State(ctx context.Context, to Peer) (PeerState, error) {
	var s PeerState
	err := c.do(ctx, http.MethodGet, to, "/peer/v1/state", nil, &s)
	return s, err
}

// GaleraReport asks a peer for its Galera report.
func (c *PeerClient) GaleraReport(ctx context.Context, to Peer) (galera.Report, error) {
	var r galera.Report
	err := c.do(ctx, http.MethodGet, to, "/peer/v1/galera", nil, &r)
	return r, err
}

// Demote asks a peer to demote and waits for its confirmation.
func (c *PeerClient) Demote(ctx context.Context, to Peer, from int64) error {
	var a DemoteAnswer
	if err := c.do(ctx, http.MethodPost, to, "/peer/v1/demote", DemoteRequest{From: from}, &a); err != nil {
		return err
	}
	if !a.Demoted {
		return errors.New("peer did not demote: " + a.Error)
	}
	return nil
}

// Switchover tells a peer to hand MASTER to node target until until.
func (c *PeerClient) Switchover(ctx context.Context, to Peer, target string, until time.Time) error {
	return c.do(ctx, http.MethodPost, to, "/peer/v1/switchover", SwitchoverRequest{To: target, Until: until}, nil)
}

// Maintenance switches a peer's maintenance mode.
func (c *PeerClient) Maintenance(ctx context.Context, to Peer, on bool) error {
	return c.do(ctx, http.MethodPost, to, "/peer/v1/maintenance", MaintenanceRequest{On: on}, nil)
}
