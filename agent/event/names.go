// Package event names every event the agent reports, as constants: the brain, the executor, the Galera manager
// and the report catalog (agent/report) use these, so the compiler checks each name. The catalog says what each one
// means, its severity and its journald MESSAGE_ID.
package event

// Name is an event's name, as it appears in the journal (EVENT=), the webhooks and the metrics.
type Name string

// The events, in the catalog's order.
const (
	FailoverStarted       Name = "failover_started"
	FailoverSucceeded     Name = "failover_succeeded"
	FailoverFailed        Name = "failover_failed"
	FailoverCancelled     Name = "failover_cancelled"
	APIUnavailable        Name = "api_unavailable"
	TakeoverRefused       Name = "takeover_refused"
	UnexpectedOwner       Name = "unexpected_owner"
	Promoted              Name = "promoted"
	Demoting              Name = "demoting"
	Demoted               Name = "demoted"
	DemotionSlow          Name = "demotion_slow"
	DemoteStepFailed      Name = "demote_step_failed"
	Fault                 Name = "fault"
	FaultCleared          Name = "fault_cleared"
	BreakerTripped        Name = "breaker_tripped"
	BreakerReset          Name = "breaker_reset"
	Fencing               Name = "fencing"
	PeerFenced            Name = "peer_fenced"
	FenceFailed           Name = "fence_failed"
	PeerDemoted           Name = "peer_demoted"
	DemoteRequested       Name = "demote_requested"
	QuorumLost            Name = "quorum_lost"
	QuorumRegained        Name = "quorum_regained"
	QuorumTimeout         Name = "quorum_timeout"
	GaleraDegraded        Name = "galera_degraded"
	GaleraRecovered       Name = "galera_recovered"
	GaleraRecoveryBlocked Name = "galera_recovery_blocked"
	GaleraSetupFailed     Name = "galera_setup_failed"
	StackDegraded         Name = "stack_degraded"
	StackRecovered        Name = "stack_recovered"
	ReconcileFailed       Name = "reconcile_failed"
	FloatingIPMoved       Name = "floating_ip_moved"
	VolumeUnmounted       Name = "volume_unmounted"
	AddressMissing        Name = "address_missing"
	StaleMount            Name = "stale_mount"
	StaleAddress          Name = "stale_address"
	StackUnitFailed       Name = "stack_unit_failed"
	KeepalivedExited      Name = "keepalived_exited"
	Ready                 Name = "ready"
	Stopping              Name = "stopping"
	Stopped               Name = "stopped"
	MaintenanceOn         Name = "maintenance_on"
	MaintenanceOff        Name = "maintenance_off"
	VRRPIgnored           Name = "vrrp_ignored"
	Switchover            Name = "switchover"
	SwitchoverDone        Name = "switchover_done"
	ConfigInvalid         Name = "config_invalid"
	ConfigReloaded        Name = "config_reloaded"
)
