package daemon_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// cluster is three real agents, each with its real keepalived, in network namespaces on one bridge, against the
// simulated Hetzner API. Galera, the stack and the Volume are the agent's file-driven test doubles.
type cluster struct {
	t          testing.TB
	breakerMax int
	galera     bool // real mariadbd with galera-4 as the agents' children, instead of the file double
	sim        *hcloudsim.Sim
	sw         *netns.NS
	nodes      []*node
	bin        string
}

type node struct {
	name   string
	id     int64
	ip     string
	ns     *netns.NS
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	notify *notifyLog // what the agent sent to $NOTIFY_SOCKET
}

// notifyLog is a $NOTIFY_SOCKET, as systemd offers a Type=notify unit, that keeps every message.
type notifyLog struct {
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t testing.TB, path string) *notifyLog {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l := &notifyLog{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, string(buf[:n]))
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *notifyLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

const fip = "203.0.113.100"

// buildAgent builds the agent with its test doubles (test/agentdouble: mailcow-ha plus the --test-* flags, which
// the shipped binary does not have) and mailcow-ha-check (the check watcher the agent runs) into build/test-bin.
func buildAgent(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "build", "test-bin", netns.Unique("run-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for cmd, pkg := range map[string]string{"agentdouble": "../../test/agentdouble", "mailcow-ha-check": "../../cmd/mailcow-ha-check"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	return filepath.Join(dir, "agentdouble")
}

func newCluster(t testing.TB, breakerMax int, realGalera ...bool) *cluster {
	t.Helper()
	if why := netns.Available(); why != "" {
		t.Skip(why)
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived is not installed (Debian package keepalived; make deps installs it)")
	}
	c := &cluster{t: t, bin: buildAgent(t), breakerMax: breakerMax, galera: len(realGalera) > 0 && realGalera[0]}
	if c.galera {
		for _, bin := range []string{"mariadbd", "mariadb-install-db", "rsync", "stunnel"} {
			if _, err := exec.LookPath(bin); err != nil {
				t.Skipf("%s is not installed (Debian packages mariadb-server, galera-4, rsync, stunnel4; make deps installs them)", bin)
			}
		}
	}
	var err error
	if c.sw, err = netns.Add(netns.Unique("mha-sw-")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.sw.Del() })
	must(t, c.sw.IP("link", "add", "br0", "type", "bridge"))
	must(t, c.sw.IP("link", "set", "br0", "up"))
	must(t, c.sw.IP("addr", "add", "10.99.0.1/24", "dev", "br0"))

	st := hcloudsim.DemoState()
	c.sim, err = hcloudsim.New(hcloudsim.Options{State: st, Latencies: hcloudsim.DefaultLatencies().Scale(0.1)})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	must(t, c.sw.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "10.99.0.1:8480")
		return err
	}))
	srv := &http.Server{Handler: c.sim.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); c.sim.Close() })

	for i, sv := range st.Servers {
		n := &node{name: sv.Name, id: sv.ID, ip: sv.PrivateNet[0].IP, dir: t.TempDir()}
		if n.ns, err = netns.Add(netns.Unique("mha-" + sv.Name + "-")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.ns.Del() })
		must(t, netns.Veth(n.ns, "eth1", c.sw, fmt.Sprintf("p%d", i+1)))
		must(t, c.sw.IP("link", "set", fmt.Sprintf("p%d", i+1), "master", "br0"))
		must(t, n.ns.IP("addr", "add", n.ip+"/24", "dev", "eth1"))
		// The public side: a link of its own (the lab routes it; here only the address on it matters).
		must(t, n.ns.IP("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"))
		must(t, n.ns.IP("link", "set", "eth0", "up"))
		must(t, n.ns.IP("link", "set", "eth0p", "up"))
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		c.writeConfig(n)
		c.start(n)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) writeConfig(n *node) {
	t := c.t
	d := n.dir
	must(t, os.WriteFile(filepath.Join(d, "token"), []byte(hcloudsim.DemoToken+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(d, "secret"), []byte("component-test-secret-4f8a2c6e1b9d3f7a5c0e8b2d6f1a9c4e\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(d, "galera"), []byte("Primary Synced\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(d, "stack"), nil, 0o644))
	var b strings.Builder
	fmt.Fprintf(&b, "# mailcow-ha\nversion = 1\n[node]\nname = %q\n[cluster]\nname = \"lab\"\nsecret_file = %q\n", n.name, filepath.Join(d, "secret"))
	for i, m := range c.nodes {
		fmt.Fprintf(&b, "[[cluster.nodes]]\nname = %q\nprivate_ip = %q\nserver_id = %d\npriority = %d\nbootstrap = %v\n", m.name, m.ip, m.id, 150-50*i, i == 0)
	}
	fmt.Fprintf(&b, "[hcloud]\ntoken_file = %q\nendpoint = \"http://10.99.0.1:8480/v1\"\nfloating_ip_id = 2001\nvolume_id = 3001\n", filepath.Join(d, "token"))
	fmt.Fprintf(&b, "[network]\npublic_interface = \"eth0\"\nprivate_interface = \"eth1\"\n")
	// The appliance's create command (the default) wants the mail server's name; the stack here is a test double,
	// which writes no mailcow.conf.
	fmt.Fprintf(&b, "[mailcow]\nhostname = \"mail.lab.test\"\n")
	fmt.Fprintf(&b, "[keepalived]\nconfig_file = %q\nnotify_fifo = %q\n", filepath.Join(d, "keepalived.conf"), filepath.Join(d, "notify.fifo"))
	fmt.Fprintf(&b, "[failover]\ncheck_grace = \"2s\"\nquorum_grace = \"5s\"\nfence_timeout = \"3s\"\nreconcile_interval = \"1s\"\nstate_dir = %q\n", filepath.Join(d, "state"))
	fmt.Fprintf(&b, "[failover.breaker]\nmax = %d\nwindow = \"1h\"\n", c.breakerMax)
	fmt.Fprintf(&b, "[api]\nlisten = [\"127.0.0.1:7480\"]\npeer_port = 7481\nsocket = %q\n", filepath.Join(d, "agent.sock"))
	// Every configuration names mailcow's database password, also where a test double stands in for Galera.
	must(t, os.WriteFile(filepath.Join(d, "dbpw"), []byte("mailcow-db-password\n"), 0o600))
	if c.galera {
		// mariadbd runs as mysql: its directory is mysql's, and the way there is open.
		db := filepath.Join(d, "db")
		must(t, os.MkdirAll(db, 0o755))
		must(t, exec.Command("chown", "mysql:mysql", db).Run())
		must(t, os.Chmod(d, 0o755))
		must(t, os.Chmod(filepath.Dir(d), 0o755))
		fmt.Fprintf(&b, "[galera]\ndata_dir = %q\nsocket = %q\nconfig_file = %q\npassword_file = %q\n",
			filepath.Join(db, "data"), filepath.Join(db, "mysqld.sock"), filepath.Join(db, "my.cnf"), filepath.Join(d, "dbpw"))
	} else {
		fmt.Fprintf(&b, "[galera]\npassword_file = %q\n", filepath.Join(d, "dbpw"))
	}
	must(t, os.WriteFile(filepath.Join(d, "config.toml"), []byte(b.String()), 0o600))
}

func (c *cluster) start(n *node) {
	d := n.dir
	logf, err := os.OpenFile(filepath.Join(d, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	galeraArgs := []string{"--test-galera-file", filepath.Join(d, "galera")}
	if c.galera {
		galeraArgs = []string{"--galera", "child"}
	}
	n.cmd = n.ns.Command(c.bin, append(append([]string{"agent", "--config", filepath.Join(d, "config.toml")}, galeraArgs...),
		"--test-stack-file", filepath.Join(d, "stack"), "--test-storage-dir", filepath.Join(d, "volume"))...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if n.notify == nil {
		n.notify = listenNotify(c.t, filepath.Join(d, "notify.sock"))
	}
	n.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(d, "notify.sock"))
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(c.t, n.cmd.Start())
	n.exited = make(chan struct{})
	go func() { n.cmd.Wait(); logf.Close(); close(n.exited) }()
}

// stopAll ends every agent by its PID: SIGTERM (it demotes and stops its keepalived), then SIGKILL.
func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
		case <-time.After(90 * time.Second): // a clean mariadbd shutdown can take a while
			n.cmd.Process.Kill()
			<-n.exited
		}
		if c.galera {
			// A mariadbd that outlived its agent (killed agent) is ended by the PID it wrote.
			if b, err := os.ReadFile(filepath.Join(n.dir, "db", "mysqld.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if c.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(n.dir, "agent.log"))
			c.t.Logf("=== %s agent log (last 6000 bytes)\n%s", n.name, tail.Bytes(string(b), 6000))
		}
	}
}

// hasVIP checks, through netlink in the node's namespace, whether eth0 holds the Floating IP.
func (c *cluster) hasVIP(n *node) bool {
	h, err := n.ns.Handle()
	if err != nil {
		c.t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		c.t.Fatal(err)
	}
	defer nh.Close()
	l, err := nh.LinkByName("eth0")
	if err != nil {
		c.t.Fatal(err)
	}
	addrs, _ := nh.AddrList(l, netlink.FAMILY_V4)
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().String() == fip {
			return true
		}
	}
	return false
}

func (c *cluster) stackRunning(n *node) bool {
	b, _ := os.ReadFile(filepath.Join(n.dir, "stack.state"))
	return strings.TrimSpace(string(b)) == "running"
}

// master waits until exactly one node holds everything: the Floating IP assigned in the simulator, the Volume
// attached there, the address on its interface and its stack running; and no other node has the address or a
// running stack.
func (c *cluster) master(within time.Duration, not ...*node) (*node, time.Duration) {
	c.t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		st := c.sim.State()
		owner := st.FloatingIPs[0].Server
		var m *node
		ok := owner != 0 && st.Volumes[0].Server == owner
		for _, n := range c.nodes {
			holds := c.hasVIP(n)
			running := c.stackRunning(n)
			if n.id == owner {
				m = n
				ok = ok && holds && running
			} else if holds || running {
				ok = false
			}
		}
		for _, x := range not {
			if m == x {
				ok = false
			}
		}
		if ok && m != nil {
			return m, time.Since(start)
		}
		last = fmt.Sprintf("fip owner %d, volume owner %d", owner, st.Volumes[0].Server)
		for _, n := range c.nodes {
			last += fmt.Sprintf("; %s vip=%v stack=%v", n.name, c.hasVIP(n), c.stackRunning(n))
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("no single MASTER within %s: %s", within, last)
	return nil, 0
}

func (c *cluster) status(n *node) string {
	ans, err := check.Ask(filepath.Join(n.dir, "agent.sock"), "status", 2*time.Second)
	if err != nil {
		return err.Error()
	}
	return ans
}

// keepalivedPID reads the pid file of the node's keepalived.
func keepalivedPID(t testing.TB, n *node) int {
	b, err := os.ReadFile(filepath.Join(n.dir, "state", "keepalived", "keepalived.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestClusterFailover runs the whole chain with real keepalived: one MASTER at start; killing its keepalived,
// failing its check and cutting its link each move everything to another node, and the old one removes the
// address; the breaker (max 1 per node here) then stops a further takeover.
// takeoverRequests finds the count on an agent's failover_succeeded line.
var takeoverRequests = regexp.MustCompile(`event=failover_succeeded .*api_requests=(\d+)`)

func TestClusterFailover(t *testing.T) {
	c := newCluster(t, 1)

	m1, took := c.master(60 * time.Second)
	t.Logf("initial MASTER %s after %s", m1.name, took)
	// Every agent told systemd READY=1 once it worked (boot cleanup done, Galera Synced), whether or not it became
	// MASTER, with a STATUS= line; the MASTER's status says so afterwards.
	for _, n := range c.nodes {
		msgs := n.notify.all()
		i := slices.IndexFunc(msgs, func(m string) bool { return strings.Contains(m, "READY=1") })
		if i < 0 || !strings.Contains(msgs[i], "STATUS=") || strings.Contains(msgs[i], "STATUS=master") {
			t.Errorf("%s: no READY=1 before MASTER: %q", n.name, msgs)
		}
		for end := time.Now().Add(5 * time.Second); n == m1 && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if msgs = n.notify.all(); slices.ContainsFunc(msgs[i+1:], func(m string) bool { return strings.HasPrefix(m, "STATUS=master") }) {
				break
			}
		}
		if n == m1 && !slices.ContainsFunc(msgs[i+1:], func(m string) bool { return strings.HasPrefix(m, "STATUS=master") }) {
			t.Errorf("%s: no STATUS=master: %q", n.name, msgs)
		}
	}

	// 1. Kill the MASTER's keepalived (by its PID).
	must(t, syscall.Kill(keepalivedPID(t, m1), syscall.SIGKILL))
	m2, took := c.master(60*time.Second, m1)
	t.Logf("keepalived of %s killed: %s is MASTER after %s", m1.name, m2.name, took)
	// The takeover's Hetzner API requests are counted on its failover_succeeded line.
	var reqs []string
	for end := time.Now().Add(10 * time.Second); reqs == nil && time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(m2.dir, "agent.log"))
		reqs = takeoverRequests.FindStringSubmatch(string(b))
	}
	if reqs == nil {
		t.Errorf("%s: no api_requests on its failover_succeeded line", m2.name)
	} else if n, err := strconv.Atoi(reqs[1]); err != nil || n < 3 {
		t.Errorf("%s: the takeover's API requests: %q, want a count of at least 3 (the owners, the assignment, the attachment)", m2.name, reqs)
	} else {
		t.Logf("the takeover made %d API requests", n)
	}

	// 2. Fail the new MASTER's check: a critical service stays down beyond check_grace.
	must(t, os.WriteFile(filepath.Join(m2.dir, "stack"), []byte("postfix-mailcow\n"), 0o644))
	m3, took := c.master(60*time.Second, m1, m2)
	t.Logf("check of %s failed: %s is MASTER after %s", m2.name, m3.name, took)
	must(t, os.WriteFile(filepath.Join(m2.dir, "stack"), nil, 0o644))

	// 3. Every node has taken over once, the breaker's limit here: cutting the MASTER's link makes the others
	// refuse, and the isolated MASTER gives everything up (its keepalived goes FAULT with the link).
	must(t, m3.ns.IP("link", "set", "eth1", "down"))
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) && c.hasVIP(m3) {
		time.Sleep(200 * time.Millisecond)
	}
	if c.hasVIP(m3) {
		t.Fatalf("%s kept the address after losing its link", m3.name)
	}
	refused := false
	for time.Now().Before(deadline) && !refused {
		for _, n := range []*node{m1, m2} {
			if strings.Contains(c.status(n), "breaker tripped") {
				refused = true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !refused {
		t.Fatalf("no node reports the breaker: %s / %s", c.status(m1), c.status(m2))
	}
	for _, n := range c.nodes {
		if c.hasVIP(n) || c.stackRunning(n) {
			t.Fatalf("%s serves although every node's breaker or link forbids it", n.name)
		}
	}
}

// TestClusterOperations covers the reconcile loop and the operator's commands: an address removed by hand comes
// back; switchover --to hands MASTER to the named node; in maintenance a dead keepalived moves nothing, and
// after it the cluster converges again.
func TestClusterOperations(t *testing.T) {
	c := newCluster(t, 5)
	m1, _ := c.master(60 * time.Second)

	must(t, m1.ns.IP("addr", "del", fip+"/32", "dev", "eth0"))
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && !c.hasVIP(m1) {
		time.Sleep(200 * time.Millisecond)
	}
	if !c.hasVIP(m1) {
		t.Fatal("the reconcile loop did not put the removed address back")
	}

	target := c.nodes[2]
	if target == m1 {
		target = c.nodes[1]
	}
	out, err := exec.Command(c.bin, "switchover", "--to", target.name, "--socket", filepath.Join(m1.dir, "agent.sock")).CombinedOutput()
	if err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	m2, took := c.master(60*time.Second, m1)
	if m2 != target {
		t.Fatalf("switchover --to %s made %s MASTER", target.name, m2.name)
	}
	t.Logf("switchover from %s to %s took %s", m1.name, m2.name, took)

	out, err = exec.Command(c.bin, "maintenance", "on", "--socket", filepath.Join(m2.dir, "agent.sock")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "maintenance on") {
		t.Fatalf("maintenance on: %v\n%s", err, out)
	}
	must(t, syscall.Kill(keepalivedPID(t, m2), syscall.SIGKILL))
	time.Sleep(8 * time.Second)
	if m, _ := c.master(5 * time.Second); m != m2 {
		t.Fatalf("in maintenance MASTER moved from %s to %s", m2.name, m.name)
	}
	out, err = exec.Command(c.bin, "maintenance", "off", "--socket", filepath.Join(m2.dir, "agent.sock")).CombinedOutput()
	if err != nil {
		t.Fatalf("maintenance off: %v\n%s", err, out)
	}
	// The MASTER that keepalived elected meanwhile takes over; the old one, whose keepalived came back as
	// BACKUP, steps down. Then the brain and keepalived agree on every node.
	deadline = time.Now().Add(60 * time.Second)
	for {
		m3, _ := c.master(60 * time.Second)
		st := c.status(m3)
		if strings.Contains(st, `"role":"master"`) && strings.Contains(st, `"vrrp":"MASTER"`) {
			t.Logf("after maintenance: %s is MASTER and keepalived agrees", m3.name)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after maintenance the MASTER %s disagrees with keepalived: %s", m3.name, st)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Cut the MASTER's private link: the others elect a new MASTER, which cannot reach the old one's agent and
	// fences it through the API (poweroff); the isolated node removes the address by itself.
	old, _ := c.master(10 * time.Second)
	must(t, old.ns.IP("link", "set", "eth1", "down"))
	m4, took := c.master(60*time.Second, old)
	t.Logf("link of %s cut: %s is MASTER after %s", old.name, m4.name, took)
	for _, sv := range c.sim.State().Servers {
		if sv.ID == old.id && sv.Status != "off" {
			t.Fatalf("the isolated MASTER %s was not fenced: status %s", old.name, sv.Status)
		}
	}
}

// TestClusterReload changes a node's configuration and sends its agent SIGHUP: keepalived's configuration is
// rewritten and keepalived reloaded in place (same PID); an invalid file is refused and the node keeps running.
func TestClusterReload(t *testing.T) {
	c := newCluster(t, 5)
	m, _ := c.master(60 * time.Second)
	n := c.nodes[0]
	if n == m {
		n = c.nodes[1]
	}
	pid := keepalivedPID(t, n)
	confPath := filepath.Join(n.dir, "keepalived.conf")
	before, _ := os.ReadFile(confPath)
	cfgPath := filepath.Join(n.dir, "config.toml")
	cfg, _ := os.ReadFile(cfgPath)
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "[keepalived]\n", "[keepalived]\npreempt = \"delay\"\npreempt_delay = \"30s\"\n", 1)), 0o600))
	must(t, n.cmd.Process.Signal(syscall.SIGHUP))
	deadline := time.Now().Add(10 * time.Second)
	var after []byte
	for time.Now().Before(deadline) {
		after, _ = os.ReadFile(confPath)
		if string(after) != string(before) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(string(after), "preempt_delay 30") || strings.Contains(string(after), "nopreempt") {
		t.Fatalf("keepalived.conf not rewritten:\n%s", after)
	}
	time.Sleep(time.Second)
	if got := keepalivedPID(t, n); got != pid || syscall.Kill(pid, 0) != nil {
		t.Fatalf("keepalived was restarted (pid %d, now %d) instead of reloaded", pid, got)
	}
	// An invalid configuration is refused: the agent keeps running with the old one.
	must(t, os.WriteFile(cfgPath, []byte(string(cfg)+"bogus = 1\n"), 0o600))
	must(t, n.cmd.Process.Signal(syscall.SIGHUP))
	time.Sleep(2 * time.Second)
	select {
	case <-n.exited:
		t.Fatal("the agent exited on an invalid configuration")
	default:
	}
	if st := c.status(n); !strings.Contains(st, `"role":"backup"`) {
		t.Fatalf("status after refused reload: %s", st)
	}
	if m2, _ := c.master(10 * time.Second); m2 != m {
		t.Fatalf("MASTER moved from %s to %s on a reload", m.name, m2.name)
	}
}

// BenchmarkAgent starts the 3-node cluster and measures what a check costs: one question on the socket, as the
// check watcher asks it every second, against the whole `mailcow-ha check` process that keepalived used to fork
// every second; and the agents' resident memory.
func BenchmarkAgent(b *testing.B) {
	c := newCluster(b, 5)
	m, _ := c.master(60 * time.Second)
	sock := filepath.Join(m.dir, "agent.sock")
	// The watcher's question, in-process.
	{
		const samples = 300
		lat := make([]time.Duration, 0, samples)
		for range samples {
			t0 := time.Now()
			if _, err := check.Ask(sock, "check", time.Second); err != nil {
				b.Fatalf("check socket: %v", err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "check_socket_p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "check_socket_p99_ms")
	}
	// The one-shot check command (an operator's), small and big; what keepalived paid per second before the watcher.
	for _, v := range []struct {
		unit string
		cmd  []string
	}{
		{"check", []string{filepath.Join(filepath.Dir(c.bin), "mailcow-ha-check"), "--quiet", "--socket", sock}},
		{"check_big", []string{c.bin, "check", "--quiet", "--socket", sock}},
		{"exec_floor", []string{"/bin/true"}}, // what starting any process costs here
	} {
		// A fixed number of samples: the cluster's start dominates the benchmark's time, so b.N stays 1.
		const samples = 300
		lat := make([]time.Duration, 0, samples)
		for range samples {
			t0 := time.Now()
			if out, err := exec.Command(v.cmd[0], v.cmd[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%s: %v %s", v.unit, err, out)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, v.unit+"_p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, v.unit+"_p99_ms")
	}
	var maxRSS int
	for _, n := range c.nodes {
		// The agent runs under ip netns exec, which execs it: the PID is the agent's.
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				maxRSS = max(maxRSS, kb)
			}
		}
	}
	b.ReportMetric(float64(maxRSS)/1024, "agent_rss_MiB")
}

// TestClusterWithGalera runs the agents with real MariaDB Galera as their children: the cluster forms by itself
// (the bootstrap node starts it and creates mailcow's database and user, the others join), one node becomes
// MASTER; then every mariadbd is killed with -9 and the agents recover the cluster by themselves, from the
// highest seqno, with every committed row and the same cluster uuid, and a MASTER again.
func TestClusterWithGalera(t *testing.T) {
	c := newCluster(t, 5, true)
	m, took := c.master(3 * time.Minute)
	t.Logf("with Galera: %s is MASTER %s after start", m.name, took)
	sock := func(n *node) string { return filepath.Join(n.dir, "db", "mysqld.sock") }
	db, err := galera.Open(sock(m))
	must(t, err)
	defer db.Close()
	var users int
	must(t, db.QueryRow("SELECT COUNT(*) FROM mysql.user WHERE user = 'mailcow'").Scan(&users))
	if users != 2 {
		t.Fatalf("the first bootstrap created %d mailcow users, want 2 (localhost and %%)", users)
	}
	for _, q := range []string{"CREATE TABLE mailcow.probe (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
		"INSERT INTO mailcow.probe (v) VALUES (1),(2),(3)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	st, err := galera.Query(context.Background(), db)
	must(t, err)
	uuid := st.StateUUID
	db.Close()
	// Wait until every member is Synced with the rows before the crash.
	synced := func(n *node) bool {
		d, err := galera.Open(sock(n))
		if err != nil {
			return false
		}
		defer d.Close()
		st, err := galera.Query(context.Background(), d)
		var rows int
		if err == nil {
			err = d.QueryRow("SELECT COUNT(*) FROM mailcow.probe").Scan(&rows)
		}
		return err == nil && st.PrimarySynced() && st.StateUUID == uuid && st.ClusterSize == 3 && rows == 3
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, n := range c.nodes {
		for !synced(n) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never Synced", n.name)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	for _, n := range c.nodes {
		b, err := os.ReadFile(filepath.Join(n.dir, "db", "mysqld.pid"))
		must(t, err)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		must(t, err)
		must(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	start := time.Now()
	// Every node loses its Galera: the MASTER steps down, then the agents recover the cluster.
	deadline = time.Now().Add(3 * time.Minute)
	for {
		m2, _ := c.master(3 * time.Minute)
		ok := true
		for _, n := range c.nodes {
			ok = ok && synced(n)
		}
		if ok {
			t.Logf("all mariadbd killed: recovered by the agents, %s MASTER, all Synced with every row, after %s", m2.name, time.Since(start))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agents did not recover the Galera cluster within 3 minutes")
		}
		time.Sleep(time.Second)
	}

	// The bootstrap node is rebuilt (a new server, an empty datadir) while the cluster is down: every agent stops,
	// mx1's datadir goes, and all three start again. The two others recover the cluster's history; mx1 must not
	// start a new, empty cluster (its peers have a history), and joins. No member ever runs a Primary component of
	// another cluster uuid.
	c.stopAll()
	must(t, os.RemoveAll(filepath.Join(c.nodes[0].dir, "db", "data")))
	start = time.Now()
	for _, n := range c.nodes {
		c.start(n)
	}
	deadline = time.Now().Add(4 * time.Minute)
	for {
		ok := true
		for _, n := range c.nodes {
			if d, err := galera.Open(sock(n)); err == nil {
				st, err := galera.Query(context.Background(), d)
				d.Close()
				if err == nil && st.ClusterStatus == "Primary" && st.StateUUID != "" && st.StateUUID != uuid {
					t.Fatalf("%s runs a Primary component of cluster %s, not %s: a new, empty cluster", n.name, st.StateUUID, uuid)
				}
			}
			ok = ok && synced(n)
		}
		if ok {
			t.Logf("bootstrap node rebuilt while the cluster was down: it joined the recovered cluster %s later, every row kept", time.Since(start).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not come back with the rebuilt bootstrap node within 4 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(c.nodes[0].dir, "agent.log")); err != nil || !strings.Contains(string(b), "no new cluster starts here") {
		t.Errorf("the rebuilt bootstrap node did not say why it waited (%v)", err)
	}
}
