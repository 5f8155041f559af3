package daemon

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/volume"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// galera.data_volume: the node finds its own Volume through the API (attached to it, labelled purpose=galera),
// mounts it on a real loop device, and keeps what the datadir holds across a remount; another cluster's Volume and
// an unclear choice are refused.
func TestGaleraVolumeMounted(t *testing.T) {
	for _, tool := range []string{"losetup", "mkfs.ext4", "e2fsck", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: util-linux, e2fsprogs)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	st := hcloudsim.DemoState()
	galeraLabels := map[string]string{"app": "mailcow-ha", "cluster": "lab", GaleraVolumeLabel: "galera"}
	st.Volumes = append(st.Volumes,
		hcloudsim.Volume{ID: 3011, Name: "lab-db-1", Size: 10, Server: 1001, Labels: galeraLabels, Location: "fsn1"},
		hcloudsim.Volume{ID: 3012, Name: "lab-db-2", Size: 10, Server: 1002, Labels: galeraLabels, Location: "fsn1"},
		hcloudsim.Volume{ID: 3013, Name: "lab-db-2b", Size: 10, Server: 1002, Labels: galeraLabels, Location: "fsn1"},
		hcloudsim.Volume{ID: 3014, Name: "lab-db-9", Size: 10, Server: 1003, Location: "fsn1",
			Labels: map[string]string{"app": "mailcow-ha", "cluster": "lab", GaleraVolumeLabel: "galera", "node": "mx9"}})
	st.Servers = append(st.Servers, hcloudsim.Server{ID: 1004, Name: "mx4", Status: "running", Location: "fsn1"})
	sim, err := hcloudsim.New(hcloudsim.Options{State: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	api, err := hcloud.New(hcloud.Options{Endpoint: srv.URL + "/v1", Token: hcloudsim.DemoToken})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	c := config.Defaults()
	c.Cluster.Name = "lab"
	c.Hcloud.VolumeID = 3001
	c.Mailcow.DeviceDir = filepath.Join(dir, "by-id")
	c.Galera.DataVolume = true
	c.Galera.VolumeMount = filepath.Join(dir, "galera")
	c.Galera.DataDir = filepath.Join(dir, "galera", "mysql")
	os.MkdirAll(c.Mailcow.DeviceDir, 0o755)
	dev := loopDevice(t, filepath.Join(dir, "db1.img"))
	if err := os.Symlink(dev, filepath.Join(c.Mailcow.DeviceDir, "scsi-0HC_Volume_3011")); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	mx1 := config.Member{Name: "mx1", ServerID: 1001}

	// A blank Volume: ext4 made (no signature at all), marked, the datadir made.
	v, err := mountGaleraVolume(ctx, c, mx1, api, 5*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(c.Galera.VolumeMount, unix.MNT_DETACH) })
	if ok, _ := volume.IsMountPoint(c.Galera.VolumeMount); !ok || v.ID != 3011 {
		t.Fatalf("not mounted: %v %d", ok, v.ID)
	}
	if err := os.WriteFile(filepath.Join(c.Galera.DataDir, "grastate.dat"), []byte("seqno: 42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A rebuilt server: the same Volume again, the database still there.
	if err := unix.Unmount(c.Galera.VolumeMount, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := mountGaleraVolume(ctx, c, mx1, api, 5*time.Second, log); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(c.Galera.DataDir, "grastate.dat")); err != nil || string(b) != "seqno: 42\n" {
		t.Fatalf("the datadir after a remount: %q %v", b, err)
	}
	unix.Unmount(c.Galera.VolumeMount, 0)

	// Another cluster's Volume is refused, and stays unmounted.
	other := c
	other.Cluster.Name = "other"
	if _, err := mountGaleraVolume(ctx, other, mx1, api, 5*time.Second, log); err == nil || !strings.Contains(err.Error(), `marker names cluster "lab"`) {
		t.Fatalf("another cluster's Volume: %v", err)
	}
	if ok, _ := volume.IsMountPoint(c.Galera.VolumeMount); ok {
		t.Fatal("another cluster's Volume stayed mounted")
	}
	// Two labelled Volumes on one server, and none on another: refused, naming why.
	if _, err := mountGaleraVolume(ctx, c, config.Member{Name: "mx2", ServerID: 1002}, api, time.Second, log); err == nil || !strings.Contains(err.Error(), "2 Volumes labelled purpose=galera") {
		t.Fatalf("two Volumes: %v", err)
	}
	if _, err := mountGaleraVolume(ctx, c, config.Member{Name: "mx3", ServerID: 1003}, api, time.Second, log); err == nil || !strings.Contains(err.Error(), "labelled node=mx9, the database of another node") {
		t.Fatalf("another node's Volume: %v", err)
	}
	if _, err := mountGaleraVolume(ctx, c, config.Member{Name: "mx4", ServerID: 1004}, api, time.Second, log); err == nil || !strings.Contains(err.Error(), "no Volume labelled purpose=galera") {
		t.Fatalf("no Volume: %v", err)
	}
}

// loopDevice makes a blank 64 MiB image on a loop device.
func loopDevice(t *testing.T, img string) string {
	t.Helper()
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device available here: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}
