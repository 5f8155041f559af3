package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/client"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
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
func newStack(c config.Config, log *slog.Logger, guard func(context.Context) error, address func(context.Context) (netip.Addr, error), conf func() ([]byte, error)) (*stack.Stack, error) {
	dc, err := client.NewClientWithOpts(client.WithHost(c.Mailcow.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("mailcow.docker_host: %w", err)
	}
	var ports map[string][]int
	var renderConf func(context.Context) ([]byte, error)
	if conf != nil {
		// The agent writes mailcow.conf: the ports are the ones it writes.
		b, err := conf()
		if err != nil {
			return nil, err
		}
		if ports, err = stack.PortsIn(b); err != nil {
			return nil, err
		}
		renderConf = func(context.Context) ([]byte, error) { return conf() }
	} else if ports, err = stack.PortsFrom(filepath.Join(c.Mailcow.Dir, mailcowconf.File)); err != nil {
		return nil, err
	}
	m := c.Mailcow
	return &stack.Stack{
		RenderConf: renderConf,
		Docker:     dc, Project: m.ComposeProject, Critical: m.CriticalServices, First: stack.Intake, Ports: ports, Guard: guard,
		Create: m.CreateCommand, Dir: m.Dir, StartTimeout: m.StartTimeout.D(), DataMount: m.DataMount,
		OverridePath: filepath.Join(m.Dir, stack.OverrideFile),
		StateFile:    filepath.Join(c.Failover.StateDir, "override.sha256"),
		RenderOverride: func(ctx context.Context) ([]byte, error) {
			var fip netip.Addr
			if m.SNAT {
				ip, err := address(ctx)
				if err != nil {
					return nil, err
				}
				fip = ip
			}
			return RenderOverride(ctx, c, fip)
		},
		Logger: log.With("component", "stack"),
	}, nil
}

// MailcowConf renders mailcow.conf from the configuration (mailcowconf.Render: every node writes the same), and
// writes the API key it derives for the sign-up portal to mailcow.api_key_file (mode 0600). secret is the cluster
// secret; the database password is read from galera.password_file.
func MailcowConf(c config.Config, owner config.SecretFiles, secret []byte) ([]byte, error) {
	pw, err := owner.ReadSecret(c.Galera.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("galera.password_file: %w", err)
	}
	b, err := RenderMailcowConf(c, secret, pw.Reveal())
	if err != nil {
		return nil, err
	}
	key, err := mailcowconf.Derive(secret, c.Cluster.Name, "API_KEY", mailcowconf.APIKeyLen)
	if err != nil {
		return nil, err
	}
	if old, err := os.ReadFile(c.Mailcow.APIKeyFile); err != nil || strings.TrimSpace(string(old)) != key {
		if err := config.WriteSecret(c.Mailcow.APIKeyFile, key); err != nil {
			return nil, fmt.Errorf("mailcow.api_key_file: %w", err)
		}
	}
	return b, nil
}

// RenderMailcowConf is mailcow.conf for the configuration, the cluster secret and the database password.
func RenderMailcowConf(c config.Config, secret []byte, dbPassword string) ([]byte, error) {
	m := c.Mailcow
	return mailcowconf.Render(mailcowconf.Values{Hostname: m.Hostname, Timezone: m.Timezone, ComposeProject: m.ComposeProject,
		DBPassword: dbPassword, Secret: secret, Cluster: c.Cluster.Name, Settings: m.Conf})
}

// RenderOverride is docker-compose.override.yml for the configuration, with mailcow's compose file in
// mailcow.dir (or the stub's layout) and fip as the address to send mail from (invalid: none).
func RenderOverride(ctx context.Context, c config.Config, fip netip.Addr) ([]byte, error) {
	compose, err := mailcowCompose(ctx, c.Mailcow)
	if err != nil {
		return nil, err
	}
	return stack.RenderOverride(stack.OverrideOptions{DataMount: c.Mailcow.DataMount, SocketDir: filepath.Dir(c.Galera.Socket), FloatingIP: fip}, compose)
}

// mailcowCompose reads mailcow's compose file in mailcow.dir. A node whose create command is not Docker Compose
// (the stub of the lab and the VM tests) and that has no compose file gets the stub's layout.
func mailcowCompose(ctx context.Context, m config.Mailcow) (stack.Compose, error) {
	if !m.UsesCompose() {
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
