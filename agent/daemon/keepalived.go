package daemon

// Keepalived as the agent's child: its configuration, its notify fifo and its supervision.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/keepalived"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

func (a *Agent) startKeepalived(ctx context.Context, wg *sync.WaitGroup) (*keepalived.Process, error) {
	c := a.c
	if _, err := a.writeKeepalivedConfig(c); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(c.Keepalived.NotifyFIFO), 0o755); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := keepalived.MakeFIFO(c.Keepalived.NotifyFIFO); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	// The link VRRPv3's placeholder addresses live on (see keepalived.Placeholders); made with VRRPv2 too, so that a
	// switch to VRRPv3 by config apply (a reload) finds it.
	kind, err := keepalived.EnsureLink(nil, keepalived.PlaceholderLink)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.log.Debug("keepalived placeholder link", "link", keepalived.PlaceholderLink, "kind", kind)
	events := make(chan keepalived.Event, 16)
	wg.Add(2)
	go func() {
		defer wg.Done()
		keepalived.ReadFIFO(ctx, c.Keepalived.NotifyFIFO, c.Keepalived.Instance, events, func(err error) {
			a.log.Warn("keepalived notify fifo", "err", err)
		})
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-events:
				a.log.Info("keepalived transition", "vrrp_state", e.State, "priority", e.Priority)
				switch st := failover.VRRPState(e.State); st {
				case failover.VRRPMaster, failover.VRRPBackup, failover.VRRPFault, failover.VRRPStop:
					a.observe(failover.VRRP{State: st})
				}
			}
		}
	}()
	p := &keepalived.Process{Bin: a.o.KeepalivedBin, Config: c.Keepalived.ConfigFile,
		RunDir: filepath.Join(c.Failover.StateDir, "keepalived"), Output: newLogWriter(a.log, "keepalived")}
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	// keepalived is supervised: when it dies, this node is out of the election (FAULT) until it runs again.
	a.keepUp(ctx, wg, "keepalived", p.Start, p.Done, func() {
		a.alert(event.KeepalivedExited, report.SeverityWarning, "", 0, "keepalived exited; restarting it in 2s", nil)
		a.observe(failover.VRRP{State: failover.VRRPFault})
	}, 2*time.Second)
	return p, nil
}

// keepUp keeps a child up that start has already started once: after it ends (done closed), ended is told and
// start runs again after restart; a failed start is logged and tried again 2 s later. It ends with ctx.
func (a *Agent) keepUp(ctx context.Context, wg *sync.WaitGroup, name string, start func() error, done func() <-chan struct{}, ended func(), restart time.Duration) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		started := true // the first start was the caller's
		child.Keeper{
			Up: func(context.Context) (<-chan struct{}, error) {
				if !started {
					if err := start(); err != nil {
						return nil, err
					}
				}
				started = false
				return done(), nil
			},
			Ended: ended,
			Failed: func(err error) bool {
				a.log.Error(name+" restart", "err", err)
				return true
			},
			RestartDelay: restart, RetryDelay: 2 * time.Second,
		}.Run(ctx)
	}()
}

// writeKeepalivedConfig renders keepalived.conf from c and writes it; changed reports a new file.
func (a *Agent) writeKeepalivedConfig(c config.Config) (changed bool, err error) {
	self, _ := c.Self()
	var peerIPs []string
	for _, m := range c.Cluster.Nodes {
		if m.Name != self.Name {
			peerIPs = append(peerIPs, m.PrivateIP)
		}
	}
	spec := keepalived.Spec{
		RouterName: self.Name, Instance: c.Keepalived.Instance, Interface: a.privIf, Version: c.Keepalived.VRRPVersion,
		VirtualRouter: c.Keepalived.RouterID, Priority: self.Priority, AdvertInterval: c.Keepalived.Advert(),
		Preempt: c.Keepalived.Preempt, PreemptDelay: c.Keepalived.PreemptDelay.D(), SourceIP: self.PrivateIP,
		Peers: peerIPs, TrackFile: trackFile(c), NotifyFIFO: c.Keepalived.NotifyFIFO,
	}
	if spec.Version == 3 {
		spec.Placeholders, spec.PlaceholderLink = keepalived.Placeholders(a.keys.Signing(), c.Cluster.Name), keepalived.PlaceholderLink
	} else {
		spec.AuthPass = keepalived.AuthPass(a.keys.Signing(), c.Cluster.Name)
	}
	conf, err := keepalived.Render(spec)
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	changed, err = keepalived.WriteConfig(c.Keepalived.ConfigFile, conf)
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	return changed, nil
}

// trackFile is keepalived's track_file, which the check watcher keeps: beside the notify fifo, named after it
// (/run/mailcow-ha/keepalived.health by default).
func trackFile(c config.Config) string {
	fifo := c.Keepalived.NotifyFIFO
	return strings.TrimSuffix(fifo, filepath.Ext(fifo)) + ".health"
}

// watchCommand is the check watcher's command line for c: the small mailcow-ha-check beside this binary (or this
// binary's check) with --watch, and keepalived.check_timeout and check_fall as its timeout and fall.
func (a *Agent) watchCommand(c config.Config) ([]string, error) {
	cmd := slices.Clone(a.o.CheckCommand)
	if len(cmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		cmd = []string{exe, "check"}
		if small := filepath.Join(filepath.Dir(exe), "mailcow-ha-check"); isExecutable(small) {
			cmd = []string{small}
		}
	}
	return append(cmd, "--socket", c.API.Socket, "--watch", trackFile(c), "--interval", "1s",
		"--timeout", c.Keepalived.CheckTimeout.D().String(), "--fall", strconv.Itoa(c.Keepalived.CheckFall), "--rise", "2"), nil
}

// startWatcher starts the check watcher (mailcow-ha-check --watch): a process of its own that asks this agent's
// socket for the verdict every second and writes keepalived's track file, so that no process is forked per check
// and a hung agent still ends in FAULT. It is kept up like keepalived; while it is down (a second at most),
// keepalived keeps the verdict it last wrote. A reload that changes its command line restarts it.
func (a *Agent) startWatcher(ctx context.Context, wg *sync.WaitGroup) (*child.Child, error) {
	if err := os.MkdirAll(filepath.Dir(trackFile(a.c)), 0o755); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	w := &child.Child{}
	out := newLogWriter(a.log, "check")
	start := func() error {
		a.mu.Lock()
		cur := a.c
		a.mu.Unlock()
		cmd, err := a.watchCommand(cur)
		if err != nil {
			return err
		}
		if err := w.Start(cmd, out); err != nil {
			return err
		}
		a.mu.Lock()
		a.watchCmd = cmd
		a.mu.Unlock()
		return nil
	}
	if err := start(); err != nil {
		return nil, fmt.Errorf("agent: check watcher: %w", err)
	}
	a.keepUp(ctx, wg, "check watcher", start, w.Done, func() {
		a.log.Warn("the check watcher exited; restarting it in 1s (keepalived keeps the verdict it last read)")
	}, time.Second)
	return w, nil
}

// restartWatcher ends the watcher when c gives it another command line; its keeper starts it with the new one.
func (a *Agent) restartWatcher(c config.Config) {
	cmd, err := a.watchCommand(c)
	a.mu.Lock()
	same := slices.Equal(cmd, a.watchCmd)
	a.mu.Unlock()
	if err != nil || same || a.watcher == nil {
		return
	}
	a.log.Info("reload: restarting the check watcher with the new check_timeout or check_fall")
	a.watcher.Stop(5 * time.Second)
}
