package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/agent/volume"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

// The simulated Hetzner project: its API in the switch namespace and what makes its decisions real.

// simulator starts the simulated Hetzner API in the switch namespace: a project that holds nothing but the
// appliance's snapshots, as before `cluster create`, and the backend that makes its decisions real.
func (l *Lab) simulator() error {
	lat := hcloudsim.DefaultLatencies()
	if l.o.Latencies != nil {
		lat = *l.o.Latencies
	} else {
		// A lab node is made in milliseconds; Hetzner's ten seconds for a server would only make every lab slower.
		lat[hcloudsim.CmdCreateServer] = time.Second
	}
	var err error
	l.Sim, err = hcloudsim.New(hcloudsim.Options{State: hcloudsim.EmptyProject(), Latencies: lat, Backend: backend{l}, Logger: l.log.With("component", "hcloudsim")})
	if err != nil {
		return fmt.Errorf("lab: simulator: %w", err)
	}
	if l.srv, err = l.serveInSwitch(SimAddr, l.Sim.Handler()); err != nil {
		return fmt.Errorf("lab: simulator: %w", err)
	}
	secret := make([]byte, 24)
	rand.Read(secret)
	l.Alerts = &Alerts{secret: []byte(hex.EncodeToString(secret))}
	if l.asrv, err = l.serveInSwitch(AlertsAddr, l.Alerts); err != nil {
		return fmt.Errorf("lab: webhook receiver: %w", err)
	}
	return nil
}

// createCluster makes the cluster as an operator does, with `cluster create`'s code (provision.Create) against the
// simulator: network, placement group, firewall, the shared Volume, a Volume per node for its Galera datadir, the
// Floating IP, the secrets and the one user-data (in Dir/cluster), and the servers, each of which becomes a node
// (backend.ServerCreated). The lab's process is not in the switch namespace: its requests reach the simulator in
// process.
func (l *Lab) createCluster(ctx context.Context) error {
	l.secrets = &provision.Secrets{Dir: filepath.Join(l.o.Dir, "cluster")}
	res, err := l.clusterCreate(ctx, l.o.Nodes)
	if err != nil {
		return err
	}
	if res.FloatingIP != FloatingIP {
		return fmt.Errorf("lab: cluster create made Floating IP %s, the lab routes %s", res.FloatingIP, FloatingIP)
	}
	l.mu.Lock()
	made := len(l.Nodes)
	// The servers were made at once: the nodes in the order of their names (lab-1, the bootstrap node, first).
	slices.SortFunc(l.Nodes, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
	l.volumeID, l.imageID = res.VolumeID, res.ImageID
	l.mu.Unlock()
	if made != l.o.Nodes {
		return fmt.Errorf("lab: cluster create made %d nodes, not %d", made, l.o.Nodes)
	}
	// The shared Volume's device now (each node's own Volume got its device when it was attached), so that
	// lab.json names every loop device.
	for _, v := range l.Sim.State().Volumes {
		if v.ID == res.VolumeID {
			_, err := l.volumeDevice(v)
			return err
		}
	}
	return fmt.Errorf("lab: the simulator has no volume %d", res.VolumeID)
}

// api is hcloud-go's client of the lab's simulator, in process.
func (l *Lab) api() *hc.Client {
	return hc.NewClient(hc.WithToken(hcloudsim.DemoToken), hc.WithEndpoint("http://"+SimAddr+"/v1"),
		hc.WithHTTPClient(&http.Client{Transport: inProcess{l.Sim.Handler()}}),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ConstantBackoff(100 * time.Millisecond)}))
}

