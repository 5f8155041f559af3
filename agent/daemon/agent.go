package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/agent/keepalived"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
	"github.com/mailcow-ha/mailcow-ha/agent/vip"
)

// Options are what Run needs besides the configuration. Galera, Stack and Storage default to the production
// ones (Galera needs GaleraChild or GaleraSystemd); tests hand in doubles.
type Options struct {
	Config        config.Config
	Log           *slog.Logger
	Notifier      report.Notifier
	SecretOwner   int      // uid that must own the secret files; root on a node
	CheckCommand  []string // keepalived's vrrp_script; default: this binary's "check --socket <api.socket>"
	KeepalivedBin string
	Galera        Galera
	Stack         Stack
	Storage       Storage
	Cloud         Cloud // default: the hcloud adapter from the configuration
	Tick          time.Duration
	// Reload asks to re-read the configuration (SIGHUP): LoadConfig reads it; an invalid one is refused and the
	// running one kept. Changed failover settings apply at once; a changed keepalived configuration is
	// written and keepalived reloaded (SIGHUP). The node's identity and the cluster's membership need a restart.
	Reload     <-chan struct{}
	LoadConfig func() (config.Config, error)
	// GaleraChild runs mariadbd as the agent's child (the lab and the tests); GaleraSystemd controls Debian's
	// mariadb.service (an appliance node). Either way the agent renders my.cnf, brings the member up with
	// galera.Manager (asking the peers over the peer API), brings it up again when it dies, and asks it for the
	// quorum rule.
	GaleraChild   bool
	GaleraSystemd bool
}

// Agent is a running node agent.
type Agent struct {
	o       Options
	c       config.Config
	ka      *keepalived.Process
	mgr     *galera.Manager
	privIf  string
	p       failover.Params
	log     *slog.Logger
	obs     chan failover.Observation
	exec    *Executor
	peers   map[int64]string // server id -> peer API base URL
	client  *api.PeerClient
	alerts  *report.Alerter
	hist    *history
	metrics *report.Metrics

	mu       sync.Mutex
	s        failover.State
	waiters  map[int64][]chan struct{}
	ready    bool
	lastRole failover.Role
	services map[string]bool   // each critical service's health, from the last check
	seen     failover.Observed // the reconcile loop's last look
	loopAt   time.Time         // when the loop last ran its tick
}

