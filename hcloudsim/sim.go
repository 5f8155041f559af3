// Package hcloudsim simulates the parts of the public Hetzner Cloud API v1 and of the metadata service that
// mailcow-ha uses: servers, Floating IPs, Volumes, actions, images and networks, with the API's semantics:
// actions that run for a while, locked resources, error codes, a rate limit with its headers, and Bearer-token
// authentication. Backend hooks let the lab and the VM tests make the simulated world real (route a /32, hand
// over a block device, kill a node); fault injection makes it fail on purpose.
package hcloudsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// Action commands, as the API names them.
const (
	CmdAssignFloatingIP   = "assign_floating_ip"
	CmdUnassignFloatingIP = "unassign_floating_ip"
	CmdAttachVolume       = "attach_volume"
	CmdDetachVolume       = "detach_volume"
	CmdStopServer         = "stop_server"     // poweroff
	CmdStartServer        = "start_server"    // poweron
	CmdShutdownServer     = "shutdown_server" // ACPI shutdown
	CmdResetServer        = "reset_server"
	CmdRebuildServer      = "rebuild_server" // a new root disk from an image
	CmdChangeDNSPtr       = "change_dns_ptr" // a Floating IP's reverse DNS
	CmdCreateServer       = "create_server"
	CmdDeleteServer       = "delete_server"
	CmdCreateVolume       = "create_volume"
)

// Latencies says how long each action command runs before it succeeds.
type Latencies map[string]time.Duration

// DefaultLatencies are the action durations of the simulated API. Sources: field reports of Hetzner users put a
// Floating IP assignment and a Volume attach or detach at a few seconds each (keepalived/Floating IP failover
// write-ups and hcloud-csi issue threads report 2–5 s), and a hard poweroff at about one to two seconds; an ACPI
// shutdown waits for the guest. The values are round numbers inside those ranges; measure against the real API
// before trusting them for capacity planning.
func DefaultLatencies() Latencies {
	return Latencies{
		CmdAssignFloatingIP:   3 * time.Second,
		CmdUnassignFloatingIP: 2 * time.Second,
		CmdAttachVolume:       3 * time.Second,
		CmdDetachVolume:       3 * time.Second,
		CmdStopServer:         2 * time.Second,
		CmdStartServer:        5 * time.Second,
		CmdShutdownServer:     10 * time.Second,
		CmdResetServer:        3 * time.Second,
		CmdRebuildServer:      10 * time.Second,
		CmdChangeDNSPtr:       1 * time.Second,
		CmdCreateServer:       10 * time.Second,
		CmdDeleteServer:       3 * time.Second,
		CmdCreateVolume:       3 * time.Second,
	}
}

// Scale returns the latencies multiplied by f, for fast tests.
func (l Latencies) Scale(f float64) Latencies {
	out := Latencies{}
	for k, v := range l {
		out[k] = time.Duration(float64(v) * f)
	}
	return out
}

// Backend makes the simulated world real. The simulator calls it when an action completes, before the API shows
// the new state; an error fails the action (code action_failed). Calls come from the action's goroutine, one at a
// time per resource, never under the simulator's lock.
type Backend interface {
	// FloatingIPRouted: ip now routes to server (0: to none).
	FloatingIPRouted(ip FloatingIP, server int64) error
	// VolumeAttached: v is now attached to server.
	VolumeAttached(v Volume, server int64) error
	// VolumeDetached: v is no longer attached to server.
	VolumeDetached(v Volume, server int64) error
	// ServerPower: the server was powered on (on) or off.
	ServerPower(s Server, on bool) error
}

// Rebuilder is a Backend that can also give a server a new root disk (POST /servers/{id}/actions/rebuild): the
// server is powered off, its disk is written anew from the image, and it is powered on. The Volumes attached to it
// stay attached. A Backend without it sees a rebuild as a power cycle.
type Rebuilder interface {
	ServerRebuilt(s Server, image string) error
}

// NopBackend does nothing.
type NopBackend struct{}

func (NopBackend) FloatingIPRouted(FloatingIP, int64) error { return nil }
func (NopBackend) VolumeAttached(Volume, int64) error       { return nil }
func (NopBackend) VolumeDetached(Volume, int64) error       { return nil }
func (NopBackend) ServerPower(Server, bool) error           { return nil }

// Faults are failures injected on purpose, through SetFaults or the admin endpoint.
type Faults struct {
	Down         bool          `json:"down"`          // the API drops every connection
	Fail5xx      int           `json:"fail_5xx"`      // the next N API requests fail with FailStatus
	FailStatus   int           `json:"fail_status"`   // 500, 502, 503 or 504; default 503
	ExtraLatency time.Duration `json:"extra_latency"` // added to every API request (nanoseconds in JSON)
	Stuck        []string      `json:"stuck"`         // action commands that keep running until this is cleared
	NoPoweroff   []int64       `json:"no_poweroff"`   // servers whose poweroff action fails
	// Requests to these routes ("POST /v1/servers", as Requests counts them) are refused with 403
	// resource_limit_exceeded, as a project at its server limit refuses one more.
	AtLimit []string `json:"at_limit"`
}

// Options configures a simulator.
type Options struct {
	Token     string    // the project's API token; default DemoToken
	State     State     // the project; default DemoState()
	Latencies Latencies // default DefaultLatencies()
	RateLimit int       // requests per hour; default 3600, as at Hetzner
	Backend   Backend   // default NopBackend
	Logger    *slog.Logger
}

