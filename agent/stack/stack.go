// Package stack drives mailcow-dockerized through the Docker Engine API: it finds the containers by their compose
// project label, judges the critical services' health (running, Docker health check, ports answering), stops them
// with their restart policy disabled so that dockerd cannot revive them on an empty mount point, and starts them
// again in dependency order once the mount guard passes. It never edits mailcow's own files; its only file is
// docker-compose.override.yml, which mailcow's update.sh leaves alone.
package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// Compose's container labels.
const (
	LabelProject   = "com.docker.compose.project"
	LabelService   = "com.docker.compose.service"
	LabelDependsOn = "com.docker.compose.depends_on"
	LabelOneoff    = "com.docker.compose.oneoff"
)

// Docker is the part of the Docker Engine client that the stack uses (*client.Client implements it).
type Docker interface {
	ContainerList(ctx context.Context, o container.ListOptions) ([]container.Summary, error)
	ContainerUpdate(ctx context.Context, id string, u container.UpdateConfig) (container.UpdateResponse, error)
	ContainerStop(ctx context.Context, id string, o container.StopOptions) error
	ContainerStart(ctx context.Context, id string, o container.StartOptions) error
}

// Stack is one node's mailcow.
type Stack struct {
	Docker   Docker
	Project  string   // compose project, e.g. mailcowdockerized
	Critical []string // services whose failure fails the node's check
	// First are started, with what they depend on, before all other containers of Start (mailcow: Intake, the
	// service that accepts mail); nil: every container as soon as its dependencies have started.
	First    []string
	Ports    map[string][]int
	PortHost string // where the ports are probed; default 127.0.0.1

	// Guard must pass before anything starts: the mount point is this cluster's marked Volume.
	Guard func(ctx context.Context) error
	// Create makes the missing containers (mailcow: `docker compose create` in the mailcow directory). It runs
	// after the guard, only when a service has no container or the override changed since the last run.
	Create []string
	Dir    string // working directory of Create (the mailcow directory)
	// Override is the rendered docker-compose.override.yml; its hash is kept in StateFile after Create ran.
	// With RenderOverride set, Start renders it first (it needs the Floating IP's address) and writes it to
	// OverridePath when it changed.
	Override       []byte
	RenderOverride func(ctx context.Context) ([]byte, error)
	OverridePath   string
	StateFile      string
	// Conf is mailcow.conf as the agent renders it (RenderConf, nil: the node keeps the one it has), written to Dir
	// with .env linked to it, before the override; it counts in StateFile's hash like the override.
	Conf       []byte
	RenderConf func(ctx context.Context) ([]byte, error)
	// DataMount is the Volume's mount point: Warm starts no container with a mount there.
	DataMount string
	// StartTimeout bounds the wait for the critical services after a start.
	StartTimeout time.Duration
	Logger       *slog.Logger

	composeFile []byte // Dir's docker-compose.yml as writeConfigs last read it (nil: none)
}

// Container is a discovered container of the project.
type Container struct {
	ID, Name, Service string
	State             string // running, exited, created, restarting, paused, dead
	Status            string // Docker's human status, with "(healthy)", "(unhealthy)" or "(health: starting)"
	Restart           string
	DependsOn         []string
	Mounts            []container.MountPoint // as the Engine lists them: binds and Docker volumes
}

// exitCode finds the code in Docker's status text "Exited (137) 4 seconds ago"; the reason must not carry the
// changing age, or every look would count as a new failure.
var exitCode = regexp.MustCompile(`^Exited \((-?\d+)\)`)

// Health is one critical service's state.
type Health struct {
	Service string `json:"service"`
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason,omitempty"`
}

// Discover lists the project's containers by service name.
func (s *Stack) Discover(ctx context.Context) (map[string]Container, error) {
	f := filters.NewArgs(filters.Arg("label", LabelProject+"="+s.Project))
	list, err := s.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: listing %s containers: %w", s.Project, err)
	}
	out := map[string]Container{}
	for _, c := range list {
		svc := c.Labels[LabelService]
		if svc == "" || strings.EqualFold(c.Labels[LabelOneoff], "true") {
			continue
		}
		name := strings.TrimPrefix(firstOr(c.Names, c.ID), "/")
		cc := Container{ID: c.ID, Name: name, Service: svc, State: string(c.State), Status: c.Status, Mounts: c.Mounts}
		cc.DependsOn = parseDependsOn(c.Labels[LabelDependsOn])
		if prev, dup := out[svc]; dup && prev.State == "running" {
			continue // scaled services: one running container is enough for the health model
		}
		out[svc] = cc
	}
	return out, nil
}

func firstOr(s []string, d string) string {
	if len(s) > 0 {
		return s[0]
	}
	return d
}

