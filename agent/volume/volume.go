// Package volume handles the shared Hetzner Volume on this node: it waits for the device that an attach makes
// appear (/dev/disk/by-id/scsi-0HC_Volume_<id>), formats it on first use and writes a marker that names the
// cluster, runs fsck when the file system asks for it, mounts and unmounts it, and guards the mount point: mailcow
// may start only on this cluster's marked Volume, because an empty crypt directory makes Dovecot create a new key
// pair and the old mail becomes unreadable.
package volume

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"golang.org/x/sys/unix"
)

// MarkerFile is the marker's name in the Volume's root.
const MarkerFile = ".mailcow-ha-volume"

// Marker proves that a file system is this cluster's data Volume.
type Marker struct {
	Cluster  string    `json:"cluster"`
	VolumeID int64     `json:"volume_id"`
	Created  time.Time `json:"created"`
	Node     string    `json:"created_by"`
}

// Volume is the shared Volume as seen from this node.
type Volume struct {
	ID         int64
	ByIDDir    string // where the device link appears; default /dev/disk/by-id
	MountPoint string
	Cluster    string
	Node       string
	// Dirs are created on the Volume after the marker check (mailcow's data directories).
	Dirs []string
	// Fill, when set, gives a new Volume its first contents (a cluster made from a backup): on a fresh or empty file
	// system, before the marker is written, it fills an empty directory on the Volume, whose entries are then
	// moved into the Volume's root. When it fails, the Volume is left empty, unmarked and unmounted.
	Fill   func(ctx context.Context, dir string) error
	Logger *slog.Logger
	// ReleaseWait is how long Unmount waits for the device to be free once the mount point is gone (default
	// DefaultReleaseWait).
	ReleaseWait time.Duration
}

// Device is the by-id path of the Volume's device.
func (v *Volume) Device() string {
	dir := v.ByIDDir
	if dir == "" {
		dir = "/dev/disk/by-id"
	}
	return filepath.Join(dir, "scsi-0HC_Volume_"+strconv.FormatInt(v.ID, 10))
}

// WaitDevice waits until the device link exists and resolves to a block device. The API's linux_device is only
// logged: the by-id link of this Volume's id is what the node trusts.
func (v *Volume) WaitDevice(ctx context.Context, linuxDevice string) error {
	dev := v.Device()
	if linuxDevice != "" && linuxDevice != dev {
		v.log().Debug("API names another device path; using the by-id link", "linux_device", linuxDevice, "device", dev)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		fi, err := os.Stat(dev)
		if err == nil && fi.Mode()&fs.ModeDevice != 0 {
			return nil
		}
		if err == nil {
			return fmt.Errorf("volume: %s is not a block device", dev)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("volume: waiting for %s: %w", dev, ctx.Err())
		case <-t.C:
		}
	}
}

// Mount mounts the Volume: format on first use (no signature at all), fsck when needed, mount, then the marker
// check. A file system with data but no marker, or another cluster's marker, is unmounted again and refused.
func (v *Volume) Mount(ctx context.Context) error {
	if ok, err := v.Mounted(ctx); err != nil || ok {
		if ok {
			return v.Guard(ctx)
		}
		return err
	}
	dev, err := filepath.EvalSymlinks(v.Device())
	if err != nil {
		return fmt.Errorf("volume: device %s: %w", v.Device(), err)
	}
	fresh := false
	fstype, err := probe(ctx, dev)
	if err != nil {
		return err
	}
	switch fstype {
	case "":
		v.log().Warn("volume has no file system; formatting it (first use)", "device", dev)
		if err := run(ctx, "mkfs.ext4", "-q", "-L", "mailcow-ha", "-m", "0", dev); err != nil {
			return err
		}
		fresh = true
	case "ext4":
	default:
		return fmt.Errorf("volume: %s holds a %s file system, not ext4; refusing to touch it", dev, fstype)
	}
	if !fresh {
		if err := fsck(ctx, dev); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(v.MountPoint, 0o755); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	// nodev, nosuid: nothing on the Volume (mail, a container's files) may act as a device or gain privileges.
	if err := unix.Mount(dev, v.MountPoint, "ext4", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("volume: mounting %s on %s: %w", dev, v.MountPoint, err)
	}
	if err := v.adopt(ctx, fresh); err != nil {
		if uerr := unix.Unmount(v.MountPoint, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("volume: unmounting again: %w", uerr))
		}
		return err
	}
	v.log().Info("volume mounted", "device", dev, "mount_point", v.MountPoint, "fresh", fresh)
	return nil
}

