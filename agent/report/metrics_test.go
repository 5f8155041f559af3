package report

import (
	"io"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMetricsExposition(t *testing.T) {
	snap := Snapshot{Role: "master", GaleraOK: true, GaleraState: "Synced", Takeovers: 1, BreakerMax: 2,
		Services: map[string]bool{"postfix-mailcow": true, "dovecot-mailcow": false},
		Hcloud: HcloudStats{Attempts: map[[2]string]int{{"attach_volume", "ok"}: 1, {"attach_volume", "locked"}: 2},
			RateLimit: 3600, RateRemaining: 3590, ActionBounds: []time.Duration{time.Second, 5 * time.Second},
			ActionBuckets: []int{0, 1}, ActionSum: 3 * time.Second, ActionCount: 1},
		Webhooks: []WebhookStats{{Name: "ops", Sent: 4, Dropped: map[string]int64{DropQueueFull: 2}, Queued: 1}}, PeerRefused: 7}
	m := NewMetrics(func() Snapshot { return snap })
	m.Transition("takeover", "master")
	m.Phase("attach_volume", 3*time.Second)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`mailcow_ha_role{role="master"} 1`, `mailcow_ha_role{role="backup"} 0`,
		`mailcow_ha_galera_ok 1`, `mailcow_ha_galera_state{state="Synced"} 1`,
		`mailcow_ha_breaker_tripped 0`, `mailcow_ha_breaker_takeovers 1`, `mailcow_ha_maintenance 0`,
		`mailcow_ha_stack_service_healthy{service="dovecot-mailcow"} 0`, `mailcow_ha_stack_service_healthy{service="postfix-mailcow"} 1`,
		`mailcow_ha_hcloud_requests_total{code="locked",operation="attach_volume"} 2`,
		`mailcow_ha_hcloud_ratelimit_remaining 3590`,
		`mailcow_ha_hcloud_action_seconds_bucket{le="5"} 1`, `mailcow_ha_hcloud_action_seconds_sum 3`,
		`mailcow_ha_transitions_total{kind="takeover",result="master"} 1`,
		`mailcow_ha_transition_phase_seconds_bucket{phase="attach_volume",le="3"} 1`,
		`mailcow_ha_webhook_sent_total{webhook="ops"} 4`, `mailcow_ha_webhook_dropped_total{reason="queue_full",webhook="ops"} 2`,
		`mailcow_ha_webhook_queue_length{webhook="ops"} 1`,
		`mailcow_ha_peer_requests_refused_total 7`,
		`process_resident_memory_bytes`, `go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	got, err := m.Gather()
	if err != nil || got["mailcow_ha_role,role=master"] != 1 || got["mailcow_ha_transition_phase_seconds,phase=attach_volume,count"] != 1 {
		t.Errorf("Gather: %v %v", err, got)
	}
}

// Prometheus's own linter accepts the exposition.
func TestMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	m := NewMetrics(func() Snapshot {
		return Snapshot{Role: "backup", GaleraState: "Synced", Services: map[string]bool{"postfix-mailcow": true},
			Hcloud:   HcloudStats{Attempts: map[[2]string]int{{"volume", "ok"}: 3}, RateLimit: 3600, RateRemaining: 3597},
			Webhooks: []WebhookStats{{Name: "ops", Dropped: map[string]int64{}}}}
	})
	m.Transition("boot", "backup")
	m.Phase("stop_stack", time.Second)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(rec.Body.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