// parseDependsOn reads compose v2's label: "svc:condition:restart,svc2:condition:restart".
func parseDependsOn(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(part), ":"); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// Check judges every critical service.
func (s *Stack) Check(ctx context.Context) ([]Health, error) {
	cs, err := s.Discover(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Health, 0, len(s.Critical))
	for _, svc := range s.Critical {
		h := Health{Service: svc}
		c, ok := cs[svc]
		switch {
		case !ok:
			h.Reason = "no container"
		case c.State != "running":
			h.Reason = "container " + c.State
			if m := exitCode.FindStringSubmatch(c.Status); m != nil {
				h.Reason += " with code " + m[1]
			}
		case strings.Contains(c.Status, "(unhealthy)"):
			h.Reason = "Docker health check failing"
		case strings.Contains(c.Status, "(health: starting)"):
			h.Reason = "Docker health check starting"
		default:
			h.Reason = s.probePorts(ctx, svc)
		}
		h.Healthy = h.Reason == ""
		out = append(out, h)
	}
	return out, nil
}

func (s *Stack) probePorts(ctx context.Context, svc string) string {
	host := s.PortHost
	if host == "" {
		host = "127.0.0.1"
	}
	for _, p := range s.Ports[svc] {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return fmt.Sprintf("port %d does not answer", p)
		}
		c.Close()
	}
	return ""
}

// Failed implements the agent's Stack: the first critical service that is down, with why ("" when all are up).
// The agent's brain applies failover.check_grace, so that mailcow's own watchdog has time to restart it.
func (s *Stack) Failed(ctx context.Context) (string, error) {
	hs, err := s.Check(ctx)
	if err != nil {
		return "", err
	}
	for _, h := range hs {
		if !h.Healthy {
			return h.Service + ": " + h.Reason, nil
		}
	}
	return "", nil
}

