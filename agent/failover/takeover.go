package failover

import (
	"fmt"
	"slices"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// The takeover: what may forbid one, the breaker, the fence, the parallel move and its end (docs/design.md §4).

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
	s.Old, s.VolOwner, s.FIPOwner, s.VolPhase, s.FIPPhase, s.WarmPhase, s.Counted, s.Fenced = 0, 0, 0, "", "", "", false, 0
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
	// Beside the move (the old owner is fenced or has none): the containers that bind nothing of the Volume start
	// now, so that the start after the mount has less to do. Not in the original scripts' order, which started
	// everything after the mount.
	if !b.p.Sequential {
		s.WarmPhase = BranchWarm
		b.act(ActWarmStack, 0)
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
		if o.Action == ActWarmStack {
			// The warm start only saves time: failed (its executor said why) or done, start_stack starts what it
			// left, and waits for it no longer.
			if s.WarmPhase == BranchWarm {
				s.WarmPhase = BranchDone
				if s.Phase == PhaseStart {
					b.act(ActStartStack, 0)
				}
			}
			return
		}
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
			s.Fenced = s.Old
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
			if s.WarmPhase != BranchWarm {
				b.act(ActStartStack, 0)
			}
		case o.Action == ActStartStack && s.Phase == PhaseStart:
			s.Role, s.Phase = RoleMaster, ""
			s.StackFailed, s.StackBadSince = "", time.Time{}
			if s.Old != 0 {
				b.reportPeer(s.Old, SevInfo, event.FailoverSucceeded, "took over from %s in %s", b.name(s.Old), b.now.Sub(s.Started).Round(time.Millisecond))
			}
			b.report(SevInfo, event.Promoted, "MASTER after %s", b.now.Sub(s.Started).Round(time.Millisecond))
			b.reviveFenced()
		}
	case RoleMaster, RoleBackup, RoleFault:
		if o.Action == ActPowerOn && o.Err != "" {
			var x int64
			if n := len(s.Revived); n > 0 {
				x = s.Revived[n-1].Server
			}
			b.reportPeer(x, SevWarning, event.FencedPowerOnFailed, "%s could not be powered on again: %s; it stays off", b.name(x), o.Err)
			return
		}
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

// reviveFenced powers the server this takeover fenced on again, once the takeover has succeeded: a node that
// hung or lost its power comes back, boots as BACKUP, cleans up and rejoins, and the cluster has its member again
// (a three-node cluster that stayed at two would lose quorum at the next failure). A server that this node powered
// on within the breaker's window and that had to be fenced again stays off, with an alert.
func (b *step) reviveFenced() {
	s := &b.s
	x := s.Fenced
	s.Fenced = 0
	if x == 0 || !b.p.PowerOnFenced {
		return
	}
	s.Revived = slices.DeleteFunc(s.Revived, func(r Revival) bool { return b.now.Sub(r.At) >= b.p.BreakerWindow })
	if i := slices.IndexFunc(s.Revived, func(r Revival) bool { return r.Server == x }); i >= 0 {
		b.reportPeer(x, SevWarning, event.FencedLeftOff, "%s was fenced again %s after this node powered it back on: left off",
			b.name(x), b.now.Sub(s.Revived[i].At).Round(time.Second))
		return
	}
	s.Revived = append(s.Revived, Revival{Server: x, At: b.now})
	b.reportPeer(x, SevInfo, event.FencedPowerOn, "powering %s on again: it boots as BACKUP and rejoins", b.name(x))
	b.act(ActPowerOn, x)
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
