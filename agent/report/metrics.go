package report

import (
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is the agent's state at scrape time, for the metrics that are read rather than counted.
type Snapshot struct {
	Role        string
	GaleraOK    bool   // Primary and Synced
	GaleraState string // wsrep_local_state_comment, or why it is unknown
	Breaker     bool
	Takeovers   int // within the breaker window
	BreakerMax  int
	Maintenance bool
	// Services is each critical service's health (nil before the first check).
	Services map[string]bool
	Hcloud   HcloudStats
	Webhooks []WebhookStats
	// PeerRefused counts the peer API requests refused for their authentication.
	PeerRefused int64
	// Backups: the newest copy of each kind the MASTER read in the repository ("volume", "database" → when), and
	// whether they are stale; Backups is nil where the repository is not read (BACKUPs, no backups configured).
	Backups      map[string]time.Time
	BackupsStale bool
	// BackupRun is this node's last copy: when, and whether it succeeded (zero when it took none).
	BackupRun   time.Time
	BackupRunOK bool
}

// HcloudStats are the API adapter's counters (agent/hcloud.Stats, copied so that this package needs no API code).
type HcloudStats struct {
	Attempts      map[[2]string]int // {operation, outcome code or "ok"} → attempts
	RateLimit     int
	RateRemaining int
	// ActionBounds and ActionBuckets are a cumulative histogram of awaited action durations.
	ActionBounds  []time.Duration
	ActionBuckets []int
	ActionSum     time.Duration
	ActionCount   int
}

// Metrics is the agent's Prometheus registry: counters and histograms fed as things happen, and the rest read
// from a Snapshot at every scrape. It registers nothing globally.
type Metrics struct {
	reg         *prometheus.Registry
	transitions *prometheus.CounterVec
	phases      *prometheus.HistogramVec
}

// NewMetrics builds the registry; snapshot is called at each scrape.
func NewMetrics(snapshot func() Snapshot) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcow_ha_transitions_total",
		Help: "Finished transitions by kind (takeover, demotion, boot) and result (the role reached, or failed)."},
		[]string{"kind", "result"})
	m.phases = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcow_ha_transition_phase_seconds",
		Help:    "Duration of each step of a transition (poweroff, attach_volume, assign_fip, mount, start_stack…).",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120}}, []string{"phase"})
	m.reg.MustRegister(m.transitions, m.phases, snapshotCollector{snapshot, newDescs()},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Transition counts a finished transition.
func (m *Metrics) Transition(kind, result string) {
	if m != nil {
		m.transitions.WithLabelValues(kind, result).Inc()
	}
}

// Phase observes one step's duration.
func (m *Metrics) Phase(phase string, d time.Duration) {
	if m != nil {
		m.phases.WithLabelValues(phase).Observe(d.Seconds())
	}
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gather returns the current metrics (for tests and `mailcow-ha status`).
func (m *Metrics) Gather() (map[string]float64, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			labels := mt.GetLabel()
			sort.Slice(labels, func(i, j int) bool { return labels[i].GetName() < labels[j].GetName() })
			for _, l := range labels {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case mt.Gauge != nil:
				out[key] = mt.GetGauge().GetValue()
			case mt.Counter != nil:
				out[key] = mt.GetCounter().GetValue()
			case mt.Histogram != nil:
				out[key+",count"] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, nil
}

// descs are the descriptors of the snapshot's metrics.
type descs struct {
	descRole, descGaleraOK, descGaleraState, descBreaker, descTakeovers, descBreakerMax, descMaint, descService, descAPIReq, descRateLimit, descRateRemain, descAction, descHookSent, descHookRetry, descHookSupp, descHookDrop, descHookQueue, descPeerRefused, descBackupLast, descBackupStale, descBackupRun, descBackupRunOK *prometheus.Desc
}

func newDescs() descs {
	return descs{
		descRole:        prometheus.NewDesc("mailcow_ha_role", "1 for the agent's current role.", []string{"role"}, nil),
		descGaleraOK:    prometheus.NewDesc("mailcow_ha_galera_ok", "1 when the local Galera member is Primary and Synced.", nil, nil),
		descGaleraState: prometheus.NewDesc("mailcow_ha_galera_state", "1 for the local member's state (wsrep_local_state_comment).", []string{"state"}, nil),
		descBreaker:     prometheus.NewDesc("mailcow_ha_breaker_tripped", "1 when the circuit breaker refuses takeovers.", nil, nil),
		descTakeovers:   prometheus.NewDesc("mailcow_ha_breaker_takeovers", "Takeovers within the breaker window.", nil, nil),
		descBreakerMax:  prometheus.NewDesc("mailcow_ha_breaker_max", "failover.breaker.max.", nil, nil),
		descMaint:       prometheus.NewDesc("mailcow_ha_maintenance", "1 in maintenance mode.", nil, nil),
		descService:     prometheus.NewDesc("mailcow_ha_stack_service_healthy", "1 when the critical mailcow service is healthy.", []string{"service"}, nil),
		descAPIReq:      prometheus.NewDesc("mailcow_ha_hcloud_requests_total", "Hetzner API attempts by operation and outcome (error code or ok).", []string{"operation", "code"}, nil),
		descRateLimit:   prometheus.NewDesc("mailcow_ha_hcloud_ratelimit_limit", "RateLimit-Limit of the last API answer.", nil, nil),
		descRateRemain:  prometheus.NewDesc("mailcow_ha_hcloud_ratelimit_remaining", "RateLimit-Remaining of the last API answer: the budget left.", nil, nil),
		descAction:      prometheus.NewDesc("mailcow_ha_hcloud_action_seconds", "Duration of awaited Hetzner Actions.", nil, nil),
		descHookSent:    prometheus.NewDesc("mailcow_ha_webhook_sent_total", "Events delivered to the webhook.", []string{"webhook"}, nil),
		descHookRetry:   prometheus.NewDesc("mailcow_ha_webhook_retries_total", "Failed attempts that were retried.", []string{"webhook"}, nil),
		descHookSupp:    prometheus.NewDesc("mailcow_ha_webhook_suppressed_total", "Events folded into a repeat count (dedup_window).", []string{"webhook"}, nil),
		descHookDrop:    prometheus.NewDesc("mailcow_ha_webhook_dropped_total", "Events dropped, by reason.", []string{"webhook", "reason"}, nil),
		descHookQueue:   prometheus.NewDesc("mailcow_ha_webhook_queue_length", "Events waiting in the webhook's queue.", []string{"webhook"}, nil),
		descPeerRefused: prometheus.NewDesc("mailcow_ha_peer_requests_refused_total", "Peer API requests refused for their authentication (logged at most every 10 s).", nil, nil),
		descBackupLast:  prometheus.NewDesc("mailcow_ha_backup_last_copy_timestamp_seconds", "When the newest copy of this kind in the backup repository was taken (on the MASTER, which reads it).", []string{"kind"}, nil),
		descBackupStale: prometheus.NewDesc("mailcow_ha_backup_stale", "1 when a kind's newest copy is older than backup.max_age or the repository cannot be read (on the MASTER).", nil, nil),
		descBackupRun:   prometheus.NewDesc("mailcow_ha_backup_run_timestamp_seconds", "When this node last took a copy.", nil, nil),
		descBackupRunOK: prometheus.NewDesc("mailcow_ha_backup_run_ok", "1 when this node's last copy succeeded.", nil, nil),
	}
}

// snapshotCollector turns a Snapshot into const metrics at scrape time.
type snapshotCollector struct {
	snapshot func() Snapshot
	descs
}

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.descRole, c.descGaleraOK, c.descGaleraState, c.descBreaker, c.descTakeovers, c.descBreakerMax,
		c.descMaint, c.descService, c.descAPIReq, c.descRateLimit, c.descRateRemain, c.descAction, c.descHookSent, c.descHookRetry,
		c.descHookSupp, c.descHookDrop, c.descHookQueue, c.descPeerRefused, c.descBackupLast, c.descBackupStale, c.descBackupRun, c.descBackupRunOK} {
		ch <- d
	}
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, r := range []string{"booting", "backup", "fault", "promoting", "master", "demoting", "stopped"} {
		gauge(c.descRole, b2f(s.Role == r), r)
	}
	gauge(c.descGaleraOK, b2f(s.GaleraOK))
	if s.GaleraState != "" {
		gauge(c.descGaleraState, 1, s.GaleraState)
	}
	gauge(c.descBreaker, b2f(s.Breaker))
	gauge(c.descTakeovers, float64(s.Takeovers))
	gauge(c.descBreakerMax, float64(s.BreakerMax))
	gauge(c.descMaint, b2f(s.Maintenance))
	for svc, ok := range s.Services {
		gauge(c.descService, b2f(ok), svc)
	}
	for k, n := range s.Hcloud.Attempts {
		counter(c.descAPIReq, float64(n), k[0], k[1])
	}
	if s.Hcloud.RateLimit > 0 {
		gauge(c.descRateLimit, float64(s.Hcloud.RateLimit))
		gauge(c.descRateRemain, float64(s.Hcloud.RateRemaining))
	}
	if len(s.Hcloud.ActionBounds) == len(s.Hcloud.ActionBuckets) {
		buckets := map[float64]uint64{}
		for i, b := range s.Hcloud.ActionBounds {
			buckets[b.Seconds()] = uint64(s.Hcloud.ActionBuckets[i])
		}
		ch <- prometheus.MustNewConstHistogram(c.descAction, uint64(s.Hcloud.ActionCount), s.Hcloud.ActionSum.Seconds(), buckets)
	}
	for _, w := range s.Webhooks {
		counter(c.descHookSent, float64(w.Sent), w.Name)
		counter(c.descHookRetry, float64(w.Retries), w.Name)
		counter(c.descHookSupp, float64(w.Suppressed), w.Name)
		for _, why := range []string{DropQueueFull, DropExhausted, DropRejected, DropTemplate, DropShutdown} {
			counter(c.descHookDrop, float64(w.Dropped[why]), w.Name, why)
		}
		gauge(c.descHookQueue, float64(w.Queued), w.Name)
	}
	counter(c.descPeerRefused, float64(s.PeerRefused))
	if s.Backups != nil {
		for kind, at := range s.Backups {
			if !at.IsZero() {
				gauge(c.descBackupLast, float64(at.Unix()), kind)
			}
		}
		gauge(c.descBackupStale, b2f(s.BackupsStale))
	}
	if !s.BackupRun.IsZero() {
		gauge(c.descBackupRun, float64(s.BackupRun.Unix()))
		gauge(c.descBackupRunOK, b2f(s.BackupRunOK))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
