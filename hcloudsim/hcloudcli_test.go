package hcloudsim

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestOfficialCLI drives Debian's official hcloud CLI (package hcloud-cli) against the simulator: the real client,
// not ours, must accept the simulator's answers.
func TestOfficialCLI(t *testing.T) {
	bin, err := exec.LookPath("hcloud")
	if err != nil {
		t.Skip("the hcloud CLI is not installed: install Debian's package hcloud-cli (make deps does)")
	}
	rb := &rebuildLog{}
	h := newHarness(t, Options{Backend: rb})
	h.rebuilt = rb.String
	home := t.TempDir()
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--poll-interval", "20ms"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "HCLOUD_ENDPOINT="+h.srv.URL+"/v1", "HCLOUD_TOKEN="+DemoToken,
			"HCLOUD_CONFIG="+home+"/cli.toml")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("hcloud %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	out := must("server", "list")
	for _, w := range []string{"mx1", "mx2", "mx3", "10.99.0.12", "running"} {
		if !strings.Contains(out, w) {
			t.Errorf("server list lacks %q:\n%s", w, out)
		}
	}
	must("floating-ip", "assign", "2001", "mx2")
	if st := h.sim.State(); st.FloatingIPs[0].Server != 1002 {
		t.Fatalf("after floating-ip assign: server %d", st.FloatingIPs[0].Server)
	}
	out = must("floating-ip", "describe", "2001")
	if !strings.Contains(out, "203.0.113.100") || !strings.Contains(out, "mx2") {
		t.Errorf("floating-ip describe:\n%s", out)
	}
	must("volume", "attach", "--server", "mx1", "3001")
	if st := h.sim.State(); st.Volumes[0].Server != 1001 {
		t.Fatalf("after volume attach: server %d", st.Volumes[0].Server)
	}
	out, err = run("volume", "attach", "--server", "mx2", "3001")
	if err == nil || !strings.Contains(out, "volume_already_attached") {
		t.Fatalf("double attach: err=%v\n%s", err, out)
	}
	must("volume", "detach", "3001")
	if st := h.sim.State(); st.Volumes[0].Server != 0 {
		t.Fatalf("after volume detach: server %d", st.Volumes[0].Server)
	}
	out = must("image", "list", "-t", "snapshot", "-l", "app=mailcow-ha,channel=stable", "-o", "noheader", "-o", "columns=id,description")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(out, "5001") || !strings.Contains(out, "5002") || strings.Contains(out, "5003") {
		t.Fatalf("image list:\n%s", out)
	}
	// A rebuild: the server gets a new disk from the snapshot (the backend sees it) and runs again; an image that
	// does not exist is refused.
	must("server", "rebuild", "--image", "5002", "mx3")
	if got := h.rebuilt(); got != "mx3 from 5002" {
		t.Fatalf("after server rebuild: the backend saw %q", got)
	}
	out = must("server", "describe", "mx3")
	if !strings.Contains(out, "running") {
		t.Errorf("after rebuild:\n%s", out)
	}
	if out, err := run("server", "rebuild", "--image", "4242", "mx3"); err == nil {
		t.Fatalf("a rebuild from an image that does not exist:\n%s", out)
	}
	// A wrong token is refused with the API's error.
	cmd := exec.Command(bin, "server", "list")
	cmd.Env = append(os.Environ(), "HOME="+home, "HCLOUD_ENDPOINT="+h.srv.URL+"/v1", "HCLOUD_TOKEN="+strings.Repeat("x", 64))
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "unauthorized") {
		t.Fatalf("wrong token: err=%v\n%s", err, b)
	}
}

// rebuildLog records the rebuilds the simulator hands its backend.
type rebuildLog struct {
	NopBackend
	mu  sync.Mutex
	log []string
}

func (r *rebuildLog) ServerRebuilt(s Server, image string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, s.Name+" from "+image)
	return nil
}

func (r *rebuildLog) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, ",")
}
