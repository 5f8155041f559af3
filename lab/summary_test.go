package lab

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The takeover's request count comes from the new master's failover_succeeded line after the kill, and the summary
// gives each phase's, the first banner's and the requests' median, minimum and maximum, and the ratios.
func TestBenchSummary(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	log := filepath.Join(t.TempDir(), "agent.log")
	lines := "time=2026-12-04T19:59:59.000Z level=INFO msg=\"took over from lab-3 in 9s\" event=failover_succeeded severity=info api_requests=40\n" +
		"time=2026-12-04T20:00:09.500Z level=INFO msg=\"took over from lab-1 in 9.1s\" event=failover_succeeded severity=info role=master transition_id=2 peer=lab-1 api_requests=12\n"
	if err := os.WriteFile(log, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := agentRequests(log, t0); n != 12 {
		t.Fatalf("requests after the kill: %d, want 12 (the line before the kill is another takeover's)", n)
	}
	if n := agentRequests(log, t0.Add(time.Minute)); n != -1 {
		t.Fatalf("no takeover after t0: %d, want -1", n)
	}
	run := func(total, mount time.Duration, reqs int) Timeline {
		return Timeline{Total: total, Requests: reqs, Phases: []Phase{{Name: "agent mount", End: mount}}}
	}
	r := BenchResult{Floor: 8 * time.Second, SeqFloor: 11 * time.Second, FloorWhy: "poweroff 2s + max(…)",
		Runs:    []Timeline{run(10*time.Second, 8*time.Second, 12), run(12*time.Second, 9*time.Second, 14), run(11*time.Second, 10*time.Second, -1)},
		SeqRuns: []Timeline{run(16*time.Second, 13*time.Second, 20), run(17*time.Second, 14*time.Second, 21), run(18*time.Second, 15*time.Second, 22)}}
	s := r.Summary()
	if s.Agent.Runs != 3 || s.Agent.Total != (Spread{11, 10, 12}) || s.Agent.FloorRatio != 11.0/8 {
		t.Errorf("agent: %+v", s.Agent)
	}
	if len(s.Agent.Phases) != 1 || s.Agent.Phases[0].Spread != (Spread{9, 8, 10}) {
		t.Errorf("agent phases: %+v", s.Agent.Phases)
	}
	if s.Agent.Requests == nil || *s.Agent.Requests != (Spread{14, 12, 14}) {
		t.Errorf("agent requests (the run without a count left out): %+v", s.Agent.Requests)
	}
	if s.Sequential == nil || s.Sequential.Total != (Spread{17, 16, 18}) || s.SequentialOverAgent != 17.0/11 {
		t.Errorf("sequential: %+v, ratio %v", s.Sequential, s.SequentialOverAgent)
	}
}
