package stack_test

import (
	"context"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/agent/volume"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
)

// env is one stub stack on the host's dockerd: 18 containers of a project of its own, bound to a tmpfs "Volume"
// with this cluster's marker, its ports shifted by a free base.
type env struct {
	docker  *client.Client
	project string
	vol     *volume.Volume
	base    int
	opts    deploy.Options
}

var (
	imageOnce sync.Once
	imageErr  error
	imageTag  = "mailcow-ha/mailcow-stub:test"
)

// dockerOrSkip returns a client for the host's dockerd, or skips saying why.
func dockerOrSkip(tb testing.TB) *client.Client {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: the stub stack binds a tmpfs Volume and talks to the host's dockerd")
	}
	c, err := deploy.Connect("")
	if err != nil {
		tb.Skipf("no Docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		tb.Skipf("dockerd does not answer (make test starts it with scripts/dockerd.sh): %v", err)
	}
	return c
}

func buildImage(tb testing.TB, c *client.Client) {
	tb.Helper()
	imageOnce.Do(func() {
		ctx := context.Background()
		bin := filepath.Join(os.TempDir(), fmt.Sprintf("mailcow-stub-%d", os.Getpid()))
		defer os.Remove(bin)
		if imageErr = deploy.GoBuild(ctx, bin); imageErr == nil {
			imageErr = deploy.BuildImage(ctx, c, bin, imageTag)
		}
	})
	if imageErr != nil {
		tb.Fatal(imageErr)
	}
}

func freeBase(tb testing.TB) int {
	tb.Helper()
	base, err := mailcowstub.FreePortBase("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	return base
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	c := dockerOrSkip(tb)
	buildImage(tb, c)
	dir := tb.TempDir()
	os.Chmod(dir, 0o755)
	e := &env{docker: c, project: fmt.Sprintf("mchatest%d%d", os.Getpid(), time.Now().UnixNano()%1e6), base: freeBase(tb)}
	e.vol = &volume.Volume{ID: 3001, MountPoint: filepath.Join(dir, "data"), Cluster: "test", Dirs: stack.DataDirs}
	sock := filepath.Join(dir, "mysqld")
	os.MkdirAll(sock, 0o755)
	e.mountVolume(tb)
	e.opts = deploy.Options{Project: e.project, Image: imageTag, DataMount: e.vol.MountPoint, SocketDir: sock,
		Hostname: "mx1.test", PortBase: e.base, HealthInterval: time.Second, HealthTimeout: 3 * time.Second}
	ctx := context.Background()
	n, err := deploy.Create(ctx, c, e.opts)
	if err != nil {
		tb.Fatal(err)
	}
	if n != len(stack.Services) || n != 18 {
		tb.Fatalf("created %d containers, want 18", n)
	}
	tb.Cleanup(func() {
		if err := deploy.Remove(context.Background(), c, e.project); err != nil {
			tb.Error(err)
		}
		if ok, _ := volume.IsMountPoint(e.vol.MountPoint); ok {
			unix.Unmount(e.vol.MountPoint, unix.MNT_DETACH)
		}
	})
	return e
}

// mountVolume mounts a tmpfs with the cluster's marker and data directories: the Volume for these tests.
func (e *env) mountVolume(tb testing.TB) {
	tb.Helper()
	os.MkdirAll(e.vol.MountPoint, 0o755)
	if err := unix.Mount("tmpfs", e.vol.MountPoint, "tmpfs", 0, "size=64m"); err != nil {
		tb.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.vol.MountPoint, volume.MarkerFile), []byte(`{"cluster":"test","volume_id":3001}`), 0o644)
	for _, d := range stack.DataDirs {
		os.MkdirAll(filepath.Join(e.vol.MountPoint, d), 0o755)
	}
}

func (e *env) stack() *stack.Stack {
	ports := map[string][]int{}
	for svc, ps := range stack.ServicePorts {
		for _, p := range ps {
			ports[svc] = append(ports[svc], p.Port+e.base)
		}
	}
	return &stack.Stack{
		Docker: e.docker, Project: e.project, Ports: ports, Guard: e.vol.Guard, StartTimeout: 30 * time.Second,
		Critical: []string{"postfix-mailcow", "dovecot-mailcow", "nginx-mailcow", "rspamd-mailcow", "php-fpm-mailcow", "redis-mailcow", "unbound-mailcow"},
	}
}

