package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/imagebuild"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

var image *imagebuild.Image

// The image is built once (or found in build/image by its input hash) for every scenario.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if why := Preflight(); why != "" {
		fmt.Println("vm: skipping the VM tier:", why)
		skipWhy = why
		return m.Run()
	}
	top, _ := filepath.Abs("../..")
	bin = filepath.Join(top, "build", "vm", "bin")
	os.MkdirAll(bin, 0o755)
	for _, c := range []string{"mailcow-ha", "mailcow-ha-check", "mailcow-signup", "mailcow-stub"} {
		// No VCS stamp: the binaries (and so the image's hash) change only when the code does.
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", filepath.Join(bin, c), "github.com/mailcow-ha/mailcow-ha/cmd/"+c)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("vm: go build %s: %v\n%s", c, err, out)
			return 1
		}
	}
	version, err := imagebuild.BinaryVersion(filepath.Join(bin, "mailcow-ha"))
	if err != nil {
		fmt.Println("vm:", err)
		return 1
	}
	tree, err := mailcowtree.Dir(context.Background(), top)
	if err == nil {
		pin, err = mailcowtree.ReadPin(top)
	}
	if err != nil {
		skipWhy = "the local image carries mailcow's release tree, which is neither in ../shared/mailcow nor to be cloned: " + err.Error()
		fmt.Println("vm: skipping the VM tier:", skipWhy)
		return m.Run()
	}
	t0 := time.Now()
	// The mail servers' root file system: make test's second lane makes it first; else it is made here.
	mail, err := mailservers.RootFS(context.Background(), mailservers.Inputs{}, mailservers.CacheDir(top), os.Stdout)
	if err != nil {
		fmt.Println("vm:", err)
		return 1
	}
	image, err = imagebuild.BuildLocal(context.Background(), imagebuild.LocalOptions{
		Inputs: imagebuild.Inputs{Top: top, BinDir: bin, Version: version, MailcowTree: tree, MailServers: mail}, Log: os.Stdout,
		Save: imagebuild.Savers{Stub: deploy.SaveStub, MailServers: deploy.SaveMailServers},
	})
	if err != nil {
		fmt.Println("vm: image:", err)
		return 1
	}
	fmt.Printf("vm: image %s (cached: %v) in %.1f s\n", image.Hash, image.Cached, time.Since(t0).Seconds())
	var why string
	accel, why = Accel(context.Background(), image.Path(image.Kernel), os.Getenv("MAILCOW_HA_VM_ACCEL"))
	fmt.Println("vm: accelerator:", why)
	return m.Run()
}

var (
	skipWhy string
	accel   []string // QEMU's accelerator, probed once
	bin     string   // the commands the image was built with
	// pin is the mailcow release the image carries (imagebuild/manifest.toml), which its tree records.
	pin mailcowtree.Pin
)

// harness makes a harness (an empty project; a server created becomes a VM); artefacts stay under
// build/vm/<test>/ when the test fails.
func harness(t *testing.T) *Harness {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	dir, _ := filepath.Abs(filepath.Join("../../build/vm", t.Name()))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if f, err := os.Create(filepath.Join(os.TempDir(), "vm-"+t.Name()+".log")); err == nil {
		log = slog.New(slog.NewTextHandler(f, nil))
		t.Cleanup(func() { f.Close() })
	}
	h, err := New(dir, image, log)
	if err != nil {
		t.Fatal(err)
	}
	h.Accel, h.Bin = accel, bin
	t.Cleanup(func() {
		if d, err := time.ParseDuration(os.Getenv("MAILCOW_HA_VM_HOLD")); err == nil && t.Failed() {
			// For a look from the outside before the VMs go: ip netns exec <ns> …, the consoles, QMP.
			t.Logf("holding the failed VMs for %s (MAILCOW_HA_VM_HOLD), namespace %s", d, h.NS.Name)
			time.Sleep(d)
		}
		for _, v := range h.vms() {
			if q := v.LongestQuiet(); q > 0 {
				t.Logf("%s: the longest its console was silent during a wait: %.1f s (a wait calls a guest stuck after %s)", v.Name, q.Seconds(), quiet)
			}
		}
		h.Close()
		if t.Failed() {
			t.Logf("artefacts (consoles, QEMU logs, seeds) kept in %s", dir)
			return
		}
		for _, v := range h.vms() { // the overlays and the Volumes are large; the consoles stay
			os.Remove(filepath.Join(v.Dir, "disk.qcow2"))
		}
		for _, f := range h.volumes {
			os.Remove(f)
		}
	})
	return h
}

