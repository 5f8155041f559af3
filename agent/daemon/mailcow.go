package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/docker/docker/client"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/agent/volume"
)

// newVolume is the production Storage: the shared Volume under mailcow.data_mount.
func newVolume(c config.Config, log *slog.Logger) *volume.Volume {
	return &volume.Volume{
		ID: c.Hcloud.VolumeID, ByIDDir: c.Mailcow.DeviceDir, MountPoint: c.Mailcow.DataMount,
		Cluster: c.Cluster.Name, Node: c.Node.Name, Dirs: stack.DataDirs, Logger: log.With("component", "volume"),
	}
}

// newStack is the production Stack: mailcow on the Docker Engine, guarded by the Volume's marker. address
// returns the Floating IP's address for SNAT_TO_SOURCE.
func newStack(c config.Config, log *slog.Logger, guard func(context.Context) error, address func(context.Context) (netip.Addr, error)) (*stack.Stack, error) {
	dc, err := client.NewClientWithOpts(client.WithHost(c.Mailcow.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("mailcow.docker_host: %w", err)
	}
	ports, err := stack.PortsFrom(filepath.Join(c.Mailcow.Dir, "mailcow.conf"))
	if err != nil {
		return nil, err
	}
	m := c.Mailcow
	return &stack.Stack{
		Docker: dc, Project: m.ComposeProject, Critical: m.CriticalServices, Ports: ports, Guard: guard,
		Create: m.CreateCommand, Dir: m.Dir, StartTimeout: m.StartTimeout.D(),
		OverridePath: filepath.Join(m.Dir, stack.OverrideFile),
		StateFile:    filepath.Join(c.Failover.StateDir, "override.sha256"),
		RenderOverride: func(ctx context.Context) ([]byte, error) {
			o := stack.OverrideOptions{DataMount: m.DataMount, SocketDir: filepath.Dir(c.Galera.Socket)}
			if m.SNAT {
				ip, err := address(ctx)
				if err != nil {
					return nil, err
				}
				o.FloatingIP = ip
			}
			compose, err := mailcowCompose(ctx, m)
			if err != nil {
				return nil, err
			}
			return stack.RenderOverride(o, compose)
		},
		Logger: log.With("component", "stack"),
	}, nil
}

// mailcowCompose reads mailcow's compose file in mailcow.dir. A node whose stack is made by mailcow.create_command
// (the stub of the lab and the VM tests) and has no compose file gets the stub's layout.
func mailcowCompose(ctx context.Context, m config.Mailcow) (stack.Compose, error) {
	if len(m.CreateCommand) > 0 {
		if _, err := os.Stat(filepath.Join(m.Dir, stack.ComposeFile)); errors.Is(err, os.ErrNotExist) {
			return stack.StubCompose(), nil
		}
	}
	c, err := stack.LoadCompose(ctx, m.Dir)
	if err != nil {
		return c, fmt.Errorf("mailcow.dir: %w", err)
	}
	return c, nil
}

// mountedGuard guards with a test double's Mounted when the Volume is not the real one.
func mountedGuard(s Storage) func(context.Context) error {
	if v, ok := s.(*volume.Volume); ok {
		return v.Guard
	}
	return func(ctx context.Context) error {
		ok, err := s.Mounted(ctx)
		if err == nil && !ok {
			err = fmt.Errorf("the Volume is not mounted")
		}
		return err
	}
}
