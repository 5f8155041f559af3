package daemon

// galera.data_volume: the datadir on this node's own Volume, mounted before MariaDB starts.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/volume"
)

// GaleraVolumeLabel marks a node's own Volume for its Galera datadir: purpose=galera.
const GaleraVolumeLabel = "purpose"

// volumeLister lists the Volumes attached to a server (the hcloud adapter).
type volumeLister interface {
	VolumesOf(ctx context.Context, server int64) ([]hcloud.VolumeInfo, error)
}

// mountGaleraVolume finds the Volume attached to this server and labelled purpose=galera (and, when it names one,
// node=<this node>: another node's database is refused), waits for its device,
// mounts it at galera.volume_mount (volume.Volume: fsck when needed, ext4 only on a device with no signature, a
// marker naming the cluster and this Volume: another cluster's or an unmarked one with data is refused) and makes
// the datadir, owned by mysql. It waits up to within for the device.
func mountGaleraVolume(ctx context.Context, c config.Config, self config.Member, api volumeLister, within time.Duration, log *slog.Logger) (*volume.Volume, error) {
	vols, err := api.VolumesOf(ctx, self.ServerID)
	if err != nil {
		return nil, fmt.Errorf("galera.data_volume: the Volumes of this server: %w", err)
	}
	var found []hcloud.VolumeInfo
	for _, v := range vols {
		if v.ID != c.Hcloud.VolumeID && v.Labels[GaleraVolumeLabel] == "galera" {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("galera.data_volume: no Volume labelled %s=galera is attached to this server (%d); attach this node's (cluster create makes them) or turn galera.data_volume off",
			GaleraVolumeLabel, self.ServerID)
	case 1:
	default:
		return nil, fmt.Errorf("galera.data_volume: %d Volumes labelled %s=galera are attached to this server; which one holds the database is not clear: detach all but one",
			len(found), GaleraVolumeLabel)
	}
	if owner := found[0].Labels["node"]; owner != "" && owner != self.Name {
		return nil, fmt.Errorf("galera.data_volume: Volume %d (%s) is labelled node=%s, the database of another node; this is %s: "+
			"attach this node's own, or relabel it if it is to be this node's", found[0].ID, found[0].Name, owner, self.Name)
	}
	v := &volume.Volume{ID: found[0].ID, ByIDDir: c.Mailcow.DeviceDir, MountPoint: c.Galera.VolumeMount, Cluster: c.Cluster.Name,
		Node: self.Name, Logger: log.With("component", "galera_volume")}
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if err := v.WaitDevice(wctx, found[0].LinuxDevice); err != nil {
		return nil, fmt.Errorf("galera.data_volume: %w", err)
	}
	if err := v.Mount(ctx); err != nil {
		return nil, fmt.Errorf("galera.data_volume: %w", err)
	}
	if err := os.MkdirAll(c.Galera.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("galera.data_volume: %w", err)
	}
	if u, err := user.Lookup("mysql"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.Galera.DataDir, uid, gid); err != nil {
			return nil, fmt.Errorf("galera.data_volume: %w", err)
		}
	}
	log.Info("galera: the datadir is on this node's Volume", "volume_id", v.ID, "mount_point", v.MountPoint, "data_dir", c.Galera.DataDir)
	return v, nil
}
