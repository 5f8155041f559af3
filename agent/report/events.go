package report

import (
	"crypto/sha256"
	"encoding/hex"
)

// EventInfo describes one event the agent reports: its usual severity, what it means, and its journald
// MESSAGE_ID.
type EventInfo struct {
	Name     string
	Severity string
	Doc      string
}

// MessageID is the event's stable journald MESSAGE_ID: 128 bits derived from its name, so that
// `journalctl MESSAGE_ID=…` finds it on every node and in every version.
func MessageID(event string) string {
	sum := sha256.Sum256([]byte("mailcow-ha/event/" + event))
	return hex.EncodeToString(sum[:16])
}

// Catalog lists every event, in the order docs/alerts.md shows them. A test keeps it, the code that reports
// and the docs in step.
func Catalog() []EventInfo {
	return []EventInfo{
		// Failover.
		{"failover_started", SeverityInfo, "keepalived elected this node MASTER: the takeover begins (breaker and quorum passed)."},
		{"failover_succeeded", SeverityInfo, "the takeover from another node (the subject) finished: this node serves."},
		{"failover_failed", SeverityCritical, "a takeover step failed for good: undone, MASTER refused for a while."},
		{"failover_cancelled", SeverityCritical, "keepalived left MASTER during the takeover: undone."},
		{"api_unavailable", SeverityCritical, "the Hetzner API did not answer during a takeover: nothing taken, MASTER refused for a while."},
		{"takeover_refused", SeverityWarning, "keepalived elected this node but its check fails (quorum, stack, switchover): stays FAULT."},
		{"unexpected_owner", SeverityWarning, "the Floating IP routed to a server outside the cluster; taken anyway."},
		{"promoted", SeverityInfo, "this node is MASTER with everything: Volume, Floating IP, stack."},
		{"demoting", SeverityWarning, "keepalived moved MASTER away: stopping mailcow, unmounting, removing the address."},
		{"demoted", SeverityWarning, "the demotion finished; the node is BACKUP or FAULT."},
		{"demotion_slow", SeverityWarning, "a demotion took more than half of failover.fence_timeout: a peer could power the node off in the middle of the next one."},
		{"demote_step_failed", SeverityCritical, "a step of the demotion failed; it is retried."},
		{"fault", SeverityWarning, "keepalived put this BACKUP into FAULT: its check fails, it is out of the election."},
		{"fault_cleared", SeverityInfo, "the check passes again: back to BACKUP."},
		{"breaker_tripped", SeverityCritical, "failover.breaker.max takeovers within the window already: this node refuses MASTER."},
		{"breaker_reset", SeverityInfo, "the breaker's window passed, its limit was raised, or an operator reset it: takeovers allowed again."},
		// Fencing.
		{"fencing", SeverityWarning, "the old owner (the subject) did not confirm its demotion: powering it off through the API."},
		{"peer_fenced", SeverityWarning, "the old owner (the subject) is powered off."},
		{"fence_failed", SeverityCritical, "the poweroff of the old owner (the subject) failed: nothing taken."},
		{"peer_demoted", SeverityInfo, "the old owner (the subject) confirmed its demotion through the peer API."},
		{"demote_requested", SeverityWarning, "a peer (the subject) asks this node to demote."},
		// Quorum and Galera.
		{"quorum_lost", SeverityWarning, "the local Galera member left the Primary component or is not Synced."},
		{"quorum_regained", SeverityInfo, "the local Galera member is Primary and Synced again."},
		{"quorum_timeout", SeverityCritical, "the MASTER stayed out of the Primary component beyond failover.quorum_grace: demoting."},
		{"galera_degraded", SeverityWarning, "mariadbd (or garbd) exited; the agent brings it up again."},
		{"galera_recovered", SeverityInfo, "mariadbd is up again and Synced."},
		{"galera_recovery_blocked", SeverityCritical, "Galera cannot start safely (a peer is silent, positions fork): waiting."},
		// The stack and the reconcile loop.
		{"stack_degraded", SeverityWarning, "a critical mailcow service failed on the MASTER; failover after failover.check_grace."},
		{"stack_recovered", SeverityInfo, "the failed service is healthy again."},
		{"reconcile_failed", SeverityWarning, "repairing a drift failed; it is retried."},
		{"floating_ip_moved", SeverityCritical, "the MASTER's Floating IP routes elsewhere: demoting."},
		{"volume_unmounted", SeverityCritical, "the MASTER's Volume is not mounted under the running stack: demoting."},
		{"address_missing", SeverityWarning, "the Floating IP is missing on the MASTER's interface: added again."},
		{"stale_mount", SeverityWarning, "the Volume is mounted on a node that is not MASTER: stopping and unmounting."},
		{"stale_address", SeverityWarning, "the Floating IP is on a node that is not MASTER: removed."},
		{"stack_unit_failed", SeverityWarning, "mailcow started, but a unit of mailcow.with_units (the sign-up portal) did not."},
		{"keepalived_exited", SeverityWarning, "keepalived died: the node is out of the election until it runs again (restarted after 2 s)."},
		// Operator and lifecycle.
		{"ready", SeverityInfo, "the boot cleanup finished: standing by as BACKUP."},
		{"stopping", SeverityInfo, "the agent is stopping: demoting first."},
		{"stopped", SeverityInfo, "the agent demoted and stops."},
		{"maintenance_on", SeverityWarning, "maintenance: automatic actions paused (reports go on)."},
		{"maintenance_off", SeverityWarning, "maintenance over: automatic actions resume."},
		{"vrrp_ignored", SeverityWarning, "keepalived changed state during maintenance: no action."},
		{"switchover", SeverityInfo, "an operator hands MASTER to another node."},
		{"switchover_done", SeverityInfo, "the switchover's target serves."},
		{"config_invalid", SeverityCritical, "a reloaded configuration was refused (the error names the key and line); the running one stays."},
		{"config_reloaded", SeverityInfo, "a reloaded configuration was applied (SIGHUP)."},
	}
}
