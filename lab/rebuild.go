package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// ServerRebuilt is the simulator's rebuild (POST /servers/{id}/actions/rebuild, `hcloud server rebuild`) made
// real. The hook must not block the simulator: the node is rebuilt and powered on in the background, in order with
// its other power transitions.
func (b backend) ServerRebuilt(s hcloudsim.Server, image string) error {
	n := b.l.nodeByID(s.ID)
	if n == nil {
		return nil
	}
	go func() {
		if err := n.Rebuild(context.Background()); err != nil {
			b.l.log.Error("rebuild", "node", n.Name, "image", image, "err", err)
		}
	}()
	return nil
}

// keptOnRebuild is what a node's directory keeps across a rebuild because it is not the root disk's: the Volume's
// device links (/dev/disk/by-id: the Volume stays attached, as at Hetzner), Docker's image store (the appliance
// snapshot carries mailcow's images; the containers go) and the logs, which the tests read afterwards.
var keptOnRebuild = map[string]bool{"by-id": true, "docker": true, "agent.log": true, "dockerd.log": true}

// Rebuild gives the node a new, empty root disk, as `hcloud server rebuild` does: the power goes; the agent's
// state, the mailcow directory, the configuration and its secret files and the containers are gone; the Volumes
// stay attached, so the Galera datadir on the node's own Volume is kept (Lab.BlankDBVolume stands for a lost one);
// the node comes back with the same user-data (the lab writes the configuration again, as cloud-init would from
// it) and the same server id, and powers on.
func (n *Node) Rebuild(ctx context.Context) error {
	n.pmu.Lock()
	n.lab.log.Info("rebuild: power off and a new root disk", "node", n.Name)
	err := n.shutdown(true)
	if err == nil {
		err = n.wipeRootDisk()
	}
	if err == nil {
		err = n.writeConfig()
	}
	n.pmu.Unlock()
	if err == nil {
		err = n.Boot(ctx)
	}
	n.mu.Lock()
	n.rebuilds++
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("lab: rebuild %s: %w", n.Name, err)
	}
	return nil
}

// Rebuilds is how many rebuilds of the node have ended (powered on again, or failed).
func (n *Node) Rebuilds() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rebuilds
}

// RebuildAndWait rebuilds the node through the simulator and waits until it has powered on again.
func (l *Lab) RebuildAndWait(ctx context.Context, n *Node, within time.Duration) error {
	before := n.Rebuilds()
	if err := l.SimRebuild(n); err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for n.Rebuilds() == before {
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %s not rebuilt within %s", n.Name, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := n.BootErr(); err != nil {
		return fmt.Errorf("lab: %s rebuilt, but did not power on: %w", n.Name, err)
	}
	return nil
}

func (n *Node) wipeRootDisk() error {
	entries, err := os.ReadDir(n.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if keptOnRebuild[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(n.Dir, e.Name())); err != nil {
			return err
		}
	}
	// The containers were on the old disk (and containerd's records of them); dockerd finds none on its next start.
	for _, d := range []string{"containers", "containerd"} {
		if err := os.RemoveAll(filepath.Join(n.Dir, "docker", "root", d)); err != nil {
			return err
		}
	}
	return nil
}

// SimRebuild asks the simulator to rebuild the node's server from the appliance snapshot that `cluster create`
// chose, as an operator would
// with `hcloud server rebuild --image <snapshot> <server>`.
func (l *Lab) SimRebuild(n *Node) error {
	code, body := l.Sim.Do(http.MethodPost, fmt.Sprintf("/v1/servers/%d/actions/rebuild", n.ID), fmt.Sprintf(`{"image":"%d"}`, l.imageID))
	if code >= 300 {
		return fmt.Errorf("lab: rebuild %s: %d %s", n.Name, code, body)
	}
	return nil
}