// Run runs the agent until ctx ends, then demotes gracefully and returns.
func Run(ctx context.Context, o Options) error {
	c := o.Config
	log := o.Log
	if o.GaleraChild || o.GaleraSystemd {
		o.Galera = galera.Prober{Socket: c.Galera.Socket}
	}
	if err := config.MaterializeSecrets(&c, log); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	owner := config.SecretFiles{Owner: o.SecretOwner}
	secret, err := owner.ReadSecret(c.Cluster.SecretFile)
	if err != nil {
		return fmt.Errorf("agent: cluster.secret_file: %w", err)
	}
	self, ok := c.Self()
	if !ok {
		return fmt.Errorf("agent: node %q is not in cluster.nodes", c.Node.Name)
	}
	alerts, err := newAlerter(c, owner, log)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// The last events (demoted, stopped) get a few seconds to go out.
	defer alerts.Close(5 * time.Second)
	if self.IsArbitrator() {
		return runArbitrator(ctx, c, self, o, alerts)
	}
	if o.Galera == nil {
		return errors.New("agent: no Galera: run with --galera systemd (a node) or --galera child (the lab)")
	}
	if o.Storage == nil {
		o.Storage = newVolume(c, log)
	}
	if o.Cloud == nil {
		token, err := owner.ReadSecret(c.Hcloud.TokenFile)
		if err != nil {
			return fmt.Errorf("agent: hcloud.token_file: %w", err)
		}
		cl, err := hcloud.New(hcloud.Options{Endpoint: c.Hcloud.Endpoint, Token: token.Reveal(), Logger: log})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		o.Cloud = cl
	}
	privIf, pubIf, err := interfaces(c, self.PrivateIP)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a := &Agent{
		o: o, c: c, log: log, obs: make(chan failover.Observation, 64),
		peers:   map[int64]string{},
		client:  &api.PeerClient{Secret: []byte(secret.Reveal()), Node: c.Node.Name, HTTP: &http.Client{}},
		waiters: map[int64][]chan struct{}{},
		s:       failover.Initial(),
		alerts:  alerts,
		loopAt:  time.Now(),
	}
	a.metrics = report.NewMetrics(a.snapshot)
	a.hist = &history{metrics: a.metrics}
	a.p = failover.Params{
		Self: self.ServerID, Name: self.Name, Peers: map[int64]string{},
		CheckGrace: c.Failover.CheckGrace.D(), QuorumGrace: c.Failover.QuorumGrace.D(),
		FenceTimeout: c.Failover.FenceTimeout.D(), BreakerMax: c.Failover.Breaker.Max,
		BreakerWindow: c.Failover.Breaker.Window.D(), Sequential: c.Failover.Sequential,
	}
	nodes := map[string]bool{}
	var peerIPs []string
	for _, m := range c.Cluster.Nodes {
		nodes[m.Name] = true
		if m.Name == self.Name {
			continue
		}
		peerIPs = append(peerIPs, m.PrivateIP)
		if !m.IsArbitrator() {
			a.p.Peers[m.ServerID] = m.Name
			a.peers[m.ServerID] = "http://" + net.JoinHostPort(m.PrivateIP, strconv.Itoa(c.API.PeerPort))
		}
	}
	a.s.Takeovers = a.loadBreaker()
	a.exec = &Executor{
		Cloud: o.Cloud, Address: &vip.VIP{Link: pubIf}, Storage: o.Storage, Stack: o.Stack, Peers: a,
		Log: log, Self: self.ServerID, FloatingID: c.Hcloud.FloatingIPID, VolumeID: c.Hcloud.VolumeID,
		AddressCache: filepath.Join(c.Failover.StateDir, "floating-ip"),
		FenceTimeout: c.Failover.FenceTimeout.D(), Confirm: a.confirm, Report: a.report, Observe: a.observe,
		Extend:       func(d time.Duration) { o.Notifier.ExtendTimeout(d) },
		StartTimeout: c.Mailcow.StartTimeout.D(),
	}
	if o.Stack == nil {
		st, err := newStack(c, log, mountedGuard(o.Storage), a.exec.address)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		a.o.Stack, a.exec.Stack = st, st
	}
	if units := c.Mailcow.WithUnits; len(units) > 0 {
		us := unitStack{Stack: a.o.Stack, Units: units, Log: log.With("component", "units"),
			Alert: func(event, msg string) { a.alert(event, report.SeverityWarning, "", 0, msg, nil) }}
		a.o.Stack, a.exec.Stack = us, us
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The check socket and the peer API.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := check.Serve(ctx, c.API.Socket, a.verdict, a.command, log); err != nil {
			log.Error("check socket", "err", err)
		}
	}()
	peerAddr := net.JoinHostPort(self.PrivateIP, strconv.Itoa(c.API.PeerPort))
	ln, err := net.Listen("tcp", peerAddr)
	if err != nil {
		return fmt.Errorf("agent: peer API: %w", err)
	}
	srv := &http.Server{Handler: api.PeerHandler(&api.Verifier{Secret: []byte(secret.Reveal()), Nodes: nodes}, a, log),
		ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	defer srv.Close()
	if err := a.servePublic(ctx, self, &wg); err != nil {
		return err
	}

	// keepalived, rendered from the configuration, with this agent as the only reader of its fifo.
	a.privIf = privIf
	if o.GaleraChild || o.GaleraSystemd {
		srv, err := a.startGalera(ctx, self, &wg)
		if err != nil {
			return err
		}
		defer srv.Stop(2 * time.Minute)
	}
	ka, err := a.startKeepalived(ctx, &wg)
	if err != nil {
		return err
	}
	a.ka = ka
	defer ka.Stop(context.Background(), 10*time.Second)

	log.Info("agent started", "node", self.Name, "server_id", self.ServerID, "private_interface", privIf,
		"public_interface", pubIf, "peer_api", peerAddr)
	return a.loop(ctx)
}

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
				if e.State == failover.VRRPMaster || e.State == failover.VRRPBackup || e.State == failover.VRRPFault || e.State == failover.VRRPStop {
					a.observe(failover.VRRP{State: e.State})
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
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.Done():
			}
			if ctx.Err() != nil {
				return
			}
			a.alert("keepalived_exited", report.SeverityWarning, "", 0, "keepalived exited; restarting it in 2s", nil)
			a.observe(failover.VRRP{State: failover.VRRPFault})
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			if err := p.Start(); err != nil {
				a.log.Error("keepalived restart", "err", err)
			}
		}
	}()
	return p, nil
}

