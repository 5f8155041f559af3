// Package deploy puts the stub mailcow stack onto a Docker Engine: it builds the FROM-scratch stub image with
// `docker build` (through the Engine API; no registry is needed) and creates one container for each of mailcow's
// 18 services, with mailcow's container names, compose labels, restart policy, and the binds of the override
// (agent/stack's layout), so that the agent cannot tell the stub from the real stack.
package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

// Image is the stub image's default tag.
const Image = "mailcow-ha/mailcow-stub:latest"

// Options describe the stub stack on one node.
type Options struct {
	Project   string // compose project, e.g. mailcowdockerized
	Image     string
	DataMount string // the shared Volume's mount point; the binds point below it
	SocketDir string // the host MariaDB's socket directory
	Hostname  string // the name the stub services greet with
	PortBase  int    // added to every port (tests on a shared host); 0 in the lab
	// HealthInterval is the Docker health check's interval for postfix, dovecot and nginx.
	HealthInterval time.Duration
	// HealthTimeout is how long one health check may take (default 2 s). Under emulation (TCG) an exec into a
	// container alone takes longer than that.
	HealthTimeout time.Duration
	// MailImage, when set, is the mailservers image (Debian's postfix and dovecot) that plays postfix-mailcow and
	// dovecot-mailcow instead of the stub, with MailUsers as its mailboxes. Their ports follow PortBase too.
	MailImage string
	MailUsers []string
	// Images are the images mailcow's compose file names per service (the node's release, stack.LoadCompose):
	// each container is labelled with its service's, and one whose label differs is created anew, as `docker
	// compose create` does with a service whose definition changed. Empty: no tree, no label.
	Images map[string]string
}

// LabelImage labels a stub container with the image that the release's compose file names for its service.
const LabelImage = "org.mailcow-ha.image"

// Role returns the stub role that plays a mailcow service.
func Role(service string) string {
	switch service {
	case "postfix-mailcow":
		return mailcowstub.RolePostfix
	case "dovecot-mailcow":
		return mailcowstub.RoleDovecot
	case "nginx-mailcow":
		return mailcowstub.RoleNginx
	}
	return mailcowstub.RoleSleep
}

// Connect returns a client for the Engine at host ("" means DOCKER_HOST or the default socket), negotiating the
// API version (Debian 12's docker.io speaks 1.41).
func Connect(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}

// GoBuild builds the static stub binary from this module's source (tests and `make`).
func GoBuild(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "github.com/mailcow-ha/mailcow-ha/cmd/mailcow-stub")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building mailcow-stub: %w: %s", err, b)
	}
	return nil
}

