package lab

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/backup"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/keepalived"
	"github.com/mailcow-ha/mailcow-ha/agent/release"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
	"github.com/mailcow-ha/mailcow-ha/provision"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// buildBins builds mailcow-ha and mailcow-stub (static) into a directory that only root can write: keepalived's
// script security refuses check scripts below world-writable directories such as /tmp.
func buildBins(t *testing.T) (string, string) { return buildBinsTB(t) }

func buildBinsTB(t testing.TB) (string, string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "build", "test-bin", netns.Unique("lab-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, c := range []string{"mailcow-ha", "mailcow-stub"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "github.com/mailcow-ha/mailcow-ha/cmd/"+c)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	return filepath.Join(dir, "mailcow-ha"), filepath.Join(dir, "mailcow-stub")
}

// scenario runs load and watches the invariants while something breaks: mail is sent to the Floating IP every
// 200 ms from the client, and no two nodes may ever run the stack at the same time.
type scenario struct {
	l       *Lab
	stop    chan struct{}
	wg      sync.WaitGroup
	sent    atomic.Int64
	acked   atomic.Int64
	mu      sync.Mutex
	overlap string
}

func (l *Lab) watch(ctx context.Context) *scenario {
	s := &scenario{l: l, stop: make(chan struct{})}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			s.sent.Add(1)
			if _, err := l.SendOne(ctx, i); err == nil {
				s.acked.Add(1)
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			var running []string
			for _, n := range l.nodes() {
				if k := n.StackRunning(ctx); k > 0 {
					running = append(running, fmt.Sprintf("%s(%d)", n.Name, k))
				}
			}
			if len(running) > 1 {
				s.mu.Lock()
				if s.overlap == "" {
					s.overlap = time.Now().Format(time.RFC3339Nano) + ": " + strings.Join(running, " and ")
				}
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// flowing waits, at most within, until the load has had a mail acknowledged during the scenario.
func (s *scenario) flowing(within time.Duration) {
	for end := time.Now().Add(within); s.acked.Load() == 0 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
}

// end stops the load and checks: no overlap, and every acknowledged mail (of the whole test) is readable on the
// master through the Floating IP.
func (s *scenario) end(t *testing.T, ctx context.Context) {
	t.Helper()
	// A scenario quicker than the load's first mail (one every 200 ms) waits for one: every scenario ends on a
	// cluster that accepts mail (cluster rotate-secret took 0.1 s, and a make test run sent none during it).
	s.flowing(30 * time.Second)
	close(s.stop)
	s.wg.Wait()
	if s.overlap != "" {
		t.Errorf("two nodes ran the stack at once: %s", s.overlap)
	}
	acked, missing, err := s.l.CheckMail(ctx)
	if err != nil {
		out, _ := exec.Command("ip", "-n", s.l.rt.Name, "route").CombinedOutput()
		diag := "router: " + string(out)
		for _, n := range s.l.Nodes {
			o, _ := exec.Command("nsenter", "--net=/run/netns/"+n.NS.Name, "ss", "-ltn").CombinedOutput()
			a, _ := exec.Command("ip", "-n", n.NS.Name, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
			diag += fmt.Sprintf("\n%s: %s%s", n.Name, a, o)
		}
		t.Fatalf("check mail: %v\n%s", err, diag)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged mails are not readable: %v", len(missing), acked, missing)
	}
	// By UID as well, as a mail client keeps its place: UID SEARCH lists every message (one line), and the last
	// one's flags are fetched by its UID.
	out, err := s.l.IMAP(ctx, "UID SEARCH ALL")
	uids := strings.Fields(strings.TrimPrefix(strings.TrimSpace(out), "* SEARCH"))
	if err != nil || len(uids) < acked || len(uids) == 0 {
		t.Errorf("UID SEARCH ALL listed %d messages, want at least the %d acknowledged (%v)", len(uids), acked, err)
	} else if out, err := s.l.IMAP(ctx, "UID FETCH "+uids[len(uids)-1]+" (FLAGS)"); err != nil || !strings.Contains(out, "UID "+uids[len(uids)-1]) {
		t.Errorf("UID FETCH %s (FLAGS): %q %v", uids[len(uids)-1], out, err)
	}
	if s.acked.Load() == 0 {
		t.Errorf("no mail was acknowledged during the scenario (%d sent)", s.sent.Load())
	}
	t.Logf("mail: %d sent, %d acknowledged during the scenario; %d acknowledged in all, all readable", s.sent.Load(), s.acked.Load(), acked)
}

// TestLab runs the end-to-end scenarios one after another on one lab: each breaks the cluster in one way, under
// mail load, and ends with exactly one node holding the Floating IP, the Volume and a running stack.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("the lab takes minutes; -short skips it")
	}
	if why := Preflight(); why != "" {
		t.Skip(why)
	}
	bin, stub := buildBins(t)
	root, _ := filepath.Abs("..")
	dir := filepath.Join(root, "build", "test-lab", netns.Unique("lab-"))
	t.Cleanup(func() { os.RemoveAll(dir) })
	lat := hcloudsim.DefaultLatencies().Scale(0.5)
	// The test ends itself well before go test's own timeout would kill the process: that kill runs no clean-up
	// (reap.Sweep removes its leftovers all the same, but the reasons of the failure would be lost).
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-3*time.Minute))
		defer cancel()
	}
	logf, _ := os.Create(filepath.Join(t.TempDir(), "lab.log"))
	began := time.Now()
	// The breaker is at its production default (2 takeovers per node within the hour); the flapping scenario trips
	// it. Every scenario starts from Reset, which clears every node's takeover history.
	// check_grace 15 s (production: 30 s): Debian's postfix, killed and restarted by dockerd, took more than 6 s to
	// greet again in a clean-clone make test, and the restart inside the grace period must move nothing.
	opts := Options{Dir: dir, Bin: bin, StubBin: stub, MailCache: mailservers.CacheDir(root), Latencies: &lat, CheckGrace: 15 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logf, nil))}
	// Every node's mailcow directory holds mailcow's real release tree, as on the appliance; the update scenario
	// rolls a release after it over the cluster.
	if tree, err := mailcowtree.Dir(ctx, root); err != nil {
		t.Logf("the nodes hold no mailcow release tree (the update scenario skips): %v", err)
	} else if pin, err := mailcowtree.ReadPin(root); err == nil {
		opts.MailcowTree, opts.MailcowTag = tree, pin.Tag
	}
	// The lab is made with an IPv6 Floating IP where the kernel has IPv6: every failover moves it too.
	if why := IPv6Available(); why != "" {
		t.Logf("no IPv6 Floating IP in this lab: %s", why)
	} else {
		opts.IPv6 = true
	}
	l, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The flapping scenario lowers the breaker's limit and the check's grace, the wreck scenario after it puts them
	// back. The maintenance scenario lowers the grace for its own time. (15 s is for postfix-mailcow's restart
	// by dockerd inside the grace period under make test's load; a scenario that kills postfix for good need not
	// wait that long.)
	breakerMax, checkGrace := l.o.BreakerMax, l.o.CheckGrace
	const shortGrace = 5 * time.Second
	reloaded := func(t *testing.T, t0 time.Time) {
		t.Helper()
		var want []Want
		for _, n := range l.Nodes {
			want = append(want, Want{"config_reloaded", n.Name, ""})
		}
		if missing := l.Alerts.WaitAlerts(t0, 15*time.Second, want...); len(missing) > 0 {
			t.Fatalf("the reload was not applied: missing %v", missing)
		}
	}
	var demotions []time.Duration // every demotion the agents reported, for the fence_timeout margin
	var slow []Alert
	collect := func() {
		for _, a := range l.Alerts.Since(time.Time{}) {
			switch a.Event.Event {
			case "demoted":
				if i := strings.LastIndex(a.Message, " after "); i >= 0 {
					if d, err := time.ParseDuration(a.Message[i+7:]); err == nil {
						demotions = append(demotions, d)
					}
				}
			case "demotion_slow":
				slow = append(slow, a)
			}
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			// Keep the logs for a look after the run.
			keep := filepath.Join(root, "build", "test-lab-failed", filepath.Base(dir))
			for _, n := range l.Nodes {
				os.MkdirAll(filepath.Join(keep, n.Name), 0o755)
				exec.Command("cp", filepath.Join(n.Dir, "agent.log"), filepath.Join(n.Dir, "dockerd.log"), filepath.Join(keep, n.Name)).Run()
			}
			t.Logf("logs kept in %s", keep)
			// Last, where a CI summary's tail shows it: the lab's own log.
			b, _ := os.ReadFile(logf.Name())
			t.Logf("=== lab log (last 3000 bytes)\n%s", tail.Bytes(string(b), 3000))
		}
		if n := l.Alerts.Rejected(); n > 0 {
			t.Errorf("the webhook receiver rejected %d deliveries (signature or schema)", n)
		}
		collect()
		if len(demotions) > 0 {
			t.Logf("demotions: %d, the slowest %s, fence_timeout %s (%.0f%% of it); demotion_slow alerts: %d",
				len(demotions), slices.Max(demotions), l.o.FenceTimeout, 100*slices.Max(demotions).Seconds()/l.o.FenceTimeout.Seconds(), len(slow))
		}
		for _, a := range slow {
			t.Logf("demotion_slow on %s: %s", a.Node, a.Message)
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
		assertClean(t, l)
	})
	m, err := l.WaitSettled(ctx, 240*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab settled with MASTER %s after %s", m, time.Since(began).Round(100*time.Millisecond))
	// The MASTER wrote mailcow.conf as on the appliance: mode 0600, .env linked to it, the cluster's hostname and
	// Galera's password, and the portal's API key (the one mailcow.conf allows) in its own 0600 file.
	if n := l.Node(m); n != nil {
		conf := filepath.Join(n.Dir, "mailcow", "mailcow.conf")
		b, err := os.ReadFile(conf)
		fi, serr := os.Stat(conf)
		key, kerr := os.ReadFile(filepath.Join(n.Dir, "mailcow-api.key"))
		// Galera's password is the one `cluster create` made and put in the user-data.
		pw, perr := os.ReadFile(filepath.Join(l.secrets.Dir, provision.GaleraPasswordFile))
		switch {
		case err != nil || serr != nil || kerr != nil || perr != nil:
			t.Errorf("%s: mailcow.conf, the API key file or --out's Galera password: %v %v %v %v", m, err, serr, kerr, perr)
		case fi.Mode().Perm() != 0o600:
			t.Errorf("%s: mailcow.conf has mode %v, want 0600", m, fi.Mode().Perm())
		case !strings.Contains(string(b), "\nMAILCOW_HOSTNAME="+Hostname+"\n") || !strings.Contains(string(b), "\nDBPASS="+strings.TrimSpace(string(pw))+"\n") ||
			!strings.Contains(string(b), "\nAPI_KEY="+strings.TrimSpace(string(key))+"\n"):
			t.Errorf("%s: mailcow.conf lacks the hostname, Galera's password or the portal's API key:\n%s", m, b)
		}
		if link, err := os.Readlink(filepath.Join(n.Dir, "mailcow", ".env")); err != nil || link != "mailcow.conf" {
			t.Errorf("%s: .env: %q %v; want a link to mailcow.conf", m, link, err)
		}
	}
	// The Floating IP has the mail server's name as reverse DNS: `cluster create` set it, and the MASTER sets it
	// again after its promotion (off the takeover's path); neither may lose it.
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if ptr := l.Sim.State().FloatingIPs[0].DNSPtr; ptr == Hostname {
			break
		} else if time.Now().After(end) {
			t.Errorf("the Floating IP's reverse DNS is %q 15 s after the lab settled, want %q", ptr, Hostname)
			break
		}
	}

	// scenario runs one scenario from the lab's known state: Reset repairs whatever the last one left (within 5
	// minutes), else the lab is built anew. A failed scenario logs the lab's status and every agent's log lines
	// since it began; the next one starts from the known state all the same.
	var rebuildErr error // a lab that could not be built anew: the scenarios after it do not run
	scenario := func(name string, reset bool, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			if ctx.Err() != nil {
				t.Fatalf("not run: the test's time is up (%v)", ctx.Err())
			}
			if rebuildErr != nil {
				t.Fatalf("not run: the lab could not be built anew (%v)", rebuildErr)
			}
			if reset {
				t0 := time.Now()
				m, repaired, err := l.Reset(ctx, 5*time.Minute)
				if err != nil {
					var st strings.Builder
					l.Status(ctx).Print(&st)
					t.Logf("the lab did not come back to its known state (%v):\n%s\nbuilding it anew", err, st.String())
					collect()
					if err := l.Down(); err != nil {
						t.Logf("lab down: %v", err)
					}
					nl, err := Up(ctx, opts)
					if nl != nil {
						l = nl // a lab built halfway is still taken down by the cleanup
					}
					if err != nil {
						rebuildErr = err
						t.Fatalf("building the lab anew: %v", err)
					}
					if m, err = l.WaitSettled(ctx, 240*time.Second); err != nil {
						t.Fatalf("the new lab: %v", err)
					}
					repaired = []string{"built anew"}
				}
				if len(repaired) > 0 {
					t.Logf("known state after %s (MASTER %s); repaired: %s", time.Since(t0).Round(100*time.Millisecond), m, strings.Join(repaired, ", "))
				}
			}
			mark := l.MarkLogs()
			defer func() {
				if t.Failed() {
					var st strings.Builder
					l.Status(ctx).Print(&st)
					m, why := l.Master(ctx)
					if m == "" {
						m = "none: " + why
					}
					t.Logf("=== lab status when %q failed (master: %s)\n%s", name, m, st.String())
					t.Logf("%s", l.LogsSince(mark, 6000))
				}
			}()
			fn(t)
		})
	}

	// failover breaks the master, waits for another node to hold everything, then repairs the old one.
	var before func(old *Node) // runs just before the kill
	// alerts checks that the webhook receiver got every wanted alert since t0.
	alerts := func(t *testing.T, t0 time.Time, want ...Want) {
		t.Helper()
		if missing := l.Alerts.WaitAlerts(t0, 15*time.Second, want...); len(missing) > 0 {
			t.Errorf("webhook alerts missing: %v; received:\n%s", missing, FormatAlerts(l.Alerts.Since(t0), t0))
		}
	}
	// failover breaks the master, waits for another node to hold everything, checks the alerts (the new master's
	// failover_started, failover_succeeded about the old one and promoted, plus extra ones; "NEW" and "OLD" stand
	// for the nodes), then repairs the old one.
	failover := func(t *testing.T, how string, repair func(n *Node) error, extra ...Want) {
		old, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s := l.watch(ctx)
		if before != nil {
			before(l.Node(old))
			before = nil
		}
		t0 := time.Now()
		if err := l.Node(old).Kill(ctx, how); err != nil {
			t.Fatal(err)
		}
		nm, err := l.WaitMaster(ctx, 120*time.Second, old)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s of %s: %s holds everything after %s", how, old, nm, time.Since(t0).Round(100*time.Millisecond))
		want := []Want{{"failover_started", nm, nm}, {"failover_succeeded", nm, old}, {"promoted", nm, nm}}
		for _, w := range extra {
			r := strings.NewReplacer("NEW", nm, "OLD", old)
			want = append(want, Want{w.Event, r.Replace(w.Node), r.Replace(w.Subject)})
		}
		alerts(t, t0, want...)
		// Uptime Kuma's view: /primary through the Floating IP answers 200 from the new master.
		var ans struct{ Node string }
		code, body, err := l.Probe(ctx, FloatingIP, "/primary")
		json.Unmarshal(body, &ans)
		if err != nil || code != 200 || ans.Node != nm {
			t.Errorf("/primary via the Floating IP after the failover: %d %s %v", code, body, err)
		}
		// The IPv6 Floating IP followed: routed to the new master, its ::1 on the new master's eth0 only.
		if f, addr, ok := l.FloatingIPv6(); ok {
			if f.Server != l.Node(nm).ID {
				t.Errorf("the IPv6 Floating IP routes to server %d, not to %s (%d)", f.Server, nm, l.Node(nm).ID)
			}
			for _, n := range l.Nodes {
				if n.Powered() && n.HasIPv6(addr) != (n.Name == nm) {
					t.Errorf("%s holds %s: %v (the MASTER is %s)", n.Name, addr, n.HasIPv6(addr), nm)
				}
			}
			t.Logf("the IPv6 Floating IP %s followed: routed to %s, %s on its eth0 alone", f.IP, nm, addr)
		} else if l.o.IPv6 {
			t.Error("the lab was made with --ipv6, but the simulator has no IPv6 Floating IP")
		}
		time.Sleep(time.Second) // mail through the new master
		s.end(t, ctx)
		if err := repair(l.Node(old)); err != nil {
			t.Fatal(err)
		}
		if err := l.waitRole(ctx, old, "backup", 240*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := l.WaitSettled(ctx, 240*time.Second); err != nil {
			t.Fatal(err)
		}
		// The old master is back as a BACKUP with nothing of the master's.
		st := l.Status(ctx)
		for _, n := range st.Nodes {
			if n.Name == old && (n.Role != "BACKUP" || n.Mounted || n.HasAddress || n.StackRunning > 0) {
				t.Errorf("%s came back as %+v", old, n)
			}
		}
		if _, addr, ok := l.FloatingIPv6(); ok && l.Node(old).HasIPv6(addr) {
			t.Errorf("%s came back with the IPv6 Floating IP's %s on eth0", old, addr)
		}
	}
	scenario("health endpoints and metrics", true, func(t *testing.T) {
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Through the Floating IP, /primary answers 200 from the MASTER, as Uptime Kuma would see it.
		code, body, err := l.Probe(ctx, FloatingIP, "/primary")
		var ans struct{ Node string }
		json.Unmarshal(body, &ans)
		if err != nil || code != 200 || ans.Node != m {
			t.Errorf("/primary via the Floating IP: %d %s %v", code, body, err)
		}
		for _, n := range l.Nodes {
			want := map[string]int{"/health": 200, "/primary": 503, "/replica": 200}
			if n.Name == m {
				want["/primary"], want["/replica"] = 200, 503
			}
			for path, w := range want {
				if code, body, err := l.Probe(ctx, n.PubIP, path); err != nil || code != w {
					t.Errorf("%s %s: %d (want %d) %s %v", n.Name, path, code, w, body, err)
				}
			}
			_, body, err := l.Probe(ctx, n.PubIP, "/status")
			if err != nil {
				t.Fatalf("%s /status: %v", n.Name, err)
			}
			var st struct {
				Role   string
				Galera struct{ OK bool }
				Volume struct{ Mounted bool }
				Stack  struct {
					Healthy  bool
					Services map[string]bool
				}
				Transitions []struct {
					Kind, Result string
					Phases       []struct{ Name string }
				}
			}
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("%s /status: %v %s", n.Name, err, body)
			}
			if !st.Galera.OK || (n.Name == m) != (st.Role == "master") || (n.Name == m) != st.Volume.Mounted {
				t.Errorf("%s /status: %s", n.Name, body)
			}
			if n.Name == m && (!st.Stack.Healthy || len(st.Stack.Services) < 7 || len(st.Transitions) == 0 ||
				st.Transitions[0].Kind != "takeover" || st.Transitions[0].Result != "master" || len(st.Transitions[0].Phases) < 4) {
				t.Errorf("%s /status of the MASTER: %s", n.Name, body)
			}
			_, body, err = l.Probe(ctx, n.PubIP, "/metrics")
			role := "backup"
			if n.Name == m {
				role = "master"
			}
			for _, want := range []string{`mailcow_ha_role{role="` + role + `"} 1`, "mailcow_ha_galera_ok 1", `mailcow_ha_webhook_sent_total{webhook="lab"}`,
				"mailcow_ha_breaker_max 2"} {
				if err != nil || !strings.Contains(string(body), want) {
					t.Errorf("%s /metrics lacks %q (%v)", n.Name, want, err)
				}
			}
			if n.Name == m {
				for _, want := range []string{`mailcow_ha_transition_phase_seconds_count{phase="attach_volume"}`, `mailcow_ha_transitions_total{kind="takeover",result="master"} 1`,
					`mailcow_ha_hcloud_requests_total{code="ok",operation="attach_volume"}`, `mailcow_ha_stack_service_healthy{service="postfix-mailcow"} 1`,
					"mailcow_ha_hcloud_action_seconds_count", "mailcow_ha_hcloud_ratelimit_remaining"} {
					if !strings.Contains(string(body), want) {
						t.Errorf("%s /metrics lacks %q", n.Name, want)
					}
				}
			}
		}
	})
	scenario("mailcow-ha status", true, func(t *testing.T) {
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// On a node, over the private network, as an operator would run it.
		n := l.Nodes[len(l.Nodes)-1]
		cmd := exec.Command("nsenter", "--net=/run/netns/"+n.NS.Name, l.o.Bin, "status", "--config", filepath.Join(n.Dir, "config.toml"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		for _, node := range l.Nodes {
			role := "BACKUP"
			if node.Name == m {
				role = "MASTER"
			}
			if !regexp.MustCompile(`(?m)^` + node.Name + `\s+` + role + `\s+Primary Synced`).Match(out) {
				t.Errorf("status lacks %s as %s:\n%s", node.Name, role, out)
			}
		}
		t.Logf("mailcow-ha status on %s:\n%s", n.Name, out)
	})
	scenario("flapping: the breaker stops a node's second takeover", true, func(t *testing.T) {
		// postfix keeps dying on whichever node is MASTER. With failover.breaker.max = 1 (applied by a reload; the
		// production default is 2, the same rule one round later) each node may take over once within the hour;
		// the node elected a second time refuses, stays FAULT and alerts, and another node takes over. Reset
		// cleared every history, so it takes at most three rounds on three nodes. The wreck scenario after this one
		// finds the breaker tripped and puts max and the grace back.
		//
		// The first round is also the failover on a critical service down beyond the grace period (its alerts are
		// checked; the other kinds of failure have scenarios of their own). The same reload shortens
		// failover.check_grace to 5 s, so that the rounds do not wait out the lab's 15 s three times.
		t0 := time.Now()
		if err := l.reconfigure(func(o *Options) { o.BreakerMax, o.CheckGrace = 1, shortGrace }); err != nil {
			t.Fatal(err)
		}
		reloaded(t, t0)
		s := l.watch(ctx)
		var tripped []Alert
		for round := 1; round <= 8 && len(tripped) == 0; round++ {
			m, err := l.WaitSettled(ctx, 240*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			if err := l.Node(m).Kill(ctx, "postfix"); err != nil {
				t.Fatal(err)
			}
			nm, err := l.WaitMaster(ctx, 120*time.Second, m)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("round %d: postfix killed on %s → %s MASTER after %s", round, m, nm, time.Since(t1).Round(100*time.Millisecond))
			if round == 1 {
				alerts(t, t1, Want{"stack_degraded", m, ""}, Want{"demoted", m, ""},
					Want{"failover_started", nm, nm}, Want{"failover_succeeded", nm, m}, Want{"promoted", nm, nm})
			}
			for _, a := range l.Alerts.Since(t0) {
				if a.Event.Event == "breaker_tripped" {
					tripped = append(tripped, a)
				}
			}
		}
		if len(tripped) == 0 {
			t.Fatalf("eight takeovers and no breaker_tripped alert:\n%s", FormatAlerts(l.Alerts.Since(t0), t0))
		}
		a := tripped[0]
		if a.Severity != "critical" || !strings.Contains(a.Message, "1 takeovers within 1h0m0s") {
			t.Errorf("breaker alert: %+v", a.Event)
		}
		if st, err := l.Node(a.Node).AgentState(); err != nil || !st.Breaker {
			t.Errorf("%s after the breaker tripped: %+v %v", a.Node, st, err)
		}
		if m, why := l.Master(ctx); m == "" || m == a.Node {
			t.Errorf("after the breaker tripped on %s: master %q (%s)", a.Node, m, why)
		}
		t.Logf("breaker tripped on %s after %s: %s", a.Node, a.Received.Sub(t0).Round(100*time.Millisecond), a.Message)
		s.end(t, ctx)
		// The breaker stays tripped: the next scenario finds it so.
	})
	scenario("a wrecked lab comes back to its known state", false, func(t *testing.T) {
		// No Reset first: the breaker the flapping scenario tripped is still tripped. On top of it: maintenance on,
		// a BACKUP powered off, the other hung (agent and keepalived stopped). Reset must repair all of it, and the
		// cluster must settle.
		t.Cleanup(func() {
			t1 := time.Now()
			if err := l.reconfigure(func(o *Options) { o.BreakerMax, o.CheckGrace = breakerMax, checkGrace }); err != nil {
				t.Fatal(err)
			}
			reloaded(t, t1)
		})
		var trippedOn string
		for _, n := range l.Nodes {
			if a, err := n.AgentState(); err == nil && a.Breaker {
				trippedOn = n.Name
			}
		}
		if trippedOn == "" {
			t.Logf("no breaker is tripped (the flapping scenario failed or was not run): the rest of the wreck only")
		}
		// Not WaitSettled: the node with the tripped breaker is FAULT, not BACKUP.
		m, err := l.WaitMaster(ctx, 120*time.Second, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Maintenance(true); err != nil {
			t.Fatal(err)
		}
		var backups []*Node
		for _, n := range l.Nodes {
			if n.Name != m {
				backups = append(backups, n)
			}
		}
		// The node with the tripped breaker is the one hung, not the one powered off: its agent keeps the tripped
		// breaker in memory, which Reset must clear (after a power cut the agent knows only its past takeovers).
		if backups[0].Name == trippedOn {
			backups[0], backups[1] = backups[1], backups[0]
		}
		if err := l.SimPower(backups[0], false); err != nil {
			t.Fatal(err)
		}
		if err := backups[1].Kill(ctx, "hang"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		t0 := time.Now()
		nm, repaired, err := l.Reset(ctx, 5*time.Minute)
		if err != nil {
			t.Fatalf("reset: %v (repaired: %v)", err, repaired)
		}
		t.Logf("known state after %s, MASTER %s; repaired: %s", time.Since(t0).Round(100*time.Millisecond), nm, strings.Join(repaired, ", "))
		for _, want := range []string{backups[0].Name + " powered on", backups[1].Name + " resumed", "maintenance off"} {
			if !slices.Contains(repaired, want) {
				t.Errorf("reset did not report %q: %v", want, repaired)
			}
		}
		if trippedOn != "" && !slices.Contains(repaired, trippedOn+" breaker reset") {
			t.Errorf("reset did not reset the breaker on %s: %v", trippedOn, repaired)
		}
		if trippedOn != "" {
			alerts(t, t0, Want{"breaker_reset", trippedOn, ""})
		}
		for _, n := range l.Status(ctx).Nodes {
			if !n.Powered || n.Breaker || n.Maintenance {
				t.Errorf("after reset: %+v", n)
			}
		}
	})
	scenario("config apply: a live setting and the token rotated, a node down catches up, then a restart with one switchover", true, func(t *testing.T) {
		// `mailcow-ha config apply` on a BACKUP, as an operator runs it on a node. First a revision that every
		// agent applies live: the breaker's limit and a new API token (made beside the old one, as in the
		// console). The other BACKUP is off meanwhile and catches up when it is back. Then the old token is
		// revoked, and a revision that only a start reads (mailcow's time zone) restarts the agents one at a time
		// with one switchover; the new MASTER's takeover works with the new token alone. Mail flows throughout.
		old, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var on, down *Node
		for _, n := range l.Nodes {
			switch {
			case n.Name == old:
			case on == nil:
				on = n
			default:
				down = n
			}
		}
		apply := func(doc string) string {
			t.Helper()
			f := filepath.Join(l.o.Dir, "cluster-config.toml")
			if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			out, err := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+on.NS.Name, l.o.Bin, "config", "apply", f,
				"--within", "4m", "--config", filepath.Join(on.Dir, "config.toml")).CombinedOutput()
			t.Logf("config apply on %s (%.1f s):\n%s", on.Name, time.Since(t0).Seconds(), out)
			if err != nil {
				t.Fatalf("config apply: %v", err)
			}
			return string(out)
		}
		s := l.watch(ctx)
		newToken := strings.Repeat("r0", 32)
		l.Sim.AddToken(newToken)
		defer l.Sim.AddToken(hcloudsim.DemoToken) // the lab's own requests use the demo project's token
		if err := l.SimPower(down, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, 30*time.Second, down.Name+" off", func() bool { return !down.Powered() })

		t0 := time.Now()
		out := apply("[failover.breaker]\nmax = 3\n[hcloud]\ntoken = \"" + newToken + "\"\n")
		if !regexp.MustCompile(`revision \d+ applied: 2 live, 0 restarted, 0 switchover; not reached: ` + down.Name).MatchString(out) {
			t.Errorf("the live revision was not applied live on the two nodes that run")
		}
		alerts(t, t0, Want{"config_applied", old, ""}, Want{"config_applied", on.Name, ""}, Want{"config_reloaded", old, ""})
		t1 := time.Now()
		if err := l.PowerOn(ctx, down, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, 2*time.Minute, down.Name+" catches up (config_applied)", func() bool {
			return slices.ContainsFunc(l.Alerts.Since(t1), func(a Alert) bool {
				return a.Event.Event == "config_applied" && a.Event.Node == down.Name
			})
		})
		t.Logf("%s caught up %.1f s after its power-on", down.Name, time.Since(t1).Seconds())
		for _, n := range l.Nodes {
			if _, body, err := l.Probe(ctx, n.PubIP, "/metrics"); err != nil || !strings.Contains(string(body), "mailcow_ha_breaker_max 3") {
				t.Errorf("%s /metrics lacks mailcow_ha_breaker_max 3 (%v)", n.Name, err)
			}
			b, err := os.ReadFile(filepath.Join(n.Dir, "token"))
			fi, _ := os.Stat(filepath.Join(n.Dir, "token"))
			if err != nil || strings.TrimSpace(string(b)) != newToken || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: the token file does not hold the new token with mode 0600 (%v)", n.Name, err)
			}
		}
		if _, err := l.WaitSettled(ctx, 3*time.Minute); err != nil {
			t.Fatal(err)
		}

		l.Sim.RevokeToken(hcloudsim.DemoToken)
		mark := l.MarkLogs()
		t2 := time.Now()
		out = apply("[mailcow]\ntimezone = \"Europe/Berlin\"\n")
		if !regexp.MustCompile(`revision \d+ applied: 0 live, 3 restarted, 1 switchover`).MatchString(out) {
			t.Errorf("the restart revision did not restart the three agents with one switchover")
		}
		nm, err := l.WaitSettled(ctx, 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restarted and settled %.1f s after the command started; MASTER %s -> %s", time.Since(t2).Seconds(), old, nm)
		promoted := 0
		for _, a := range l.Alerts.Since(t2) {
			if a.Event.Event == "promoted" {
				promoted++
			}
		}
		if nm == old || promoted != 1 {
			t.Errorf("MASTER %s -> %s with %d promotions, want one switchover:\n%s", old, nm, promoted, FormatAlerts(l.Alerts.Since(t2), t2))
		}
		alerts(t, t2, Want{"config_restart", old, ""}, Want{"config_restart", on.Name, ""}, Want{"config_restart", down.Name, ""})
		if b, err := os.ReadFile(filepath.Join(l.Node(nm).Dir, "mailcow", "mailcow.conf")); err != nil || !strings.Contains(string(b), "TZ=Europe/Berlin") {
			t.Errorf("the new MASTER's mailcow.conf lacks TZ=Europe/Berlin (%v)", err)
		}
		if m := regexp.MustCompile(`.*code.{0,3}unauthorized.*`).FindString(l.LogsSince(mark, 1<<20)); m != "" {
			t.Errorf("a request was refused with the revoked token after the rotation: %s", m)
		}
		s.end(t, ctx)
	})
	scenario("mailcow started by hand on a BACKUP is stopped", true, func(t *testing.T) {
		// Someone runs update.sh (docker compose up) on a BACKUP: its reconcile loop finds mailcow's containers
		// running without the Volume and stops them (stale_stack); the MASTER serves on.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var b *Node
		t0 := time.Now()
		for _, n := range l.Nodes {
			if n.Name != m {
				started, err := n.StartStackByHand(ctx)
				refused := 0
				if err != nil {
					refused = strings.Count(err.Error(), "\n") + 1 // binds on the Volume, which is not mounted here
				}
				t.Logf("%d containers started by hand on the BACKUP %s, %d refused by dockerd", started, n.Name, refused)
				if started > 0 {
					b = n
					break
				}
			}
		}
		if b == nil {
			t.Skip("no BACKUP has mailcow's containers to start (none of them was MASTER before: run the whole test)")
		}
		waitFor(t, ctx, time.Minute, "the containers on "+b.Name+" stopped", func() bool { return b.StackRunning(ctx) == 0 })
		t.Logf("stopped %.1f s after they were started", time.Since(t0).Seconds())
		alerts(t, t0, Want{"stale_stack", b.Name, ""})
		if now, err := l.WaitSettled(ctx, time.Minute); err != nil || now != m {
			t.Errorf("MASTER %q after the stray stack was stopped (was %s): %v", now, m, err)
		}
	})
	scenario("mailcow update: a new release staged on every node while mail flows, run on the MASTER in place, no MASTER change", true, func(t *testing.T) {
		// mailcow publishes a release (the lab's repository stands for mailcow-dockerized's; the stand-in changes
		// postfix's image, whose pull the stub stands in for). `mailcow-ha mailcow update` on a BACKUP stages it on
		// every node, then the MASTER runs it in maintenance: only postfix-mailcow is created anew, the other 17
		// containers run on. Then the BACKUPs' trees. Mail flows throughout.
		if l.ReleaseRepo() == "" {
			t.Skip("the lab was made without mailcow's release tree (mailcowtree found none)")
		}
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		master := l.Node(m)
		var on *Node
		for _, n := range l.Nodes {
			if n.Name != m && on == nil {
				on = n
			}
		}
		next, err := l.PublishRelease(ctx, l.ImageRelease().Tag+"-next", func(tree string) error {
			f := filepath.Join(tree, stack.ComposeFile)
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			re := regexp.MustCompile(`(image: ghcr\.io/mailcow/postfix:\S+)`)
			if !re.Match(b) {
				return fmt.Errorf("no postfix image line in %s", f)
			}
			return os.WriteFile(f, re.ReplaceAll(b, []byte("${1}-next")), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		before, err := master.Containers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := l.watch(ctx)
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+on.NS.Name, l.o.Bin, "mailcow", "update", "--to", next.Tag,
			"--commit", next.Commit, "--within", "4m", "--config", filepath.Join(on.Dir, "config.toml")).CombinedOutput()
		t.Logf("mailcow update on %s (%.1f s):\n%s", on.Name, time.Since(t0).Seconds(), out)
		if err != nil {
			t.Fatalf("mailcow update: %v", err)
		}
		if !strings.Contains(string(out), m+": ") || !strings.Contains(string(out), "mailcow restarted on it, healthy") {
			t.Errorf("the MASTER %s did not restart mailcow on the release", m)
		}
		after, err := master.Containers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var anew []string
		for svc, id := range after {
			if before[svc] != id {
				anew = append(anew, svc)
			}
		}
		if len(after) != len(before) || !slices.Equal(anew, []string{"postfix-mailcow"}) {
			t.Errorf("created anew on the MASTER: %v (of %d containers, %d before); want only postfix-mailcow", anew, len(after), len(before))
		}
		for _, n := range l.Nodes {
			if r, err := (release.Tree{Dir: filepath.Join(n.Dir, "mailcow")}).Current(); err != nil || r != next {
				t.Errorf("%s's tree holds %s (%v), want %s", n.Name, r, err, next)
			}
		}
		if now, err := l.WaitSettled(ctx, time.Minute); err != nil || now != m {
			t.Errorf("MASTER %q after the update (was %s): %v", now, m, err)
		}
		for _, a := range l.Alerts.Since(t0) {
			if a.Event.Event == "promoted" {
				t.Errorf("a promotion during the update: %s", FormatAlerts([]Alert{a}, t0))
			}
		}
		want := []Want{{"maintenance_on", m, ""}, {"maintenance_off", m, ""}}
		for _, n := range l.Nodes {
			want = append(want, Want{"mailcow_staged", n.Name, ""}, Want{"mailcow_updated", n.Name, ""})
		}
		alerts(t, t0, want...)
		s.end(t, ctx)
	})
	// The new MASTER powers the node it fenced on again (failover.power_on_fenced): the repair waits for that, and
	// powers the node on itself only when it is still off.
	powerOn := func(n *Node) error { return l.PowerOn(ctx, n, 60*time.Second) }
	fenced := []Want{{"peer_fenced", "NEW", "OLD"}, {"fenced_power_on", "NEW", "OLD"}}
	scenario("master power-off with mail in the queue, the API answering 503 for a while", true, func(t *testing.T) {
		// Mail that the master acknowledged but had not handed to dovecot when its power went waits in postfix's
		// queue on the Volume; the next master's postfix delivers it (the scenario's end reads every acknowledged
		// mail over IMAP). Meanwhile the API answers its first 8 calls with 503: the takeover retries through them.
		before = func(old *Node) {
			if err := old.HoldDelivery(ctx, true); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if _, err := l.SendOne(ctx, 9000+i); err != nil {
					t.Fatal(err)
				}
			}
			q, err := old.Queued(ctx)
			if err != nil || q < 5 {
				t.Fatalf("%s's queue holds %d mails after 5 were acknowledged with delivery held (%v)", old.Name, q, err)
			}
			t.Logf("%d acknowledged mails in %s's queue at the power-off", q, old.Name)
			l.Sim.SetFaults(hcloudsim.Faults{Fail5xx: 8, FailStatus: 503})
		}
		failover(t, "power", powerOn, fenced...)
		if f := l.Sim.Faults(); f.Fail5xx != 0 {
			t.Errorf("the takeover did not meet the injected 503s: %d left", f.Fail5xx)
		}
	})
	scenario("master link cut", true, func(t *testing.T) {
		failover(t, "link", func(n *Node) error {
			// The cut node was fenced by poweroff; its links come back with its power.
			return powerOn(n)
		}, fenced...)
	})
	scenario("agent kill -9", true, func(t *testing.T) { failover(t, "agent", powerOn, fenced...) })
	scenario("keepalived kill -9", true, func(t *testing.T) { failover(t, "keepalived", powerOn, Want{"demoted", "OLD", ""}) })
	scenario("hung master", true, func(t *testing.T) { failover(t, "hang", powerOn, fenced...) })
	scenario("master isolated from both peers", true, func(t *testing.T) {
		failover(t, "isolate", func(n *Node) error {
			l.Heal()
			return powerOn(n)
		}, fenced...)
	})
	scenario("maintenance mode", true, func(t *testing.T) {
		// Maintenance pauses automatic actions: postfix down beyond the grace period moves nothing; the operator
		// repairs it, ends maintenance, and the same node stays MASTER.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s := l.watch(ctx)
		t0 := time.Now()
		if err := l.reconfigure(func(o *Options) { o.CheckGrace = shortGrace }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			t1 := time.Now()
			if err := l.reconfigure(func(o *Options) { o.CheckGrace = checkGrace }); err != nil {
				t.Fatal(err)
			}
			reloaded(t, t1)
		})
		reloaded(t, t0)
		ans, err := l.Maintenance(true)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("maintenance on: %s", ans)
		alerts(t, t0, Want{"maintenance_on", "lab-1", ""}, Want{"maintenance_on", "lab-2", ""}, Want{"maintenance_on", "lab-3", ""})
		if err := l.Node(m).Kill(ctx, "postfix"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(shortGrace + 4*time.Second)
		st := l.Status(ctx)
		for _, n := range st.Nodes {
			if n.Name != m && (n.Mounted || n.HasAddress || n.StackRunning > 0) {
				t.Errorf("%s acted during maintenance: %+v", n.Name, n)
			}
		}
		if a, err := l.Node(m).AgentState(); err != nil || a.Role != "master" || !a.Maintenance {
			t.Errorf("%s during maintenance: %+v %v", m, a, err)
		}
		alerts(t, t0, Want{"stack_degraded", m, ""})
		if err := l.Node(m).RestartPostfix(ctx); err != nil {
			t.Fatal(err)
		}
		alerts(t, t0, Want{"stack_recovered", m, ""})
		t1 := time.Now()
		if _, err := l.Maintenance(false); err != nil {
			t.Fatal(err)
		}
		alerts(t, t1, Want{"maintenance_off", "lab-1", ""}, Want{"maintenance_off", "lab-2", ""}, Want{"maintenance_off", "lab-3", ""})
		time.Sleep(3 * time.Second)
		if now, why := l.Master(ctx); now != m {
			t.Fatalf("master moved from %s to %q (%s) across maintenance", m, now, why)
		}
		s.end(t, ctx)
	})
	scenario("two of three mariadbd killed, the third lives on", true, func(t *testing.T) {
		// The MASTER's mariadbd and a BACKUP's die at once; the other BACKUP's lives on. The master loses quorum and
		// demotes; the cluster must become Primary again by itself, every member Synced, and a master take over.
		// (A full crash of all three is TestClusterWithGalera's, in agent/daemon, with every row checked.)
		old, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s := l.watch(ctx)
		t0 := time.Now()
		mark := l.MarkLogs()
		// The MASTER and the first BACKUP; the last BACKUP survives.
		killed := []*Node{l.Node(old)}
		for _, n := range l.Nodes {
			if n.Name != old && len(killed) < 2 {
				killed = append(killed, n)
			}
		}
		for _, n := range killed {
			if err := n.Kill(ctx, "db"); err != nil {
				t.Fatal(err)
			}
		}
		var want []Want
		for _, n := range killed {
			want = append(want, Want{"galera_degraded", n.Name, ""}, Want{"galera_recovered", n.Name, ""})
		}
		if missing := l.Alerts.WaitAlerts(t0, 240*time.Second, want...); len(missing) > 0 {
			t.Fatalf("galera did not recover: missing %v:\n%s", missing, FormatAlerts(l.Alerts.Since(t0), t0))
		}
		t.Logf("every member Synced again after %s", time.Since(t0).Round(100*time.Millisecond))
		// Which way it healed depends on timing: members that come back while the survivor still runs a Primary
		// component rejoin it, and Galera forms a Primary component of all three by itself; members that come
		// back later find it out of one, and its agent makes it Primary again (TestGaleraManagers forces that case).
		how := "Galera merged the members that came back into a Primary component by itself"
		if strings.Contains(l.LogsSince(mark, 1<<20), "pc.bootstrap") {
			how = "the survivor's agent made its component Primary again (pc.bootstrap)"
		}
		t.Logf("%s", how)
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s MASTER with everything %s after the kill", m, time.Since(t0).Round(100*time.Millisecond))
		s.end(t, ctx)
	})
	scenario("full power cut, the bootstrap node rebuilt with a new Galera Volume", true, func(t *testing.T) {
		// Every node loses power, and the bootstrap node comes back first on a new, empty disk (lab rebuild: no
		// state, no configuration but its user-data) and a new, blank Volume for its datadir (the old one lost).
		// It must not start a new, empty cluster: it waits for its peers, they recover the cluster's history among
		// themselves, and it joins by a state transfer. Afterwards every member has the cluster's UUID and every
		// row.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		uuid, rows := writeRows(t, ctx, l.Node(m), 200)
		t.Logf("%d rows in cluster %s, written through %s", rows, uuid, m)
		mark := l.MarkLogs()
		t0 := time.Now()
		for _, n := range l.Nodes {
			if err := l.SimPower(n, false); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, ctx, time.Minute, "every node off", func() bool {
			return !slices.ContainsFunc(l.Nodes, (*Node).Powered)
		})
		boot := l.Nodes[0] // labelled bootstrap=true by cluster create
		if err := l.BlankDBVolume(boot); err != nil {
			t.Fatal(err)
		}
		if err := l.RebuildAndWait(ctx, boot, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s rebuilt and powered on %s after the power cut", boot.Name, time.Since(t0).Round(100*time.Millisecond))
		// Alone, with a new datadir and silent peers: it waits.
		time.Sleep(15 * time.Second)
		if st, err := galeraStatus(ctx, boot); err == nil && st.ClusterStatus == "Primary" {
			t.Fatalf("%s formed a Primary component on its own, with an empty datadir: %s (%s)", boot.Name, st.Detail(), st.StateUUID)
		}
		for _, n := range l.Nodes[1:] {
			if err := l.SimPower(n, true); err != nil {
				t.Fatal(err)
			}
		}
		nm, err := l.WaitSettled(ctx, 6*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s MASTER with everything %s after the power cut", nm, time.Since(t0).Round(100*time.Millisecond))
		for _, n := range l.Nodes {
			var st galera.Status
			var got int
			waitFor(t, ctx, 2*time.Minute, n.Name+" Synced with every row", func() bool {
				st, err = galeraStatus(ctx, n)
				if err != nil || !st.PrimarySynced() {
					return false
				}
				got = countRows(ctx, n)
				return got == rows
			})
			if st.StateUUID != uuid {
				t.Errorf("%s is in cluster %s, not %s: a new cluster formed", n.Name, st.StateUUID, uuid)
			}
		}
		logs := l.LogsSince(mark, 1<<20)
		if strings.Contains(logs, "first boot: no peer runs a Primary component") {
			t.Errorf("a node started a new cluster:\n%s", l.LogsSince(mark, 6000))
		}
		if !strings.Contains(logs, "action=wait") {
			t.Errorf("%s never said that it waited (galera start action=wait)", boot.Name)
		}
	})
	scenario("API down during a failover", true, func(t *testing.T) {
		old, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s := l.watch(ctx)
		l.Sim.SetFaults(hcloudsim.Faults{Down: true})
		if err := l.Node(old).Kill(ctx, "power"); err != nil {
			t.Fatal(err)
		}
		// Nobody may take the Volume while the API cannot fence or move it.
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			st := l.Status(ctx)
			for _, n := range st.Nodes {
				if n.Mounted || n.StackRunning > 0 {
					t.Fatalf("%s took over while the API was down: %+v", n.Name, n)
				}
			}
		}
		l.Sim.SetFaults(hcloudsim.Faults{})
		t0 := time.Now()
		nm, err := l.WaitMaster(ctx, 180*time.Second, old)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("API back: %s holds everything after %s", nm, time.Since(t0).Round(100*time.Millisecond))
		s.end(t, ctx)
		if err := powerOn(l.Node(old)); err != nil {
			t.Fatal(err)
		}
		if err := l.waitRole(ctx, old, "backup", 240*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	scenario("rolling upgrade: every node rebuilt one at a time, one switchover", true, func(t *testing.T) {
		// `mailcow-ha cluster upgrade --image 5004` on a BACKUP, as an operator runs it on a node: the other BACKUP
		// is rebuilt (a new root disk from the image, the Galera Volume kept) and must come back as a Synced
		// BACKUP with a new agent; then one switchover to it, the old MASTER rebuilt, and the node the command runs
		// on last (the command ends with that rebuild). Mail flows throughout; exactly one MASTER change.
		old, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var on *Node
		before := map[string]int{}
		for _, n := range l.Nodes {
			before[n.Name] = n.Rebuilds()
			if n.Name != old {
				on = n // the last BACKUP
			}
		}
		// The mailcow release the cluster holds (after the update scenario, a newer one than the image's): each
		// rebuilt node comes back with the image's and catches up by itself.
		holds := func(n *Node) release.Release {
			r, _ := release.Tree{Dir: filepath.Join(n.Dir, "mailcow")}.Current()
			return r
		}
		mailcowRelease := holds(l.Node(old))
		s := l.watch(ctx)
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+on.NS.Name, l.o.Bin, "cluster", "upgrade", "--image", "5004",
			"--within", "4m", "--config", filepath.Join(on.Dir, "config.toml"))
		out, err := cmd.CombinedOutput()
		t.Logf("cluster upgrade on %s (%.1f s):\n%s", on.Name, time.Since(t0).Seconds(), out)
		if err != nil {
			t.Fatalf("cluster upgrade: %v", err)
		}
		if !strings.Contains(string(out), "this node last (1 switchover)") {
			t.Errorf("cluster upgrade did not end with its own node after one switchover")
		}
		waitFor(t, ctx, 3*time.Minute, on.Name+" rebuilt", func() bool { return on.Rebuilds() > before[on.Name] })
		nm, err := l.WaitSettled(ctx, 4*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("every node upgraded and the cluster settled %.1f s after the command started; MASTER %s → %s",
			time.Since(t0).Seconds(), old, nm)
		if nm == old {
			t.Errorf("the MASTER %s is still MASTER: it was rebuilt without a switchover?", old)
		}
		for _, n := range l.Nodes {
			if got := n.Rebuilds() - before[n.Name]; got != 1 {
				t.Errorf("%s was rebuilt %d times, want once", n.Name, got)
			}
		}
		waitFor(t, ctx, 2*time.Minute, "every rebuilt node's tree back on mailcow "+mailcowRelease.String(), func() bool {
			for _, n := range l.Nodes {
				if holds(n) != mailcowRelease {
					return false
				}
			}
			return true
		})
		for _, sv := range l.Sim.State().Servers {
			if sv.Image != 5004 {
				t.Errorf("server %s runs image %d, want 5004", sv.Name, sv.Image)
			}
		}
		changes := 0
		for _, a := range l.Alerts.Since(t0) {
			if a.Event.Event == "promoted" {
				changes++
			}
		}
		if changes != 1 {
			t.Errorf("%d MASTER changes during the upgrade, want 1:\n%s", changes, FormatAlerts(l.Alerts.Since(t0), t0))
		}
		alerts(t, t0, Want{"switchover", old, ""}, Want{"promoted", "", ""})
		// A second run finds every server on the image and changes nothing.
		out, err = exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+on.NS.Name, l.o.Bin, "cluster", "upgrade", "--image", "5004",
			"--config", filepath.Join(on.Dir, "config.toml")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "nothing to do") {
			t.Errorf("second upgrade: %v\n%s", err, out)
		}
		s.end(t, ctx)
	})
	scenario("postfix restarted inside the grace period", true, func(t *testing.T) {
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s := l.watch(ctx)
		if err := l.Node(m).Kill(ctx, "postfix-restart"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(l.o.CheckGrace + 4*time.Second)
		if now, why := l.Master(ctx); now != m {
			t.Fatalf("master moved from %s to %q (%s) on a restart inside the grace period", m, now, why)
		}
		s.end(t, ctx)
	})
	scenario("two nodes added (3 to 5), no MASTER change", true, func(t *testing.T) {
		// As an operator grows a cluster: `cluster create` again with the same --out and --nodes 5 makes lab-4 and
		// lab-5 (servers and Galera Volumes) with the one user-data. Every member applies the new membership while
		// it runs (cluster.discover_interval: keepalived's peers, the peer API, Galera's peers), the new nodes join
		// Galera by a state transfer and become BACKUPs; the MASTER stays and mail flows. The lab has five nodes
		// afterwards: this scenario is the last.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		old := slices.Clone(l.Nodes)
		s := l.watch(ctx)
		mark := l.MarkLogs()
		t0 := time.Now()
		added, err := l.Grow(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d servers created and powered on %s after the cluster create", len(added), time.Since(t0).Round(100*time.Millisecond))
		waitFor(t, ctx, 5*time.Minute, "five members Synced in a Primary component of five", func() bool {
			for _, n := range l.Nodes {
				if st, err := galeraStatus(ctx, n); err != nil || !st.PrimarySynced() || st.ClusterSize != 5 {
					return false
				}
			}
			return true
		})
		t.Logf("five members Synced %s after the cluster create", time.Since(t0).Round(100*time.Millisecond))
		nm, err := l.WaitSettled(ctx, 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if nm != m {
			t.Errorf("the MASTER moved from %s to %s while nodes were added", m, nm)
		}
		t.Logf("settled with five nodes %s after the cluster create, MASTER %s", time.Since(t0).Round(100*time.Millisecond), nm)
		for _, n := range old {
			applied := false
			for _, a := range l.Alerts.Since(t0) {
				applied = applied || (a.Node == n.Name && a.Event.Event == "membership_changed" && strings.Contains(a.Message, "applied (") &&
					strings.Contains(a.Message, "lab-4") && strings.Contains(a.Message, "lab-5"))
			}
			if !applied {
				t.Errorf("%s did not report the new members as applied:\n%s", n.Name, FormatAlerts(l.Alerts.Since(t0), t0))
			}
		}
		for _, a := range l.Alerts.Since(t0) {
			if a.Event.Event == "promoted" || a.Event.Event == "demoted" {
				t.Errorf("a MASTER change while nodes were added: %s from %s: %s", a.Event.Event, a.Node, a.Message)
			}
		}
		// How the members learnt of the new nodes: at their periodic read, or at once because of a new node's signed
		// request (which comes first depends on timing; agent/daemon's TestKickReadsTheMembers covers the latter).
		t.Logf("members that read the API because of a new node's request: %d",
			strings.Count(l.LogsSince(mark, 1<<20), "a node this agent does not know yet signed a request"))
		s.end(t, ctx)
	})
	scenario("a node removed (5 to 4), no MASTER change", true, func(t *testing.T) {
		// `cluster remove-node` refuses the MASTER (it serves the mail) and takes a BACKUP away: shut down, server
		// deleted. Every other member drops it live; the MASTER stays, mail flows. Runs after the growth (five
		// nodes); without it the lab has three and a removal would be refused, which is checked too.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.RemoveNode(ctx, m); err == nil || !errors.Is(err, provision.ErrServesMail) {
			t.Fatalf("removing the MASTER %s: %v", m, err)
		}
		if len(l.Nodes) < 4 {
			t.Skipf("the lab has %d nodes (the growth did not run): nothing to remove", len(l.Nodes))
		}
		var gone *Node
		for _, n := range l.Nodes {
			if n.Name != m {
				gone = n // the last BACKUP
			}
		}
		s := l.watch(ctx)
		t0 := time.Now()
		if err := l.RemoveNode(ctx, gone.Name); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s shut down and deleted %s after the cluster remove-node", gone.Name, time.Since(t0).Round(100*time.Millisecond))
		if slices.Contains(l.Nodes, gone) || gone.Powered() {
			t.Fatalf("%s is still a powered lab node after its server was deleted", gone.Name)
		}
		waitFor(t, ctx, 2*time.Minute, "every member applied the removal", func() bool {
			for _, n := range l.Nodes {
				applied := false
				for _, a := range l.Alerts.Since(t0) {
					applied = applied || (a.Node == n.Name && a.Event.Event == "membership_changed" &&
						strings.Contains(a.Message, gone.Name+" (server") && strings.Contains(a.Message, "left; applied"))
				}
				if !applied {
					return false
				}
			}
			return true
		})
		waitFor(t, ctx, time.Minute, "four members in the Primary component", func() bool {
			st, err := galeraStatus(ctx, l.Node(m))
			return err == nil && st.PrimarySynced() && st.ClusterSize == 4
		})
		if nm, err := l.WaitSettled(ctx, time.Minute); err != nil || nm != m {
			t.Errorf("after the removal: MASTER %q (was %s), %v", nm, m, err)
		}
		t.Logf("every member applied the removal %s after the cluster remove-node", time.Since(t0).Round(100*time.Millisecond))
		for _, a := range l.Alerts.Since(t0) {
			if a.Event.Event == "promoted" || a.Event.Event == "demoted" || a.Event.Event == "fence_failed" {
				t.Errorf("%s from %s while a BACKUP was removed: %s", a.Event.Event, a.Node, a.Message)
			}
		}
		s.end(t, ctx)
	})
	scenario("a dead node replaced: removed (4 to 3) after the growth, no MASTER change", true, func(t *testing.T) {
		// Replacing a dead node is add, then remove: the growth above added two, and here a BACKUP dies (its power
		// cut) and `cluster remove-node` takes it away (its power is off: no shutdown, the server deleted). Every
		// other member drops the dead node live and never fences it; the MASTER stays, mail flows. Runs after the
		// growth and the removal above (four nodes); without them a removal would be refused.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Nodes) < 4 {
			t.Skipf("the lab has %d nodes (the growth did not run): nothing to remove", len(l.Nodes))
		}
		var gone *Node
		for _, n := range l.Nodes {
			if n.Name != m {
				gone = n // the last BACKUP
			}
		}
		s := l.watch(ctx)
		t0 := time.Now()
		if err := l.SimPower(gone, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, 30*time.Second, gone.Name+" dead", func() bool { return !gone.Powered() })
		waitFor(t, ctx, time.Minute, "three members in the Primary component without the dead one", func() bool {
			st, err := galeraStatus(ctx, l.Node(m))
			return err == nil && st.PrimarySynced() && st.ClusterSize == 3
		})
		t1 := time.Now()
		if err := l.RemoveNode(ctx, gone.Name); err != nil {
			t.Fatal(err)
		}
		t.Logf("the dead %s deleted %s after the cluster remove-node", gone.Name, time.Since(t1).Round(100*time.Millisecond))
		if slices.Contains(l.Nodes, gone) || gone.Powered() {
			t.Fatalf("%s is still a powered lab node after its server was deleted", gone.Name)
		}
		waitFor(t, ctx, 2*time.Minute, "every member applied the removal", func() bool {
			for _, n := range l.Nodes {
				applied := false
				for _, a := range l.Alerts.Since(t0) {
					applied = applied || (a.Node == n.Name && a.Event.Event == "membership_changed" &&
						strings.Contains(a.Message, gone.Name+" (server") && strings.Contains(a.Message, "left; applied"))
				}
				if !applied {
					return false
				}
			}
			return true
		})
		waitFor(t, ctx, time.Minute, "three members in the Primary component", func() bool {
			st, err := galeraStatus(ctx, l.Node(m))
			return err == nil && st.PrimarySynced() && st.ClusterSize == 3
		})
		if nm, err := l.WaitSettled(ctx, time.Minute); err != nil || nm != m {
			t.Errorf("after the removal: MASTER %q (was %s), %v", nm, m, err)
		}
		t.Logf("every member applied the removal %s after the cluster remove-node", time.Since(t1).Round(100*time.Millisecond))
		for _, a := range l.Alerts.Since(t0) {
			switch a.Event.Event {
			case "promoted", "demoted", "fence_failed", "fencing", "peer_fenced":
				t.Errorf("%s from %s while a dead BACKUP was removed: %s", a.Event.Event, a.Node, a.Message)
			}
		}
		s.end(t, ctx)
	})
	scenario("backup: the Volume and the database copied while mail flows, a deleted mailbox restored, no MASTER change", true, func(t *testing.T) {
		// `config apply` gives the cluster a restic repository (each node has the password file), and the MASTER's
		// agent says at once that it holds no copy (backup_stale). A failed copy is an alert from its node. Then
		// `mailcow-ha backup run` on every node while mail flows: one BACKUP copies its Galera member, the other
		// stands aside, the MASTER copies its Volume (a mailbox of 3000 messages beside the lab's) and the
		// configuration, and its agent reads the fresh copies (backup_recovered, status). Then the lab mailbox's
		// messages are deleted under dovecot and `backup restore-mailbox` puts them back, live.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		master := l.Node(m)
		var backups []*Node
		for _, n := range l.Nodes {
			if n.Name != m {
				backups = append(backups, n)
			}
			if err := config.WriteSecret(filepath.Join(n.Dir, "backup.password"), "5b8e2f1c9a4d7e0b3f6a2c8e1d5b9f4a"); err != nil {
				t.Fatal(err)
			}
		}
		repo := filepath.Join(l.o.Dir, "backup-repo")
		_ = os.RemoveAll(repo)
		type run struct {
			out  string
			took time.Duration
			cpu  time.Duration
			err  error
		}
		cli := func(n *Node, args ...string) run {
			args = append(args, "--config", filepath.Join(n.Dir, "config.toml"))
			cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + n.NS.Name, l.o.Bin}, args...)...)
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			r := run{out: string(out), took: time.Since(t0), err: err}
			if cmd.ProcessState != nil { // nsenter execs the command: this is its CPU and restic's, which it waited for
				r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			return r
		}
		t0 := time.Now()
		// The cluster configuration in force (an earlier scenario's) is kept: apply replaces the whole document.
		cur, err := config.ReadClusterDoc(config.ClusterDocPath(filepath.Join(backups[0].Dir, "state")))
		if err != nil {
			t.Fatal(err)
		}
		doc := filepath.Join(l.o.Dir, "backup-config.toml")
		if err := os.WriteFile(doc, []byte(fmt.Sprintf("%s\n[backup]\nrepository = %q\n", cur.TOML, repo)), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := cli(backups[0], "config", "apply", doc, "--within", "2m"); r.err != nil || !strings.Contains(r.out, "3 live") {
			t.Fatalf("config apply of the repository: %v\n%s", r.err, r.out)
		}
		alerts(t, t0, Want{"backup_stale", m, ""})
		t1 := time.Now()
		if r := cli(backups[0], "backup", "database", "--repository", "/proc/no-such-repository"); r.err == nil {
			t.Errorf("a copy into /proc succeeded:\n%s", r.out)
		}
		alerts(t, t1, Want{"backup_failed", backups[0].Name, ""})
		// A mailbox of 3000 messages of about 4 KB, as dovecot keeps them (owned by vmail).
		vmail := filepath.Join(master.Dir, "data", "vmail")
		seed := filepath.Join(vmail, "example.org", "seed")
		defer os.RemoveAll(seed)
		// The domain's directory too: dovecot (vmail) makes the lab's mailbox in it, and one made here by root
		// would make every delivery fail.
		for _, d := range []string{filepath.Dir(seed), seed, filepath.Join(seed, "tmp"), filepath.Join(seed, "new"), filepath.Join(seed, "cur")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, 5000, 5000); err != nil {
				t.Fatal(err)
			}
		}
		// Random text: a mail store compresses little (attachments), and restic compresses what it stores.
		rnd := mrand.New(mrand.NewPCG(1, 2))
		raw := make([]byte, 2800)
		for i := 0; i < 3000; i++ {
			for j := range raw {
				raw[j] = byte(rnd.Uint32())
			}
			text := base64.StdEncoding.EncodeToString(raw)
			f := filepath.Join(seed, "cur", fmt.Sprintf("%d.M%dP1.seed:2,S", 1700000000+i, i))
			if err := os.WriteFile(f, []byte(fmt.Sprintf("Message-ID: <seed-%d@lab>\r\nSubject: seed %d\r\n\r\n%d %s\r\n", i, i, i, text)), 0o600); err != nil {
				t.Fatal(err)
			}
			_ = os.Chown(f, 5000, 5000)
		}
		s := l.watch(ctx)
		box := filepath.Join(vmail, "example.org", "lab")
		for end := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			cur, _ := filepath.Glob(filepath.Join(box, "cur", "*"))
			nw, _ := filepath.Glob(filepath.Join(box, "new", "*"))
			if len(cur)+len(nw) >= 10 {
				break
			}
			if time.Now().After(end) {
				out, _ := exec.Command("find", filepath.Join(master.Dir, "data"), "-maxdepth", "5", "-not", "-path", "*/seed/*").CombinedOutput()
				t.Fatalf("the lab mailbox has %d messages after 30 s of mail (%d of %d sent acknowledged):\n%s", len(cur)+len(nw), s.acked.Load(), s.sent.Load(), tail.Lines(string(out), 60))
			}
		}
		t2 := time.Now()

		// Each copy where it belongs, and nowhere else: the BACKUPs first, so that the MASTER's agent, which reads
		// the repository after its own copy, finds both kinds.
		if r := cli(backups[0], "backup", "volume"); r.err == nil || !strings.Contains(r.out, "run it on the MASTER") {
			t.Errorf("backup volume on BACKUP %s: %v\n%s", backups[0].Name, r.err, r.out)
		}
		if r := cli(master, "backup", "database"); r.err == nil || !strings.Contains(r.out, "is the MASTER") {
			t.Errorf("backup database on the MASTER: %v\n%s", r.err, r.out)
		}
		copiers := 0
		for _, n := range backups {
			r := cli(n, "backup", "run")
			t.Logf("backup run on BACKUP %s: %.2f s, CPU %.2f s:\n%s", n.Name, r.took.Seconds(), r.cpu.Seconds(), r.out)
			if r.err != nil {
				t.Errorf("backup run on %s: %v", n.Name, r.err)
			}
			if strings.Contains(r.out, "database copied from "+n.Name) {
				copiers++
			} else if !strings.Contains(r.out, "nothing to do here") {
				t.Errorf("backup run on %s neither copied nor stood aside", n.Name)
			}
		}
		if copiers != 1 {
			t.Errorf("%d BACKUPs copied the database, want 1", copiers)
		}
		before, err := backup.Messages(filepath.Join(master.Dir, "data"))
		if err != nil {
			t.Fatal(err)
		}
		vol := cli(master, "backup", "run")
		t.Logf("backup run on the MASTER %s: %.2f s, CPU %.2f s:\n%s", m, vol.took.Seconds(), vol.cpu.Seconds(), vol.out)
		if vol.err != nil || !strings.Contains(vol.out, "Volume copied from "+m) || !strings.Contains(vol.out, "configuration copied from "+m) {
			t.Fatalf("backup run on the MASTER: %v", vol.err)
		}
		snapID := regexp.MustCompile(`Volume copied from \S+: snapshot (\w+)`).FindStringSubmatch(vol.out)
		alerts(t, t2, Want{"backup_recovered", m, ""})
		if st := cli(backups[1], "status"); snapID == nil || !strings.Contains(st.out, "backups (read by "+m) || !strings.Contains(st.out, snapID[1]) {
			t.Errorf("mailcow-ha status does not show the new copy %v:\n%s", snapID, st.out)
		} else {
			t.Logf("mailcow-ha status:\n%s", st.out)
		}
		du, _ := exec.Command("du", "-sb", repo).Output()
		t.Logf("the repository after the first copies: %s bytes (%d messages on the Volume)", strings.Fields(string(du) + " ?")[0], len(before))
		defer func() {
			du, _ := exec.Command("du", "-sb", repo).Output()
			t.Logf("the repository at the end: %s", du)
		}()
		list := cli(master, "backup", "list")
		for _, tag := range []string{backup.TagVolume, backup.TagConfig, backup.TagDatabase} {
			if !strings.Contains(list.out, tag+",cluster="+ClusterName) {
				t.Errorf("backup list lacks a %s snapshot:\n%s", tag, list.out)
			}
		}
		again := cli(master, "backup", "volume")
		t.Logf("a second Volume copy: %.2f s, CPU %.2f s: %s", again.took.Seconds(), again.cpu.Seconds(), again.out)
		if again.err != nil {
			t.Errorf("a second backup volume: %v", again.err)
		}
		// The retention: one node prunes (the MASTER); the day's two Volume copies are one day's copy.
		if r := cli(backups[0], "backup", "prune"); r.err != nil || !strings.Contains(r.out, "nothing to do here") {
			t.Errorf("backup prune on BACKUP %s: %v\n%s", backups[0].Name, r.err, r.out)
		}
		pr := cli(master, "backup", "prune")
		t.Logf("backup prune on the MASTER: %.2f s: %s", pr.took.Seconds(), strings.TrimSpace(pr.out))
		if pr.err != nil || !strings.Contains(pr.out, "pruned cluster "+ClusterName) {
			t.Errorf("backup prune on the MASTER: %v", pr.err)
		}
		if snaps, err := (backup.Repo{Location: repo, PasswordFile: filepath.Join(master.Dir, "backup.password"), CacheDir: filepath.Join(master.Dir, "restic-cache")}).Snapshots(ctx, backup.TagVolume); err != nil || len(snaps) != 1 {
			t.Errorf("after the prune: %d Volume copies (%v), want the day's newest only", len(snaps), err)
		}

		// A bad rm: the lab mailbox loses every message the copy holds. The restore puts them back while mail
		// goes on arriving, and what came after the copy stays.
		deleted := 0
		for _, sub := range []string{"cur", "new"} {
			ents, _ := os.ReadDir(filepath.Join(box, sub))
			for _, e := range ents {
				name, _, _ := strings.Cut(e.Name(), ":")
				if before["example.org/lab/"+name] && os.Remove(filepath.Join(box, sub, e.Name())) == nil {
					deleted++
				}
			}
		}
		if deleted == 0 {
			t.Fatal("the lab mailbox held no message before the copy")
		}
		// The copy taken first: the latest is the second one, which holds the same messages.
		r := cli(master, "backup", "restore-mailbox", "--snapshot", "latest", "--mailbox", Mailbox)
		t.Logf("restore-mailbox after %d messages were deleted: %.2f s: %s", deleted, r.took.Seconds(), r.out)
		if r.err != nil || !strings.Contains(r.out, fmt.Sprintf(": %d messages put back", deleted)) {
			t.Errorf("backup restore-mailbox: %v", r.err)
		}
		if r := cli(master, "backup", "check", "--read-data", "100%"); r.err != nil {
			t.Errorf("backup check: %v\n%s", r.err, r.out)
		} else {
			t.Logf("backup check --read-data 100%%: %.2f s", r.took.Seconds())
		}
		// The restores a new cluster starts from, into empty directories.
		target := t.TempDir()
		if r := cli(master, "backup", "restore-volume", "--snapshot", "latest", "--target", target); r.err != nil || !strings.Contains(r.out, "verified") {
			t.Errorf("backup restore-volume: %v\n%s", r.err, r.out)
		} else if got, err := backup.Messages(target); err != nil || len(got) < len(before) {
			t.Errorf("the restored Volume holds %d messages, the Volume held %d before the copy (%v)", len(got), len(before), err)
		}
		if r := cli(master, "backup", "restore-database", "--snapshot", "latest", "--datadir", filepath.Join(target, "mysql")); r.err != nil || !strings.Contains(r.out, "Galera position") {
			t.Errorf("backup restore-database: %v\n%s", r.err, r.out)
		} else {
			t.Logf("restore-database: %.2f s: %s", r.took.Seconds(), r.out)
		}
		if nm, err := l.WaitSettled(ctx, time.Minute); err != nil || nm != m {
			t.Errorf("after the backups: MASTER %q (was %s), %v", nm, m, err)
		}
		for _, a := range l.Alerts.Since(t0) {
			switch a.Event.Event {
			case "promoted", "demoted", "fencing", "stack_failed":
				t.Errorf("%s from %s during the backups: %s", a.Event.Event, a.Node, a.Message)
			}
		}
		s.end(t, ctx)
	})
	scenario("cluster rotate-secret: a new cluster secret on every node, no restart and no MASTER change", true, func(t *testing.T) {
		// `mailcow-ha cluster rotate-secret` on a BACKUP while mail flows: every node signs with the new secret
		// (peer API, VRRP's password, Galera's certificate, reloaded live), the old one is deleted, and a command
		// that still signs with it is refused. Runs last: servers made after it would need user-data with the
		// new secret.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var on *Node
		for _, n := range l.Nodes {
			if n.Name != m {
				on = n
			}
		}
		oldSecret, err := os.ReadFile(filepath.Join(on.Dir, "secret"))
		if err != nil {
			t.Fatal(err)
		}
		next := fmt.Sprintf("%x", sha256.Sum256(append(oldSecret, "next"...)))
		f := filepath.Join(l.o.Dir, "next.secret")
		if err := config.WriteSecret(f, next); err != nil {
			t.Fatal(err)
		}
		cli := func(cfg string, args ...string) (string, error) {
			out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + on.NS.Name, l.o.Bin}, append(args, "--config", cfg)...)...).CombinedOutput()
			return string(out), err
		}
		s := l.watch(ctx)
		s.flowing(30 * time.Second) // mail flows when the rotation begins, which takes a tenth of a second
		t0 := time.Now()
		out, err := cli(filepath.Join(on.Dir, "config.toml"), "cluster", "rotate-secret", "--secret-file", f)
		t.Logf("cluster rotate-secret on %s (%.1f s):\n%s", on.Name, time.Since(t0).Seconds(), out)
		if err != nil {
			t.Fatalf("cluster rotate-secret: %v", err)
		}
		id := api.KeyID([]byte(next))
		if !strings.Contains(out, fmt.Sprintf("switched %d of %d nodes to %s", len(l.Nodes), len(l.Nodes), id)) ||
			!strings.Contains(out, "cluster secret rotated to "+id) {
			t.Errorf("not every node switched to %s", id)
		}
		for _, n := range l.Nodes {
			b, err := os.ReadFile(filepath.Join(n.Dir, "secret"))
			if err != nil || strings.TrimSpace(string(b)) != next {
				t.Errorf("%s: the secret file does not hold the new secret (%v)", n.Name, err)
			}
			for _, ext := range []string{".next", ".prev"} {
				if _, err := os.Stat(filepath.Join(n.Dir, "secret"+ext)); !os.IsNotExist(err) {
					t.Errorf("%s: secret%s is left after the rotation (%v)", n.Name, ext, err)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(n.Dir, "keepalived.conf")); !strings.Contains(string(b), keepalived.Placeholders([]byte(next), ClusterName)[0].String()) {
				t.Errorf("%s: keepalived.conf lacks the new secret's VRRP placeholder addresses", n.Name)
			}
		}
		alerts(t, t0, Want{"secret_staged", m, ""}, Want{"secret_switched", m, ""}, Want{"secret_rotated", m, ""}, Want{"secret_rotated", on.Name, ""})
		if nm, err := l.WaitSettled(ctx, time.Minute); err != nil || nm != m {
			t.Errorf("after the rotation: MASTER %q (was %s), %v", nm, m, err)
		}
		for _, a := range l.Alerts.Since(t0) {
			switch a.Event.Event {
			case "promoted", "demoted", "fencing", "config_restart", "galera_degraded":
				t.Errorf("%s from %s during the rotation: %s", a.Event.Event, a.Node, a.Message)
			}
		}
		st, err := galeraStatus(ctx, l.Node(m))
		if err != nil || !st.PrimarySynced() || st.ClusterSize != len(l.Nodes) {
			t.Errorf("Galera after the rotation: %+v %v", st, err)
		}
		// The commands run with the new secret; one that signs with the old is refused by every node.
		if out, err := cli(filepath.Join(on.Dir, "config.toml"), "config", "show"); err != nil {
			t.Errorf("config show with the new secret: %v\n%s", err, out)
		}
		oldFile := filepath.Join(on.Dir, "secret.old-test")
		if err := config.WriteSecret(oldFile, strings.TrimSpace(string(oldSecret))); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(oldFile)
		cfg, err := os.ReadFile(filepath.Join(on.Dir, "config.toml"))
		if err != nil {
			t.Fatal(err)
		}
		oldCfg := filepath.Join(on.Dir, "config.old-secret.toml")
		if err := config.WriteSecret(oldCfg, strings.Replace(string(cfg), strconv.Quote(filepath.Join(on.Dir, "secret")), strconv.Quote(oldFile), 1)); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(oldCfg)
		if out, _ := cli(oldCfg, "config", "show"); strings.Count(out, "HTTP 401: unauthorized") != len(l.Nodes) {
			t.Errorf("config show signed with the retired secret was not refused by every node:\n%s", out)
		}
		s.end(t, ctx)
	})
	scenario("restore: the cluster destroyed, a new one made from its backups by cluster create, every acknowledged mail and row in it", true, func(t *testing.T) {
		// Runs before the migration, which uses the new cluster: it destroys the lab. While mail flows, rows are written and every node runs `backup run` into
		// a repository beside the lab; then the whole cluster goes (servers, Volumes, secrets). `cluster create`
		// with --config's [backup] restore_from makes a new cluster (new secrets, new Galera password): its
		// bootstrap node starts Galera from the database's copy, its first MASTER fills the new Volume from the
		// Volume's copy before mailcow starts. Every mail acknowledged before the backups is readable through the
		// new Floating IP, every row is on every node, in the old cluster's history, and mailcow's database user
		// works with the new cluster's password.
		m, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		master := l.Node(m)
		repo := filepath.Join(l.o.Dir, "restore-repo") // beside the lab: Up's clean-up keeps it
		_ = os.RemoveAll(repo)
		defer os.RemoveAll(repo)
		const pw = "c4e1a7f09b3d5e2c8a6f1b4d9e7c3a05"
		var order []*Node // the BACKUPs first: the database's copy, then the MASTER's Volume
		for _, n := range l.Nodes {
			if n.Name != m {
				order = append(order, n)
			}
			if err := config.WriteSecret(filepath.Join(n.Dir, "backup.password"), pw); err != nil {
				t.Fatal(err)
			}
		}
		order = append(order, master)
		s := l.watch(ctx)
		uuid, rows := writeRows(t, ctx, master, 100)
		waitFor(t, ctx, 30*time.Second, "mail acknowledged", func() bool { return s.acked.Load() >= 5 })
		var acked []string // acknowledged before the Volume's copy began: each is in it, delivered or queued
		t0 := time.Now()
		for _, n := range order {
			if n == master {
				if acked, err = l.Ledger().IDs(); err != nil {
					t.Fatal(err)
				}
			}
			out, err := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+n.NS.Name, l.o.Bin, "backup", "run", "--repository", repo,
				"--password-file", filepath.Join(n.Dir, "backup.password"), "--config", filepath.Join(n.Dir, "config.toml")).CombinedOutput()
			t.Logf("backup run on %s: %s", n.Name, strings.TrimSpace(string(out)))
			if err != nil {
				t.Fatalf("backup run on %s: %v", n.Name, err)
			}
		}
		t.Logf("backups taken in %.1f s: %d mails acknowledged before the Volume's copy, %d rows before the database's", time.Since(t0).Seconds(), len(acked), rows)
		writeRows(t, ctx, master, 10) // after the copy: not in the new cluster
		s.end(t, ctx)

		// The cluster goes, all of it; a new one is made from the backups.
		t1 := time.Now()
		if err := l.Down(); err != nil {
			t.Fatalf("lab down: %v", err)
		}
		o := l.o
		o.Settings = map[string]any{"backup": map[string]any{"repository": repo, "password": pw, "restore_from": ClusterName}}
		nl, err := Up(ctx, o)
		if nl != nil {
			l = nl // taken down by the clean-up, whatever happens here
		}
		if err != nil {
			t.Fatalf("the new cluster: %v", err)
		}
		nm, err := l.WaitSettled(ctx, 240*time.Second)
		if err != nil {
			t.Fatalf("the new cluster did not settle: %v", err)
		}
		t.Logf("the new cluster, made from the backups, settled with MASTER %s %.1f s after the old one went", nm, time.Since(t1).Seconds())
		var restored []string
		waitFor(t, ctx, 30*time.Second, "the restored alerts (the database's and the Volume's)", func() bool {
			restored = restored[:0]
			for _, a := range l.Alerts.Since(t1) {
				if a.Event.Event == "restored" {
					restored = append(restored, a.Node+": "+a.Message)
				}
			}
			return len(restored) >= 2
		})
		t.Logf("restored:\n%s", strings.Join(restored, "\n"))
		for _, a := range l.Alerts.Since(t1) {
			if a.Event.Event == "restore_failed" {
				t.Errorf("restore_failed from %s: %s", a.Node, a.Message)
			}
		}
		for _, n := range l.Nodes {
			var got int
			for end := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
				if got = countRows(ctx, n); got == rows || time.Now().After(end) {
					break
				}
			}
			if got != rows {
				t.Errorf("%s holds %d rows, want the %d written before the backup", n.Name, got, rows)
			}
		}
		if st, err := galeraStatus(ctx, l.Node(nm)); err != nil || st.StateUUID != uuid || st.ClusterSize != len(l.Nodes) || !st.PrimarySynced() {
			t.Errorf("the new cluster's Galera: %+v %v; want the old history %s on %d members", st, err, uuid, len(l.Nodes))
		}
		// mailcow's user has the new cluster's password (the copy held it with the old one's).
		newPW, err := os.ReadFile(filepath.Join(l.secrets.Dir, provision.GaleraPasswordFile))
		if err != nil {
			t.Fatal(err)
		}
		mc := mysql.NewConfig()
		mc.User, mc.Passwd, mc.Net, mc.Addr, mc.DBName = "mailcow", strings.TrimSpace(string(newPW)), "unix", filepath.Join(l.Node(nm).Dir, "db", "mysqld.sock"), "mailcow"
		if db, err := sql.Open("mysql", mc.FormatDSN()); err != nil {
			t.Error(err)
		} else {
			if err := db.PingContext(ctx); err != nil {
				t.Errorf("mailcow's user cannot log in with the new cluster's password: %v", err)
			}
			db.Close()
		}
		// Every mail acknowledged before the backups, read through the new cluster's Floating IP (a mail that was
		// in the queue is delivered by the new MASTER's postfix).
		missing, held, err := l.MissingMail(ctx, acked)
		if err != nil {
			t.Fatalf("reading the mailbox of the new cluster: %v", err)
		}
		t.Logf("the new cluster's mailbox holds %d messages; %d were acknowledged before the Volume's copy, %d of them missing", held, len(acked), len(missing))
		if len(missing) > 0 {
			t.Errorf("%d acknowledged mails are not in the new cluster: %v", len(missing), missing)
		}
		// It takes mail: the new cluster is a cluster, not a copy.
		if _, err := l.SendOne(ctx, 0); err != nil {
			t.Errorf("a mail to the new cluster: %v", err)
		}
	})
	scenario("migrate: a single-server mailcow moved into the cluster, copied while it serves, switched at the cut-over, no MASTER change", true, func(t *testing.T) {
		// After the restore: the new cluster is what an operator migrates into (migrateScenario).
		migrateScenario(t, ctx, l)
	})
}

// assertClean checks that lab down left no namespace, loop device or mount of the lab behind.
func assertClean(t *testing.T, l *Lab) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), l.id) {
		t.Errorf("namespaces left: %s", out)
	}
	out, _ = exec.Command("losetup", "-a").Output()
	if strings.Contains(string(out), l.o.Dir) {
		t.Errorf("loop devices left: %s", out)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), l.o.Dir) {
		t.Errorf("mounts left below %s", l.o.Dir)
	}
	for _, n := range l.Nodes {
		if pids, _ := reap.PIDsIn(n.NS.Name); len(pids) > 0 {
			t.Errorf("processes left in %s: %v", n.Name, pids)
		}
	}
}

