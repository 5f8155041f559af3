package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

// Arbitrator is a server labelled role=arbitrator that runs on this machine rather than in a guest: the shipped
// agent, which runs only garbd (Debian's galera-arbitrator-4, as on the appliance), in a namespace of its own on
// the private switch. It votes for Galera's quorum at a fraction of a guest's cost: on two emulated cores a third
// guest took a third of the CPU for its boot and another state transfer from the first MASTER.
type Arbitrator struct {
	Name string
	IP   string // on the private network
	Dir  string
	NS   *netns.NS
	cmd  *exec.Cmd
	done chan struct{}
}

// StartArbitrator runs `mailcow-ha agent` (h.Bin's) for the server name at ip with the server's user-data, and the
// paths of this machine layered on it: its secrets (the user-data's, which the agent writes to files), state and
// socket under the arbitrator's directory. Like a server, it finds itself through the metadata service by its
// address. The arbitrator ends with the harness.
func (h *Harness) StartArbitrator(name, ip, userData string) (*Arbitrator, error) {
	if _, err := exec.LookPath("garbd"); err != nil {
		return nil, fmt.Errorf("garbd is not installed (Debian package galera-arbitrator-4; make deps installs it): %w", err)
	}
	a := &Arbitrator{Name: name, IP: ip, Dir: filepath.Join(h.Dir, name)}
	if err := os.MkdirAll(a.Dir, 0o700); err != nil {
		return nil, err
	}
	var doc map[string]any
	if _, err := toml.Decode(userData, &doc); err != nil {
		return nil, fmt.Errorf("arbitrator %s: its user-data: %w", name, err)
	}
	config.Layer(doc, map[string]any{
		"cluster":  map[string]any{"secret_file": filepath.Join(a.Dir, "cluster.secret")},
		"hcloud":   map[string]any{"token_file": filepath.Join(a.Dir, "hcloud.token")},
		"galera":   map[string]any{"password_file": filepath.Join(a.Dir, "db.password")},
		"failover": map[string]any{"state_dir": filepath.Join(a.Dir, "state")},
		"api":      map[string]any{"socket": filepath.Join(a.Dir, "agent.sock")},
	})
	text, err := config.Encode(doc, "the user-data of "+name+", with the paths of the VM harness's arbitrator")
	if err != nil {
		return nil, fmt.Errorf("arbitrator %s: %w", name, err)
	}
	path := filepath.Join(a.Dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, err
	}
	if a.NS, err = netns.Add(netns.Unique("vmarb")); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.arbs = append(h.arbs, a) // Close removes it from here on
	h.mu.Unlock()
	if err := netns.Veth(a.NS, "eth1", h.NS, "arb-"+name); err != nil {
		return nil, fmt.Errorf("arbitrator %s: %w", name, err)
	}
	if err := h.NS.IP("link", "set", "arb-"+name, "master", "br0"); err != nil {
		return nil, fmt.Errorf("arbitrator %s: %w", name, err)
	}
	// Its private address, and the metadata service on the link (on Hetzner it is reached through the gateway).
	for _, args := range [][]string{{"addr", "add", ip + "/24", "dev", "eth1"}, {"route", "add", MetadataIP + "/32", "dev", "eth1"}} {
		if err := a.NS.IP(args...); err != nil {
			return nil, fmt.Errorf("arbitrator %s: %w", name, err)
		}
	}
	logf, err := os.OpenFile(a.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// As the appliance's unit runs it (its ExecStart), with a configuration file instead of cloud-init's copy.
	a.cmd = a.NS.Command(filepath.Join(h.Bin, "mailcow-ha"), "agent", "--galera", "systemd", "--config", path)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("arbitrator %s: %w", name, err)
	}
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); logf.Close(); close(a.done) }()
	h.Log.Info("arbitrator started", "node", name, "pid", a.cmd.Process.Pid)
	return a, nil
}

// Log is the agent's output (its journal on a node).
func (a *Arbitrator) Log() string { return filepath.Join(a.Dir, "agent.log") }

// LogText returns the agent's output so far.
func (a *Arbitrator) LogText() string {
	b, _ := os.ReadFile(a.Log())
	return string(b)
}

// Running says whether the agent still runs.
func (a *Arbitrator) Running() bool {
	if a.done == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// stop ends the agent as systemd would (SIGTERM, then SIGKILL after 30 s), by its PID, and removes the namespace
// with anything left in it (garbd).
func (a *Arbitrator) stop() {
	if a.cmd != nil && a.cmd.Process != nil && a.Running() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
	}
	if a.NS != nil {
		a.NS.Del()
	}
}

// tail returns the last n lines of the agent's output.
func (a *Arbitrator) tail(n int) string {
	lines := strings.Split(strings.TrimRight(a.LogText(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
