// Package lab runs a real mailcow-ha cluster on one Linux machine: network namespaces for the nodes, a bridge for
// the private network, a router that routes the Floating IP where the simulated Hetzner API says it is assigned, a
// client; on every node real keepalived and mariadbd with galera-4 (run by the agent), a dockerd of its own with
// the stub mailcow stack in which Debian's postfix and dovecot play mailcow's, and the real agent; the shared
// Volume is an ext4 image on a loop device that the simulator's backend hands to exactly one node. The lab's
// process is the parent of every daemon and reaps it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/release"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/mailprobe"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

// Addresses of the lab (all inside namespaces the lab makes).
const (
	FloatingIP  = "203.0.113.100"
	Gateway     = "203.0.113.1" // the router's address on every public link, like Hetzner's gateway
	SimAddr     = "10.99.0.1:8480"
	HealthPort  = 7480 // the agents' public API (/health, /primary, /replica, /status, /metrics)
	ClientIP    = "10.99.1.2"
	ClientNet   = "10.99.1.0/24"
	PublicNet   = "203.0.113.0/24"
	RouterIP    = "10.99.1.1"
	Mailbox     = "lab@example.org"
	ClusterName = "lab"           // cluster create --name: the servers are lab-1…lab-N, labelled cluster=lab
	Hostname    = "mail.lab.test" // cluster create --hostname: MAILCOW_HOSTNAME in the mailcow.conf the agents write
	MaxNodes    = 5               // nodes a lab can have (Up makes 3 or 5; Grow adds up to this)
)

// Options configure a lab.
type Options struct {
	Dir     string // state directory (logs, configs, the Volume image); must not be below a world-writable one
	Nodes   int    // members: 3 or 5
	Bin     string // the mailcow-ha binary the nodes run
	StubBin string // the static mailcow-stub binary for the stub image
	// MailCache is where the mail servers' root file system is kept (mailservers.RootFS): Debian's postfix and
	// dovecot play postfix-mailcow and dovecot-mailcow on every node; Up makes it first when it is missing.
	MailCache string
	Logger    *slog.Logger
	// Latencies of the simulated API; zero means hcloudsim.DefaultLatencies.
	Latencies *hcloudsim.Latencies
	// Failover settings written into every node's configuration.
	CheckGrace, QuorumGrace, FenceTimeout time.Duration
	BreakerMax                            int
	Sequential                            bool   // failover.sequential: the original scripts' order
	Webhook                               string // alerts.webhooks URL, optional
	// IPv6: cluster create --ipv6, an IPv6 Floating IP that follows the MASTER with the IPv4 one (IPv6Available
	// says whether this machine's namespaces can hold it).
	IPv6 bool
	// MailcowTree and MailcowTag: a mailcow release tree (mailcowtree) and its tag. Every node's mailcow directory
	// holds it, and the lab keeps a git repository of releases, the first this one, that the nodes update from
	// (ReleaseRepo, PublishRelease). Empty: the nodes' directories hold only what the agent writes.
	MailcowTree, MailcowTag string
	// Settings are `cluster create --config`'s: settings for every node, in the user-data (a cluster made from a
	// backup gets its [backup] repository, password and restore_from here).
	Settings map[string]any
}

// IPv6Available says why the lab cannot give its nodes an IPv6 Floating IP here ("" when it can): the kernel must
// have IPv6, enabled.
func IPv6Available() string {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/default/disable_ipv6")
	switch {
	case err != nil:
		return "this kernel has no IPv6 (" + err.Error() + ")"
	case strings.TrimSpace(string(b)) != "0":
		return "IPv6 is disabled (net.ipv6.conf.default.disable_ipv6 = " + strings.TrimSpace(string(b)) + ")"
	}
	return ""
}

