package stack_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

// createdDocker lists one created (not running) dovecot with the given mounts and counts what Start asks of it.
type createdDocker struct {
	mounts          []container.MountPoint
	updates, starts atomic.Int32
}

func (d *createdDocker) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return []container.Summary{{ID: "c1", Names: []string{"/p-dovecot-mailcow-1"}, State: "created", Status: "Created",
		Labels: map[string]string{stack.LabelProject: "p", stack.LabelService: "dovecot-mailcow"}, Mounts: d.mounts}}, nil
}
func (d *createdDocker) ContainerUpdate(context.Context, string, container.UpdateConfig) (container.UpdateResponse, error) {
	d.updates.Add(1)
	return container.UpdateResponse{}, nil
}
func (*createdDocker) ContainerStop(context.Context, string, container.StopOptions) error { return nil }
func (d *createdDocker) ContainerStart(context.Context, string, container.StartOptions) error {
	d.starts.Add(1)
	return nil
}

// A container whose mail directory is a Docker volume on the node's disk (a Compose that merged the override
// otherwise, a container made by hand) is refused before anything starts, naming the service, the path and the
// volume; node-local volumes (Placements without a place) and the override's binds start.
func TestStartRefusesStateOnDockerVolumes(t *testing.T) {
	guard := func(context.Context) error { return nil }
	vol := func(name, dst string) container.MountPoint {
		return container.MountPoint{Type: mount.TypeVolume, Name: name, Destination: dst}
	}
	bind := func(src, dst string) container.MountPoint {
		return container.MountPoint{Type: mount.TypeBind, Source: src, Destination: dst}
	}
	for _, c := range []struct {
		name   string
		mounts []container.MountPoint
		want   []string // in the error; none: it starts
	}{
		{"mail on a Docker volume", []container.MountPoint{vol("p_vmail-vol-1", "/var/vmail"), bind("/mnt/mailcow/vmail-index", "/var/vmail_index")},
			[]string{"dovecot-mailcow: /var/vmail is the Docker volume p_vmail-vol-1", "the Volume's vmail"}},
		{"socket on a Docker volume", []container.MountPoint{vol("p_mysql-socket-vol-1", "/var/run/mysqld/")},
			[]string{"/var/run/mysqld/", "the host's MariaDB socket directory"}},
		{"binds", []container.MountPoint{bind("/mnt/mailcow/vmail", "/var/vmail"), bind("/run/mysqld", "/var/run/mysqld/")}, nil},
		// ClamAV's signatures stay on each node (Placements says why); another project's volume is not ours.
		{"node-local volumes", []container.MountPoint{vol("p_clamd-db-vol-1", "/var/lib/clamav"), vol("other_x", "/x")}, nil},
	} {
		d := &createdDocker{mounts: c.mounts}
		s := &stack.Stack{Docker: d, Project: "p", Guard: guard}
		err := s.Start(context.Background())
		if c.want == nil {
			if err != nil || d.starts.Load() != 1 {
				t.Errorf("%s: %v, %d starts; want it started", c.name, err, d.starts.Load())
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: started", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want %q in it", c.name, err, w)
			}
		}
		if n, m := d.starts.Load(), d.updates.Load(); n != 0 || m != 0 {
			t.Errorf("%s: %d starts and %d restart-policy changes after the refusal; want none", c.name, n, m)
		}
	}
}