// startGalera renders my.cnf, prepares the datadir and keeps the local member up: galera.Manager decides how to
// start it (with the peers' reports), and when mariadbd dies the manager runs again.
func (a *Agent) startGalera(ctx context.Context, self config.Member, wg *sync.WaitGroup) (galera.Control, error) {
	c := a.c
	var members []string
	var peers []string
	bases := map[string]string{}
	for _, m := range c.Cluster.Nodes {
		members = append(members, m.PrivateIP)
		if m.Name != self.Name && !m.IsArbitrator() {
			peers = append(peers, m.Name)
			bases[m.Name] = "http://" + net.JoinHostPort(m.PrivateIP, strconv.Itoa(c.API.PeerPort))
		}
	}
	// Under mariadb.service mariadbd logs to the journal (journalctl -u mariadb, persistent on the image) beside the
	// agent's own story; as the agent's child it keeps a file in its datadir.
	errorLog := filepath.Join(c.Galera.DataDir, "mariadb-error.log")
	if a.o.GaleraSystemd {
		errorLog = ""
	}
	conf, err := galera.Render(galera.Spec{ClusterName: c.Cluster.Name, NodeName: self.Name, NodeIP: self.PrivateIP,
		Members: members, DataDir: c.Galera.DataDir, Socket: c.Galera.Socket,
		PidFile:   filepath.Join(filepath.Dir(c.Galera.Socket), "mysqld.pid"),
		ErrorLog:  errorLog,
		GroupPort: c.Galera.GroupPort, ISTPort: c.Galera.ISTPort, SSTPort: c.Galera.SSTPort, SSTMethod: c.Galera.SSTMethod})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.Galera.ConfigFile), 0o755); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := os.WriteFile(c.Galera.ConfigFile, conf, 0o644); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var srv galera.Control
	if a.o.GaleraSystemd {
		// mariadb.service reads the drop-in through /etc/mysql/my.cnf; the appliance image prepares the datadir.
		srv = &galera.Systemd{DataDir: c.Galera.DataDir}
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
			return a.client.GaleraReport(ctx, bases[peer])
		},
		Alert:    func(event, detail string) { a.alert(event, report.SeverityCritical, "", 0, detail, nil) },
		Progress: func() { a.o.Notifier.ExtendTimeout(30 * time.Second) },
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		degraded := false
		for ctx.Err() == nil {
			if err := a.mgr.Run(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.log.Error("galera: could not bring the member up; trying again in 5s", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Second):
				}
				continue
			}
			if degraded {
				a.alert("galera_recovered", report.SeverityInfo, "", 0, "galera: mariadbd is back and Synced", nil)
				degraded = false
			} else {
				a.log.Info("galera: member Synced")
			}
			select {
			case <-ctx.Done():
				return
			case <-srv.Done():
				a.mgr.Down()
				degraded = true
				a.alert("galera_degraded", report.SeverityWarning, "", 0, "galera: mariadbd exited; bringing it up again", nil)
			}
		}
	}()
	return srv, nil
}