// Sim is a simulated Hetzner Cloud project. It is safe for concurrent use.
type Sim struct {
	// tokens are the project's API tokens (under mu): the first from Options.Token; AddToken and RevokeToken
	// rotate them, as the console does.
	tokens  []string
	backend Backend
	log     *slog.Logger

	mu        sync.Mutex
	st        State
	latencies Latencies
	faults    Faults
	faultsCh  chan struct{} // closed and replaced when faults change
	actions   map[int64]*action
	nextID    int64
	locks     map[resRef]int64 // resource -> running action id
	rate      bucket
	requests  map[string]int // "METHOD /route" -> count
	total     int
	closed    chan struct{}
	wg        sync.WaitGroup
}

// New returns a simulator with the given options.
func New(o Options) (*Sim, error) {
	if o.Token == "" {
		o.Token = DemoToken
	}
	if o.State.empty() {
		o.State = DemoState()
	}
	if err := o.State.check(); err != nil {
		return nil, err
	}
	lat := DefaultLatencies()
	for k, v := range o.Latencies {
		lat[k] = v
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 3600
	}
	if o.Backend == nil {
		o.Backend = NopBackend{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sim{
		tokens: []string{o.Token}, backend: o.Backend, log: o.Logger,
		st: o.State, latencies: lat,
		faultsCh: make(chan struct{}),
		actions:  map[int64]*action{}, nextID: 90000001,
		locks:    map[resRef]int64{},
		rate:     newBucket(o.RateLimit, time.Now()),
		requests: map[string]int{},
		closed:   make(chan struct{}),
	}, nil
}

// Close stops the running actions' goroutines; the actions stay running.
func (s *Sim) Close() {
	s.mu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// State returns a copy of the project as it is now.
func (s *Sim) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Servers = slices.Clone(st.Servers)
	st.FloatingIPs = slices.Clone(st.FloatingIPs)
	st.Volumes = slices.Clone(st.Volumes)
	st.Images = slices.Clone(st.Images)
	st.Networks = slices.Clone(st.Networks)
	st.PlacementGroups = slices.Clone(st.PlacementGroups)
	st.Firewalls = slices.Clone(st.Firewalls)
	st.SSHKeys = slices.Clone(st.SSHKeys)
	return st
}

// SetFaults replaces the injected faults. Clearing a stuck command lets its actions finish.
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.FailStatus == 0 {
		f.FailStatus = http.StatusServiceUnavailable
	}
	s.faults = f
	close(s.faultsCh)
	s.faultsCh = make(chan struct{})
}

// Faults returns the injected faults.
func (s *Sim) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetLatency changes how long actions of one command run from now on.
func (s *Sim) SetLatency(cmd string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latencies[cmd] = d
}

// SetRateLimit resets the rate limit to limit requests per hour with remaining left now.
func (s *Sim) SetRateLimit(limit, remaining int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rate = newBucket(limit, time.Now())
	s.rate.tokens = float64(remaining)
}

// Requests returns how many API requests were answered, in all and by "METHOD route".
func (s *Sim) Requests() (total int, byRoute map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		m[k] = v
	}
	return s.total, m
}

// ResetRequests sets the request counters to zero.
func (s *Sim) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = map[string]int{}
	s.total = 0
}

// bucket is the API's rate limit: a bucket of limit requests that refills at limit per hour.
type bucket struct {
	limit  int
	tokens float64
	at     time.Time
}

func newBucket(limit int, now time.Time) bucket {
	return bucket{limit: limit, tokens: float64(limit), at: now}
}

func (b *bucket) refill(now time.Time) {
	rate := float64(b.limit) / 3600
	b.tokens = min(float64(b.limit), b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
}

// take spends one request and reports whether one was left.
func (b *bucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// reset is when the bucket will be full again.
func (b *bucket) reset() time.Time {
	rate := float64(b.limit) / 3600
	return b.at.Add(time.Duration((float64(b.limit) - b.tokens) / rate * float64(time.Second)))
}

func correlationID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// resRef names a resource, as in an action's resources.
type resRef struct {
	ID   int64  `json:"id"`
	Type string `json:"type"` // server, floating_ip, volume
}

func (r resRef) String() string { return fmt.Sprintf("%s %d", r.Type, r.ID) }

// AddToken makes token another valid API token of the project (a new token made in the console).
func (s *Sim) AddToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = append(s.tokens, token)
}

// RevokeToken deletes an API token: requests with it are refused (401) from now on.
func (s *Sim) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = slices.DeleteFunc(s.tokens, func(t string) bool { return t == token })
}

func (s *Sim) validToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := false
	for _, t := range s.tokens {
		ok = subtle.ConstantTimeCompare([]byte(tok), []byte(t)) == 1 || ok
	}
	return ok
}

// Do serves one request in this process with a valid token of the project, as its owner acts from the console:
// the lab's power buttons and the tests' set-up use it. It returns the status and the body.
func (s *Sim) Do(method, path, body string) (int, string) {
	s.mu.Lock()
	tok := ""
	if len(s.tokens) > 0 {
		tok = s.tokens[0]
	}
	s.mu.Unlock()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}
