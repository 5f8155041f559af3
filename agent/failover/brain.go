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
	Old, VolOwner, FIPOwner int64  // servers found by ReadOwners
	VolPhase, FIPPhase      Branch // the two parallel branches of the move; "" when done
	// WarmPhase is BranchWarm while the containers that need nothing of the Volume start beside the move; "" when
	// done (or never begun). start_stack waits for it.
	WarmPhase     Branch
	FenceDeadline time.Time //
	Started       time.Time // when the transition started
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
	// Fenced: the server this takeover powered off, to power on again once it succeeded (Params.PowerOnFenced).
	Fenced int64
	// Revived: the fenced servers this node powered on again, and when, within the breaker window: one fenced
	// again in that time stays off.
	Revived []Revival
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

// Revival is a fenced server powered on again.
type Revival struct {
	Server int64
	At     time.Time
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
		// The operator says the past failures are dealt with: the takeovers, and the fenced nodes this node powered
		// back on (one fenced again is powered on again, not left off).
		n := len(s.Takeovers)
		s.Takeovers, s.Revived = nil, nil
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
