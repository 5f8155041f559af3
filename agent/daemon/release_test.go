package daemon

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/release"
)

// treeStack is a Stack whose services are healthy when the tree's state file says "good" as the stack starts.
type treeStack struct {
	dir    string
	mu     sync.Mutex
	starts int
	good   bool
}

func (s *treeStack) Start(context.Context) error {
	b, _ := os.ReadFile(filepath.Join(s.dir, "state"))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts++
	s.good = strings.TrimSpace(string(b)) == "good"
	return nil
}
func (s *treeStack) Stop(context.Context) error { return nil }
func (s *treeStack) Failed(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.good {
		return "", nil
	}
	return "postfix-mailcow", nil
}

// A MASTER switches in maintenance and starts the release; one that does not come up is taken back and the
// release before started again; a BACKUP only lays the release over its tree.
func TestSwitchRelease(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: " + err.Error())
	}
	ctx := context.Background()
	repo := releaseRepo(t, "one", "two", "bad")
	dir := filepath.Join(t.TempDir(), "mailcow")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "state"), []byte("good\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "version"), []byte("one\n"), 0o644)
	release.WriteRecord(dir, release.Release{Tag: "one", Commit: "c1"})
	st := &treeStack{dir: dir}

	a := &Agent{log: slog.New(slog.DiscardHandler), obs: make(chan failover.Observation), exec: &Executor{}, o: Options{Stack: st}}
	a.exec.Stack = treeGuard{Stack: st, mu: &a.relSwitch}
	a.c.Mailcow = config.Mailcow{Dir: dir, StartTimeout: config.Duration(300e6)}
	a.s.Role = failover.RoleMaster
	var maint []bool
	go func() { // the loop, as far as maintenance goes
		for o := range a.obs {
			if m, ok := o.(failover.Maintenance); ok {
				a.mu.Lock()
				a.s.Maintenance = m.On
				maint = append(maint, m.On)
				a.mu.Unlock()
			}
		}
	}()
	defer close(a.obs)
	stage := func(tag string) {
		t.Helper()
		if _, err := (release.Stager{Tree: release.Tree{Dir: dir}, Repo: repo}).Stage(ctx, tag, ""); err != nil {
			t.Fatal(err)
		}
	}
	version := func() string { b, _ := os.ReadFile(filepath.Join(dir, "version")); return strings.TrimSpace(string(b)) }

	stage("two")
	ans := a.SwitchRelease(ctx, "two")
	if ans.Error != "" || !ans.Started || ans.Before.Tag != "one" || ans.Now.Tag != "two" || version() != "two" || st.starts != 1 {
		t.Fatalf("the MASTER's switch to two: %+v, version %s, %d starts", ans, version(), st.starts)
	}
	for i := 0; i < 100; i++ { // the loop takes the last observation after the answer
		a.mu.Lock()
		n := len(maint)
		a.mu.Unlock()
		if n >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	if len(maint) != 2 || !maint[0] || maint[1] || a.s.Maintenance {
		t.Errorf("maintenance went %v, want on then off", maint)
	}
	a.mu.Unlock()

	stage("bad")
	ans = a.SwitchRelease(ctx, "bad")
	if ans.Error == "" || !strings.Contains(ans.Error, "postfix-mailcow is down") || ans.Now.Tag != "two" || version() != "two" || st.starts != 3 {
		t.Errorf("the MASTER's switch to a release that does not come up: %+v, version %s, %d starts; want it taken back to two and started again", ans, version(), st.starts)
	}
	if f, _ := st.Failed(ctx); f != "" {
		t.Errorf("the release before was not started again healthy: %s", f)
	}
	if ans := a.SwitchRelease(ctx, "one"); ans.Error == "" {
		t.Error("a switch to a release not staged was not refused")
	}

	a.mu.Lock()
	a.s.Role = failover.RoleBackup
	a.mu.Unlock()
	st.starts = 0
	ans = a.SwitchRelease(ctx, "bad")
	if ans.Error != "" || ans.Started || ans.Now.Tag != "bad" || version() != "bad" || st.starts != 0 {
		t.Errorf("a BACKUP's switch: %+v, version %s, %d starts; want the tree switched and nothing started", ans, version(), st.starts)
	}
	if got := a.mailcowRelease(); !strings.HasPrefix(got, "bad (") {
		t.Errorf("the peer state's release is %q", got)
	}

	a.mu.Lock()
	a.s.Role, a.s.Phase = failover.RolePromoting, failover.PhaseMount
	a.mu.Unlock()
	if ans := a.SwitchRelease(ctx, "bad"); ans.Error == "" {
		t.Error("a switch during a takeover was not refused")
	}
}

// releaseRepo makes a git repository with a commit and tag per name: a file "state" says "good" ("broken" for
// the tag "bad"), a file "version" the tag.
func releaseRepo(t *testing.T, tags ...string) string {
	t.Helper()
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.org"}, args...)...)
		cmd.Dir, cmd.Env = repo, append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	git("init", "-q", "-b", "master")
	for _, tag := range tags {
		state := "good"
		if tag == "bad" {
			state = "broken"
		}
		os.WriteFile(filepath.Join(repo, "state"), []byte(state+"\n"), 0o644)
		os.WriteFile(filepath.Join(repo, "version"), []byte(tag+"\n"), 0o644)
		git("add", "-A")
		git("commit", "-q", "-m", tag)
		git("tag", tag)
	}
	return repo
}

// releasePeer is a peer agent whose tree holds a release.
type releasePeer struct {
	statePeer
	cur release.Release
}

func (p *releasePeer) ReleaseState() api.ReleaseState    { return api.ReleaseState{Current: p.cur} }
func (p *releasePeer) StageRelease(string, string) error { return nil }
func (p *releasePeer) SwitchRelease(context.Context, string) api.SwitchAnswer {
	return api.SwitchAnswer{}
}

// A BACKUP whose tree alone holds another release catches up: it stages the others' release (from its own
// mailcow.repo, the commit pinned) and switches. It does not follow members that disagree, nor act as MASTER.
func TestCatchUpRelease(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: " + err.Error())
	}
	ctx := context.Background()
	repo := releaseRepo(t, "one", "two")
	dir := filepath.Join(t.TempDir(), "mailcow")
	if _, err := (release.Stager{Tree: release.Tree{Dir: dir}, Repo: repo}).Stage(ctx, "one", ""); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	if _, err := (release.Tree{Dir: dir}).Switch("one"); err != nil {
		t.Fatal(err)
	}
	// The release "two" as the others hold it: its commit, from a stage elsewhere.
	other := filepath.Join(t.TempDir(), "mailcow")
	two, err := (release.Stager{Tree: release.Tree{Dir: other}, Repo: repo}).Stage(ctx, "two", "")
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	nodes := map[string]bool{"mx1": true, "mx2": true, "mx3": true}
	a := &Agent{log: slog.New(slog.DiscardHandler), client: &api.PeerClient{Keys: api.NewKeyring(secret), Node: "mx1"}, peers: map[int64]api.Peer{}, bg: ctx}
	a.c.Mailcow = config.Mailcow{Dir: dir, Repo: repo}
	a.s.Role = failover.RoleBackup
	var peers []*releasePeer
	for i, name := range []string{"mx2", "mx3"} {
		p := &releasePeer{cur: two}
		srv := httptest.NewServer(api.PeerHandler(&api.Verifier{Keys: api.NewKeyring(secret), Self: name, Nodes: nodes}, p, slog.New(slog.DiscardHandler)))
		t.Cleanup(srv.Close)
		a.peers[int64(i+2)] = api.Peer{Name: name, URL: srv.URL}
		peers = append(peers, p)
	}
	holds := func() release.Release { r, _ := (release.Tree{Dir: dir}).Current(); return r }

	// The others disagree (mailcow update half-way): nothing.
	peers[1].cur = release.Release{Tag: "one", Commit: "x"}
	a.catchUpRelease(ctx)
	if st := a.ReleaseState(); holds().Tag != "one" || st.Staged.Tag != "one" || st.Staging != "" {
		t.Fatalf("caught up with members that disagree: holds %s, %+v", holds(), st)
	}
	// As MASTER: nothing.
	peers[1].cur = two
	a.s.Role = failover.RoleMaster
	a.catchUpRelease(ctx)
	if holds().Tag != "one" {
		t.Fatalf("a MASTER caught up by itself: %s", holds())
	}
	// A BACKUP alone on "one": staged, then switched.
	a.s.Role = failover.RoleBackup
	a.catchUpRelease(ctx)
	a.tasks.Wait()
	if holds() != two {
		t.Errorf("holds %s after the catch-up, want %s (%+v)", holds(), two, a.ReleaseState())
	}
}

// A takeover's start waits while a release is laid over the tree.
func TestTreeGuard(t *testing.T) {
	st := &treeStack{dir: t.TempDir()}
	var mu sync.Mutex
	g := treeGuard{Stack: st, mu: &mu}
	mu.Lock()
	done := make(chan struct{})
	go func() { g.Start(context.Background()); close(done) }()
	select {
	case <-done:
		t.Fatal("the start did not wait for the switch")
	case <-time.After(50 * time.Millisecond):
	}
	mu.Unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the start did not go on after the switch")
	}
	if st.starts != 1 {
		t.Errorf("%d starts", st.starts)
	}
}
