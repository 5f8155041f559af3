package report

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

// EventInfo describes one event the agent reports: its usual severity, what it means, and its journald
// MESSAGE_ID.
type EventInfo struct {
	Name     event.Name
	Severity string
	Doc      string
}

// MessageID is the event's stable journald MESSAGE_ID: 128 bits derived from its name, so that
// `journalctl MESSAGE_ID=…` finds it on every node and in every version.
func MessageID(name event.Name) string {
	sum := sha256.Sum256([]byte("mailcow-ha/event/" + string(name)))
	return hex.EncodeToString(sum[:16])
}

// Catalog lists every event, in the order docs/alerts.md shows them. A test keeps it, the code that reports
// and the docs in step.
func Catalog() []EventInfo {
	return []EventInfo{
		// Failover.
		{event.FailoverStarted, SeverityInfo, "keepalived elected this node MASTER: the takeover begins (breaker and quorum passed)."},
		{event.FailoverSucceeded, SeverityInfo, "the takeover from another node (the subject) finished: this node serves."},
		{event.FailoverFailed, SeverityCritical, "a takeover step failed for good: undone, MASTER refused for a while."},
		{event.FailoverCancelled, SeverityCritical, "keepalived left MASTER during the takeover: undone."},
		{event.APIUnavailable, SeverityCritical, "the Hetzner API did not answer during a takeover: nothing taken, MASTER refused for a while."},
		{event.TakeoverRefused, SeverityWarning, "keepalived elected this node but its check fails (quorum, stack, switchover): stays FAULT."},
		{event.UnexpectedOwner, SeverityWarning, "the Floating IP routed to a server outside the cluster; taken anyway."},
		{event.Promoted, SeverityInfo, "this node is MASTER with everything: Volume, Floating IP, stack."},
		{event.Demoting, SeverityWarning, "keepalived moved MASTER away: stopping mailcow, unmounting, removing the address."},
		{event.Demoted, SeverityWarning, "the demotion finished; the node is BACKUP or FAULT."},
		{event.DemotionSlow, SeverityWarning, "a demotion took more than half of failover.fence_timeout: a peer could power the node off in the middle of the next one."},
		{event.DemoteStepFailed, SeverityCritical, "a step of the demotion failed; it is retried."},
		{event.Fault, SeverityWarning, "keepalived put this BACKUP into FAULT: its check fails, it is out of the election."},
		{event.FaultCleared, SeverityInfo, "the check passes again: back to BACKUP."},
		{event.BreakerTripped, SeverityCritical, "failover.breaker.max takeovers within the window already: this node refuses MASTER."},
		{event.BreakerReset, SeverityInfo, "the breaker's window passed, its limit was raised, or an operator reset it: takeovers allowed again."},
		// Fencing.
		{event.Fencing, SeverityWarning, "the old owner (the subject) did not confirm its demotion: powering it off through the API."},
		{event.PeerFenced, SeverityWarning, "the old owner (the subject) is powered off."},
		{event.FenceFailed, SeverityCritical, "the poweroff of the old owner (the subject) failed: nothing taken."},
		{event.FencedPowerOn, SeverityInfo, "the takeover succeeded: the node it powered off (the subject) is powered on again, to boot as BACKUP and rejoin (failover.power_on_fenced)."},
		{event.FencedPowerOnFailed, SeverityWarning, "the fenced node could not be powered on again: it stays off until an operator starts it."},
		{event.FencedLeftOff, SeverityWarning, "the fenced node (the subject) was fenced again within the breaker's window after it was powered back on: it stays off."},
		{event.PeerDemoted, SeverityInfo, "the old owner (the subject) confirmed its demotion through the peer API."},
		{event.DemoteRequested, SeverityWarning, "a peer (the subject) asks this node to demote."},
		// Quorum and Galera.
		{event.QuorumLost, SeverityWarning, "the local Galera member left the Primary component or is not Synced."},
		{event.QuorumRegained, SeverityInfo, "the local Galera member is Primary and Synced again."},
		{event.QuorumTimeout, SeverityCritical, "the MASTER stayed out of the Primary component beyond failover.quorum_grace: demoting."},
		{event.GaleraDegraded, SeverityWarning, "mariadbd (or garbd) exited; the agent brings it up again."},
		{event.GaleraRecovered, SeverityInfo, "mariadbd is up again and Synced."},
		{event.GaleraRecoveryBlocked, SeverityCritical, "Galera cannot start safely (a peer is silent, positions fork): waiting."},
		{event.GaleraSetupFailed, SeverityCritical, "the new cluster's setup (mailcow's database and user) keeps failing after its first bootstrap; the agent tries it again."},
		// The stack and the reconcile loop.
		{event.StackDegraded, SeverityWarning, "a critical mailcow service failed on the MASTER; failover after failover.check_grace."},
		{event.StackRecovered, SeverityInfo, "the failed service is healthy again."},
		{event.ReconcileFailed, SeverityWarning, "repairing a drift failed; it is retried."},
		{event.FloatingIPMoved, SeverityCritical, "the MASTER's Floating IP routes elsewhere: demoting."},
		{event.VolumeUnmounted, SeverityCritical, "the MASTER's Volume is not mounted under the running stack: demoting."},
		{event.AddressMissing, SeverityWarning, "the Floating IP is missing on the MASTER's interface: added again."},
		{event.StaleMount, SeverityWarning, "the Volume is mounted on a node that is not MASTER: stopping and unmounting."},
		{event.StaleAddress, SeverityWarning, "the Floating IP is on a node that is not MASTER: removed."},
		{event.StaleStack, SeverityWarning, "mailcow's containers run on a node that is not MASTER (started by hand, such as by update.sh): stopped, with their restart policy off."},
		{event.StackUnitFailed, SeverityWarning, "mailcow started, but a unit of mailcow.with_units (the sign-up portal) did not."},
		{event.KeepalivedExited, SeverityWarning, "keepalived died: the node is out of the election until it runs again (restarted after 2 s)."},
		// Operator and lifecycle.
		{event.Ready, SeverityInfo, "the boot cleanup finished: standing by as BACKUP."},
		{event.Stopping, SeverityInfo, "the agent is stopping: demoting first."},
		{event.Stopped, SeverityInfo, "the agent demoted and stops."},
		{event.MaintenanceOn, SeverityWarning, "maintenance: automatic actions paused (reports go on)."},
		{event.MaintenanceOff, SeverityWarning, "maintenance over: automatic actions resume."},
		{event.VRRPIgnored, SeverityWarning, "keepalived changed state during maintenance: no action."},
		{event.Switchover, SeverityInfo, "an operator hands MASTER to another node."},
		{event.SwitchoverDone, SeverityInfo, "the switchover's target serves."},
		{event.ConfigInvalid, SeverityCritical, "a reloaded configuration was refused (the error names the key and line); the running one stays."},
		{event.ConfigReloaded, SeverityInfo, "a reloaded configuration was applied (SIGHUP)."},
		{event.ConfigApplied, SeverityInfo, "a revision of the cluster's configuration (config apply) was checked and kept; its details say which keys changed and whether they took effect live or need the agent restarted."},
		{event.ConfigRestart, SeverityInfo, "the agent restarts to run the cluster's configuration (config apply's rolling restart, or a node catching up on a revision it missed while down)."},
		{event.MailcowStaged, SeverityInfo, "a mailcow release was staged beside the tree (mailcow update): cloned, its images pulled and all present; the node still runs the release before it."},
		{event.MailcowStageFailed, SeverityWarning, "staging a mailcow release failed (the clone, the pull, or an image missing after it); the node runs what it ran, and the update does not go on."},
		{event.MailcowUpdated, SeverityInfo, "the node runs a new mailcow release: laid over its tree, and on the MASTER the changed containers recreated and healthy (in maintenance)."},
		{event.MailcowUpdateFailed, SeverityCritical, "a MASTER's mailcow did not come back healthy on a new release: the tree was taken back and the release before started again; the other nodes keep the release before."},
		{event.SecretStaged, SeverityInfo, "the next cluster secret was handed to this node (cluster rotate-secret): it accepts both secrets, and Galera trusts both CAs; it still signs with the one before."},
		{event.SecretSwitched, SeverityInfo, "this node signs with the new cluster secret: the peer API, VRRP's password and its Galera certificate; it still accepts the one before until the rotation ends."},
		{event.BackupFailed, SeverityWarning, "a backup on this node failed (mailcow-ha backup run, volume or database): the message says which copy and why; the repository keeps the copies before it."},
		{event.BackupStale, SeverityWarning, "the newest copy of the Volume or of the database in the backup repository is older than backup.max_age, or the repository cannot be read (checked by the MASTER hourly, and after each backup on it)."},
		{event.BackupRecovered, SeverityInfo, "the backups are fresh again after backup_stale: the newest copies of the Volume and of the database are younger than backup.max_age."},
		{event.Restored, SeverityInfo, "a new cluster made from a backup (backup.restore_from) took a copy: the bootstrap node's database, or the Volume's data on the first MASTER before mailcow started; the message names the snapshot and what it held."},
		{event.RestoreFailed, SeverityCritical, "a new cluster made from a backup (backup.restore_from) could not take a copy (the repository unreadable, no copy of that cluster, a failed unpack): nothing starts from empty data instead; the database's restore is tried again every few seconds, the Volume's at the next takeover."},
		{event.Migrated, SeverityInfo, "the MASTER switched to a single-server mailcow's state (mailcow-ha migrate --final): the old server's database imported into Galera and its directories in place on the Volume, with mailcow stopped in maintenance; what they replaced is kept on the Volume (.migrate/replaced-<time>)."},
		{event.MigrateFailed, SeverityCritical, "a migration's switch failed (the import of the old server's database, a directory's rename, or mailcow not healthy after it); the message says which step. A failed import leaves the Volume as it was."},
		{event.SecretRotated, SeverityInfo, "the cluster secret's rotation ended on this node: the secret before is deleted and no longer accepted, Galera trusts the new CA only."},
		{event.MembershipChanged, SeverityWarning, "the API lists other members than this agent runs with (cluster.discover = \"hcloud\": a node added, removed or relabelled). Applied while the agent runs, the alert is info and says what changed; a change that cannot be applied live (this server renamed or gone, members that do not check, a static cluster.nodes) is a warning and takes effect at the agents' next start."},
	}
}
