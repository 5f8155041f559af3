package galera

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func spec() Spec {
	return Spec{ClusterName: "mail-ha", NodeName: "mx1", NodeIP: "10.99.0.11", Members: []string{"10.99.0.11", "10.99.0.12", "10.99.0.13"},
		DataDir: "/var/lib/mysql", Socket: "/run/mysqld/mysqld.sock", PidFile: "/run/mysqld/mysqld.pid", ErrorLog: "/var/log/mysql/error.log",
		GroupPort: 4567, ISTPort: 4568, SSTPort: 4444, SSTMethod: "rsync"}
}

func TestRenderGolden(t *testing.T) {
	got, err := Render(spec())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		os.WriteFile("testdata/60-mailcow-ha.cnf", got, 0o644)
	}
	want, _ := os.ReadFile("testdata/60-mailcow-ha.cnf")
	if string(got) != string(want) {
		t.Fatalf("differs from testdata/60-mailcow-ha.cnf (run with -update and review):\n%s", got)
	}
	for _, w := range []string{"wsrep_cluster_address = gcomm://10.99.0.11:4567,10.99.0.12:4567,10.99.0.13:4567",
		"binlog_format = ROW", "innodb_autoinc_lock_mode = 2", "pc.recovery=true", "wsrep_sst_method = rsync",
		"bind-address = 10.99.0.11", "max_allowed_packet = 192M", "collation-server = utf8mb4_general_ci"} {
		if !strings.Contains(string(got), w) {
			t.Errorf("lacks %q", w)
		}
	}
	bad := spec()
	bad.DataDir = "/x\n[client]"
	if _, err := Render(bad); err == nil {
		t.Error("a value with a newline was rendered")
	}
	bad = spec()
	bad.SSTMethod = "xtrabackup"
	if _, err := Render(bad); err == nil {
		t.Error("unknown SST method rendered")
	}
}