// Lab is a running lab.
type Lab struct {
	o       Options
	id      string // namespace prefix
	log     *slog.Logger
	Sim     *hcloudsim.Sim
	Alerts  *Alerts // the webhook receiver every agent reports to
	srv     *http.Server
	asrv    *http.Server
	sw, rt  *netns.NS
	client  *netns.NS
	Nodes   []*Node
	gone    []*Node // the nodes of deleted servers (off; their namespaces go with the lab)
	mail    string  // the mail servers' root file system tarball; every node's dockerd imports it as mailTag
	mailTag string
	// imageRelease is the release every node's tree holds from the start (makeReleaseRepo).
	imageRelease release.Release
	// What `cluster create` made: its secrets and user-data, the shared Volume, the appliance snapshot.
	secrets           *provision.Secrets
	volumeID, imageID int64
	mu                sync.Mutex
	loops             map[int64]string // Volume id → its loop device
	up, down          bool
}

// Node is one lab node.
type Node struct {
	Name     string // its server's name (lab-1…)
	ID       int64
	PrivIP   string
	PubIP    string
	UserData string // its server's user-data, which `cluster create` wrote
	NS       *netns.NS
	Dir      string
	lab      *Lab
	dockerd  *proc
	agent    *proc
	mu       sync.Mutex
	powered  bool
	bootErr  error // the last power-on that failed (after its retries), until one succeeds
	rebuilds int   // rebuilds done (the node powered on again after its new disk)
	// pmu serializes power transitions: the simulator's power hooks run in goroutines, and a late power-off must
	// never interleave with a power-on (it would kill the new dockerd halfway through the boot).
	pmu sync.Mutex
}

func (o *Options) defaults() {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.CheckGrace == 0 {
		o.CheckGrace = 10 * time.Second
	}
	if o.QuorumGrace == 0 {
		o.QuorumGrace = 5 * time.Second
	}
	if o.FenceTimeout == 0 {
		// The production default: no scenario needs it short (a dead or powered-off master refuses the peer API
		// at once and is fenced at once), and a short one fenced a master whose stack stop took 3.8 s on a busy
		// machine in the middle of its demotion.
		o.FenceTimeout = config.Defaults().Failover.FenceTimeout.D()
	}
	if o.BreakerMax == 0 {
		o.BreakerMax = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Preflight says why a lab cannot run here, or "".
func Preflight() string {
	if why := netns.Available(); why != "" {
		return why
	}
	for bin, pkg := range map[string]string{"keepalived": "keepalived", "mariadbd": "mariadb-server", "rsync": "rsync", "stunnel": "stunnel4",
		"dockerd": "docker.io", "nsenter": "util-linux", "losetup": "util-linux", "mkfs.ext4": "e2fsprogs"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("%s is not installed (Debian package %s; make deps installs it)", bin, pkg)
		}
	}
	return mailprobe.Preflight()
}

// Up builds the lab and starts every node; it returns once the nodes' agents run (not once a MASTER is elected).
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	o.defaults()
	if why := Preflight(); why != "" {
		return nil, errors.New("lab: " + why)
	}
	if o.Nodes != 3 && o.Nodes != 5 {
		return nil, fmt.Errorf("lab: --nodes must be 3 or 5, not %d", o.Nodes)
	}
	if o.MailCache == "" {
		return nil, errors.New("lab: Options.MailCache is empty (where the mail servers' root file system is kept)")
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	// The mail servers' image first: made once (two to three minutes here), then found by its inputs' hash.
	mail, err := mailservers.RootFS(ctx, mailservers.Inputs{}, o.MailCache, logWriter{o.Logger})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	// What an earlier lab or test left when its process died goes first (its namespaces, processes, mounts, loop
	// device), wherever its directory was.
	if gone, err := reap.Sweep(o.Logger); err != nil {
		return nil, fmt.Errorf("lab: leftovers of an earlier run: %w", err)
	} else if len(gone) > 0 {
		o.Logger.Warn("removed the leftovers of an earlier run", "things", len(gone))
	}
	if err := clean(o.Dir); err != nil {
		return nil, err
	}
	// Every mount below the directory (dockerd's, the Volume) goes with the lab, even when this process dies.
	if err := reap.Claim(reap.Mounts, o.Dir, "", "lab"); err != nil {
		return nil, err
	}
	l = &Lab{o: o, id: netns.Unique("mhl"), log: o.Logger, mail: mail, mailTag: mailservers.Inputs{}.Tag()}
	defer func() {
		if err != nil {
			l.Down()
			l = nil
		}
	}()
	began := time.Now()
	if err := l.topology(); err != nil {
		return l, err
	}
	if err := l.simulator(); err != nil {
		return l, err
	}
	if err := l.createCluster(ctx); err != nil {
		return l, err
	}
	if err := l.makeReleaseRepo(ctx); err != nil {
		return l, err
	}
	l.mu.Lock()
	l.up = true
	l.mu.Unlock()
	if err := l.WriteInfo(); err != nil {
		return l, err
	}
	l.log.Info("lab network ready", "took", time.Since(began).Round(time.Millisecond))
	// dockerd with the stub and the mail servers' images on every node at once; the agents one after another, the
	// bootstrap node first.
	errs := make([]error, len(l.Nodes))
	var wg sync.WaitGroup
	for i, n := range l.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = n.startDocker(ctx) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return l, err
	}
	for _, n := range l.Nodes {
		if err := n.writeConfig(); err != nil {
			return l, err
		}
		if err := n.startAgent(); err != nil {
			return l, err
		}
		n.powered = true
	}
	l.log.Info("lab up", "nodes", len(l.Nodes), "took", time.Since(began).Round(time.Millisecond))
	return l, nil
}

