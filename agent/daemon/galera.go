package daemon

// The local Galera member (or garbd arbitrator) as the agent runs it, and its answer to peers.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// startGalera renders my.cnf, prepares the datadir and keeps the local member up: galera.Manager decides how to
// start it (with the peers' reports), and when mariadbd dies the manager runs again.
func (a *Agent) startGalera(ctx context.Context, self config.Member, wg *sync.WaitGroup) (galera.Control, error) {
	c := a.c
	tls, err := galeraTLS(c, self, a.keys)
	if err != nil {
		return nil, err
	}
	if c.Galera.DataVolume {
		api, ok := a.o.Cloud.(volumeLister)
		if !ok {
			return nil, errors.New("agent: galera.data_volume: the cloud adapter cannot list a server's Volumes")
		}
		if _, err := mountGaleraVolume(ctx, c, self, api, 2*time.Minute, a.log); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	var peers []string
	for _, m := range c.Cluster.Nodes {
		if m.Name != self.Name && !m.IsArbitrator() {
			peers = append(peers, m.Name)
		}
	}
	// Under mariadb.service mariadbd logs to the journal (journalctl -u mariadb, persistent on the image) beside the
	// agent's own story; as the agent's child it keeps a file in its datadir.
	errorLog := filepath.Join(c.Galera.DataDir, "mariadb-error.log")
	if a.o.GaleraMode == GaleraSystemd {
		errorLog = ""
	}
	a.galeraSpec = galera.Spec{ClusterName: c.Cluster.Name, NodeName: self.Name, NodeIP: self.PrivateIP,
		DataDir: c.Galera.DataDir, Socket: c.Galera.Socket,
		PidFile:   filepath.Join(filepath.Dir(c.Galera.Socket), "mysqld.pid"),
		ErrorLog:  errorLog,
		GroupPort: c.Galera.GroupPort, ISTPort: c.Galera.ISTPort, SSTPort: c.Galera.SSTPort, SSTMethod: c.Galera.SSTMethod,
		TLS: tls}
	if err := a.writeGaleraConfig(c); err != nil {
		return nil, err
	}
	var srv galera.Control
	if a.o.GaleraMode == GaleraSystemd {
		// mariadb.service reads the drop-in through /etc/mysql/my.cnf; the appliance image prepares the datadir.
		sd := &galera.Systemd{DataDir: c.Galera.DataDir, Units: a.systemd}
		if c.Galera.DataVolume {
			// The image prepared /var/lib/mysql; a datadir on the node's Volume is made here, once.
			if err := (&galera.Server{DataDir: c.Galera.DataDir}).InitDataDir(ctx, "mysql"); err != nil {
				return nil, fmt.Errorf("agent: %w", err)
			}
		}
		if was, err := sd.ClearBootstrapFlag(); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		} else if was {
			a.log.Warn("galera: removed a bootstrap flag that an earlier run left behind; no start bootstraps by accident")
		}
		srv = sd
	} else {
		child := &galera.Server{DefaultsFile: c.Galera.ConfigFile, DataDir: c.Galera.DataDir, Output: newLogWriter(a.log, "mariadbd")}
		if err := child.InitDataDir(ctx, "mysql"); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		srv = child
	}
	owner := config.SecretFiles{Owner: a.o.SecretOwner}
	a.mgr = &galera.Manager{
		Name: self.Name, Bootstrap: self.Bootstrap, Peers: peers, Server: srv, Socket: c.Galera.Socket, Log: a.log,
		Ask: func(ctx context.Context, peer string) (galera.Report, error) {
			p, ok := a.peerNamed(peer)
			if !ok {
				return galera.Report{}, fmt.Errorf("%s is no longer a member", peer)
			}
			return a.client.GaleraReport(ctx, p)
		},
		Alert:    func(name event.Name, detail string) { a.alert(name, report.SeverityCritical, "", 0, detail, nil) },
		Progress: func() { a.o.Notifier.ExtendTimeout(30 * time.Second) },
		Restore:  a.databaseRestore(),
		OnFirstBootstrap: func(ctx context.Context) error {
			pw, err := owner.ReadSecret(c.Galera.PasswordFile)
			if err != nil {
				return fmt.Errorf("galera.password_file: %w", err)
			}
			db, err := galera.Open(c.Galera.Socket)
			if err != nil {
				return err
			}
			defer db.Close()
			return galera.CreateMailcowDB(ctx, db, "mailcow", "mailcow", pw.Reveal())
		},
	}
	// The member is kept up: brought up again (by the manager, asking the peers) whenever mariadbd exits.
	wg.Add(1)
	go func() {
		defer wg.Done()
		degraded := false
		child.Keeper{
			Up: func(ctx context.Context) (<-chan struct{}, error) {
				if err := a.mgr.Run(ctx); err != nil {
					return nil, err
				}
				// While it runs, a member left out of a Primary component (a majority crashed) is made Primary
				// again when the recovery rules make it the winner.
				done := srv.Done()
				go a.mgr.Watch(ctx, done)
				return done, nil
			},
			Running: func() {
				if degraded {
					a.alert(event.GaleraRecovered, report.SeverityInfo, "", 0, "galera: mariadbd is back and Synced", nil)
					degraded = false
				} else {
					a.log.Info("galera: member Synced")
				}
			},
			Ended: func() {
				a.mgr.Down()
				degraded = true
				a.alert(event.GaleraDegraded, report.SeverityWarning, "", 0, "galera: mariadbd exited; bringing it up again", nil)
			},
			Failed: func(err error) bool {
				a.log.Error("galera: could not bring the member up; trying again in 5s", "err", err)
				return true
			},
			RetryDelay: 5 * time.Second,
		}.Run(ctx)
	}()
	return srv, nil
}

// writeGaleraConfig renders my.cnf (the drop-in of mariadb.service) with the members of c: at the start, and when
// the members change while the agent runs, for mariadbd's next start (a running member needs no address to stay).
func (a *Agent) writeGaleraConfig(c config.Config) error {
	spec := a.galeraSpec
	spec.Members = nil
	for _, m := range c.Cluster.Nodes {
		spec.Members = append(spec.Members, m.PrivateIP)
	}
	conf, err := galera.Render(spec)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.Galera.ConfigFile), 0o755); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := os.WriteFile(c.Galera.ConfigFile, conf, 0o644); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// galeraTLS writes this node's Galera TLS files under failover.state_dir, readable by mysql: the CAs of the
// cluster secrets it accepts (each derived from its secret) and a certificate of its own, signed by the CA of the
// secret it signs with; nil when galera.tls is off.
func galeraTLS(c config.Config, self config.Member, keys *api.Keyring) (*galera.TLSFiles, error) {
	if !c.Galera.TLS {
		return nil, nil
	}
	uid, gid, err := galera.Owner("mysql")
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	f, err := galera.WriteTLS(filepath.Join(c.Failover.StateDir, "galera-tls"), keys.Signing(), keys.Accepted()[1:], c.Cluster.Name, self.Name, self.PrivateIP, uid, gid)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return &f, nil
}

// GaleraReport implements the peer API's Galera question.
func (a *Agent) GaleraReport(ctx context.Context) galera.Report {
	if a.mgr == nil {
		return galera.Report{Node: a.c.Node.Name}
	}
	return a.mgr.Report(ctx)
}