// runArbitrator is the whole agent of an arbitrator node: garbd, kept running, and nothing else. It never
// bootstraps and never becomes MASTER (it runs no keepalived).
func runArbitrator(ctx context.Context, c config.Config, self config.Member, o Options, alerts *report.Alerter) error {
	var members []string
	for _, m := range c.Cluster.Nodes {
		if !m.IsArbitrator() {
			members = append(members, m.PrivateIP)
		}
	}
	g := &galera.Arbitrator{ClusterName: c.Cluster.Name, NodeName: self.Name, NodeIP: self.PrivateIP,
		Members: members, GroupPort: c.Galera.GroupPort, Output: newLogWriter(o.Log, "garbd")}
	o.Notifier.Ready("arbitrator: garbd")
	for {
		if err := g.Start(); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		select {
		case <-ctx.Done():
			g.Stop(30 * time.Second)
			return nil
		case <-g.Done():
			o.Log.Error("garbd exited; restarting it in 5s", "event", "galera_degraded", "severity", "warning")
			alerts.Send(report.Event{Event: "galera_degraded", Severity: report.SeverityWarning, Message: "garbd exited; restarting it in 5s"})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// GaleraReport implements the peer API's Galera question.
func (a *Agent) GaleraReport(ctx context.Context) galera.Report {
	if a.mgr == nil {
		return galera.Report{Node: a.c.Node.Name}
	}
	return a.mgr.Report(ctx)
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

// reload re-reads the configuration (SIGHUP) and applies what can change while running.
func (a *Agent) reload() {
	if a.o.LoadConfig == nil {
		return
	}
	c, err := a.o.LoadConfig()
	if err != nil {
		a.alert("config_invalid", report.SeverityCritical, "", 0, "reload: configuration refused, keeping the running one: "+err.Error(), nil)
		return
	}
	self, _ := c.Self()
	if c.Node.Name != a.c.Node.Name || self.ServerID != a.p.Self || c.Cluster.Name != a.c.Cluster.Name ||
		len(c.Cluster.Nodes) != len(a.c.Cluster.Nodes) || !sameAPI(c.API, a.c.API) {
		a.log.Warn("reload: the node, the cluster's membership or the API settings changed: restart the agent to apply them")
	}
	a.mu.Lock()
	a.p.CheckGrace, a.p.QuorumGrace = c.Failover.CheckGrace.D(), c.Failover.QuorumGrace.D()
	a.p.FenceTimeout, a.p.BreakerMax, a.p.BreakerWindow = c.Failover.FenceTimeout.D(), c.Failover.Breaker.Max, c.Failover.Breaker.Window.D()
	a.p.Sequential = c.Failover.Sequential
	a.c.Failover, a.c.Keepalived = c.Failover, c.Keepalived
	for i := range a.c.Cluster.Nodes {
		if m, ok := c.Member(a.c.Cluster.Nodes[i].Name); ok {
			a.c.Cluster.Nodes[i].Priority = m.Priority
		}
	}
	cur := a.c
	a.mu.Unlock()
	a.exec.SetFenceTimeout(c.Failover.FenceTimeout.D())
	changed, err := a.writeKeepalivedConfig(cur)
	if err != nil {
		a.log.Error("reload: keepalived configuration", "err", err)
		return
	}
	if changed && a.ka != nil {
		if err := a.ka.Reload(); err != nil {
			a.log.Error("reload: keepalived", "err", err)
			return
		}
		a.alert("config_reloaded", report.SeverityInfo, "", 0, "reload: configuration applied; keepalived reloaded", nil)
		return
	}
	a.alert("config_reloaded", report.SeverityInfo, "", 0, "reload: configuration applied", nil)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func sameAPI(x, y config.API) bool {
	return slices.Equal(x.Listen, y.Listen) && x.PeerPort == y.PeerPort && x.Socket == y.Socket
}

func (a *Agent) observe(o failover.Observation) { a.obs <- o }

// loop is the reconcile loop: one observation at a time through the brain, the actions to the executor.
func (a *Agent) loop(ctx context.Context) error {
	tick := a.o.Tick
	if tick <= 0 {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	a.step(ctx, failover.Boot{})
	probe := func() {
		pctx, cancel := context.WithTimeout(ctx, tick)
		defer cancel()
		primary, synced, detail, err := a.o.Galera.Status(pctx)
		if err != nil {
			detail = err.Error()
		}
		a.step(ctx, failover.Galera{Primary: primary, Synced: synced, Detail: detail, Unknown: err != nil})
		if failed, err := a.stackFailed(pctx); err == nil {
			a.step(ctx, failover.Stack{Failed: failed})
		}
	}
	probe()
	// The reconcile loop: a look at the address and the mount every reconcile interval; the API (the Floating
	// IP's owner) only on the MASTER and only every apiEvery looks, to spare the rate limit.
	rec := time.NewTicker(a.c.Failover.ReconcileInterval.D())
	defer rec.Stop()
	const apiEvery = 6
	looks := 0
	looking := false
	lookDone := make(chan struct{}, 1)
	var lookStarted, lastSelfWarn time.Time
	stopping := false
	var stopDeadline <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if !stopping {
				stopping = true
				a.o.Notifier.Stopping("demoting")
				stopDeadline = time.After(2 * time.Minute)
				// Steps that the executor still runs keep their own context; the demotion runs on.
				ctx = context.WithoutCancel(ctx)
				a.step(ctx, failover.Stop{})
			}
		case o := <-a.obs:
			a.step(ctx, o)
		case <-t.C:
			a.mu.Lock()
			a.loopAt = time.Now()
			a.mu.Unlock()
			probe()
			a.step(ctx, failover.Tick{})
			// WATCHDOG=1 only when the loop's self-check passes: observations are not piling up and the last look
			// at the world came back. Otherwise systemd restarts the agent after WatchdogSec.
			if why := a.selfCheck(looking, lookStarted); why == "" {
				a.o.Notifier.Watchdog()
			} else if time.Since(lastSelfWarn) > 10*time.Second {
				lastSelfWarn = time.Now()
				a.log.Warn("self-check failed: not petting the watchdog", "reason", why)
			}
		case <-rec.C:
			if looking || stopping {
				break
			}
			a.mu.Lock()
			tid, role := a.s.TID, a.s.Role
			a.mu.Unlock()
			looks++
			withAPI := role == failover.RoleMaster && looks%apiEvery == 0
			looking, lookStarted = true, time.Now()
			go func() {
				lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				o, err := a.exec.ObserveWorld(lctx, tid, withAPI)
				if err != nil {
					a.log.Warn("reconcile: look failed", "err", err)
				} else {
					a.observe(o)
				}
				lookDone <- struct{}{}
			}()
		case <-lookDone:
			looking = false
		case <-a.o.Reload:
			a.reload()
		case <-stopDeadline:
			return errors.New("agent: demotion did not finish within 2 minutes")
		}
		if stopping && a.role() == failover.RoleStopped {
			a.exec.Wait()
			return nil
		}
	}
}

// selfCheck is the reconcile loop's look at itself: "" when healthy, else why not.
func (a *Agent) selfCheck(looking bool, lookStarted time.Time) string {
	if n := len(a.obs); n >= cap(a.obs)-cap(a.obs)/4 {
		return fmt.Sprintf("%d observations waiting", n)
	}
	if looking && time.Since(lookStarted) > 2*time.Minute {
		return fmt.Sprintf("the reconcile look started %s ago has not come back", time.Since(lookStarted).Round(time.Second))
	}
	return ""
}

func (a *Agent) role() failover.Role {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.s.Role
}

func (a *Agent) step(ctx context.Context, o failover.Observation) {
	now := time.Now()
	a.mu.Lock()
	before := len(a.s.Takeovers)
	p := a.p
	prev := a.s.Role
	s, acts := failover.Step(p, a.s, o, now)
	a.s = s
	if seen, ok := o.(failover.Observed); ok && seen.TID == s.TID {
		a.seen = seen
	}
	role := s.Role
	changed := role != a.lastRole
	a.lastRole = role
	_, reset := o.(failover.BreakerReset)
	breakerChanged := len(s.Takeovers) != before || reset
	a.mu.Unlock()
	if breakerChanged {
		a.saveBreaker(s.Takeovers)
	}
	if d, ok := o.(failover.Done); ok {
		a.hist.done(d, now)
	}
	a.hist.role(s.TID, prev, role, now)
	for _, act := range acts {
		if act.Kind != failover.ActReport && act.Kind != failover.ActCancel && act.Kind != failover.ActConfirm {
			a.hist.act(act, now)
		}
	}
	a.exec.Apply(ctx, acts)
	// READY=1 once the agent works: the boot cleanup done and the Galera member Synced (not when it becomes
	// MASTER, which may never happen on this node).
	a.mu.Lock()
	ready := !a.ready && role != failover.RoleBooting && s.GaleraOK
	if ready {
		a.ready = true
	}
	a.mu.Unlock()
	if changed || ready {
		ok, why := failover.Verdict(p, s, now)
		status := fmt.Sprintf("%s; check %s: %s", role, map[bool]string{true: "ok", false: "failing"}[ok], why)
		if ready {
			a.o.Notifier.Ready(status)
		} else {
			a.o.Notifier.Status(status)
		}
		a.log.Info("role", "role", string(role), "transition_id", s.TID, "verdict", ok, "reason", why)
		if role == failover.RoleMaster && s.SwitchTo == p.Name {
			// The hand-over is done: end the hold everywhere, so that the others may take over again at once.
			go func() {
				a.observe(failover.Switchover{})
				a.broadcast(ctx, func(ctx context.Context, base string) error {
					return a.client.Switchover(ctx, base, "", time.Time{})
				})
			}()
		}
	}
}

// verdict is what the check socket answers: computed now from the current state.
func (a *Agent) verdict() (bool, string) {
	a.mu.Lock()
	s, p := a.s, a.p
	a.mu.Unlock()
	return failover.Verdict(p, s, time.Now())
}

func (a *Agent) report(act failover.Action) {
	a.mu.Lock()
	peer := a.p.Peers[act.Server]
	role := string(a.s.Role)
	a.mu.Unlock()
	a.alert(act.Event, act.Severity, peer, act.TID, act.Detail, map[string]string{"role": role})
}

// Demote implements the peer API's demote request: it waits until the brain confirmed the demotion.
func (a *Agent) Demote(ctx context.Context, from int64) error {
	ch := make(chan struct{})
	a.mu.Lock()
	a.waiters[from] = append(a.waiters[from], ch)
	a.mu.Unlock()
	a.observe(failover.DemoteRequest{From: from})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("demotion not finished: %w", ctx.Err())
	}
}

func (a *Agent) confirm(server int64) {
	a.mu.Lock()
	ws := a.waiters[server]
	delete(a.waiters, server)
	a.mu.Unlock()
	for _, ch := range ws {
		close(ch)
	}
}

// State implements the peer API's state question.
func (a *Agent) State() api.PeerState {
	a.mu.Lock()
	s, p := a.s, a.p
	a.mu.Unlock()
	now := time.Now()
	ok, why := failover.Verdict(p, s, now)
	n := failover.RecentTakeovers(p, s, now)
	return api.PeerState{Node: p.Name, Role: string(s.Role), VRRP: s.VRRP, GaleraOK: s.GaleraOK, Galera: s.GaleraDetail,
		Verdict: ok, Reason: why, StackFailed: s.StackFailed, Breaker: s.Breaker, Maintenance: s.Maintenance, Takeovers: n}
}

// Switchover implements the peer API's switchover.
func (a *Agent) Switchover(to string, until time.Time) {
	a.observe(failover.Switchover{To: to, Until: until})
}

// Maintenance implements the peer API's maintenance switch.
func (a *Agent) Maintenance(on bool) { a.observe(failover.Maintenance{On: on}) }

// AskDemote (Peers) asks a peer's agent to demote and waits for its confirmation.
func (a *Agent) AskDemote(ctx context.Context, server int64) error {
	base, ok := a.peers[server]
	if !ok {
		return fmt.Errorf("server %d is not a member of this cluster", server)
	}
	return a.client.Demote(ctx, base, a.p.Self)
}

// command answers the local commands on the check socket: maintenance on|off, switchover [NODE], status,
// breaker reset.
func (a *Agent) command(ctx context.Context, verb string, args []string) string {
	switch verb {
	case "maintenance":
		if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
			return "error usage: maintenance on|off"
		}
		on := args[0] == "on"
		a.Maintenance(on)
		errs := a.broadcast(ctx, func(ctx context.Context, base string) error { return a.client.Maintenance(ctx, base, on) })
		return "ok maintenance " + args[0] + errs
	case "switchover":
		to := ""
		if len(args) > 0 {
			to = args[0]
		}
		target, err := a.switchoverTarget(ctx, to)
		if err != nil {
			return "error " + err.Error()
		}
		a.mu.Lock() // reload() writes the failover parameters under the lock
		hold := a.p.FenceTimeout + a.p.QuorumGrace + 30*time.Second
		a.mu.Unlock()
		until := time.Now().Add(hold)
		a.Switchover(target, until)
		errs := a.broadcast(ctx, func(ctx context.Context, base string) error { return a.client.Switchover(ctx, base, target, until) })
		return "ok switchover to " + target + " until " + until.UTC().Format(time.RFC3339) + errs
	case "status":
		b, _ := json.Marshal(a.State())
		return "ok " + string(b)
	case "breaker":
		if len(args) != 1 || args[0] != "reset" {
			return "error usage: breaker reset"
		}
		// This node only: the breaker is each node's own history.
		a.observe(failover.BreakerReset{})
		return "ok breaker reset on " + a.p.Name
	}
	return "error unknown command " + strconv.Quote(verb)
}

// switchoverTarget is the named node, or the eligible peer with the highest priority.
func (a *Agent) switchoverTarget(ctx context.Context, to string) (string, error) {
	a.mu.Lock()
	members := slices.Clone(a.c.Cluster.Nodes)
	a.mu.Unlock()
	if to != "" {
		i := slices.IndexFunc(members, func(m config.Member) bool { return m.Name == to })
		if i < 0 || members[i].IsArbitrator() {
			return "", fmt.Errorf("%s is not a member that can serve", to)
		}
		return to, nil
	}
	slices.SortFunc(members, func(x, y config.Member) int { return y.Priority - x.Priority })
	for _, m := range members {
		if m.Name == a.p.Name || m.IsArbitrator() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := a.client.State(qctx, a.peers[m.ServerID])
		cancel()
		if err == nil && st.Verdict {
			return m.Name, nil
		}
	}
	return "", errors.New("no healthy peer to hand over to")
}

func (a *Agent) broadcast(ctx context.Context, f func(ctx context.Context, base string) error) string {
	var failed []string
	for id, base := range a.peers {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := f(cctx, base); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", a.p.Peers[id], err))
		}
		cancel()
	}
	if len(failed) == 0 {
		return ""
	}
	return fmt.Sprintf(" (not reached: %v)", failed)
}

// loadBreaker reads the persisted takeover history.
func (a *Agent) loadBreaker() []time.Time {
	b, err := os.ReadFile(filepath.Join(a.c.Failover.StateDir, "breaker.json"))
	if err != nil {
		return nil
	}
	var ts []time.Time
	if err := json.Unmarshal(b, &ts); err != nil {
		a.log.Warn("breaker history unreadable; starting empty", "err", err)
		return nil
	}
	return ts
}

func (a *Agent) saveBreaker(ts []time.Time) {
	dir := a.c.Failover.StateDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		a.log.Error("breaker history", "err", err)
		return
	}
	b, _ := json.Marshal(ts)
	tmp := filepath.Join(dir, ".breaker.json.tmp")
	err := os.WriteFile(tmp, b, 0o644)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "breaker.json"))
	}
	if err != nil {
		// The history in memory still counts; only a restart would forget it.
		a.log.Error("breaker history not saved", "err", fmt.Errorf("breaker history: %w", err))
	}
}