// quiet is how long a guest may print nothing on its console before a wait calls it stuck. The VM tests set no
// other bound on a guest that makes progress: how fast an emulated guest goes is the machine's speed. The longest
// silence each VM had is logged at the end of a test, to tell how much slower a machine may be.
const quiet = 5 * time.Minute

// budget is the test's own deadline: the shorter of most and go test's -timeout less three minutes, so that a
// stuck test fails by itself with its clean-up and leaves the package's time to the tests after it.
func budget(t *testing.T, most time.Duration) context.Context {
	dl := time.Now().Add(most)
	if d, ok := t.Deadline(); ok && d.Add(-3*time.Minute).Before(dl) {
		dl = d.Add(-3 * time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	t.Cleanup(cancel)
	return ctx
}

// vmSettings are `cluster create --config`'s settings for the VM cluster: what an emulated guest on two shared
// cores needs besides the one user-data cluster create writes (the secrets, the API, the members found through
// it, each node's Galera Volume).
//
// Emulated guests stall for seconds under load (containers being created, a state transfer): keepalived's check
// gets 5 s and three tries, adverts every 2 s.
//
// Galera without TLS here (production and every other tier run it with TLS): under TCG an encrypted state transfer
// of a fresh datadir took about 460 s per joiner instead of about 160 s, and the donor, the first MASTER, starved
// its own stack's health checks into a false failover; TestCluster took 2825.5 s instead of 676–881 s, which put
// make test far over its 45 minutes. That clean-clone run (2026-12-01) passed this tier with TLS on:
// mariadb.service, the key owned by mysql under /var/lib/mailcow-ha, gcomm at ssl://, IST over ssl, and rsync
// through stunnel with VERIFY_CA in the joiners' journal.
//
// The first takeover creates and starts 18 containers while the joiner still boots and takes its state transfer
// from the MASTER, on emulated cores: several minutes, and more than 750 s with three guests and both cores kept
// busy (2026-12-01: the start ran out of a 10-minute start_timeout, the MASTER gave up, and its demotion ran out of
// a 5-minute fence_timeout). start_timeout is 25 minutes here (production: 2). The agent writes mailcow.conf into
// /opt/mailcow-dockerized and the portal's API key under /etc/mailcow-ha, as on Hetzner.
//
// The containers are mailcow's real compose project: the image's release tree, the mailcow.conf and override the
// agent writes, Debian 13's Compose (`docker compose config`, then `create`), with only the images swapped by a
// layer laid last (lab compose-stub; mailcowstub/deploy.Layer): Debian's postfix and dovecot (the mailservers
// image, loaded at first boot) for postfix-mailcow and dovecot-mailcow, the stub for the others. They greet with
// the guest's host name (the server's name), so that a banner tells which node answered.
//
// Emulated CPUs are ten to thirty times slower than a server: a longer breaker limit than production's 2 per hour,
// so that a slow first election (Galera still streaming to the joiner) does not stop the scenarios, and twelve
// minutes for a demotion asked by a peer (stopping 18 containers in a starved guest took over a minute on an idle
// machine, more than five with both cores busy) before it powers the old MASTER off. A MASTER that is gone (the
// failover below) is fenced at once: its peer API does not answer at all. The new MASTER leaves the VM it fenced
// off (failover.power_on_fenced, on in production, is the lab's subject): powered on again, it booted as a third
// guest beside the new MASTER's 18 containers and the bad user-data guest, on two cores, and the new MASTER's
// dovecot failed its health check and answered no IMAP within two minutes (2026-12-03).
func vmSettings() string {
	return fmt.Sprintf(`[network]
public_interface = "eth0"
private_interface = "eth1"

[keepalived]
vrrp_version = 3
advert_interval = "2s"
check_timeout = "5s"
check_fall = 3

[galera]
tls = false

[mailcow]
create_command = ["/usr/local/bin/mailcow-ha", "lab", "compose-stub", "--mailcow-dir", "/opt/mailcow-dockerized", "--data", "/var/lib/mailcow-ha/data", "--health-interval", "15s", "--health-timeout", "20s", "--mail-image", %q, "--mail-user", %q]
start_timeout = "25m"

[failover]
check_grace = "90s"
quorum_grace = "20s"
fence_timeout = "12m"
power_on_fenced = false

[failover.breaker]
max = 6

[api]
listen = ["private:7480"]
`, mailservers.Inputs{}.Tag(), mailbox)
}

var (
	// The one user-data names no node: the agent says so, then who it is and its members, from the metadata
	// service and the API.
	configRead = regexp.MustCompile(`mailcow-ha\[\d+\]: configuration read from /var/lib/cloud/instance/user-data.txt: the node and its members come from the API`)
	whoAmI     = regexp.MustCompile(`mailcow-ha\[\d+\]: membership: this node is ([\w-]+) node=[\w-]+ source=api members="\[([^\]]*)\]"`)
	ready      = regexp.MustCompile(`Started mailcow-ha\.service`)
)

// badUserData is user-data that cloud-init would run as a script, and what the agent says about it.
var (
	badUserData = "#!/bin/sh\necho pwned > /root/pwned\n"
	badSaid     = regexp.MustCompile(`invalid configuration: /var/lib/cloud/instance/user-data.txt: line 1: starts with "#!"`)
)

// checkBadUserData checks a VM booted with badUserData: the agent names the problem on the console (its journal)
// and exits 2, systemd does not restart it, no cluster service starts, and cloud-init did not run the script. (A
// TOML syntax error takes the same path in the guest; its message, with file and line, is agent/config's and
// cli's test.)
// metadataKept is the agent's line once chain metadata lets its own control group alone reach the metadata service.
const metadataKept = "the metadata service answers this agent only"

func checkBadUserData(t *testing.T, ctx context.Context, v *VM) {
	t.Helper()
	m, err := v.WaitConsole(ctx, badSaid, []*regexp.Regexp{regexp.MustCompile(`Kernel panic`), ready}, quiet)
	if err != nil {
		t.Fatalf("%v\n%s", err, v.ConsoleTail(60))
	}
	t.Logf("%s: %s (%.1f s after QEMU started)", v.Name, m, time.Since(v.Booted).Seconds())
	if _, err := v.WaitConsole(ctx, regexp.MustCompile(`mailcow-ha\.service: Main process exited, code=exited, status=2`), nil, quiet); err != nil {
		t.Fatalf("%v\n%s", err, v.ConsoleTail(30))
	}
	time.Sleep(10 * time.Second) // a restart would come after RestartSec=5s
	text := v.ConsoleText()
	if n := len(regexp.MustCompile(`mailcow-ha\.service: Main process exited`).FindAllString(text, -1)); n != 1 {
		t.Errorf("%s: the agent ran %d times; exit 2 must not be restarted", v.Name, n)
	}
	for _, svc := range []string{"Keepalived", "keepalived", "mariadb", "mariadbd", "WSREP"} {
		if strings.Contains(text, svc+"[") || strings.Contains(text, "Starting "+svc) {
			t.Errorf("%s: %s started with bad user-data", v.Name, svc)
		}
	}
	// The metadata service was kept to the agent before the configuration was read and refused.
	if !strings.Contains(text, metadataKept) {
		t.Errorf("%s: the agent did not keep the metadata service to itself before it read the bad user-data", v.Name)
	}
	if strings.Contains(text, "pwned") && !strings.Contains(text, "echo pwned") {
		t.Errorf("%s: cloud-init ran the user-data script", v.Name)
	}
}

// The accelerator probe sees a kernel that boots (TCG works everywhere) and fails, with a reason, for one that
// cannot start.
func TestProbeBoot(t *testing.T) {
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	ctx := context.Background()
	if err := ProbeBoot(ctx, TCG, image.Path(image.Kernel), time.Minute); err != nil {
		t.Errorf("TCG: %v", err)
	}
	if err := ProbeBoot(ctx, TCG, filepath.Join(t.TempDir(), "no-such-kernel"), time.Minute); err == nil || !strings.Contains(err.Error(), "qemu") {
		t.Errorf("a missing kernel: %v", err)
	}
	if a, why := Accel(ctx, image.Path(image.Kernel), "tcg"); a[1] != TCG[1] || !strings.Contains(why, "MAILCOW_HA_VM_ACCEL") {
		t.Errorf("forced TCG: %v %q", a, why)
	}
}

// Status asks a VM's agent for /status over the private network (from the harness's namespace).
func (h *Harness) Status(ctx context.Context, v *VM) (api.NodeStatus, error) {
	var st api.NodeStatus
	body, err := h.get(ctx, "http://"+v.PrivIP+":7480/status")
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(body, &st)
	return st, err
}

func (h *Harness) get(ctx context.Context, url string) ([]byte, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return h.dial(addr, 5*time.Second) }}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
