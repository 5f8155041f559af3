// Package failover is the agent's brain: a pure state machine. Step takes the state, one observation and the
// time, and returns the new state and the actions to take; it does no I/O, reads no clock and starts no
// goroutine. The executor applies the actions and reports their outcome back as observations. Verdict says what
// `mailcow-ha check` answers keepalived.
package failover

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// Params are the configuration values the brain needs (from agent/config, copied so that this package imports
// nothing that does I/O).
type Params struct {
	Self          int64            // this node's Hetzner server id
	Name          string           // this node's name
	Peers         map[int64]string // the other members' server ids and names
	CheckGrace    time.Duration    // how long a critical service may be down on the MASTER
	QuorumGrace   time.Duration    // how long the MASTER may stay out of the Primary component
	FenceTimeout  time.Duration    // how long a peer has to confirm its demotion before poweroff
	BreakerMax    int              // takeovers allowed within BreakerWindow
	BreakerWindow time.Duration
	APIBackoff    time.Duration // how long to refuse MASTER after the API failed us; default 30s
	// Sequential moves the Volume, then the Floating IP, one after the other: the original scripts' order, kept
	// only so that the benchmark can compare (failover.sequential).
	Sequential bool
	// PowerOnFenced: once a takeover that powered a peer off has succeeded, power that peer on again, so that the
	// cluster gets its member back (failover.power_on_fenced).
	PowerOnFenced bool
}

// NodeName names a server of the cluster: this node, a peer, or "server ID" for one outside the cluster.
func (p Params) NodeName(server int64) string {
	if n, ok := p.Peers[server]; ok {
		return n
	}
	if server == p.Self {
		return p.Name
	}
	return fmt.Sprintf("server %d", server)
}

// Role is what the node is doing.
type Role string

// Roles.
const (
	RoleBooting   Role = "booting"   // cleanup pass at start: stop, unmount, remove the address
	RoleBackup    Role = "backup"    // standing by
	RoleFault     Role = "fault"     // refusing to be MASTER
	RolePromoting Role = "promoting" // taking over
	RoleMaster    Role = "master"    // serving
	RoleDemoting  Role = "demoting"  // giving up
	RoleStopped   Role = "stopped"   // the agent stops
)

// VRRPState is keepalived's state as it reports it on its notify fifo.
type VRRPState string

// VRRP states.
const (
	VRRPMaster VRRPState = "MASTER"
	VRRPBackup VRRPState = "BACKUP"
	VRRPFault  VRRPState = "FAULT"
	VRRPStop   VRRPState = "STOP"
)

// Phase is the step a transition is at. A takeover goes owners → fence_ask (→ fence_poweroff) → move → mount →
// start; a demotion's phases are its actions (stop_stack, unmount, remove_address).
type Phase string

// Phases of a takeover.
const (
	PhaseNone          Phase = ""
	PhaseOwners        Phase = "owners"
	PhaseFenceAsk      Phase = "fence_ask"
	PhaseFencePowerOff Phase = "fence_poweroff"
	PhaseMove          Phase = "move"
	PhaseMount         Phase = "mount"
	PhaseStart         Phase = "start"
)

// Branch is where one of the move's two parallel branches is: the Volume's (detach → attach) and the Floating
// IP's (queued → assign → address); "" when it is done.
type Branch string

// Branches.
const (
	BranchDone    Branch = ""
	BranchDetach  Branch = "detach"
	BranchAttach  Branch = "attach"
	BranchQueued  Branch = "queued" // the original order: the Floating IP after the Volume
	BranchAssign  Branch = "assign"
	BranchAddress Branch = "address"
	BranchWarm    Branch = "warm" // the warm start beside the move (State.WarmPhase)
)

// Severity is how urgent a reported event is.
type Severity string

// Severities.
const (
	SevInfo     Severity = "info"
	SevWarning  Severity = "warning"
	SevCritical Severity = "critical"
)

// ErrKind mirrors the hcloud adapter's error kinds without importing it.
type ErrKind string

// Error kinds.
const (
	ErrNone      ErrKind = ""
	ErrRetryFast ErrKind = "retry_fast"
	ErrRetrySlow ErrKind = "retry_slow"
	ErrFatal     ErrKind = "fatal"
)

// Observation is what the executor, keepalived, the probes and the operator tell the brain.
type Observation interface{ obs() }

// Boot starts the agent: clean up, then stand by as BACKUP.
type Boot struct{}

// Tick is the reconcile loop's heartbeat.
type Tick struct{}

// VRRP is a keepalived state transition from the notify fifo.
type VRRP struct{ State VRRPState }

// Galera is the local Galera node's state.
type Galera struct {
	Primary, Synced bool
	Detail          string // wsrep_cluster_status / wsrep_local_state_comment, for reports
	// Unknown: the probe got no answer (a timeout, no socket), which is not a "no". A MASTER (or a node in its
	// takeover) keeps its last answer for up to quorum_grace; every other role takes it as not Synced at once.
	Unknown bool
}

