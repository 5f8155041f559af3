package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/docker/docker/api/types/container"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/agent/volume"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
)

// writeConfig writes the node's configuration as cloud-init would from its server's user-data (the one that
// `cluster create` wrote), with the lab's own settings layered on it: where the node's files are (the lab runs
// every node on one machine), its metadata service, and the failover settings of the lab's options. The secrets stay
// those of the user-data; the agent writes them to the files named here at its start. mariadbd runs as mysql: its
// directory is mysql's and the way there is open.
func (n *Node) writeConfig() error {
	l := n.lab
	d := n.Dir
	db := filepath.Join(d, "db")
	for _, dir := range []string{d, db, filepath.Join(d, "dbvol"), filepath.Join(d, "mailcow"), filepath.Join(d, "by-id"), filepath.Join(d, "state")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		os.Chmod(dir, 0o755)
	}
	os.Chmod(l.o.Dir, 0o755)
	if out, err := exec.Command("chown", "mysql:mysql", db).CombinedOutput(); err != nil {
		return fmt.Errorf("lab: chown mysql %s: %w: %s", db, err, out)
	}
	if err := os.WriteFile(filepath.Join(d, "webhook.secret"), append(l.Alerts.secret, '\n'), 0o600); err != nil {
		return err
	}
	var cfg map[string]any
	if _, err := toml.Decode(n.UserData, &cfg); err != nil {
		return fmt.Errorf("lab: the user-data of %s: %w", n.Name, err)
	}
	tree := filepath.Join(d, "mailcow")
	if err := l.seedTree(tree); err != nil {
		return err
	}
	create := []string{l.o.Bin, "lab", "create-stub", "--docker-host", n.Docker(), "--data", filepath.Join(d, "data"),
		"--socket-dir", db, "--hostname", n.Name, "--mail-image", l.mailTag, "--mail-user", Mailbox, "--mailcow-dir", tree}
	mailcow := map[string]any{"api_key_file": filepath.Join(d, "mailcow-api.key"), "dir": tree,
		"data_mount": filepath.Join(d, "data"), "docker_host": n.Docker(), "device_dir": filepath.Join(d, "by-id"),
		"start_timeout": "60s", "create_command": create,
		// mailcow update: the stub tagged as the release's images stands in for the pull.
		"pull_command": []string{l.o.Bin, "lab", "pull-stub", "--docker-host", n.Docker()}}
	if repo := l.ReleaseRepo(); repo != "" {
		mailcow["repo"] = repo
	}
	hooks := []map[string]any{{"name": "lab", "url": "http://" + AlertsAddr + "/hook", "secret_file": filepath.Join(d, "webhook.secret")}}
	if l.o.Webhook != "" {
		hooks = append(hooks, map[string]any{"name": "extra", "url": l.o.Webhook})
	}
	config.Layer(cfg, map[string]any{
		// Members read again every 15 s (production: 2 min), so that a node added or removed is taken in within a
		// scenario (a node added may be so sooner: its signed requests make the members read the API).
		"cluster": map[string]any{"secret_file": filepath.Join(d, "secret"), "discover_interval": "15s"},
		// The metadata service answers per server at its own path in the lab (169.254.169.254 on Hetzner).
		"hcloud":  map[string]any{"token_file": filepath.Join(d, "token"), "metadata_url": "http://" + SimAddr + "/_metadata/" + n.Name + "/hetzner/v1"},
		"network": map[string]any{"public_interface": "eth0", "private_interface": "eth1"},
		"galera": map[string]any{"volume_mount": filepath.Join(d, "dbvol"), "data_dir": filepath.Join(d, "dbvol", "mysql"),
			"socket": filepath.Join(db, "mysqld.sock"), "config_file": filepath.Join(db, "my.cnf"), "password_file": filepath.Join(d, "dbpw")},
		"keepalived": map[string]any{"config_file": filepath.Join(d, "keepalived.conf"), "notify_fifo": filepath.Join(d, "notify.fifo")},
		// The agent writes mailcow.conf into dir at each promotion, as on the appliance, and the portal's API key
		// to api_key_file.
		"mailcow": mailcow,
		"failover": map[string]any{"check_grace": l.o.CheckGrace.String(), "quorum_grace": l.o.QuorumGrace.String(),
			"fence_timeout": l.o.FenceTimeout.String(), "reconcile_interval": "1s", "state_dir": filepath.Join(d, "state"),
			"sequential": l.o.Sequential, "breaker": map[string]any{"max": l.o.BreakerMax, "window": "1h"}},
		// Every address: the client probes /primary through the Floating IP, as Uptime Kuma would.
		"api":    map[string]any{"listen": []string{fmt.Sprintf(":%d", HealthPort)}, "peer_port": 7481, "socket": filepath.Join(d, "agent.sock")},
		"alerts": map[string]any{"webhooks": hooks},
		// No repository: the backup scenario sets one with config apply, as an operator would.
		"backup": map[string]any{"password_file": filepath.Join(d, "backup.password"), "cache_dir": filepath.Join(d, "restic-cache")},
	})
	text, err := config.Encode(cfg, "mailcow-ha lab node "+n.Name+": its server's user-data (cluster create) and the lab's settings (lab up)")
	if err != nil {
		return fmt.Errorf("lab: the configuration of %s: %w", n.Name, err)
	}
	return config.WriteSecret(filepath.Join(d, "config.toml"), text)
}

