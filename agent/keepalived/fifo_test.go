package keepalived

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

func TestParseLine(t *testing.T) {
	for line, want := range map[string]Event{
		`INSTANCE "VI_1" MASTER 150`:              {"VI_1", "MASTER", 150},
		`INSTANCE "VI_1" BACKUP 100`:              {"VI_1", "BACKUP", 100},
		`INSTANCE "VI 2" FAULT 0`:                 {"VI 2", "FAULT", 0},
		`INSTANCE "VI_1" STOP 0`:                  {"VI_1", "STOP", 0},
		`INSTANCE "VI_1" MASTER_RX_LOWER_PRI 150`: {"VI_1", "MASTER_RX_LOWER_PRI", 150},
	} {
		got, ok, err := ParseLine(line)
		if err != nil || !ok || got != want {
			t.Errorf("%q: %+v %v %v", line, got, ok, err)
		}
	}
	for _, line := range []string{`GROUP "G1" MASTER`, ``, `VS "x" UP`} {
		if _, ok, err := ParseLine(line); ok || err != nil {
			t.Errorf("%q: ok=%v err=%v", line, ok, err)
		}
	}
	if _, _, err := ParseLine(`INSTANCE "VI_1"`); err == nil {
		t.Error("short line accepted")
	}
	if _, _, err := ParseLine(`INSTANCE "VI_1" MASTER high`); err == nil {
		t.Error("bad priority accepted")
	}
}

// TestReadFIFO writes lines as keepalived does, closes the writer, and re-creates the fifo as a reload does.
func TestReadFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.fifo")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan Event, 16)
	errc := make(chan error, 1)
	if err := MakeFIFO(path); err != nil {
		t.Fatal(err)
	}
	go func() { errc <- ReadFIFO(ctx, path, "VI_MAILCOW", events, nil) }()
	write := func(lines string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(lines)
		f.Close()
	}
	next := func() Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return Event{}
	}
	write("INSTANCE \"VI_MAILCOW\" BACKUP 150\nGROUP \"g\" MASTER\nINSTANCE \"OTHER\" MASTER 1\n")
	write("INSTANCE \"VI_MAILCOW\" MASTER 150\n")
	if e := next(); e.State != "BACKUP" {
		t.Fatalf("first event %+v", e)
	}
	if e := next(); e.State != "MASTER" {
		t.Fatalf("second event %+v (the writer's close must not end the reader)", e)
	}
	// A reload re-creates the fifo: the reader follows the new one.
	os.Remove(path)
	if err := MakeFIFO(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	write("INSTANCE \"VI_MAILCOW\" FAULT 150\n")
	if e := next(); e.State != "FAULT" {
		t.Fatalf("after re-creation %+v", e)
	}
	cancel()
	select {
	case <-errc:
	case <-time.After(3 * time.Second):
		t.Fatal("reader did not stop")
	}
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestElection runs two real keepalived instances in two namespaces with the rendered configuration: the higher
// priority becomes MASTER, and when its keepalived dies the other takes over. It measures the detection time.
func TestElection(t *testing.T) {
	a, b := keepalivedPair(t, "10.99.0.12")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	health, wait := (*kaNode).health, (*kaNode).wait
	start := func(ns *netns.NS, name, self, peer string, prio int) *kaNode {
		return startNode(ctx, t, ns, name, self, []string{peer}, prio)
	}
	na := start(a, "mx1", "10.99.0.11", "10.99.0.12", 150)
	nb := start(b, "mx2", "10.99.0.12", "10.99.0.11", 100)
	wait(na, t, "MASTER", 15*time.Second)
	wait(nb, t, "BACKUP", 15*time.Second)
	// A failing verdict in the track file: FAULT at once, and the peer takes over.
	t0 := time.Now()
	health(na, t, "1")
	wait(na, t, "FAULT", 5*time.Second)
	t.Logf("track file: the MASTER entered FAULT %s after its track file changed to 1", time.Since(t0))
	wait(nb, t, "MASTER", 15*time.Second)
	health(na, t, "0")
	wait(na, t, "BACKUP", 5*time.Second)
	if err := nb.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	took := wait(na, t, "MASTER", 15*time.Second)
	t.Logf("VRRP detection: the BACKUP became MASTER %s after the MASTER's keepalived was killed (advert_int 1s)", took)
}

// kaNode is one real keepalived in a namespace, with the rendered configuration and its fifo read.
type kaNode struct {
	proc   *Process
	events chan Event
	out    *lockedBuffer
	track  string
}

// startNode starts keepalived in ns for a node at self with the given peers and priority, its track file at 0.
func startNode(ctx context.Context, t *testing.T, ns *netns.NS, name, self string, peers []string, prio int, mods ...func(*Spec)) *kaNode {
	t.Helper()
	dir := t.TempDir()
	s := spec()
	s.RouterName, s.Priority, s.SourceIP, s.Peers = name, prio, self, peers
	for _, m := range mods {
		m(&s)
	}
	s.TrackFile = filepath.Join(dir, "health")
	if err := os.WriteFile(s.TrackFile, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.NotifyFIFO = filepath.Join(dir, "fifo")
	conf, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteConfig(filepath.Join(dir, "keepalived.conf"), conf); err != nil {
		t.Fatal(err)
	}
	n := &kaNode{events: make(chan Event, 16), out: &lockedBuffer{}, track: s.TrackFile}
	if err := MakeFIFO(s.NotifyFIFO); err != nil {
		t.Fatal(err)
	}
	go ReadFIFO(ctx, s.NotifyFIFO, s.Instance, n.events, nil)
	n.proc = &Process{Config: filepath.Join(dir, "keepalived.conf"), RunDir: dir, Netns: ns.Name, Output: n.out}
	if err := n.proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.proc.Stop(context.Background(), 5*time.Second) })
	return n
}