// adopt checks the marker; a fresh or empty file system gets one, after Fill.
func (v *Volume) adopt(ctx context.Context, fresh bool) error {
	m, err := v.marker()
	switch {
	case err == nil:
		if m.Cluster != v.Cluster || m.VolumeID != v.ID {
			return fmt.Errorf("volume: marker names cluster %q volume %d, this is cluster %q volume %d; refusing",
				m.Cluster, m.VolumeID, v.Cluster, v.ID)
		}
	case errors.Is(err, fs.ErrNotExist):
		if !fresh {
			empty, eerr := emptyFS(v.MountPoint)
			if eerr != nil {
				return eerr
			}
			if !empty {
				return fmt.Errorf("volume: %s holds data but no %s; refusing to use it (write the marker by hand if it is this cluster's data)",
					v.Device(), MarkerFile)
			}
		}
		if v.Fill != nil {
			if err := v.fill(ctx); err != nil {
				return err
			}
		}
		if err := v.writeMarker(); err != nil {
			return err
		}
	default:
		return err
	}
	for _, d := range v.Dirs {
		if err := os.MkdirAll(filepath.Join(v.MountPoint, d), 0o755); err != nil {
			return fmt.Errorf("volume: %w", err)
		}
	}
	return nil
}

// fillDir is where Fill writes, on the Volume: its entries are renamed into the root once it succeeded.
const fillDir = ".mailcow-ha-fill"

