package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
)

// The table shows every node, an unreachable one as such. (The lab's end-to-end test runs `mailcow-ha status`
// against real agents in network namespaces.)
func TestStatusTable(t *testing.T) {
	now := time.Now()
	replies := []StatusReply{
		{Node: "mx1", Status: &api.NodeStatus{Node: "mx1", Role: "master", Galera: api.GaleraStatus{OK: true, Detail: "Primary Synced size=2 seqno=42"},
			Stack: api.StackStatus{Healthy: true}, Volume: api.VolumeStatus{Mounted: true}, FloatingIP: api.FIPStatus{OnInterface: true, Address: "203.0.113.100"},
			Breaker:     api.Breaker{Takeovers: 1, Max: 2},
			Mailcow:     "2026-09 (0123456789ab)",
			Transitions: []api.Transition{{ID: 4, Kind: "takeover", Started: now.Add(-70 * time.Second), Finished: now.Add(-60 * time.Second), Result: "master"}},
			Backup: &api.BackupStatus{Checked: now.Add(-5 * time.Second), Volume: api.BackupCopy{Time: now.Add(-3 * time.Hour), Snapshot: "5f3ce54a", Node: "mx1"},
				Problem: "backups are stale (backup.max_age 26h0m0s): no copy of the database"}}},
		{Node: "mx2", Status: &api.NodeStatus{Node: "mx2", Role: "backup", Galera: api.GaleraStatus{OK: true, Detail: "Primary Synced size=2 seqno=42"},
			Breaker: api.Breaker{Max: 2, Tripped: true}, Maintenance: true, Mailcow: "2026-07a (489db905122d)",
			Backup: &api.BackupStatus{LastRun: &api.BackupRun{Time: now.Add(-time.Minute), Kind: "database", Error: "mariabackup: exit status 1"}}}},
		{Node: "mx3", Error: "unreachable: connect: connection refused"},
	}
	var b bytes.Buffer
	printStatus(&b, replies, now)
	out := b.String()
	for _, want := range []string{"NODE", "mx1   MASTER", "Primary Synced size=2 seqno=42", "healthy", "203.0.113.100",
		"#4 takeover → master in 10s, 1m0s ago", "1/2", "mx2   BACKUP", "0/2 TRIPPED", "mx3   unreachable", "connection refused",
		"2026-09 (0123456789ab)", "2026-07a (489db905122d)", "warning: the nodes hold different mailcow releases",
		"backups (read by mx1 5s ago): Volume 3h0m0s ago (5f3ce54a, from mx1), database none",
		"warning: backups are stale (backup.max_age 26h0m0s): no copy of the database",
		"warning: mx2's last database backup failed 1m0s ago: mariabackup: exit status 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestStatusPort(t *testing.T) {
	for _, tc := range []struct {
		listen []string
		port   string
	}{
		{[]string{"127.0.0.1:7480", "private:7490"}, "7490"},
		{[]string{":7480"}, "7480"},
		{[]string{"0.0.0.0:7481"}, "7481"},
		{[]string{"127.0.0.1:7480"}, ""},
	} {
		p, err := statusPort(tc.listen)
		if p != tc.port || (tc.port == "") != (err != nil) {
			t.Errorf("%v: %q %v", tc.listen, p, err)
		}
	}
}
