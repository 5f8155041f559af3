package vm

// This file is the harness's simulator backend: it makes the simulated API's decisions real on QEMU guests (a
// server created boots a VM or an arbitrator, a Volume is hot-plugged over QMP, a Floating IP is a route, power is
// QEMU).

import (
	"cmp"
	"fmt"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// backend makes the simulator's decisions real: the router's route for the Floating IP, the Volume as a SCSI disk
// hot-plugged into the VM (vendor HC, product Volume, serial = the Volume's id, as at Hetzner), power as QEMU.
type backend struct{ h *Harness }

func (b backend) FloatingIPRouted(ip hcloudsim.FloatingIP, server int64) error {
	v := b.h.byID(server)
	if v == nil {
		return b.h.NS.IP("route", "del", ip.Route())
	}
	return b.h.NS.IP("route", "replace", ip.Route(), "dev", v.tap("pub"))
}

func volNode(id int64) string { return fmt.Sprintf("vol%d", id) }

func (b backend) VolumeAttached(vol hcloudsim.Volume, server int64) error {
	v := b.h.byID(server)
	if v == nil || !v.Running() {
		return fmt.Errorf("vm: server %d is not running", server)
	}
	file, err := b.h.volumeFile(vol)
	if err != nil {
		return err
	}
	q := v.QMP()
	if _, err := q.Do("blockdev-add", map[string]any{"driver": "raw", "node-name": volNode(vol.ID),
		"file": map[string]any{"driver": "file", "filename": file}}); err != nil {
		return err
	}
	_, err = q.Do("device_add", map[string]any{"driver": "scsi-hd", "id": volNode(vol.ID), "drive": volNode(vol.ID),
		"bus": "scsi0.0", "vendor": "HC", "product": "Volume", "serial": fmt.Sprint(vol.ID)})
	if err != nil {
		q.Do("blockdev-del", map[string]any{"node-name": volNode(vol.ID)})
		return err
	}
	b.h.Log.Info("volume hot-plugged", "vm", v.Name, "volume", vol.ID)
	return nil
}

func (b backend) VolumeDetached(vol hcloudsim.Volume, server int64) error {
	v := b.h.byID(server)
	if v == nil || !v.Running() {
		return nil // a dead VM holds nothing
	}
	q := v.QMP()
	if _, err := q.Do("device_del", map[string]any{"id": volNode(vol.ID)}); err != nil {
		return err
	}
	if err := q.WaitEvent("DEVICE_DELETED", 30*time.Second); err != nil {
		return err
	}
	_, err := q.Do("blockdev-del", map[string]any{"node-name": volNode(vol.ID)})
	b.h.Log.Info("volume hot-unplugged", "vm", v.Name, "volume", vol.ID, "err", err)
	return err
}

func (b backend) ServerPower(s hcloudsim.Server, on bool) error {
	v := b.h.byID(s.ID)
	if v == nil {
		return nil
	}
	if on {
		if v.Running() || v.args == nil {
			return nil
		}
		go v.start()
		return nil
	}
	go v.Quit()
	return nil
}

// ServerCreated makes a created server real: an arbitrator (label role=arbitrator) is the agent on this machine in
// a namespace of its own with the server's private address; any other server is a VM with the server's addresses,
// booted with its user-data. Both find themselves through the metadata service, by their address.
func (b backend) ServerCreated(s hcloudsim.Server) error {
	err := b.h.serverCreated(s)
	if err != nil {
		b.h.mu.Lock()
		b.h.bootErr = cmp.Or(b.h.bootErr, fmt.Errorf("server %s: %w", s.Name, err))
		b.h.mu.Unlock()
	}
	return err
}

func (h *Harness) serverCreated(s hcloudsim.Server) error {
	if len(s.PrivateNet) != 1 {
		return fmt.Errorf("vm: server %s has %d private networks, the harness has one", s.Name, len(s.PrivateNet))
	}
	priv := s.PrivateNet[0].IP
	if s.Labels["role"] == "arbitrator" {
		_, err := h.StartArbitrator(s.Name, priv, s.UserData)
		return err
	}
	v, err := h.AddVM(s.Name, s.ID, s.PublicIPv4, priv)
	if err != nil {
		return err
	}
	return v.Boot(s.UserData)
}