// PowerOff cuts the node's power: every process in its namespace is killed and its mounts go.
func (n *Node) PowerOff() error {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	n.lab.log.Info("power off", "node", n.Name)
	return n.shutdown(true)
}

// bootTries is how often a power-on is tried before the node is left off with its error.
const bootTries = 3

// Boot powers the node on: links up, dockerd, the agent (which boots as BACKUP with a cleanup pass). A boot that
// fails is cleaned up (as a power cut) and tried again; after bootTries the node stays off and BootErr says why.
func (n *Node) Boot(ctx context.Context) error {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if n.Powered() {
		return nil
	}
	if n.lab.isDown() {
		// The lab went down while this power-on waited (the simulator's hooks run late): nothing may start again
		// below a directory that Down has cleaned up.
		return fmt.Errorf("lab: %s: not powered on: the lab is down", n.Name)
	}
	n.clearBootErr()
	var err error
	for try := 1; try <= bootTries; try++ {
		if err = n.boot(ctx); err == nil {
			break
		}
		n.lab.log.Error("power on failed", "node", n.Name, "try", try, "err", err)
		n.shutdown(true)
		if try < bootTries {
			time.Sleep(2 * time.Second)
		}
	}
	n.mu.Lock()
	n.bootErr = err
	n.mu.Unlock()
	return err
}

func (n *Node) boot(ctx context.Context) error {
	n.mu.Lock()
	n.powered = true
	n.mu.Unlock()
	n.lab.log.Info("power on", "node", n.Name)
	if err := n.SetLinks(true); err != nil {
		return err
	}
	if err := n.startDocker(ctx); err != nil {
		return err
	}
	return n.startAgent()
}

// clearBootErr forgets the last failed power-on's error: a power-on is under way, and its own result counts.
func (n *Node) clearBootErr() {
	n.mu.Lock()
	n.bootErr = nil
	n.mu.Unlock()
}

// BootErr is why the last power-on failed, or nil.
func (n *Node) BootErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bootErr
}

// Powered reports whether the node runs.
func (n *Node) Powered() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.powered
}

// SetLinks brings the node's two links up or down (a cut cable).
func (n *Node) SetLinks(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	err := errors.Join(n.NS.IP("link", "set", "eth0", state), n.NS.IP("link", "set", "eth1", state))
	if up {
		// The kernel dropped the static routes with the link; the network configuration puts them back, as
		// ifupdown or networkd would on a server.
		err = errors.Join(err, n.publicRoutes())
	}
	return err
}