// health writes the track file as the agent's watcher does: a new file renamed over the old one.
func (n *kaNode) health(t *testing.T, v string) {
	t.Helper()
	tmp := n.track + ".tmp"
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, n.track); err != nil {
		t.Fatal(err)
	}
}

// wait waits for keepalived to report state within the given time, and returns how long it took.
func (n *kaNode) wait(t *testing.T, state string, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	deadline := time.After(within)
	for {
		select {
		case e := <-n.events:
			if e.State == state {
				return time.Since(t0)
			}
		case <-deadline:
			t.Fatalf("no %s within %s; keepalived said:\n%s", state, within, n.out.String())
		}
	}
}

// A host that is no peer (another server of the project, a container) sends adverts with a higher priority: the
// MASTER ignores them (check_unicast_src) and stays MASTER. Without that check, one such host keeps every node in
// BACKUP and mail stops.
func TestForeignAdvertsIgnored(t *testing.T) {
	a, b := keepalivedPair(t, "10.99.0.66")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The node's only peer, 10.99.0.12, is down; the intruder at 10.99.0.66 sends priority 254 to the node.
	node := startNode(ctx, t, a, "mx1", "10.99.0.11", []string{"10.99.0.12"}, 150)
	node.wait(t, "MASTER", 15*time.Second)
	intruder := startNode(ctx, t, b, "evil", "10.99.0.66", []string{"10.99.0.11"}, 254)
	intruder.wait(t, "MASTER", 15*time.Second)
	select {
	case e := <-node.events:
		t.Fatalf("an intruder's adverts moved the MASTER to %s; keepalived said:\n%s", e.State, node.out.String())
	case <-time.After(5 * time.Second):
	}
	if !strings.Contains(node.out.String(), "10.99.0.66") {
		t.Logf("keepalived did not log the foreign adverts; it said:\n%s", node.out.String())
	}
}

// An intruder that takes the address of a peer that is down passes check_unicast_src; without the cluster secret its
// adverts are ignored all the same: with VRRPv3 for their placeholder addresses, with VRRPv2 for their password.
func TestAdvertsWithoutThePasswordIgnored(t *testing.T) {
	for _, version := range []int{3, 2} {
		t.Run(fmt.Sprintf("VRRPv%d", version), func(t *testing.T) {
			a, b := keepalivedPair(t, "10.99.0.12")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			secret := func(p string) func(*Spec) {
				return func(s *Spec) {
					if version == 2 {
						v2(s)
						s.AuthPass = AuthPass([]byte(p), "mail")
					} else {
						s.Placeholders = Placeholders([]byte(p), "mail")
					}
				}
			}
			node := startNode(ctx, t, a, "mx1", "10.99.0.11", []string{"10.99.0.12"}, 150, secret("the cluster's secret"))
			node.wait(t, "MASTER", 15*time.Second)
			intruder := startNode(ctx, t, b, "evil", "10.99.0.12", []string{"10.99.0.11"}, 254, secret("a guess"))
			intruder.wait(t, "MASTER", 15*time.Second)
			select {
			case e := <-node.events:
				t.Fatalf("adverts from a peer's address without the secret moved the MASTER to %s; keepalived said:\n%s", e.State, node.out.String())
			case <-time.After(5 * time.Second):
			}
		})
	}
}

// keepalivedPair makes two namespaces joined by a veth (eth1 in each): 10.99.0.11 in the first, other in the
// second. It skips without keepalived.
func keepalivedPair(t *testing.T, other string) (a, b *netns.NS) {
	t.Helper()
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived is not installed (Debian package keepalived; make deps installs it)")
	}
	a, b = testNS(t), testNS(t)
	if err := netns.Veth(a, "eth1", b, "eth1"); err != nil {
		t.Fatal(err)
	}
	a.IP("addr", "add", "10.99.0.11/24", "dev", "eth1")
	b.IP("addr", "add", other+"/24", "dev", "eth1")
	placeholderLink(t, a)
	placeholderLink(t, b)
	return a, b
}
