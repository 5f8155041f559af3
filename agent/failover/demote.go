package failover

import (
	"slices"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// The demotion: the takeover in reverse, step by step, and the peers' requests for one.

// demoteSteps is the reverse of the takeover, each step guarded by the executor.
var demoteSteps = []ActionKind{ActStopStack, ActUnmount, ActRemoveAddr}

// startDemote begins the demotion (or the boot cleanup) as a new transition.
func (b *step) startDemote(role, after Role, why string) {
	s := &b.s
	s.TID++
	s.Role, s.After, s.Started = role, after, b.now
	s.Phase, s.Retry = Phase(demoteSteps[0]), false
	s.VolPhase, s.FIPPhase, s.WarmPhase = BranchDone, BranchDone, BranchDone
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
