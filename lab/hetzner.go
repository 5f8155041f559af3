package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/agent/volume"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
)

// The simulated Hetzner project: its API in the switch namespace and what makes its decisions real.

// volume makes the shared Volume: a sparse ext4-less image on a loop device (the first MASTER formats it).
func (l *Lab) volume() error {
	img := filepath.Join(l.o.Dir, "volume.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		return err
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		return fmt.Errorf("lab: losetup: %w", err)
	}
	l.loop = strings.TrimSpace(string(out))
	return reap.Claim(reap.Loop, l.loop, img, "lab")
}

// simulator starts the simulated Hetzner API in the switch namespace, with one server per node and the backend
// that makes its decisions real.
func (l *Lab) simulator() error {
	st := hcloudsim.DemoState()
	// The demo state has three servers; a five-node lab adds two more like them.
	for len(st.Servers) < l.o.Nodes {
		s := st.Servers[len(st.Servers)-1]
		s.ID++
		s.Name = fmt.Sprintf("mx%d", len(st.Servers)+1)
		s.PrivateNet = append(s.PrivateNet[:0:0], s.PrivateNet...)
		s.PrivateNet[0].IP = fmt.Sprintf("10.99.0.%d", 10+len(st.Servers)+1)
		st.Servers = append(st.Servers, s)
	}
	st.Servers = st.Servers[:l.o.Nodes]
	for i := range st.Servers {
		st.Servers[i].Name = l.Nodes[i].Name
		l.Nodes[i].ID = st.Servers[i].ID
		st.Servers[i].PrivateNet[0].IP = l.Nodes[i].PrivIP
		// What `cluster create` labels its servers with, and what the agents find their members by.
		st.Servers[i].Labels = map[string]string{membership.LabelApp: membership.AppName, membership.LabelCluster: ClusterName,
			membership.LabelRole: config.RoleMember, membership.LabelPriority: strconv.Itoa(150 - 20*i)}
		if i == 0 {
			st.Servers[i].Labels[membership.LabelBootstrap] = "true"
		}
	}
	lat := hcloudsim.DefaultLatencies()
	if l.o.Latencies != nil {
		lat = *l.o.Latencies
	}
	var err error
	l.Sim, err = hcloudsim.New(hcloudsim.Options{State: st, Latencies: lat, Backend: backend{l}, Logger: l.log.With("component", "hcloudsim")})
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

// backend makes the simulator's decisions real: the router routes the Floating IP to its server, and the Volume's
// device link appears on exactly one node.
type backend struct{ l *Lab }

func (b backend) FloatingIPRouted(ip hcloudsim.FloatingIP, server int64) error {
	n := b.l.nodeByID(server)
	if n == nil {
		return b.l.rt.IP("route", "del", ip.IP+"/32")
	}
	return b.l.rt.IP("route", "replace", ip.IP+"/32", "dev", n.Name)
}

func (b backend) VolumeAttached(v hcloudsim.Volume, server int64) error {
	n := b.l.nodeByID(server)
	if n == nil {
		return fmt.Errorf("lab: no node for server %d", server)
	}
	link := filepath.Join(n.Dir, "by-id", fmt.Sprintf("scsi-0HC_Volume_%d", v.ID))
	os.Remove(link)
	return os.Symlink(b.l.loop, link)
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
	if ok, _ := volume.IsMountPoint(mp); ok {
		b.l.log.Warn("volume detached while mounted; forcing the mount off", "node", n.Name)
		err = errors.Join(err, syscall.Unmount(mp, syscall.MNT_DETACH))
	}
	return err
}

func (b backend) ServerPower(s hcloudsim.Server, on bool) error {
	n := b.l.nodeByID(s.ID)
	if n == nil {
		return nil
	}
	// The hook must not block the simulator; the node's power lock keeps the transitions in order, and a failure
	// is kept (BootErr, the lab's log), never dropped.
	if on {
		// Cleared before the hook returns: a caller that polls BootErr after the power-on must not see the error
		// of an earlier one before this boot has even begun.
		n.clearBootErr()
		go n.Boot(context.Background())
	} else {
		go func() {
			if err := n.PowerOff(); err != nil {
				b.l.log.Warn("power off", "node", n.Name, "err", err)
			}
		}()
	}
	return nil
}