// logWriter logs each line written to it (a build's progress) at info level.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.log.Info(line)
	}
	return len(b), nil
}

// clean removes what an earlier lab left in dir (node directories, Volume images, the cluster's secrets, the mail
// ledger), refusing
// while anything is still mounted below it.
func clean(dir string) error {
	mps, err := reap.MountsBelow(dir)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("lab: %s is still mounted below %s; run mailcow-ha lab down first", mps[0], dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		rest, node := strings.CutPrefix(name, ClusterName+"-")
		vol := strings.HasPrefix(name, "volume-") && strings.HasSuffix(name, ".img")
		if (e.IsDir() && node && rest != "" && strings.Trim(rest, "0123456789") == "") || vol ||
			name == "cluster" || name == "ledger.txt" || name == "lab.json" {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("lab: cleaning %s: %w", dir, err)
			}
		}
	}
	return nil
}

// nodes is l.Nodes for a goroutine beside the test's: a node added (Grow) is appended under the lab's lock.
func (l *Lab) nodes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.Nodes)
}

// Node returns the node with the name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// nodeByID returns the node of a server id.
func (l *Lab) nodeByID(id int64) *Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// loopDevices are the Volumes' loop devices, sorted.
func (l *Lab) loopDevices() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var devs []string
	for _, d := range l.loops {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	return devs
}

// isDown reports whether Down has begun.
func (l *Lab) isDown() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down
}

// Down stops every process, unmounts, detaches the loop device and removes every namespace the lab made.
func (l *Lab) Down() error {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return nil
	}
	l.down = true
	l.mu.Unlock()
	l.mu.Lock()
	all := append(slices.Clone(l.Nodes), l.gone...)
	l.mu.Unlock()
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, n := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.pmu.Lock()
			defer n.pmu.Unlock()
			errs[i] = n.shutdown(false)
		}()
	}
	wg.Wait()
	if l.srv != nil {
		l.srv.Close()
	}
	if l.asrv != nil {
		l.asrv.Close()
	}
	if l.Sim != nil {
		l.Sim.Close()
	}
	for _, n := range all {
		if n.NS != nil {
			errs = append(errs, n.NS.Del())
		}
	}
	for _, ns := range []*netns.NS{l.client, l.rt, l.sw} {
		if ns != nil {
			errs = append(errs, ns.Del())
		}
	}
	os.Remove(filepath.Join(l.o.Dir, "lab.json"))
	for _, dev := range l.loopDevices() {
		backing := reap.BackingFile(dev)
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("losetup -d %s: %w: %s", dev, err, out))
		} else if err := reap.WaitDetached(dev, backing, 15*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		} else {
			reap.Release(reap.Loop, dev)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if mps, err := reap.MountsBelow(l.o.Dir); err == nil && len(mps) == 0 {
		reap.Release(reap.Mounts, l.o.Dir)
	}
	return nil
}
