package daemon

// Keepalived as the agent's child: its configuration, its notify fifo and its supervision.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		started := true // the first start was the one above
		child.Keeper{
			Up: func(context.Context) (<-chan struct{}, error) {
				if !started {
					if err := p.Start(); err != nil {
						return nil, err
					}
				}
				started = false
				return p.Done(), nil
			},
			Ended: func() {
				a.alert(event.KeepalivedExited, report.SeverityWarning, "", 0, "keepalived exited; restarting it in 2s", nil)
				a.observe(failover.VRRP{State: failover.VRRPFault})
			},
			Failed: func(err error) bool {
				a.log.Error("keepalived restart", "err", err)
				return true
			},
			RestartDelay: 2 * time.Second, RetryDelay: 2 * time.Second,
		}.Run(ctx)
	}()
	return p, nil
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
	checkCmd := a.o.CheckCommand
	if len(checkCmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return false, fmt.Errorf("agent: %w", err)
		}
		// The small mailcow-ha-check beside this binary starts in a few milliseconds; else this binary's check.
		checkCmd = []string{exe, "check", "--socket", c.API.Socket}
		if small := filepath.Join(filepath.Dir(exe), "mailcow-ha-check"); isExecutable(small) {
			checkCmd = []string{small, "--socket", c.API.Socket}
		}
	}
	conf, err := keepalived.Render(keepalived.Spec{
		RouterName: self.Name, Instance: c.Keepalived.Instance, Interface: a.privIf,
		VirtualRouter: c.Keepalived.RouterID, Priority: self.Priority, AdvertInterval: c.Keepalived.AdvertInterval.D(),
		Preempt: c.Keepalived.Preempt, PreemptDelay: c.Keepalived.PreemptDelay.D(), SourceIP: self.PrivateIP,
		Peers: peerIPs, CheckCommand: checkCmd, NotifyFIFO: c.Keepalived.NotifyFIFO,
		CheckTimeout: c.Keepalived.CheckTimeout.D(), Fall: c.Keepalived.CheckFall,
	})
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	changed, err = keepalived.WriteConfig(c.Keepalived.ConfigFile, conf)
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	return changed, nil
}