// publicRoutes routes the client's network through the router. Nothing else leaves the lab, and the node learns
// that at once: a DNS query to the host's resolver would otherwise wait for its 5 s timeout (the router's ICMP
// errors are rate-limited), and rsync's reverse lookup made every step of a Galera state transfer 5 s slower,
// about 30 s per joiner (measured).
func (n *Node) publicRoutes() error {
	return errors.Join(n.NS.IP("route", "replace", Gateway+"/32", "dev", "eth0"),
		n.NS.IP("route", "replace", ClientNet, "via", Gateway, "dev", "eth0", "onlink"),
		n.NS.IP("route", "replace", "unreachable", "default"))
}

// SimPower asks the simulated API to power the node's server on or off, as an operator would (and fires the
// backend's power hook).
func (l *Lab) SimPower(n *Node, on bool) error {
	act := "poweroff"
	if on {
		act = "poweron"
	}
	code, body := l.Sim.Do(http.MethodPost, fmt.Sprintf("/v1/servers/%d/actions/%s", n.ID, act), "")
	if code == http.StatusLocked {
		return fmt.Errorf("lab: %s %s: %w", act, n.Name, errServerBusy)
	}
	if code >= 300 {
		return fmt.Errorf("lab: %s %s: %d %s", act, n.Name, code, body)
	}
	return nil
}

// errServerBusy: an action holds the server (an agent's power-on of the node it fenced, or a fence).
var errServerBusy = errors.New("an action holds the server")

// PowerOn powers the node on through the simulated API unless it is on already. While an action holds its server
// (a new MASTER powering on the node it fenced: failover.power_on_fenced), it waits for that action instead of
// failing, and powers the node on itself only if it is still off afterwards.
func (l *Lab) PowerOn(ctx context.Context, n *Node, within time.Duration) error {
	deadline := time.Now().Add(within)
	for !n.Powered() {
		err := l.SimPower(n, true)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errServerBusy) || time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// Kill breaks a node in one of the ways the tests and the demo use.
func (n *Node) Kill(ctx context.Context, how string) error {
	switch how {
	case "power":
		return n.PowerOff()
	case "link":
		return n.SetLinks(false)
	case "agent":
		return n.agent.signal(syscall.SIGKILL)
	case "keepalived":
		return n.killPIDFile(filepath.Join(n.Dir, "state", "keepalived", "keepalived.pid"), syscall.SIGKILL)
	case "db":
		return n.killPIDFile(filepath.Join(n.Dir, "db", "mysqld.pid"), syscall.SIGKILL)
	case "hang":
		err := n.agent.signal(syscall.SIGSTOP)
		return errors.Join(err, n.killPIDFile(filepath.Join(n.Dir, "state", "keepalived", "keepalived.pid"), syscall.SIGSTOP))
	case "isolate":
		var others []string
		for _, m := range n.lab.Nodes {
			if m != n {
				others = append(others, m.Name)
			}
		}
		return n.lab.Partition([]string{n.Name}, others)
	case "postfix", "postfix-restart":
		return n.killPostfix(ctx, how == "postfix")
	}
	return fmt.Errorf("lab: kill --how %q: want power, link, agent, keepalived, db, postfix, postfix-restart, isolate or hang", how)
}

// Resume undoes a hang (SIGCONT to the agent and keepalived).
func (n *Node) Resume() error {
	err := n.agent.signal(syscall.SIGCONT)
	return errors.Join(err, n.killPIDFile(filepath.Join(n.Dir, "state", "keepalived", "keepalived.pid"), syscall.SIGCONT))
}

func (n *Node) killPIDFile(path string, sig syscall.Signal) error {
	pid, err := pidFile(path)
	if err != nil {
		return fmt.Errorf("lab: %s: %w", n.Name, err)
	}
	return syscall.Kill(pid, sig)
}

// killPostfix kills postfix's process inside its container. With stay, its restart policy is turned off first, so
// that it stays down (beyond the grace period); without, dockerd restarts it as mailcow's watchdog would.
func (n *Node) killPostfix(ctx context.Context, stay bool) error {
	c, err := deploy.Connect(n.Docker())
	if err != nil {
		return err
	}
	defer c.Close()
	id := postfixContainer
	if stay {
		if _, err := c.ContainerUpdate(ctx, id, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled}}); err != nil {
			return err
		}
	}
	ci, err := c.ContainerInspect(ctx, id)
	if err != nil {
		return err
	}
	if !ci.State.Running || ci.State.Pid <= 0 {
		return fmt.Errorf("lab: postfix is not running on %s", n.Name)
	}
	return syscall.Kill(ci.State.Pid, syscall.SIGKILL)
}