// Running counts the project's containers that run.
func (s *Stack) Running(ctx context.Context) (int, error) {
	cs, err := s.Discover(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cs {
		if c.State == "running" {
			n++
		}
	}
	return n, nil
}

// slowStop is the container stop that Stop reports by name.
const slowStop = 2 * time.Second

// Stop stops every container of the project with its restart policy disabled first, so that neither mailcow's
// restart: always nor a reboot revives it. Dependents stop before what they depend on; each level in parallel.
func (s *Stack) Stop(ctx context.Context) error {
	cs, err := s.Discover(ctx)
	if err != nil {
		return err
	}
	levels := Levels(s.deps(cs))
	start := time.Now()
	for i := len(levels) - 1; i >= 0; i-- {
		err := parallel(levels[i], func(svc string) error {
			c := cs[svc]
			if _, err := s.Docker.ContainerUpdate(ctx, c.ID, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled}}); err != nil {
				return fmt.Errorf("docker: disabling the restart policy of %s: %w", c.Name, err)
			}
			if c.State == "exited" || c.State == "created" || c.State == "dead" {
				return nil
			}
			t0 := time.Now()
			if err := s.Docker.ContainerStop(ctx, c.ID, container.StopOptions{}); err != nil {
				return fmt.Errorf("docker: stopping %s: %w", c.Name, err)
			}
			if took := time.Since(t0); took > slowStop {
				// A demotion is bounded by the peers' fence_timeout: name the container that spends it.
				s.log().Info("slow container stop", "container", c.Name, "took", took.Round(time.Millisecond))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	s.log().Info("mailcow stopped", "containers", len(cs), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Start starts mailcow: the mount guard first, then the containers that are missing are created, then the
// containers' stateful mounts are checked (binds to the Volume, not Docker volumes), then every container gets
// restart: always back and starts, each as soon as those it depends on have started (inOrder); First and what it
// depends on come before all the others (firstThenRest). It waits up to
// StartTimeout for the critical services; one that is still down then is left to the health check and its grace.
func (s *Stack) Start(ctx context.Context) error {
	if s.Guard == nil {
		return errors.New("stack: no mount guard configured; refusing to start mailcow")
	}
	if err := s.Guard(ctx); err != nil {
		return fmt.Errorf("stack: mount guard: %w", err)
	}
	begin := time.Now()
	if err := s.writeConfigs(ctx); err != nil {
		return err
	}
	cs, err := s.Discover(ctx)
	if err != nil {
		return err
	}
	if why := s.needCreate(cs); why != "" {
		if err := s.create(ctx, why); err != nil {
			return err
		}
		if cs, err = s.Discover(ctx); err != nil {
			return err
		}
		for _, svc := range s.Critical {
			if _, ok := cs[svc]; !ok {
				return fmt.Errorf("stack: %s has no container after %q", svc, strings.Join(s.Create, " "))
			}
		}
	}
	// Data first: no container starts while a stateful mount of any is a Docker volume on this node's disk.
	if bad := s.stateOnDockerVolumes(cs); len(bad) > 0 {
		return fmt.Errorf("stack: refusing to start mailcow: state would be written off the Volume:\n  %s", strings.Join(bad, "\n  "))
	}
	var startMu sync.Mutex
	startedAt := map[string]time.Duration{}
	err = firstThenRest(s.deps(cs), s.First, func(svc string) error {
		if _, err := s.startOne(ctx, cs[svc]); err != nil {
			return err
		}
		// A takeover's first banner waits for postfix's start and every start before it: when each one was up, from
		// the stack's start, for the next look at that path.
		startMu.Lock()
		startedAt[svc] = time.Since(begin)
		startMu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	started := time.Since(begin)
	failed, err := s.WaitHealthy(ctx, s.StartTimeout)
	switch {
	case err != nil:
		return err
	case failed != "":
		s.log().Warn("mailcow started, but a critical service is not up yet; the health check decides", "failed", failed,
			"waited", s.StartTimeout)
	default:
		var crit []string
		for _, svc := range s.Critical {
			if at, ok := startedAt[svc]; ok {
				crit = append(crit, fmt.Sprintf("%s=%s", svc, at.Round(time.Millisecond)))
			}
		}
		s.log().Info("mailcow started", "containers", len(cs), "started_in", started.Round(time.Millisecond),
			"healthy_in", time.Since(begin).Round(time.Millisecond), "critical_started_at", strings.Join(crit, " "))
	}
	return nil
}

// WaitHealthy polls the critical services until all are up or d passes; it returns the last failure. A Docker
// Engine that does not answer (busy starting the containers, or restarting) is a failure like a service that is
// down, not the end of the wait: only ctx ends it early. No call outlives d, and the polls back off from 100 ms to
// a second, so that a long wait does not keep a busy dockerd listing containers ten times a second.
func (s *Stack) WaitHealthy(ctx context.Context, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	pause := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithDeadline(ctx, deadline)
		failed, err := s.Failed(cctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			failed = err.Error()
		}
		if failed == "" || !time.Now().Before(deadline) {
			return failed, nil
		}
		select {
		case <-ctx.Done():
			return failed, ctx.Err()
		case <-time.After(min(pause, time.Until(deadline))):
		}
		pause = min(2*pause, time.Second)
	}
}

// writeConfigs renders mailcow.conf (with RenderConf) and the override, and writes each, atomically, when its
// content changed.
func (s *Stack) writeConfigs(ctx context.Context) error {
	s.composeFile = nil
	if b, err := os.ReadFile(filepath.Join(s.Dir, ComposeFile)); err == nil {
		s.composeFile = b
	}
	if s.RenderConf != nil {
		b, err := s.RenderConf(ctx)
		if err != nil {
			return fmt.Errorf("stack: %w", err)
		}
		if err := WriteConf(s.Dir, b, s.log()); err != nil {
			return err
		}
		s.Conf = b
	}
	if s.RenderOverride == nil {
		return nil
	}
	b, err := s.RenderOverride(ctx)
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	s.Override = b
	if old, err := os.ReadFile(s.OverridePath); err == nil && string(old) == string(b) {
		return nil
	}
	tmp := s.OverridePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("stack: writing %s: %w", OverrideFile, err)
	}
	if err := os.Rename(tmp, s.OverridePath); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	s.log().Info("wrote "+OverrideFile, "path", s.OverridePath)
	return nil
}

// needCreate says why Create must run: a service without a container, or an override changed since it last ran.
func (s *Stack) needCreate(cs map[string]Container) string {
	for _, svc := range s.Critical {
		if _, ok := cs[svc]; !ok {
			return svc + " has no container"
		}
	}
	if s.StateFile != "" && s.Override != nil {
		if b, err := os.ReadFile(s.StateFile); err != nil || strings.TrimSpace(string(b)) != s.configHash() {
			return OverrideFile + " or mailcow.conf changed since the containers were created"
		}
	}
	return ""
}

func (s *Stack) create(ctx context.Context, why string) error {
	if len(s.Create) == 0 {
		return fmt.Errorf("stack: %s, and mailcow.create_command is empty", why)
	}
	s.log().Info("creating mailcow's containers", "why", why, "command", strings.Join(s.Create, " "))
	cmd := child.Command(ctx, s.Create[0], s.Create[1:]...)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("stack: %q in %s: %w: %s", strings.Join(s.Create, " "), s.Dir, err, tail.Bytes(string(out), 800))
	}
	if s.StateFile != "" && s.Override != nil {
		if err := os.MkdirAll(filepath.Dir(s.StateFile), 0o755); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
		if err := os.WriteFile(s.StateFile, []byte(s.configHash()+"\n"), 0o644); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	return nil
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// deps returns the dependency graph of the discovered containers: compose's label where present, else the table.
func (s *Stack) deps(cs map[string]Container) map[string][]string {
	table := map[string][]string{}
	for _, svc := range Services {
		table[svc.Name] = svc.DependsOn
	}
	out := map[string][]string{}
	for name, c := range cs {
		if c.DependsOn != nil {
			out[name] = c.DependsOn
		} else {
			out[name] = table[name]
		}
	}
	return out
}

func (s *Stack) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Policies returns each container's restart policy (for tests and status).
func (s *Stack) Policies(ctx context.Context, inspect func(ctx context.Context, id string) (container.InspectResponse, error)) (map[string]string, error) {
	cs, err := s.Discover(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	names := make([]string, 0, len(cs))
	for n := range cs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ci, err := inspect(ctx, cs[n].ID)
		if err != nil {
			return nil, fmt.Errorf("docker: inspecting %s: %w", cs[n].Name, err)
		}
		out[n] = string(ci.HostConfig.RestartPolicy.Name)
	}
	return out, nil
}
