package api

import (
	"context"
	"net/http"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// NodeStatus is the public /status document: read-only, with no secrets, for operators, `mailcow-ha status`,
// Uptime Kuma and load balancers.
type NodeStatus struct {
	Node     string `json:"node"`
	Cluster  string `json:"cluster"`
	ServerID int64  `json:"server_id"`
	Version  string `json:"version"` // the agent's build (buildinfo.Short): mixed during a rolling upgrade
	// Mailcow is the mailcow release the node's tree holds ("" when it records none): mixed during mailcow update,
	// or after a node was rebuilt from an image with an older release.
	Mailcow     string       `json:"mailcow,omitempty"`
	Started     time.Time    `json:"started"` // when this agent started
	Role        string       `json:"role"`    // booting, backup, fault, promoting, master, demoting, stopped
	VRRP        string       `json:"vrrp"`    // keepalived's last state
	Verdict     bool         `json:"check_ok"`
	Reason      string       `json:"check_reason"`
	Galera      GaleraStatus `json:"galera"`
	Stack       StackStatus  `json:"stack"`
	Volume      VolumeStatus `json:"volume"`
	FloatingIP  FIPStatus    `json:"floating_ip"`
	Breaker     Breaker      `json:"breaker"`
	Maintenance bool         `json:"maintenance"`
	// LoopAge is how long ago the agent's reconcile loop last ran: a stuck agent is not healthy.
	LoopAge     Duration     `json:"loop_age"`
	Transitions []Transition `json:"transitions"` // the last ones, newest first
	// Backup is what the agent knows of the backups (docs/backup.md): this node's last run, and on the MASTER
	// the repository's newest copies. Absent while backup.repository is not set.
	Backup *BackupStatus `json:"backup,omitempty"`
}

// BackupStatus is the backups as a node sees them.
type BackupStatus struct {
	// LastRun is this node's last copy (mailcow-ha backup run, volume or database); nil when it took none since the
	// state directory was made.
	LastRun *BackupRun `json:"last_run,omitempty"`
	// Checked is when the MASTER last read the repository; zero on the other nodes, which do not.
	Checked  time.Time  `json:"checked,omitempty"`
	Volume   BackupCopy `json:"volume"`
	Database BackupCopy `json:"database"`
	MaxAge   Duration   `json:"max_age"`
	// Problem says why the backups are stale ("" when both copies are younger than MaxAge, or not checked here).
	Problem string `json:"problem,omitempty"`
}

// BackupCopy is the newest copy of one kind in the repository.
type BackupCopy struct {
	Time     time.Time `json:"time,omitempty"`
	Snapshot string    `json:"snapshot,omitempty"`
	Node     string    `json:"node,omitempty"`
}

// BackupRun is one copy a node took, as the backup command records it in the agent's state directory.
type BackupRun struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"` // volume or database
	OK       bool      `json:"ok"`
	Snapshot string    `json:"snapshot,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// GaleraStatus is the local member's state.
type GaleraStatus struct {
	OK     bool   `json:"ok"` // Primary and Synced
	Detail string `json:"detail"`
}

// StackStatus is the mailcow stack's health on this node.
type StackStatus struct {
	Healthy  bool            `json:"healthy"` // every critical service up (only meaningful on the MASTER)
	Failed   string          `json:"failed,omitempty"`
	Services map[string]bool `json:"services,omitempty"`
}

// VolumeStatus says whether the shared Volume is mounted here, and the owner the API last named.
type VolumeStatus struct {
	ID      int64  `json:"id"`
	Mounted bool   `json:"mounted"`
	Owner   string `json:"owner,omitempty"` // last known from the API; "" when not read yet
}

// FIPStatus says whether the Floating IP is on this node's interface, and where the API last said it routes.
type FIPStatus struct {
	ID          int64  `json:"id"`
	Address     string `json:"address,omitempty"`
	OnInterface bool   `json:"on_interface"`
	Owner       string `json:"owner,omitempty"`
}

// Breaker is the circuit breaker's state.
type Breaker struct {
	Tripped   bool     `json:"tripped"`
	Takeovers int      `json:"takeovers"`
	Max       int      `json:"max"`
	Window    Duration `json:"window"`
}

// Transition is one takeover or demotion with its steps' times.
type Transition struct {
	ID       int       `json:"id"`
	Kind     string    `json:"kind"` // takeover, demotion, boot
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Result   string    `json:"result,omitempty"` // the role it ended in, or failed
	Phases   []Phase   `json:"phases"`
}

// Phase is one step of a transition.
type Phase struct {
	Name  string   `json:"name"`
	Start Duration `json:"start"` // from the transition's start
	Took  Duration `json:"took"`
	Err   string   `json:"error,omitempty"`
}

// Duration marshals as a Go duration string ("1.5s"); it is the configuration's type (one copy of the code).
type Duration = config.Duration

// StaleLoop is how old the reconcile loop's last run may be before the node counts as unhealthy.
const StaleLoop = 15 * time.Second

// Healthy is /health: a member in the Primary component and Synced, with its agent loop alive.
func (s NodeStatus) Healthy() (bool, string) {
	switch {
	case time.Duration(s.LoopAge) > StaleLoop:
		return false, "agent loop stalled for " + time.Duration(s.LoopAge).Round(time.Second).String()
	case !s.Galera.OK:
		return false, "galera: " + s.Galera.Detail
	}
	return true, "ok"
}

// Primary is /primary: the MASTER with everything up.
func (s NodeStatus) Primary() (bool, string) {
	if ok, why := s.Healthy(); !ok {
		return false, why
	}
	switch {
	case s.Role != "master":
		return false, "role " + s.Role
	case !s.Stack.Healthy:
		return false, "stack: " + s.Stack.Failed
	case !s.Volume.Mounted:
		return false, "volume not mounted"
	case !s.FloatingIP.OnInterface:
		return false, "floating ip not on the interface"
	}
	return true, "ok"
}

// Replica is /replica: a healthy BACKUP, ready to take over.
func (s NodeStatus) Replica() (bool, string) {
	if ok, why := s.Healthy(); !ok {
		return false, why
	}
	if s.Role != "backup" {
		return false, "role " + s.Role
	}
	if !s.Verdict {
		return false, "check failing: " + s.Reason
	}
	return true, "ok"
}

// PublicHandler serves the read-only endpoints: /health, /primary, /replica (200 or 503 with a one-line JSON
// reason), /status (the NodeStatus) and, when metrics is not nil, /metrics. Only GET and HEAD, and OPTIONS on the
// three probes: it is HAProxy's default health-check method (option httpchk), and it answers with the same status
// code as GET.
func PublicHandler(status func(ctx context.Context) NodeStatus, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	probe := func(check func(NodeStatus) (bool, string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			s := status(r.Context())
			ok, why := check(s)
			code := http.StatusOK
			if !ok {
				code = http.StatusServiceUnavailable
			}
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, code, map[string]any{"ok": ok, "role": s.Role, "node": s.Node, "reason": why})
		}
	}
	for path, check := range map[string]func(NodeStatus) (bool, string){
		"/health": NodeStatus.Healthy, "/primary": NodeStatus.Primary, "/replica": NodeStatus.Replica} {
		mux.HandleFunc("GET "+path, probe(check))
		mux.HandleFunc("OPTIONS "+path, probe(check))
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, status(r.Context()))
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}