// clusterCreate runs `cluster create --name lab --nodes N` against the simulator, with the lab's --out.
func (l *Lab) clusterCreate(ctx context.Context, nodes int) (provision.Result, error) {
	c := l.api()
	spec := provision.Spec{Name: ClusterName, Location: provision.DefaultLocation, Hostname: Hostname, Nodes: nodes,
		ServerType: "cx22", Image: "latest", Channel: provision.DefaultChannel, VolumeSize: 10, DBSize: 10, IPRange: "10.99.0.0/16",
		IPv6: l.o.IPv6}
	res, err := provision.Create(ctx, c, spec, provision.Options{Secrets: l.secrets, Endpoint: "http://" + SimAddr + "/v1",
		Token: hcloudsim.DemoToken, Settings: l.o.Settings, Log: logWriter{l.log.With("component", "cluster_create")}})
	if err != nil {
		return res, fmt.Errorf("lab: cluster create --nodes %d: %w", nodes, err)
	}
	return res, nil
}

// Grow adds nodes to the running lab as an operator adds them to a cluster: `cluster create` again with the same
// --out and a larger --nodes makes the missing servers (and their Volumes) with the one user-data, and each boots
// as a new node. It returns the new nodes once they are powered on; joining the cluster is theirs and the members'.
func (l *Lab) Grow(ctx context.Context, nodes int) ([]*Node, error) {
	l.mu.Lock()
	before := len(l.Nodes)
	l.mu.Unlock()
	if nodes <= before || nodes > MaxNodes {
		return nil, fmt.Errorf("lab: grow to %d nodes: the lab has %d, and room for %d", nodes, before, MaxNodes)
	}
	if _, err := l.clusterCreate(ctx, nodes); err != nil {
		return nil, err
	}
	l.mu.Lock()
	added := slices.Clone(l.Nodes[before:])
	slices.SortFunc(l.Nodes, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
	l.mu.Unlock()
	for _, n := range added {
		for !n.Powered() {
			if err := n.BootErr(); err != nil {
				return added, fmt.Errorf("lab: %s: %w", n.Name, err)
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return added, err
			}
		}
	}
	return added, l.WriteInfo()
}

// RemoveNode takes a node out of the running lab as an operator does: `cluster remove-node` (provision.RemoveNode)
// through the simulator, whose deletion powers the node off and takes it out of l.Nodes.
func (l *Lab) RemoveNode(ctx context.Context, name string) error {
	if err := provision.RemoveNode(ctx, l.api(), ClusterName, name, provision.RemoveOptions{ShutdownWait: time.Minute,
		Log: logWriter{l.log.With("component", "cluster_remove_node")}}); err != nil {
		return fmt.Errorf("lab: cluster remove-node %s: %w", name, err)
	}
	return l.WriteInfo()
}

// inProcess is an http.RoundTripper that hands requests to a handler in this process.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// volumeDevice is the loop device of a Volume, made at its first attachment: a sparse image of the Volume's size
// in the lab's directory, with an empty ext4 when the Volume was created with that format (as Hetzner formats it).
func (l *Lab) volumeDevice(v hcloudsim.Volume) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if dev, ok := l.loops[v.ID]; ok {
		return dev, nil
	}
	img := l.volumeImage(v.ID)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return "", err
	}
	if err := os.Truncate(img, int64(v.Size)<<30); err != nil {
		return "", err
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		return "", fmt.Errorf("lab: losetup %s: %w", img, err)
	}
	dev := strings.TrimSpace(string(out))
	if l.loops == nil {
		l.loops = map[int64]string{}
	}
	l.loops[v.ID] = dev
	if err := reap.Claim(reap.Loop, dev, img, "lab"); err != nil {
		return "", err
	}
	// A Volume created with format=ext4 comes formatted, and empty.
	if v.Format == "ext4" {
		if out, err := exec.Command("mkfs.ext4", "-q", "-L", fmt.Sprintf("vol%d", v.ID), dev).CombinedOutput(); err != nil {
			return "", fmt.Errorf("lab: mkfs.ext4 %s: %w: %s", dev, err, out)
		}
	}
	return dev, nil
}