func TestGrastate(t *testing.T) {
	in := "# GALERA saved state\nversion: 2.1\nuuid:    9dd37a7e-eb46-11f1-a9bc-030597b2c8a1\nseqno:   -1\nsafe_to_bootstrap: 0\n"
	p, err := ParseGrastate([]byte(in))
	if err != nil || p.UUID != "9dd37a7e-eb46-11f1-a9bc-030597b2c8a1" || p.Seqno != -1 || p.SafeToBootstrap || p.Known() {
		t.Fatalf("%+v %v", p, err)
	}
	p.Seqno, p.SafeToBootstrap = 42, true
	back, err := ParseGrastate(FormatGrastate(p))
	if err != nil || back != p {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if _, err := ParseGrastate([]byte("version: 2.1\n")); err == nil {
		t.Error("no uuid accepted")
	}
	log := "2026-11-28 16:13:30 0 [Note] WSREP: Recovered position: 00000000-0000-0000-0000-000000000000:-1\n" +
		"2026-11-28 16:13:31 0 [Note] WSREP: Recovered position: 9dd37a7e-eb46-11f1-a9bc-030597b2c8a1:5\n"
	if u, s, ok := ParseRecovered([]byte(log)); !ok || u != "9dd37a7e-eb46-11f1-a9bc-030597b2c8a1" || s != 5 {
		t.Fatalf("recovered %s %d %v", u, s, ok)
	}
	if _, _, ok := ParseRecovered([]byte("nothing here")); ok {
		t.Error("found a position in nothing")
	}
}

const uuid = "9dd37a7e-eb46-11f1-a9bc-030597b2c8a1"

func rep(node string, seqno int64, safe bool) Report {
	return Report{Node: node, Answered: true, Pos: Position{UUID: uuid, Seqno: seqno, SafeToBootstrap: safe}}
}

func TestFirstBoot(t *testing.T) {
	fresh := Position{UUID: ZeroUUID, Seqno: -1} // what a node without grastate.dat reports
	quiet := []Report{{Node: "mx2", Answered: true, Pos: fresh}, {Node: "mx3", Answered: true, Pos: fresh}}
	if d := FirstBoot("mx1", true, quiet); d.Action != Bootstrap {
		t.Errorf("bootstrap node, quiet peers: %+v", d)
	}
	if d := FirstBoot("mx2", false, quiet); d.Action != Join {
		t.Errorf("other node: %+v", d)
	}
	if d := FirstBoot("mx1", true, []Report{{Node: "mx2", Answered: true, Pos: fresh}, {Node: "mx3"}}); d.Action != Wait || !strings.Contains(d.Reason, "mx3") {
		t.Errorf("a silent peer: %+v", d)
	}
	if d := FirstBoot("mx1", true, []Report{{Node: "mx2", Answered: true, Primary: true}, {Node: "mx3"}}); d.Action != Join {
		t.Errorf("a peer runs Primary: %+v", d)
	}
	// The bootstrap node's datadir is new (a rebuilt server) while the others are down and recover: they report
	// the cluster's uuid, with a seqno or without one (crashed, not recovered yet). No new cluster starts here.
	history := []Report{{Node: "mx2", Answered: true, Pos: Position{UUID: uuid, Seqno: 41}}, {Node: "mx3", Answered: true, Pos: Position{UUID: uuid, Seqno: -1}}}
	if d := FirstBoot("mx1", true, history); d.Action != Wait || !strings.Contains(d.Reason, "mx2="+uuid+":41") || !strings.Contains(d.Reason, "mx3=") {
		t.Errorf("peers with a history: %+v", d)
	}
	if d := FirstBoot("mx1", true, []Report{history[1], {Node: "mx2", Answered: true, Pos: fresh}}); d.Action != Wait {
		t.Errorf("one peer with a history: %+v", d)
	}
	// Once their recovery runs a Primary component, the rebuilt node joins it.
	if d := FirstBoot("mx1", true, []Report{{Node: "mx2", Answered: true, Primary: true, Pos: Position{UUID: uuid, Seqno: 42}}, history[1]}); d.Action != Join {
		t.Errorf("peers recovered: %+v", d)
	}
}

func TestRecover(t *testing.T) {
	zero := Report{Node: "mx3", Answered: true, Pos: Position{UUID: ZeroUUID, Seqno: -1}}
	for _, tc := range []struct {
		name   string
		self   Report
		peers  []Report
		action Action
		winner string
		reason string
	}{
		{"highest seqno wins", rep("mx2", 10, false), []Report{rep("mx1", 9, false), rep("mx3", 8, false)}, Bootstrap, "mx2", "highest seqno 10"},
		{"others wait for it", rep("mx1", 9, false), []Report{rep("mx2", 10, false), rep("mx3", 8, false)}, Join, "mx2", ""},
		{"safe_to_bootstrap wins", rep("mx1", 9, true), []Report{rep("mx2", 9, false), rep("mx3", 8, false)}, Bootstrap, "mx1", "safe_to_bootstrap"},
		{"zero never wins", zero, []Report{rep("mx1", 3, false), rep("mx2", 2, false)}, Join, "mx1", ""},
		{"tie goes to the first name", rep("mx2", 7, false), []Report{rep("mx1", 7, false), rep("mx3", 7, false)}, Join, "mx1", ""},
		{"a tie goes to the live survivor", rep("mx1", 7, false), []Report{{Node: "mx3", Answered: true, Joining: true, Pos: Position{UUID: uuid, Seqno: 7}}, rep("mx2", 7, false)}, Join, "mx3", "waiting to join"},
		{"silent peer: wait", rep("mx1", 9, false), []Report{rep("mx2", 10, false), {Node: "mx3"}}, Wait, "", "mx3"},
		{"running Primary: join", rep("mx1", 9, false), []Report{{Node: "mx2", Answered: true, Primary: true}, {Node: "mx3"}}, Join, "", "runs a Primary"},
		{"fork: wait", rep("mx1", 9, false), []Report{{Node: "mx2", Answered: true, Pos: Position{UUID: "11111111-eb46-11f1-a9bc-030597b2c8a1", Seqno: 20}}, rep("mx3", 1, false)}, Wait, "", "fork"},
		{"a peer answered without a position: wait", rep("mx1", 9, false), []Report{rep("mx2", 10, false), {Node: "mx3", Answered: true}}, Wait, "", "mx3"},
		{"nobody knows: wait", zero, []Report{{Node: "mx1", Answered: true, Pos: Position{UUID: uuid, Seqno: -1}}}, Wait, "", "no node knows"},
	} {
		d := Recover(tc.self, tc.peers)
		if d.Action != tc.action || d.Winner != tc.winner || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s: %+v", tc.name, d)
		}
		if d.Action == Bootstrap && (!d.From.Known() || d.From.UUID != uuid) {
			t.Errorf("%s: bootstrap without a start position: %+v", tc.name, d)
		}
	}
}