// fill runs Fill into fillDir and moves what it wrote into the Volume's root; on failure the Volume is emptied again.
func (v *Volume) fill(ctx context.Context) error {
	dir := filepath.Join(v.MountPoint, fillDir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	if err := v.Fill(ctx, dir); err != nil {
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("volume: emptying it again: %w", rerr))
		}
		return fmt.Errorf("volume: filling the new Volume: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	for _, e := range ents {
		if e.Name() == "lost+found" || e.Name() == MarkerFile {
			continue
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(v.MountPoint, e.Name())); err != nil {
			return fmt.Errorf("volume: %w", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	return nil
}

func (v *Volume) marker() (Marker, error) {
	var m Marker
	b, err := os.ReadFile(filepath.Join(v.MountPoint, MarkerFile))
	if err != nil {
		return m, fmt.Errorf("volume: marker: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("volume: marker %s: %w", filepath.Join(v.MountPoint, MarkerFile), err)
	}
	return m, nil
}

func (v *Volume) writeMarker() error {
	b, _ := json.MarshalIndent(Marker{Cluster: v.Cluster, VolumeID: v.ID, Created: time.Now().UTC(), Node: v.Node}, "", "  ")
	p := filepath.Join(v.MountPoint, MarkerFile)
	f, err := os.OpenFile(p+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("volume: marker: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p+".tmp", p)
	}
	if err != nil {
		return fmt.Errorf("volume: marker: %w", err)
	}
	v.log().Info("volume marked for this cluster", "cluster", v.Cluster, "volume_id", v.ID)
	return nil
}

// emptyFS reports a file system that holds nothing but lost+found.
func emptyFS(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("volume: %w", err)
	}
	for _, e := range ents {
		if e.Name() != "lost+found" {
			return false, nil
		}
	}
	return true, nil
}

// Guard passes only when the mount point is a mount and carries this cluster's marker for this Volume.
func (v *Volume) Guard(ctx context.Context) error {
	ok, err := v.Mounted(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("volume: %s is not a mount point; refusing to start mailcow on it", v.MountPoint)
	}
	m, err := v.marker()
	if err != nil {
		return fmt.Errorf("%w; refusing to start mailcow on an unmarked file system", err)
	}
	if m.Cluster != v.Cluster || m.VolumeID != v.ID {
		return fmt.Errorf("volume: %s is marked for cluster %q volume %d, not %q volume %d", v.MountPoint, m.Cluster, m.VolumeID, v.Cluster, v.ID)
	}
	return nil
}

// Unmount unmounts the Volume; a busy file system is retried for a few seconds, then reported.
func (v *Volume) Unmount(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := v.Mounted(ctx)
		if err != nil {
			return err
		}
		if !ok {
			// Nothing mounted here (any more): the device must be free all the same, also when this is the retry of
			// an unmount whose device was still held.
			return released(ctx, v.Device(), cmp.Or(v.ReleaseWait, DefaultReleaseWait))
		}
		err = unix.Unmount(v.MountPoint, 0)
		if err == nil {
			v.log().Info("volume unmounted", "mount_point", v.MountPoint)
			return released(ctx, v.Device(), cmp.Or(v.ReleaseWait, DefaultReleaseWait))
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("volume: unmounting %s: %w", v.MountPoint, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("volume: unmounting %s: %w", v.MountPoint, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DefaultReleaseWait is how long Unmount waits for the device to be free after the mount point is gone.
const DefaultReleaseWait = 10 * time.Second

// released waits until nothing holds the device: an exclusive open (O_EXCL, as e2fsck and mount do) fails with
// EBUSY while the file system is still mounted anywhere (another mount namespace, a bind mount elsewhere) or a
// process holds the device exclusively. An unmount that reported success while the file system lived on would let
// the next MASTER's fsck, or Hetzner's detach, meet a live file system: the demotion fails instead, and is retried
// (or its node fenced). A device that is gone (detached) is free.
func released(ctx context.Context, dev string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_EXCL, 0)
		if err == nil {
			f.Close()
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("volume: %s is still in use after the unmount (mounted elsewhere, or held open%s): %w", dev, mountedBy(dev), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("volume: waiting for %s to be free: %w", dev, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Mounted reports whether the mount point is a mount point (per /proc/self/mountinfo).
func (v *Volume) Mounted(context.Context) (bool, error) {
	return IsMountPoint(v.MountPoint)
}

// IsMountPoint reads /proc/self/mountinfo.
func IsMountPoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("volume: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescape(fields[4]) == abs {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// probe returns the device's file-system type, "" when it carries no signature at all and its first MiB is
// zeros (a new Volume).
func probe(ctx context.Context, dev string) (string, error) {
	out, err := child.Command(ctx, "blkid", "-p", "-o", "value", "-s", "TYPE", dev).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		// Exit 2 means "nothing identified", which blkid also says when it cannot open or read the device, and for
		// content it does not know. Never format on doubt: only a device that reads, and reads as zeros, is new.
		if err := blank(dev); err != nil {
			return "", fmt.Errorf("volume: blkid found no file system on %s, but %w; refusing to format", dev, err)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("volume: blkid %s: %w", dev, err)
	}
	t := strings.TrimSpace(string(out))
	if t == "" {
		return "", fmt.Errorf("volume: blkid %s: a signature without a type; refusing to format", dev)
	}
	return t, nil
}

// blankSpan is how much of a device blank reads: partition tables, LVM, LUKS and every file system's superblock
// start within it.
const blankSpan = 1 << 20

// blank returns nil when the device can be read and its first blankSpan bytes (or all of it, if smaller) are
// zeros.
func blank(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("it cannot be opened: %w", err)
	}
	defer f.Close()
	buf := make([]byte, blankSpan)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("it cannot be read: %w", err)
	}
	if n == 0 {
		return errors.New("it is empty (no size)")
	}
	for i, c := range buf[:n] {
		if c != 0 {
			return fmt.Errorf("it holds data blkid does not know (a byte that is not zero at offset %d)", i)
		}
	}
	return nil
}

// fsck runs e2fsck in preen mode: it returns at once on a clean file system and repairs what is safe to repair.
func fsck(ctx context.Context, dev string) error {
	cmd := child.Command(ctx, "e2fsck", "-p", dev)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() <= 1 {
		return nil // 1: errors corrected
	}
	if err != nil {
		return fmt.Errorf("volume: e2fsck -p %s: %w: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := child.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("volume: %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (v *Volume) log() *slog.Logger {
	if v.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return v.Logger
}