// FloatingIPv6 is the IPv6 Floating IP as the simulator has it, and the address the MASTER serves it on (its
// /64's ::1); ok is false when the lab has none.
func (l *Lab) FloatingIPv6() (f hcloudsim.FloatingIP, addr string, ok bool) {
	for _, f := range l.Sim.State().FloatingIPs {
		if f.Type == "ipv6" {
			return f, strings.TrimSuffix(f.IP, "::/64") + "::1", true
		}
	}
	return hcloudsim.FloatingIP{}, "", false
}

// HasIPv6 says whether the node's eth0 holds the address (as its /64).
func (n *Node) HasIPv6(addr string) bool {
	out, err := exec.Command("ip", "-n", n.NS.Name, "-6", "-o", "addr", "show", "dev", "eth0").Output()
	return err == nil && strings.Contains(string(out), " "+addr+"/64 ")
}

// volumeImage is the file behind a Volume's loop device.
func (l *Lab) volumeImage(id int64) string {
	return filepath.Join(l.o.Dir, fmt.Sprintf("volume-%d.img", id))
}

// BlankDBVolume stands for a node's Galera Volume replaced by a new one without a file system (the old one lost):
// the lab empties the file behind its loop device (cut to nothing, then back to the Volume's size, sparse) and drops
// the device's cached blocks, so that every block reads as zeros, as on a new Volume, and the agent finds a blank
// device at the next boot. (Wiping the signatures alone leaves the rest of the old file system, which the agent
// rightly refuses to format. blkdiscard does the same as this where the file system under the lab can punch holes,
// and fails where it cannot.) The node must be off, and it first waits until no file system holds the device: a
// power-off unmounts lazily, and the old file system's last writes (its superblock at the final unmount) must not
// land in the new Volume (a CI run saw "Resize inode not valid" when they did).
func (l *Lab) BlankDBVolume(n *Node) error {
	if n.Powered() {
		return fmt.Errorf("lab: %s is on; its Volume can be replaced only while it is off", n.Name)
	}
	for _, v := range l.Sim.State().Volumes {
		if v.Server != n.ID || v.Labels["purpose"] != "galera" {
			continue
		}
		l.mu.Lock()
		dev := l.loops[v.ID]
		l.mu.Unlock()
		if dev == "" {
			return fmt.Errorf("lab: volume %s has no device", v.Name)
		}
		if err := waitUnused(dev, time.Minute); err != nil {
			return fmt.Errorf("lab: blank volume %s: %w", v.Name, err)
		}
		img := l.volumeImage(v.ID)
		if err := os.Truncate(img, 0); err != nil {
			return fmt.Errorf("lab: blank volume %s: %w", v.Name, err)
		}
		if err := os.Truncate(img, int64(v.Size)<<30); err != nil {
			return fmt.Errorf("lab: blank volume %s: %w", v.Name, err)
		}
		if out, err := exec.Command("blockdev", "--flushbufs", dev).CombinedOutput(); err != nil {
			return fmt.Errorf("lab: blockdev --flushbufs %s: %w: %s", dev, err, out)
		}
		return nil
	}
	return fmt.Errorf("lab: no Galera Volume is attached to %s", n.Name)
}

// waitUnused waits until no file system holds the block device (an exclusive open succeeds; a mounted file system,
// even one unmounted lazily and still referenced, makes it fail with EBUSY).
func waitUnused(dev string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_EXCL, 0)
		if err == nil {
			return f.Close()
		}
		if !errors.Is(err, syscall.EBUSY) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is still in use after %s: a file system on it is not unmounted yet", dev, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backend makes the simulator's decisions real: the router routes the Floating IP to its server, and the Volume's
// device link appears on exactly one node.
type backend struct{ l *Lab }

func (b backend) FloatingIPRouted(ip hcloudsim.FloatingIP, server int64) error {
	n := b.l.nodeByID(server)
	if n == nil {
		return b.l.rt.IP("route", "del", ip.Route())
	}
	return b.l.rt.IP("route", "replace", ip.Route(), "dev", n.Name)
}