func (e *env) policies(tb testing.TB, s *stack.Stack) map[string]string {
	tb.Helper()
	p, err := s.Policies(context.Background(), e.docker.ContainerInspect)
	if err != nil {
		tb.Fatal(err)
	}
	if len(p) != 18 {
		tb.Fatalf("%d containers, want 18", len(p))
	}
	return p
}

func (e *env) states(tb testing.TB, s *stack.Stack) map[string]string {
	tb.Helper()
	cs, err := s.Discover(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for n, c := range cs {
		out[n] = c.State
	}
	return out
}

func all(m map[string]string, want string) string {
	for k, v := range m {
		if v != want {
			return k + "=" + v
		}
	}
	return ""
}

func TestStartStopKeepsRestartPolicySafe(t *testing.T) {
	e := newEnv(t)
	s := e.stack()
	ctx := context.Background()
	if failed, err := s.Failed(ctx); err != nil || !strings.Contains(failed, "container created") {
		t.Fatalf("before start: %q %v", failed, err)
	}
	for round := 1; round <= 2; round++ {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if bad := all(e.states(t, s), "running"); bad != "" {
			t.Fatalf("round %d after start: %s", round, bad)
		}
		if bad := all(e.policies(t, s), "always"); bad != "" {
			t.Fatalf("round %d after start: restart policy %s", round, bad)
		}
		if failed, err := s.Failed(ctx); err != nil || failed != "" {
			t.Fatalf("round %d: health %q %v", round, failed, err)
		}
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if bad := all(e.states(t, s), "exited"); bad != "" {
			t.Fatalf("round %d after stop: %s", round, bad)
		}
		if bad := all(e.policies(t, s), "no"); bad != "" {
			t.Fatalf("round %d after stop: restart policy %s", round, bad)
		}
	}
	// Stop on a stopped stack is a no-op.
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMountGuardRefusesToStart(t *testing.T) {
	e := newEnv(t)
	s := e.stack()
	ctx := context.Background()
	// Unmounted: the bare mount point.
	if err := unix.Unmount(e.vol.MountPoint, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "not a mount point") {
		t.Fatalf("start on the bare mount point: %v", err)
	}
	// Mounted but empty: no marker.
	if err := unix.Mount("tmpfs", e.vol.MountPoint, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "unmarked") {
		t.Fatalf("start on an empty mount: %v", err)
	}
	if bad := all(e.states(t, s), "created"); bad != "" {
		t.Fatalf("a refused start touched a container: %s", bad)
	}
	// Even dockerd itself cannot start a container on the bare mount point: the binds never create host paths.
	unix.Unmount(e.vol.MountPoint, 0)
	cs, _ := s.Discover(ctx)
	err := e.docker.ContainerStart(ctx, cs["dovecot-mailcow"].ID, container.StartOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("dockerd started dovecot on the bare mount point: %v", err)
	}
}

// TestHealthGrace: a postfix killed inside the container is restarted by dockerd (as mailcow's watchdog would) and
// never fails the check; one that stays down fails it once failover.check_grace has passed.
func TestHealthGrace(t *testing.T) {
	e := newEnv(t)
	s := e.stack()
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p := failover.Params{Name: "mx1", CheckGrace: 4 * time.Second}
	st := failover.State{Role: failover.RoleMaster, GaleraOK: true}
	observe := func() (bool, string, string) {
		failed, err := s.Failed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		st, _ = failover.Step(p, st, failover.Stack{Failed: failed}, now)
		ok, why := failover.Verdict(p, st, now)
		return ok, why, failed
	}
	cs, _ := s.Discover(ctx)
	postfix := cs["postfix-mailcow"].ID

	// Inside the grace period: the process dies inside the container (docker kill would count as a manual stop,
	// which the restart policy respects).
	killInside := func() {
		ci, err := e.docker.ContainerInspect(ctx, postfix)
		if err != nil || ci.State.Pid <= 0 {
			t.Fatalf("postfix pid: %v", err)
		}
		if err := unix.Kill(ci.State.Pid, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	killInside()
	sawDown, recovered := "", false
	for end := time.Now().Add(p.CheckGrace); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		ok, why, failed := observe()
		if !ok {
			t.Fatalf("check failed inside the grace period: %s", why)
		}
		if failed != "" && sawDown == "" {
			sawDown = failed
		}
		if failed == "" && sawDown != "" {
			recovered = true
			break
		}
	}
	if sawDown == "" || !recovered {
		t.Fatalf("killed postfix: seen down %q, recovered %v", sawDown, recovered)
	}
	t.Logf("inside grace: seen %q, then healthy again", sawDown)

	// Beyond it: no restart this time.
	if _, err := e.docker.ContainerUpdate(ctx, postfix, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "no"}}); err != nil {
		t.Fatal(err)
	}
	killInside()
	killed := time.Now()
	for {
		ok, why, failed := observe()
		if !ok {
			if since := time.Since(killed); since < p.CheckGrace {
				t.Fatalf("check failed after %s, before the grace of %s", since, p.CheckGrace)
			}
			if !strings.Contains(why, "postfix-mailcow: container exited with code 137") {
				t.Fatalf("reason %q does not name postfix and why", why)
			}
			t.Logf("beyond grace: %s (failed %q)", why, failed)
			break
		}
		if time.Since(killed) > p.CheckGrace+5*time.Second {
			t.Fatal("the check never failed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMailSurvivesRestart: a message sent with a real SMTP client is on the Volume before the 250 and readable with
// `curl imap://` after the containers restart.
func TestMailSurvivesRestart(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (Debian: curl) as the IMAP client")
	}
	e := newEnv(t)
	s := e.stack()
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	msg := "From: a@example.org\r\nSubject: survives\r\n\r\nkept across restarts\r\n"
	if err := smtp.SendMail(fmt.Sprintf("127.0.0.1:%d", e.base+25), nil, "a@example.org", []string{"user@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	md, _ := mailcowstub.MailboxDir(filepath.Join(e.vol.MountPoint, "vmail"), "user@example.org")
	if m, err := md.Messages(); err != nil || len(m) != 1 {
		t.Fatalf("on the Volume after 250: %v %v", m, err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", "-u", "user@example.org:x",
		fmt.Sprintf("imap://127.0.0.1:%d/INBOX;UID=1", e.base+143)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kept across restarts") {
		t.Fatalf("curl imap after restart: %v\n%s", err, out)
	}
}

func TestCreateRunsOnlyWhenNeeded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := deploy.Remove(ctx, e.docker, e.project); err != nil {
		t.Fatal(err)
	}
	s := e.stack()
	// The create command is the stub's deployment, run through a tiny script so that its runs can be counted.
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	s.Create = []string{"sh", "-c", "echo run >> " + count}
	s.Override = []byte("override v1")
	s.StateFile = filepath.Join(dir, "override.sha256")
	err := s.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "has no container after") {
		t.Fatalf("start without containers: %v", err)
	}
	if _, err := deploy.Create(ctx, e.docker, e.opts); err != nil {
		t.Fatal(err)
	}
	// The containers exist now and the override has not changed since the create command ran: no second run.
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "run") != 1 {
		t.Fatalf("create ran %q", b)
	}
	s.Override = []byte("override v2")
	s.Stop(ctx)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "run") != 2 {
		t.Fatalf("create after an override change: ran %q", b)
	}
}

// The stub's Docker health checks run at the interval and with the time limit the deployment asked for (emulated
// VMs need longer than the default 2 s for one exec).
func TestStubHealthCheckSettings(t *testing.T) {
	e := newEnv(t)
	name := e.project + "-postfix-mailcow-1"
	ci, err := e.docker.ContainerInspect(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	hc := ci.Config.Healthcheck
	if hc == nil || hc.Interval != time.Second || hc.Timeout != 3*time.Second || hc.Retries != 2 {
		t.Fatalf("%s health check: %+v; want every 1s, 3s limit, 2 retries", name, hc)
	}
}