// StackRunning counts the node's running stub containers (0 when dockerd does not answer).
func (n *Node) StackRunning(ctx context.Context) int {
	if !n.Powered() {
		return 0
	}
	c, err := deploy.Connect(n.Docker())
	if err != nil {
		return 0
	}
	defer c.Close()
	st := &stack.Stack{Docker: c, Project: "mailcowdockerized"}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	n2, err := st.Running(cctx)
	if err != nil {
		return 0
	}
	return n2
}

// Containers maps each mailcow service on the node's dockerd to its container's id.
func (n *Node) Containers(ctx context.Context) (map[string]string, error) {
	c, err := deploy.Connect(n.Docker())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cs, err := (&stack.Stack{Docker: c, Project: "mailcowdockerized"}).Discover(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for svc, ct := range cs {
		out[svc] = ct.ID
	}
	return out, nil
}

// StartStackByHand starts every mailcow container the node's dockerd has, as someone running update.sh or
// `docker compose up` on a BACKUP would; it returns how many it started.
func (n *Node) StartStackByHand(ctx context.Context) (int, error) {
	c, err := deploy.Connect(n.Docker())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cs, err := (&stack.Stack{Docker: c, Project: "mailcowdockerized"}).Discover(ctx)
	if err != nil {
		return 0, err
	}
	started := 0
	var errs []error
	for _, ct := range cs {
		if err := c.ContainerStart(ctx, ct.ID, container.StartOptions{}); err != nil {
			// One whose binds need the Volume, which is not mounted here, does not start: neither by update.sh.
			errs = append(errs, fmt.Errorf("lab: start %s on %s: %w", ct.Name, n.Name, err))
			continue
		}
		started++
	}
	return started, errors.Join(errs...)
}

// Mounted reports whether the Volume is mounted on the node.
func (n *Node) Mounted() bool {
	ok, _ := volume.IsMountPoint(filepath.Join(n.Dir, "data"))
	return ok
}

// RestartPostfix starts postfix's container again with mailcow's restart policy, as an operator would after
// `kill --how postfix`.
func (n *Node) RestartPostfix(ctx context.Context) error {
	c, err := deploy.Connect(n.Docker())
	if err != nil {
		return err
	}
	defer c.Close()
	id := postfixContainer
	if _, err := c.ContainerUpdate(ctx, id, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways}}); err != nil {
		return err
	}
	return c.ContainerStart(ctx, id, container.StartOptions{})
}

// SetBreaker rewrites every node's configuration with failover.breaker.max = max and reloads the agents
// (SIGHUP), as an operator would.
func (l *Lab) SetBreaker(max int) error {
	return l.reconfigure(func(o *Options) { o.BreakerMax = max })
}

// SetSequential switches every agent to the original scripts' order of the takeover (failover.sequential), or
// back, through a reload.
func (l *Lab) SetSequential(on bool) error {
	return l.reconfigure(func(o *Options) { o.Sequential = on })
}

func (l *Lab) reconfigure(change func(o *Options)) error {
	change(&l.o)
	var errs []error
	for _, n := range l.Nodes {
		if err := n.writeConfig(); err != nil {
			errs = append(errs, err)
			continue
		}
		if n.Powered() {
			errs = append(errs, n.agent.signal(syscall.SIGHUP))
		}
	}
	return errors.Join(errs...)
}
