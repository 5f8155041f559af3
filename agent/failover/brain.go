package failover

import (
	"fmt"
	"slices"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// State is everything the brain remembers. It is a value: Step never changes the State it is given.
type State struct {
	Role  Role
	VRRP  VRRPState // keepalived's last reported state
	TID   int       // the current transition's id
	Phase Phase     // the step of the current transition
	// Retry: the demotion's current step failed and is issued again at the next tick.
	Retry bool
	// Takeover in progress.
	Old, VolOwner, FIPOwner int64     // servers found by ReadOwners
	VolPhase, FIPPhase      Branch    // the two parallel branches of the move; "" when done
	FenceDeadline           time.Time //
	Started                 time.Time // when the transition started
	// Demotion in progress.
	Reason    string  // why the current transition started
	After     Role    // the role to settle in when the demotion is done
	ConfirmTo []int64 // the peers to confirm the demotion to, in the order they asked
	// Health.
	GaleraOK       bool
	GaleraDetail   string
	GaleraBadSince time.Time
	// GaleraUnknownSince: since when the probes of a MASTER got no answer (zero: the last one answered).
	GaleraUnknownSince time.Time
	StackFailed        string
	StackBadSince      time.Time
	// Refusals.
	Takeovers   []time.Time // breaker history (persisted by the executor)
	Counted     bool        // the takeover under way is in Takeovers already
	Breaker     bool        // tripped
	RefuseUntil time.Time   // after a failed takeover
	RefuseWhy   string
	YieldUntil  time.Time // after a peer asked us to demote
	Maintenance bool
	// FaultReported: a "fault" event went out and its "fault_cleared" is due.
	FaultReported bool
	SwitchTo      string
	SwitchUntil   time.Time
}

// Initial is the state before Boot.
func Initial() State { return State{Role: RoleBooting, VRRP: VRRPBackup} }

// Step applies one observation at time now and returns the new state and the actions to take, in order.
func Step(p Params, s State, o Observation, now time.Time) (State, []Action) {
	s.Takeovers, s.ConfirmTo = slices.Clone(s.Takeovers), slices.Clone(s.ConfirmTo)
	b := &step{p: p, s: s, now: now}
	b.apply(o)
	return b.s, b.out
}

type step struct {
	p   Params
	s   State
	now time.Time
	out []Action
}

func (b *step) act(kind ActionKind, server int64) {
	b.out = append(b.out, Action{Kind: kind, TID: b.s.TID, Server: server})
}

func (b *step) report(severity Severity, name event.Name, format string, args ...any) {
	b.reportPeer(0, severity, name, format, args...)
}

// reportPeer reports an event about a peer (its server id goes into the action).
func (b *step) reportPeer(server int64, severity Severity, name event.Name, format string, args ...any) {
	b.out = append(b.out, Action{Kind: ActReport, TID: b.s.TID, Server: server, Severity: severity, Event: name, Detail: fmt.Sprintf(format, args...)})
}

func (b *step) apply(o Observation) {
	s := &b.s
	switch o := o.(type) {
	case Boot:
		b.startDemote(RoleBooting, RoleBackup, "boot: cleanup before standing by")
	case Tick:
		b.tick()
	case VRRP:
		b.vrrp(o.State)
	case Galera:
		b.galera(o)
	case Stack:
		b.stack(o.Failed)
	case Owners:
		if o.TID == s.TID && s.Role == RolePromoting && s.Phase == PhaseOwners {
			b.owners(o)
		}
	case PeerAnswer:
		if o.TID == s.TID && s.Role == RolePromoting && s.Phase == PhaseFenceAsk && o.Server == s.Old {
			if o.Demoted {
				b.reportPeer(s.Old, SevInfo, event.PeerDemoted, "%s confirmed its demotion", b.name(s.Old))
				b.startMove()
			} else {
				b.powerOff(fmt.Sprintf("%s did not confirm its demotion: %s", b.name(s.Old), o.Err))
			}
		}
	case Done:
		if o.TID == s.TID {
			b.done(o)
		}
	case Maintenance:
		if s.Maintenance != o.On {
			s.Maintenance = o.On
			if o.On {
				b.report(SevWarning, event.MaintenanceOn, "automatic actions paused")
			} else {
				b.report(SevWarning, event.MaintenanceOff, "automatic actions resumed")
			}
			if !o.On {
				// Catch up with what keepalived said meanwhile.
				b.vrrp(s.VRRP)
			}
		}
	case Switchover:
		if o.To == "" {
			if s.SwitchTo != "" {
				b.report(SevInfo, event.SwitchoverDone, "%s is MASTER: the hand-over hold ends", s.SwitchTo)
			}
			s.SwitchTo, s.SwitchUntil = "", time.Time{}
			return
		}
		s.SwitchTo, s.SwitchUntil = o.To, o.Until
		b.report(SevInfo, event.Switchover, "handing MASTER to %s until %s", o.To, o.Until.UTC().Format(time.RFC3339))
	case DemoteRequest:
		b.demoteRequest(o.From)
	case BreakerReset:
		n := len(s.Takeovers)
		s.Takeovers = nil
		if s.Breaker {
			s.Breaker = false
			b.report(SevInfo, event.BreakerReset, "reset by an operator (%d takeovers forgotten)", n)
		} else {
			b.report(SevInfo, event.BreakerReset, "history cleared by an operator (%d takeovers forgotten; it had not tripped)", n)
		}
	case Observed:
		if o.TID == s.TID {
			b.reconcile(o)
		}
	case Stop:
		if s.Role != RoleStopped {
			b.report(SevInfo, event.Stopping, "agent stopping: demoting")
			b.startDemote(RoleDemoting, RoleStopped, "agent stop")
		}
	}
}

func (b *step) name(server int64) string { return b.p.NodeName(server) }

func (b *step) tick() {
	s := &b.s
	if b.retryDemote() {
		return
	}
	if s.Breaker && b.recentTakeovers() < b.p.BreakerMax {
		s.Breaker = false
		b.report(SevInfo, event.BreakerReset, "fewer than %d takeovers within the last %s", b.p.BreakerMax, b.p.BreakerWindow)
	}
	if !s.RefuseUntil.IsZero() && !b.now.Before(s.RefuseUntil) {
		s.RefuseUntil, s.RefuseWhy = time.Time{}, ""
	}
	if s.SwitchTo != "" && !b.now.Before(s.SwitchUntil) {
		s.SwitchTo, s.SwitchUntil = "", time.Time{}
	}
	switch {
	case s.Role == RolePromoting && s.Phase == PhaseFenceAsk && !b.now.Before(s.FenceDeadline):
		b.powerOff(fmt.Sprintf("%s did not confirm its demotion within %s", b.name(s.Old), b.p.FenceTimeout))
	case s.Role == RoleMaster && !s.GaleraBadSince.IsZero() && b.now.Sub(s.GaleraBadSince) >= b.p.QuorumGrace && !s.Maintenance:
		b.report(SevCritical, event.QuorumTimeout, "out of the Primary component for %s: demoting", b.now.Sub(s.GaleraBadSince))
		b.startDemote(RoleDemoting, RoleFault, "quorum lost beyond grace")
	case (s.Role == RoleBackup || s.Role == RoleFault) && s.VRRP == VRRPMaster && s.RefuseUntil.IsZero() && !s.Breaker && !s.Maintenance:
		// keepalived still wants us as MASTER after a refusal that has expired: try again.
		if v, _ := Verdict(b.p, *s, b.now); v {
			b.tryPromote()
		}
	}
}

func (b *step) vrrp(state VRRPState) {
	s := &b.s
	prev := s.VRRP
	s.VRRP = state
	if s.Maintenance {
		if prev != state {
			b.report(SevWarning, event.VRRPIgnored, "keepalived says %s; maintenance: no action", state)
		}
		return
	}
	switch state {
	case VRRPMaster:
		if s.Role == RoleBackup || s.Role == RoleFault {
			b.tryPromote()
		}
	case VRRPBackup, VRRPFault, VRRPStop:
		after := RoleBackup
		if state != VRRPBackup {
			after = RoleFault
		}
		switch s.Role {
		case RoleMaster:
			b.report(SevWarning, event.Demoting, "keepalived says %s", state)
			b.startDemote(RoleDemoting, after, "keepalived "+string(state))
		case RolePromoting:
			b.report(SevCritical, event.FailoverCancelled, "keepalived says %s during the takeover at %s: undoing", state, s.Phase)
			b.act(ActCancel, 0)
			b.startDemote(RoleDemoting, after, "takeover cancelled")
		case RoleFault, RoleBackup:
			// A FAULT for a reason the check knows (quorum, stack, breaker…) was reported with that reason; one
			// while the check passes is keepalived's own (its interface is down, or the check timed out).
			if ok, _ := Verdict(b.p, *s, b.now); ok && s.Role == RoleBackup && after == RoleFault {
				b.report(SevWarning, event.Fault, "keepalived says %s while the check passes: its interface is down or the check timed out", state)
				s.FaultReported = true
			} else if s.FaultReported && after == RoleBackup {
				b.report(SevInfo, event.FaultCleared, "keepalived says BACKUP: standing by again")
				s.FaultReported = false
			}
			s.Role = after
		case RoleDemoting, RoleBooting:
			if s.After != RoleStopped {
				s.After = after
			}
		}
	}
}

// recentTakeovers counts the takeovers within the breaker window.
func (b *step) recentTakeovers() int { return RecentTakeovers(b.p, b.s, b.now) }

// RecentTakeovers counts the takeovers of s within the breaker window before now: what the breaker compares with
// Params.BreakerMax.
func RecentTakeovers(p Params, s State, now time.Time) int {
	n := 0
	for _, t := range s.Takeovers {
		if now.Sub(t) < p.BreakerWindow {
			n++
		}
	}
	return n
}

// tryPromote checks everything that may forbid a takeover, then starts one (docs/design.md §4, steps 1–3).
func (b *step) tryPromote() {
	s := &b.s
	if v, why := Verdict(b.p, *s, b.now); !v {
		s.Role = RoleFault
		b.report(SevWarning, event.TakeoverRefused, "%s", why)
		return
	}
	if b.recentTakeovers() >= b.p.BreakerMax {
		s.Breaker, s.Role = true, RoleFault
		b.report(SevCritical, event.BreakerTripped, "%d takeovers within %s already: refusing until the window passes",
			b.recentTakeovers(), b.p.BreakerWindow)
		return
	}
	s.TID++
	s.Role, s.Phase, s.Started, s.Reason = RolePromoting, PhaseOwners, b.now, "keepalived MASTER"
	s.Old, s.VolOwner, s.FIPOwner, s.VolPhase, s.FIPPhase, s.Counted = 0, 0, 0, "", "", false
	b.report(SevInfo, event.FailoverStarted, "keepalived elected this node MASTER")
	b.act(ActReadOwners, 0)
}

// count puts the takeover under way into the breaker's history, once: when it changed something (a server powered
// off, the Volume or the Floating IP moved) or succeeded. A takeover that ended before that (the API down while
// reading the owners, a start that failed where nothing had to move) is not flapping: counting it locked a node out
// for the breaker's window, across restarts, after two takeovers aborted during an API outage.
func (b *step) count() {
	s := &b.s
	if s.Counted {
		return
	}
	s.Counted = true
	s.Takeovers = append(s.Takeovers, s.Started)
	// Keep only what the window can still count.
	s.Takeovers = slices.DeleteFunc(s.Takeovers, func(t time.Time) bool { return b.now.Sub(t) >= b.p.BreakerWindow })
}

func (b *step) owners(o Owners) {
	s := &b.s
	if o.Err != "" {
		b.abort(o.Kind, "reading the owners", o.Err)
		return
	}
	s.VolOwner, s.FIPOwner = o.Volume, o.FloatingIP
	_, volPeer := b.p.Peers[o.Volume]
	if o.Volume != 0 && o.Volume != b.p.Self && !volPeer {
		b.abort(ErrFatal, "reading the owners", fmt.Sprintf("the Volume is attached to server %d, which is not in this cluster", o.Volume))
		return
	}
	switch _, fipPeer := b.p.Peers[o.FloatingIP]; {
	case o.Volume != 0 && o.Volume != b.p.Self:
		s.Old = o.Volume
	case fipPeer:
		s.Old = o.FloatingIP
	case o.FloatingIP != 0 && o.FloatingIP != b.p.Self:
		b.report(SevWarning, event.UnexpectedOwner, "the Floating IP routes to server %d, which is not in this cluster: taking it", o.FloatingIP)
	}
	if s.Old == 0 {
		b.startMove()
		return
	}
	s.Phase, s.FenceDeadline = PhaseFenceAsk, b.now.Add(b.p.FenceTimeout)
	b.act(ActAskDemote, s.Old)
}

func (b *step) powerOff(why string) {
	s := &b.s
	s.Phase = PhaseFencePowerOff
	b.reportPeer(s.Old, SevWarning, event.Fencing, "%s: powering it off", why)
	b.act(ActPowerOff, s.Old)
}

// startMove moves the Volume and the Floating IP in parallel (docs/design.md §4, step 5); with Params.Sequential, in
// the original scripts' order instead: the Volume first (detach, attach), then the Floating IP.
func (b *step) startMove() {
	s := &b.s
	s.Phase = PhaseMove
	switch s.VolOwner {
	case b.p.Self:
		s.VolPhase = BranchDone
	case 0:
		s.VolPhase = BranchAttach
		b.act(ActAttachVolume, 0)
	default:
		s.VolPhase = BranchDetach
		b.act(ActDetachVolume, s.VolOwner)
	}
	if b.p.Sequential && s.VolPhase != BranchDone {
		s.FIPPhase = BranchQueued
	} else {
		b.startFIP()
	}
	b.afterMove()
}

// startFIP assigns the Floating IP here (unless it already routes here), then adds the address.
func (b *step) startFIP() {
	s := &b.s
	if s.FIPOwner == b.p.Self {
		s.FIPPhase = BranchAddress
		b.act(ActAddAddress, 0)
	} else {
		s.FIPPhase = BranchAssign
		b.act(ActAssignFIP, 0)
	}
}

func (b *step) afterMove() {
	s := &b.s
	if s.Phase == PhaseMove && s.VolPhase == BranchDone && s.FIPPhase == BranchDone {
		s.Phase = PhaseMount
		b.act(ActMount, 0)
	}
}

func (b *step) done(o Done) {
	s := &b.s
	switch s.Role {
	case RolePromoting:
		if o.Err != "" {
			if o.Action == ActPowerOff {
				b.reportPeer(s.Old, SevCritical, event.FenceFailed, "could not power off %s: %s", b.name(s.Old), o.Err)
			}
			b.abort(o.Kind, string(o.Action), o.Err)
			return
		}
		switch o.Action {
		case ActPowerOff, ActDetachVolume, ActAttachVolume, ActAssignFIP, ActStartStack:
			b.count()
		}
		switch {
		case o.Action == ActPowerOff && s.Phase == PhaseFencePowerOff:
			b.reportPeer(s.Old, SevWarning, event.PeerFenced, "%s is powered off", b.name(s.Old))
			b.startMove()
		case o.Action == ActDetachVolume && s.VolPhase == BranchDetach:
			s.VolPhase = BranchAttach
			b.act(ActAttachVolume, 0)
		case o.Action == ActAttachVolume && s.VolPhase == BranchAttach:
			s.VolPhase = BranchDone
			if s.FIPPhase == BranchQueued {
				b.startFIP()
			}
			b.afterMove()
		case o.Action == ActAssignFIP && s.FIPPhase == BranchAssign:
			s.FIPPhase = BranchAddress
			b.act(ActAddAddress, 0)
		case o.Action == ActAddAddress && s.FIPPhase == BranchAddress:
			s.FIPPhase = BranchDone
			b.afterMove()
		case o.Action == ActMount && s.Phase == PhaseMount:
			s.Phase = PhaseStart
			b.act(ActStartStack, 0)
		case o.Action == ActStartStack && s.Phase == PhaseStart:
			s.Role, s.Phase = RoleMaster, ""
			s.StackFailed, s.StackBadSince = "", time.Time{}
			if s.Old != 0 {
				b.reportPeer(s.Old, SevInfo, event.FailoverSucceeded, "took over from %s in %s", b.name(s.Old), b.now.Sub(s.Started).Round(time.Millisecond))
			}
			b.report(SevInfo, event.Promoted, "MASTER after %s", b.now.Sub(s.Started).Round(time.Millisecond))
		}
	case RoleMaster, RoleBackup, RoleFault:
		if o.Err != "" {
			b.report(SevWarning, event.ReconcileFailed, "%s: %s", o.Action, o.Err)
		}
	case RoleDemoting, RoleBooting:
		if Phase(o.Action) != s.Phase || s.Retry {
			return
		}
		if o.Err != "" {
			// Stay in this step; the next tick retries it. Never go on to unmount a Volume that is still in use. A
			// failed unmount (EBUSY: a container that came back, a process with a file open) is retried from the
			// stack's stop, which frees what the unmount alone cannot.
			if o.Action == ActUnmount {
				s.Phase = Phase(ActStopStack)
				b.report(SevCritical, event.DemoteStepFailed, "%s: %s (retrying from %s)", o.Action, o.Err, ActStopStack)
			} else {
				b.report(SevCritical, event.DemoteStepFailed, "%s: %s (retrying)", o.Action, o.Err)
			}
			s.Retry = true
			return
		}
		b.nextDemoteStep()
	}
}

// reconcile repairs what drifted from the role: a MASTER without its address gets it back; a MASTER whose
// Floating IP routes elsewhere, or whose Volume is not mounted, gives up; a node that is not MASTER drops a
// stale address or mount. In maintenance it only reports.
func (b *step) reconcile(o Observed) {
	s := &b.s
	// A drift's remedy: demote (and refuse MASTER for a while), clean up (a demotion that keeps the role), or one
	// action.
	type remedy int
	const (
		demote remedy = iota
		cleanup
		action
	)
	type drift struct {
		sev    Severity
		event  event.Name
		detail string
		fix    remedy
		act    ActionKind
	}
	var d []drift
	switch s.Role {
	case RoleMaster:
		if o.FIPKnown && o.FIPOwner != b.p.Self {
			d = append(d, drift{SevCritical, event.FloatingIPMoved, fmt.Sprintf("the Floating IP routes to %s: demoting", b.name(o.FIPOwner)), demote, ""})
		} else if !o.Mounted {
			d = append(d, drift{SevCritical, event.VolumeUnmounted, "the Volume is not mounted under the running stack: demoting", demote, ""})
		} else if !o.Address {
			d = append(d, drift{SevWarning, event.AddressMissing, "the Floating IP is not on the interface: adding it again", action, ActAddAddress})
		}
	case RoleBackup, RoleFault:
		if o.Mounted {
			d = append(d, drift{SevWarning, event.StaleMount, "the Volume is mounted on a node that is not MASTER: stopping and unmounting", cleanup, ""})
		} else if o.Address {
			d = append(d, drift{SevWarning, event.StaleAddress, "the Floating IP is on the interface of a node that is not MASTER: removing it", action, ActRemoveAddr})
		}
	}
	for _, x := range d {
		if s.Maintenance {
			b.report(x.sev, x.event, "%s (maintenance: no action)", x.detail)
			continue
		}
		b.report(x.sev, x.event, "%s", x.detail)
		switch x.fix {
		case demote:
			// Refuse MASTER for a while, so that keepalived moves it and this node does not fight for it.
			s.RefuseUntil, s.RefuseWhy = b.now.Add(b.apiBackoff()), string(x.event)
			b.startDemote(RoleDemoting, RoleFault, string(x.event))
		case cleanup:
			b.startDemote(RoleDemoting, s.Role, string(x.event))
		case action:
			b.act(x.act, 0)
		}
	}
}

// abort gives up the takeover: report, refuse for a while, and undo what was done.
func (b *step) abort(kind ErrKind, step, err string) {
	s := &b.s
	s.RefuseUntil = b.now.Add(b.apiBackoff())
	s.RefuseWhy = fmt.Sprintf("takeover failed at %s", step)
	name := event.FailoverFailed
	if kind == ErrRetrySlow {
		name = event.APIUnavailable
	}
	b.report(SevCritical, name, "%s: %s (%s); refusing MASTER for %s", step, err, kind, b.apiBackoff())
	b.act(ActCancel, 0)
	b.startDemote(RoleDemoting, RoleFault, "takeover failed")
}

func (b *step) apiBackoff() time.Duration {
	if b.p.APIBackoff > 0 {
		return b.p.APIBackoff
	}
	return 30 * time.Second
}

// demoteSteps is the reverse of the takeover, each step guarded by the executor.
var demoteSteps = []ActionKind{ActStopStack, ActUnmount, ActRemoveAddr}

// startDemote begins the demotion (or the boot cleanup) as a new transition.
func (b *step) startDemote(role, after Role, why string) {
	s := &b.s
	s.TID++
	s.Role, s.After, s.Started = role, after, b.now
	s.Phase, s.Retry = Phase(demoteSteps[0]), false
	s.VolPhase, s.FIPPhase = BranchDone, BranchDone
	s.Reason = why
	b.act(demoteSteps[0], 0)
}

func (b *step) nextDemoteStep() {
	s := &b.s
	i := slices.Index(demoteSteps, ActionKind(s.Phase))
	if i >= 0 && i+1 < len(demoteSteps) {
		s.Phase = Phase(demoteSteps[i+1])
		b.act(demoteSteps[i+1], 0)
		return
	}
	wasBoot := s.Role == RoleBooting
	s.Role, s.Phase = s.After, ""
	// Every peer that asked is confirmed: two that take over at once both wait for their answer, and one left
	// without it would power this node off after fence_timeout.
	for _, peer := range s.ConfirmTo {
		b.act(ActConfirm, peer)
	}
	s.ConfirmTo = nil
	switch {
	case wasBoot:
		b.report(SevInfo, event.Ready, "cleanup done: standing by as BACKUP")
	case s.Role == RoleStopped:
		b.report(SevInfo, event.Stopped, "demoted; the agent stops")
	default:
		took := b.now.Sub(s.Started)
		b.report(SevWarning, event.Demoted, "now %s after %s", s.Role, took.Round(time.Millisecond))
		// A peer that asked for this demotion powers the node off after fence_timeout: a demotion that needs half
		// of it leaves too thin a margin on a slower day.
		if b.p.FenceTimeout > 0 && took > b.p.FenceTimeout/2 {
			b.report(SevWarning, event.DemotionSlow, "the demotion took %s, more than half of failover.fence_timeout (%s): a peer may power this node off in the middle of one; raise fence_timeout",
				took.Round(time.Millisecond), b.p.FenceTimeout)
		}
	}
	// keepalived may still want this node as MASTER (its FAULT is yet to come, or the demotion was a peer's
	// request): take it up only when the check would pass, else wait for keepalived.
	if s.Role != RoleStopped && s.VRRP == VRRPMaster && !s.Maintenance {
		if ok, _ := Verdict(b.p, *s, b.now); ok {
			b.tryPromote()
		}
	}
}

// retryDemote re-issues a failed demotion step on the next tick.
func (b *step) retryDemote() bool {
	s := &b.s
	if (s.Role == RoleDemoting || s.Role == RoleBooting) && s.Retry {
		s.Retry = false
		b.act(ActionKind(s.Phase), 0)
		return true
	}
	return false
}

func (b *step) demoteRequest(from int64) {
	s := &b.s
	b.reportPeer(from, SevWarning, event.DemoteRequested, "%s asks this node to demote", b.name(from))
	s.YieldUntil = b.now.Add(b.p.FenceTimeout)
	switch s.Role {
	case RoleMaster, RolePromoting:
		if s.Role == RolePromoting {
			b.act(ActCancel, 0)
		}
		s.ConfirmTo = appendOnce(s.ConfirmTo, from)
		b.startDemote(RoleDemoting, RoleBackup, "peer request")
	case RoleDemoting, RoleBooting:
		s.ConfirmTo = appendOnce(s.ConfirmTo, from)
	default:
		b.act(ActConfirm, from)
	}
}

// appendOnce appends v to list unless it is there.
func appendOnce(list []int64, v int64) []int64 {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

func (b *step) galera(g Galera) {
	s := &b.s
	if !g.Unknown {
		s.GaleraUnknownSince = time.Time{}
	} else if s.GaleraOK && (s.Role == RoleMaster || s.Role == RolePromoting) {
		// No answer is not a lost quorum: under load (a donor's state transfer, a busy disk) the probe can time
		// out while the member is fine. Keep the last answer for quorum_grace, then count it as lost from the
		// first unanswered probe.
		if s.GaleraUnknownSince.IsZero() {
			s.GaleraUnknownSince = b.now
		}
		if b.now.Sub(s.GaleraUnknownSince) < b.p.QuorumGrace {
			return
		}
	}
	ok := g.Primary && g.Synced
	s.GaleraDetail = g.Detail
	if ok == s.GaleraOK {
		return
	}
	s.GaleraOK = ok
	if ok {
		if !s.GaleraBadSince.IsZero() {
			b.report(SevInfo, event.QuorumRegained, "galera %s", g.Detail)
		}
		s.GaleraBadSince = time.Time{}
		return
	}
	s.GaleraBadSince = b.now
	if !s.GaleraUnknownSince.IsZero() {
		s.GaleraBadSince = s.GaleraUnknownSince
	}
	b.report(SevWarning, event.QuorumLost, "galera %s", g.Detail)
}

func (b *step) stack(failed string) {
	s := &b.s
	if failed == s.StackFailed {
		return
	}
	if failed == "" {
		if s.Role == RoleMaster {
			b.report(SevInfo, event.StackRecovered, "%s is healthy again after %s", s.StackFailed, b.now.Sub(s.StackBadSince))
		}
		s.StackFailed, s.StackBadSince = "", time.Time{}
		return
	}
	if s.StackFailed == "" {
		s.StackBadSince = b.now
	}
	s.StackFailed = failed
	if s.Role == RoleMaster {
		b.report(SevWarning, event.StackDegraded, "%s is down; the check fails after %s", failed, b.p.CheckGrace)
	}
}

// Verdict is what `mailcow-ha check` answers keepalived: true keeps this node eligible, false puts it in FAULT.
func Verdict(p Params, s State, now time.Time) (bool, string) {
	switch {
	case s.Role == RoleBooting:
		return false, "booting: cleanup not done"
	case s.Role == RoleDemoting:
		return false, "demoting"
	case s.Role == RoleStopped:
		return false, "stopped"
	case s.Breaker:
		return false, "breaker tripped"
	case now.Before(s.RefuseUntil):
		return false, s.RefuseWhy
	case now.Before(s.YieldUntil):
		return false, "yielding to a peer that fenced this node"
	case s.SwitchTo != "" && s.SwitchTo != p.Name && now.Before(s.SwitchUntil):
		return false, "switchover to " + s.SwitchTo
	case !s.GaleraOK:
		d := s.GaleraDetail
		if d == "" {
			d = "unknown"
		}
		return false, "galera not Primary and Synced: " + d
	case s.Role == RoleMaster && s.StackFailed != "" && !s.Maintenance && now.Sub(s.StackBadSince) >= p.CheckGrace:
		return false, fmt.Sprintf("%s down for %s", s.StackFailed, now.Sub(s.StackBadSince))
	}
	return true, "ok"
}
