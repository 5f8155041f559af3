package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// shutdown stops a node: gracefully (SIGTERM to the agent, which demotes; then dockerd) unless hard, which is a
// power cut. Either way everything in its namespace ends and its mounts go.
func (n *Node) shutdown(hard bool) error {
	n.mu.Lock()
	n.powered = false
	n.mu.Unlock()
	if !hard {
		if n.agent != nil {
			n.agent.stop(syscall.SIGTERM, 60*time.Second)
		}
		if n.dockerd != nil {
			n.dockerd.stop(syscall.SIGTERM, 20*time.Second)
		}
	}
	err := reap.KillNS(n.NS.Name)
	if n.agent != nil {
		n.agent.stop(syscall.SIGKILL, 5*time.Second)
	}
	if n.dockerd != nil {
		n.dockerd.stop(syscall.SIGKILL, 5*time.Second)
	}
	return errors.Join(err, n.unmountAll())
}

// unmountAll forces off every mount below the node's directory (the Volume, dockerd's), as a hot-unplug would.
func (n *Node) unmountAll() error { return reap.UnmountBelow(n.Dir) }

// Docker is the node's dockerd socket.
func (n *Node) Docker() string { return "unix://" + filepath.Join(n.Dir, "docker", "docker.sock") }

// dockerdUp is how long a node's dockerd may take to answer. After a power cut it first restarts the containers
// that had restart: always (a master's), before its API answers.
const dockerdUp = 120 * time.Second

// startDocker starts the node's own dockerd (its own data root and socket, no default bridge) and loads the stub
// and the mail servers' images into it unless it has them.
func (n *Node) startDocker(ctx context.Context) error {
	d := filepath.Join(n.Dir, "docker")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	os.Remove(filepath.Join(d, "docker.pid")) // a stale pid file makes dockerd refuse to start
	n.dockerd = &proc{name: n.Name + " dockerd", log: filepath.Join(n.Dir, "dockerd.log"), argv: []string{
		"dockerd", "--data-root", filepath.Join(d, "root"), "--exec-root", filepath.Join(d, "exec"),
		"--host", n.Docker(), "--pidfile", filepath.Join(d, "docker.pid"), "--bridge", "none",
		"--iptables=false", "--ip6tables=false", "--ip-masq=false", "--storage-driver", "vfs",
	}}
	if err := n.dockerd.start(n.NS.Name); err != nil {
		return err
	}
	c, err := deploy.Connect(n.Docker())
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(dockerdUp)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || n.dockerd.pid() == 0 {
			// The log's end is where dockerd says why: a lab's directory is gone when a CI run reports it.
			b, _ := os.ReadFile(n.dockerd.log)
			return fmt.Errorf("lab: %s dockerd did not come up within %s (%s ends):\n%s\n%w", n.Name, dockerdUp,
				n.dockerd.log, tail.Lines(string(b), 15), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := mailservers.Import(ctx, c, n.lab.mail, n.lab.mailTag); err != nil {
		return fmt.Errorf("lab: %s: %w", n.Name, err)
	}
	if _, err := c.ImageInspect(ctx, deploy.Image); err == nil {
		return nil
	}
	return deploy.BuildImage(ctx, c, n.lab.o.StubBin, deploy.Image)
}

// startAgent starts the node's agent, which a crash restarts after two seconds like systemd's Restart=always.
func (n *Node) startAgent() error {
	n.agent = &proc{name: n.Name + " agent", log: filepath.Join(n.Dir, "agent.log"), restart: true, delay: 2 * time.Second,
		argv: []string{n.lab.o.Bin, "agent", "--config", filepath.Join(n.Dir, "config.toml"), "--galera", "child"}}
	return n.agent.start(n.NS.Name)
}
