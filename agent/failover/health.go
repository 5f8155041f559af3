package failover

import (
	"fmt"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// Health: Galera's and the stack's observations, and the verdict keepalived's check asks for.

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