// Joiners go one at a time, and the reason says whom a node waits for and why.
func TestQueue(t *testing.T) {
	synced := Report{Node: "mx1", Answered: true, Primary: true, State: "Synced"}
	donor := Report{Node: "mx1", Answered: true, Joining: true, State: DonorState}
	joiner := Report{Node: "mx2", Joining: true} // its mariadbd does not answer during the transfer
	fresh := Report{Node: "mx2", Answered: true, Pos: Position{UUID: ZeroUUID, Seqno: -1}}
	for _, tc := range []struct {
		name   string
		self   string
		peers  []Report
		wait   bool
		winner string
		reason string
	}{
		{"no Primary anywhere", "mx3", []Report{{Node: "mx1", Joining: true}, fresh}, true, "?", "no Primary component yet"},
		{"the only Primary member donates", "mx3", []Report{donor, joiner}, true, "mx1", "mx1 is Donor/Desynced: a state transfer is under way"},
		{"a peer joins", "mx3", []Report{synced, joiner}, true, "mx2", "mx2 is joining"},
		{"a second member donates", "mx3", []Report{synced, {Node: "mx2", Answered: true, Joining: true, State: DonorState}}, true, "mx2", "mx2 is Donor/Desynced: one joiner at a time"},
		{"a smaller name goes first", "mx3", []Report{synced, fresh}, true, "mx2", "mx2 joins first"},
		{"a larger name waits for us", "mx2", []Report{synced, {Node: "mx3", Answered: true}}, false, "", ""},
		{"all others Synced", "mx3", []Report{synced, {Node: "mx2", Answered: true, Primary: true, State: "Synced"}}, false, "", ""},
	} {
		d, wait := queue(tc.self, tc.peers)
		if wait != tc.wait || d.Winner != tc.winner || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s: wait=%v %+v", tc.name, wait, d)
		}
		if wait && d.Action != Join {
			t.Errorf("%s: a waiting joiner must stay a joiner: %+v", tc.name, d)
		}
	}
}

// A datadir with a database beside MariaDB's own holds a cluster's data, even without grastate.dat: no first boot.
func TestHasUserData(t *testing.T) {
	dir := t.TempDir()
	if HasUserData(filepath.Join(dir, "none")) {
		t.Error("a missing datadir holds data")
	}
	for _, d := range []string{"mysql", "performance_schema", "sys", "#innodb_temp", "lost+found"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ibdata1"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if HasUserData(dir) {
		t.Error("a new server's system tables count as data")
	}
	if err := os.Mkdir(filepath.Join(dir, "mailcow"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !HasUserData(dir) {
		t.Error("mailcow's database does not count as data")
	}
}

// The operator's forced bootstrap: from this node's position, never beside a running Primary component, never
// from an empty datadir.
func TestForced(t *testing.T) {
	pos := Position{UUID: uuid, Seqno: 41}
	silent := []Report{{Node: "mx2"}, {Node: "mx3"}}
	if d := forced("mx1", pos, silent); d.Action != Bootstrap || d.From != pos || d.Winner != "mx1" || !strings.Contains(d.Reason, "forced") {
		t.Errorf("silent peers: %+v", d)
	}
	if d := forced("mx1", pos, []Report{{Node: "mx2", Answered: true, Primary: true}, {Node: "mx3"}}); d.Action != Join {
		t.Errorf("a peer runs a Primary component: %+v", d)
	}
	if d := forced("mx1", Position{UUID: ZeroUUID, Seqno: -1}, silent); d.Action != Wait || !strings.Contains(d.Reason, "no position") {
		t.Errorf("empty datadir: %+v", d)
	}
}