func (b backend) VolumeAttached(v hcloudsim.Volume, server int64) error {
	n := b.l.nodeByID(server)
	if n == nil {
		return fmt.Errorf("lab: no node for server %d", server)
	}
	dev, err := b.l.volumeDevice(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(n.Dir, "by-id"), 0o755); err != nil {
		return err
	}
	link := filepath.Join(n.Dir, "by-id", fmt.Sprintf("scsi-0HC_Volume_%d", v.ID))
	os.Remove(link)
	return os.Symlink(dev, link)
}

func (b backend) VolumeDetached(v hcloudsim.Volume, server int64) error {
	n := b.l.nodeByID(server)
	if n == nil {
		return nil
	}
	err := os.Remove(filepath.Join(n.Dir, "by-id", fmt.Sprintf("scsi-0HC_Volume_%d", v.ID)))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	// A hot-unplug: whatever is still mounted on the old node loses its device.
	mp := filepath.Join(n.Dir, "data")
	if v.Labels["purpose"] == "galera" {
		mp = filepath.Join(n.Dir, "dbvol")
	}
	if ok, _ := volume.IsMountPoint(mp); ok {
		b.l.log.Warn("volume detached while mounted; forcing the mount off", "node", n.Name)
		err = errors.Join(err, syscall.Unmount(mp, syscall.MNT_DETACH))
	}
	return err
}

// ServerCreated makes the lab node of a server created through the simulator (cluster create). Once the lab is up
// (a node added, Grow), the new node powers on at once, with its server's user-data, as a created server boots.
func (b backend) ServerCreated(s hcloudsim.Server) error {
	n, err := b.l.addNode(s)
	if err != nil {
		return err
	}
	b.l.mu.Lock()
	up := b.l.up
	b.l.mu.Unlock()
	if up {
		go func() {
			err := n.writeConfig()
			if err == nil {
				err = n.Boot(context.Background())
			}
			if err != nil {
				b.l.log.Error("a created server's node did not boot", "node", n.Name, "err", err)
			}
		}()
	}
	return nil
}

// ServerDeleted takes a deleted server's node away: its power goes, and it leaves the lab's nodes (its namespace
// stays until the lab goes down).
func (b backend) ServerDeleted(s hcloudsim.Server) error {
	n := b.l.nodeByID(s.ID)
	if n == nil {
		return nil
	}
	if err := n.PowerOff(); err != nil {
		return err
	}
	b.l.mu.Lock()
	defer b.l.mu.Unlock()
	b.l.Nodes = slices.DeleteFunc(slices.Clone(b.l.Nodes), func(x *Node) bool { return x == n })
	b.l.gone = append(b.l.gone, n)
	return nil
}

func (b backend) ServerPower(s hcloudsim.Server, on bool) error {
	n := b.l.nodeByID(s.ID)
	if n == nil {
		return nil
	}
	// The hook runs in the action's own goroutine, after its latency. The node's power lock keeps the transitions
	// in order, and a failure is kept (BootErr, the lab's log), never dropped.
	if on {
		// A boot (dockerd, the agent) takes far longer than Hetzner's start_server, which ends when the machine
		// starts, not its services: it runs on its own. Cleared before the hook returns: a caller that polls BootErr
		// after the power-on must not see the error of an earlier one before this boot has even begun.
		n.clearBootErr()
		go n.Boot(context.Background())
		return nil
	}
	// Hetzner's stop_server ends when the server is off: nothing of it runs any more and its Volume is free. The
	// power-off is done before the action succeeds, so that a new MASTER that fenced this node never finds the
	// Volume still held by the dying node's mounts (its e2fsck saw "in use" when this ran on its own, once the
	// detection took well under a second).
	if err := n.PowerOff(); err != nil {
		b.l.log.Warn("power off", "node", n.Name, "err", err)
	}
	return nil
}