// BuildImage runs `docker build` for a FROM-scratch image holding only the static stub binary.
func BuildImage(ctx context.Context, c *client.Client, binary, tag string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("stub image: %w", err)
	}
	dockerfile := "FROM scratch\nCOPY mailcow-stub /mailcow-stub\nENTRYPOINT [\"/mailcow-stub\"]\n"
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"mailcow-stub", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := c.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return fmt.Errorf("docker build: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var last string
	for sc.Scan() {
		var m struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			if m.Error != "" {
				return fmt.Errorf("docker build: %s", m.Error)
			}
			if s := strings.TrimSpace(m.Stream); s != "" {
				last = s
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("docker build: %w", err)
	}
	if !strings.HasPrefix(last, "Successfully tagged") && !strings.HasPrefix(last, "Successfully built") {
		return fmt.Errorf("docker build: unexpected end of output: %q", last)
	}
	return nil
}

// stubDefaults fills in what the stub's options leave zero: the stub image, and 2 s for the health checks'
// interval and timeout. Create and Layer share it.
func stubDefaults(image string, every, timeout time.Duration) (string, time.Duration, time.Duration) {
	if image == "" {
		image = Image
	}
	if every == 0 {
		every = 2 * time.Second
	}
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	return image, every, timeout
}

// Create makes the containers of every service that has none, and anew those whose release image changed
// (`docker compose create`, for the stub: the old container is stopped and removed, the new one is left created).
// The data directories must exist: the binds never create host paths.
func Create(ctx context.Context, c *client.Client, o Options) (int, error) {
	o.Image, o.HealthInterval, o.HealthTimeout = stubDefaults(o.Image, o.HealthInterval, o.HealthTimeout)
	have, err := existing(ctx, c, o.Project)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, svc := range stack.Services {
		if ct, ok := have[svc.Name]; ok {
			if want := o.Images[svc.Name]; want == "" || ct.Labels[LabelImage] == want {
				continue
			}
			timeout := 10
			if err := c.ContainerStop(ctx, ct.ID, container.StopOptions{Timeout: &timeout}); err != nil {
				return n, fmt.Errorf("docker: stopping %s to create it anew: %w", svc.Name, err)
			}
			if err := c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{}); err != nil {
				return n, fmt.Errorf("docker: removing %s to create it anew: %w", svc.Name, err)
			}
		}
		if err := createOne(ctx, c, o, svc); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func createOne(ctx context.Context, c *client.Client, o Options, svc stack.Service) error {
	role := Role(svc.Name)
	args := []string{role, "--vmail", "/var/vmail", "--port-base", strconv.Itoa(o.PortBase)}
	if o.Hostname != "" {
		args = append(args, "--hostname", o.Hostname)
	}
	var deps []string
	for _, d := range svc.DependsOn {
		deps = append(deps, d+":service_started:false")
	}
	cfg := &container.Config{
		Image:    o.Image,
		Cmd:      args,
		Hostname: o.Hostname,
		Labels: map[string]string{
			stack.LabelProject:                    o.Project,
			stack.LabelService:                    svc.Name,
			stack.LabelOneoff:                     "False",
			stack.LabelDependsOn:                  strings.Join(deps, ","),
			"com.docker.compose.container-number": "1",
			"org.mailcow-ha.stub":                 role,
		},
	}
	if img := o.Images[svc.Name]; img != "" {
		cfg.Labels[LabelImage] = img
	}
	if role != mailcowstub.RoleSleep {
		cfg.Healthcheck = &container.HealthConfig{
			Test:     []string{"CMD", "/mailcow-stub", "health", role, "--port-base", strconv.Itoa(o.PortBase)},
			Interval: o.HealthInterval, Timeout: o.HealthTimeout, Retries: 2,
		}
	}
	hc := &container.HostConfig{
		NetworkMode:   "host",
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways},
	}
	mounts := stack.MountsOf(svc.Name)
	if o.MailImage != "" && (role == mailcowstub.RolePostfix || role == mailcowstub.RoleDovecot) {
		if err := realServer(cfg, o, role); err != nil {
			return err
		}
	} else if svc.Name == "postfix-mailcow" {
		// The stub's postfix delivers into the Maildirs itself (real postfix hands over to dovecot by LMTP).
		mounts = append(mounts, stack.Mount{Service: svc.Name, Target: "/var/vmail", Dir: "vmail"})
	}
	for _, m := range mounts {
		hc.Mounts = append(hc.Mounts, mount.Mount{
			Type: mount.TypeBind, Source: m.Source(o.DataMount, o.SocketDir), Target: m.Target, ReadOnly: m.ReadOnly,
		})
	}
	name := o.Project + "-" + svc.Name + "-1"
	if _, err := c.ContainerCreate(ctx, cfg, hc, nil, nil, name); err != nil {
		return fmt.Errorf("docker: creating %s: %w", name, err)
	}
	return nil
}

// realServer makes cfg run role with the mailservers image: its entry point's role, the node's environment (the
// greeting's name, the mailboxes, the ports) and its own health check. Real postfix hands mail to dovecot over LMTP,
// so it keeps mailcow's binds only (no vmail).
func realServer(cfg *container.Config, o Options, role string) error {
	mc := mailservers.Config{Hostname: o.Hostname, Users: o.MailUsers}
	if o.PortBase != 0 {
		mc.Ports = map[string]int{}
		for v, p := range mailservers.PortVars {
			mc.Ports[v] = p + o.PortBase
		}
		mc.LMTPAddr = "127.0.0.1:" + strconv.Itoa(24+o.PortBase)
	}
	env, err := mc.Env()
	if err != nil {
		return err
	}
	r := mailRole(role)
	cfg.Image, cfg.Cmd, cfg.Env = o.MailImage, []string{r}, env
	cfg.Labels["org.mailcow-ha.stub"] = "mailservers-" + r
	cfg.Healthcheck.Test = mailservers.HealthTest(r)
	return nil
}

// mailRole is the mailservers image's role that plays the stub's postfix or dovecot role.
func mailRole(role string) string {
	if role == mailcowstub.RoleDovecot {
		return mailservers.RoleDovecot
	}
	return mailservers.RolePostfix
}

func existing(ctx context.Context, c *client.Client, project string) (map[string]container.Summary, error) {
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", stack.LabelProject+"="+project))})
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	out := map[string]container.Summary{}
	for _, ct := range list {
		out[ct.Labels[stack.LabelService]] = ct
	}
	return out, nil
}

// TagRelease stands in for `docker compose pull` of the release in dir: it tags image (the stub) as every image
// that the release's compose file names, so that the Engine holds each of them.
func TagRelease(ctx context.Context, c *client.Client, image, dir string) (int, error) {
	comp, err := stack.LoadCompose(ctx, dir)
	if err != nil {
		return 0, err
	}
	image, _, _ = stubDefaults(image, 0, 0)
	n := 0
	for _, ref := range comp.Images {
		if ref == "" {
			continue
		}
		if err := c.ImageTag(ctx, image, ref); err != nil {
			return n, fmt.Errorf("docker: tagging %s as %s: %w", image, ref, err)
		}
		n++
	}
	return n, nil
}

// Remove deletes every container of the project, running or not.
func Remove(ctx context.Context, c *client.Client, project string) error {
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", stack.LabelProject+"="+project))})
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	var errs []error
	for _, ct := range list {
		if err := c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("docker: removing %s: %w", ct.ID[:12], err))
		}
	}
	return errors.Join(errs...)
}