// waitFor polls ok every half second until it holds, and fails the test after within.
func waitFor(t *testing.T, ctx context.Context, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// galeraStatus asks a node's mariadbd (through its socket, as root) for its wsrep status.
func galeraStatus(ctx context.Context, n *Node) (galera.Status, error) {
	db, err := galera.Open(filepath.Join(n.Dir, "db", "mysqld.sock"))
	if err != nil {
		return galera.Status{}, err
	}
	defer db.Close()
	return galera.Query(ctx, db)
}

// writeRows writes n rows through a node and returns the cluster's UUID and the number of rows in the table.
func writeRows(t *testing.T, ctx context.Context, node *Node, n int) (string, int) {
	t.Helper()
	db, err := galera.Open(filepath.Join(node.Dir, "db", "mysqld.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS ha_check",
		"CREATE TABLE IF NOT EXISTS ha_check.rows_kept (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL)"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := range n {
		if _, err := db.ExecContext(ctx, "INSERT INTO ha_check.rows_kept (v) VALUES (?)", fmt.Sprintf("row %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := galera.Query(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ha_check.rows_kept").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return st.StateUUID, rows
}

// countRows is the table's row count on a node (-1 when it cannot be read).
func countRows(ctx context.Context, n *Node) int {
	db, err := galera.Open(filepath.Join(n.Dir, "db", "mysqld.sock"))
	if err != nil {
		return -1
	}
	defer db.Close()
	var rows int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ha_check.rows_kept").Scan(&rows); err != nil {
		return -1
	}
	return rows
}