// Stack is the mailcow stack's health: Failed names the first failed critical service, "" when healthy.
type Stack struct{ Failed string }

// Owners is the answer to ReadOwners: which servers the Floating IP and the Volume belong to (0: none).
type Owners struct {
	TID        int
	FloatingIP int64
	Volume     int64
	Err        string
	Kind       ErrKind
}

// PeerAnswer is the answer to AskDemote: the peer confirmed its demotion, refused, or did not answer.
type PeerAnswer struct {
	TID     int
	Server  int64
	Demoted bool
	Err     string
}

// Done reports the outcome of one action of a transition.
type Done struct {
	TID    int
	Action ActionKind // the action's Kind
	Err    string
	Kind   ErrKind
}

// Maintenance pauses (On) or resumes automatic actions.
type Maintenance struct{ On bool }

// Switchover hands MASTER to node To: every other node fails its check until Until. An empty To ends the hold
// (the target, once MASTER, tells every node).
type Switchover struct {
	To    string
	Until time.Time
}

// DemoteRequest is a peer asking this node to demote (fencing step one).
type DemoteRequest struct{ From int64 }

// Stop is the agent shutting down: demote gracefully.
type Stop struct{}

// BreakerReset is an operator clearing the breaker: the takeover history (and the record of fenced nodes powered
// back on) is forgotten, and a tripped breaker lets
// the node take MASTER again (mailcow-ha breaker reset).
type BreakerReset struct{}

// Observed is the reconcile loop's look at the world: is the Floating IP on the interface, is the Volume
// mounted, and (when FIPKnown, read from the API now and then) where does the Floating IP route.
// TID is the transition current when the look started: a look that began before a transition is stale.
type Observed struct {
	TID      int
	Address  bool
	Mounted  bool
	FIPOwner int64
	FIPKnown bool
	// StackUp: mailcow's containers run here (looked at while the Volume is not mounted: a BACKUP's stray stack,
	// such as one that someone started by hand with update.sh).
	StackUp bool
}

func (Boot) obs()          {}
func (Tick) obs()          {}
func (VRRP) obs()          {}
func (Galera) obs()        {}
func (Stack) obs()         {}
func (Owners) obs()        {}
func (PeerAnswer) obs()    {}
func (Done) obs()          {}
func (Maintenance) obs()   {}
func (Switchover) obs()    {}
func (DemoteRequest) obs() {}
func (Stop) obs()          {}
func (BreakerReset) obs()  {}
func (Observed) obs()      {}

// ActionKind is what an action does.
type ActionKind string

// Action kinds. The executor implements each through a small interface.
const (
	ActReadOwners   ActionKind = "read_owners"   // read the Floating IP's and the Volume's owners from the API
	ActAskDemote    ActionKind = "ask_demote"    // ask a peer's agent to demote and confirm (peer API)
	ActPowerOff     ActionKind = "poweroff"      // fence a peer through the API and wait for off
	ActPowerOn      ActionKind = "poweron"       // power a fenced peer on again after the takeover succeeded
	ActDetachVolume ActionKind = "detach_volume" // detach the Volume from Server
	ActAttachVolume ActionKind = "attach_volume" // attach the Volume here and wait for the device
	ActAssignFIP    ActionKind = "assign_fip"    // assign the Floating IP here
	ActAddAddress   ActionKind = "add_address"   // add the Floating IP to the public interface, send gratuitous ARP / NA
	ActMount        ActionKind = "mount"         // fsck if needed, mount, check the marker
	ActWarmStack    ActionKind = "warm_stack"    // start the containers that need nothing of the Volume, beside the move
	ActStartStack   ActionKind = "start_stack"   // start mailcow, wait for the critical services
	ActStopStack    ActionKind = "stop_stack"    // stop mailcow, disable its restart policy
	ActUnmount      ActionKind = "unmount"       //
	ActRemoveAddr   ActionKind = "remove_address"
	ActConfirm      ActionKind = "confirm_demote" // answer a peer's demote request
	ActCancel       ActionKind = "cancel"         // cancel the running actions of transition TID
	ActReport       ActionKind = "report"         // journal + webhook event
)

// Action is one thing for the executor to do, tagged with its transition id.
type Action struct {
	Kind     ActionKind
	TID      int
	Server   int64      // poweroff, ask_demote, detach_volume, confirm_demote
	Event    event.Name // report: the event name
	Severity Severity   // report: info, warning, critical
	Detail   string     // report: what happened
}

// String renders the action for transcripts and logs.
func (a Action) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s t%d", a.Kind, a.TID)
	if a.Server != 0 {
		fmt.Fprintf(&b, " server=%d", a.Server)
	}
	if a.Event != "" {
		fmt.Fprintf(&b, " %s %s", a.Severity, a.Event)
	}
	if a.Detail != "" {
		fmt.Fprintf(&b, " %q", a.Detail)
	}
	return b.String()
}
