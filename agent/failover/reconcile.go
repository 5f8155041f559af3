package failover

import (
	"fmt"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// reconcile repairs what drifted from the role: a MASTER without its address gets it back; a MASTER whose
// Floating IP routes elsewhere, or whose Volume is not mounted, gives up; a node that is not MASTER drops a
// stale address or mount, and stops mailcow's containers that someone started there. In maintenance it only reports.
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
		} else if o.StackUp {
			d = append(d, drift{SevWarning, event.StaleStack, "mailcow's containers run on a node that is not MASTER: stopping them", cleanup, ""})
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
