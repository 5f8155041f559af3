package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/firewall"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/keepalived"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
	"github.com/mailcow-ha/mailcow-ha/agent/unit"
	"github.com/mailcow-ha/mailcow-ha/agent/vip"
)

// GaleraMode is how the agent runs the local Galera member.
type GaleraMode string

// The ways to run the member. Either way the agent renders my.cnf, brings the member up with galera.Manager (asking
// the peers over the peer API), brings it up again when it dies, and asks it for the quorum rule.
const (
	GaleraNone    GaleraMode = ""        // the agent runs no member: Options.Galera answers the quorum question (tests)
	GaleraSystemd GaleraMode = "systemd" // Debian's mariadb.service (an appliance node)
	GaleraChild   GaleraMode = "child"   // mariadbd as the agent's child (the lab and the tests)
)

// Options are what Run needs besides the configuration. Stack and Storage default to the production ones; Galera
// is the member GaleraMode runs, or, with GaleraNone, a double that tests hand in.
type Options struct {
	Config        config.Config
	Log           *slog.Logger
	Notifier      report.Notifier
	SecretOwner   int      // uid that must own the secret files; root on a node
	CheckCommand  []string // the check watcher's command, without arguments; default: mailcow-ha-check beside this binary, else this binary's "check"
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
	// ReadBase reads the node's own configuration (user-data) without the cluster's layered on it: config apply
	// checks a new revision of the cluster's configuration on it.
	ReadBase   func(ctx context.Context) (config.Payload, error)
	GaleraMode GaleraMode
}

// Agent is a running node agent.
type Agent struct {
	// started is when this agent started (its /status states it: a rolling upgrade tells a rebuilt node's new agent
	// from the old one by it).
	started time.Time
	o       Options
	c       config.Config
	ka      *keepalived.Process
	watcher *child.Child // the check watcher that keeps keepalived's track file
	// verifier checks the peer API's requests; it counts the refused ones.
	verifier *api.Verifier
	// watchCmd is the running watcher's command line (under mu).
	watchCmd []string
	mgr      *galera.Manager
	// galeraSpec is my.cnf's spec but for the members (writeGaleraConfig).
	galeraSpec galera.Spec
	privIf     string
	// p and peers are read and replaced under mu; a membership change replaces the maps, never changes them.
	p      failover.Params
	log    *slog.Logger
	obs    chan failover.Observation
	exec   *Executor
	peers  map[int64]api.Peer // server id -> the peer as the peer API reaches it
	client *api.PeerClient
	// membersKick asks watchMembers for a read of the members now (kickMembers).
	membersKick chan struct{}
	// applyMu keeps a reload and a membership change from interleaving their writes of keepalived's and Galera's
	// configurations.
	applyMu sync.Mutex
	alerts  *report.Alerter
	hist    *history
	backups backupWatch // the backups' last run and the repository's newest copies (backups.go)
	metrics *report.Metrics
	// keys is the cluster secrets: the one the peer API, VRRP's password and Galera's certificate use, and those
	// accepted during a rotation; secMu orders the rotation's steps (secret.go).
	keys  *api.Keyring
	secMu sync.Mutex
	// cfg is the cluster configuration held (config apply), under cfgMu; restart ends Run with its cause.
	cfgMu   sync.Mutex
	cfg     clusterConfig
	restart context.CancelCauseFunc
	// relMu guards rel, the mailcow release's stage or switch under way (mailcow update); tasks are the
	// stages running in the background, under bg (Run's context).
	relMu     sync.Mutex
	rel       releaseWork
	relSwitch sync.Mutex
	tasks     sync.WaitGroup
	bg        context.Context
	// systemd starts and stops units over D-Bus (mariadb.service, mailcow.with_units); it connects on first use.
	systemd *unit.Systemd

	mu       sync.Mutex
	s        failover.State
	waiters  map[int64][]chan struct{}
	ready    bool
	lastRole failover.Role
	services map[string]bool   // each critical service's health, from the last check
	seen     failover.Observed // the reconcile loop's last look
	loopAt   time.Time         // when the loop last ran its tick
	// takeoverReqs is the Hetzner API client's request count when the takeover under way (takeoverOn) began.
	takeoverReqs int
	takeoverOn   bool
}

// Run runs the agent until ctx ends, then demotes gracefully and returns.
func Run(ctx context.Context, o Options) error {
	c := o.Config
	log := o.Log
	switch o.GaleraMode {
	case GaleraNone:
	case GaleraChild, GaleraSystemd:
		if o.Galera != nil {
			return fmt.Errorf("agent: Galera mode %q runs a member; it cannot also take an injected Galera", o.GaleraMode)
		}
		o.Galera = &galera.Prober{Socket: c.Galera.Socket}
	default:
		return fmt.Errorf("agent: unknown Galera mode %q", o.GaleraMode)
	}
	if err := config.MaterializeSecrets(&c, log); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	owner := config.SecretFiles{Owner: o.SecretOwner}
	keys, err := loadKeyring(c, owner)
	if err != nil {
		return err
	}
	if err := discoverMembers(ctx, &c, &o, owner, 0, log); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// A node that missed a revision of the cluster's configuration (down, rebuilt, new) takes it before anything
	// starts, rather than restart for it later.
	caughtUp := bootCatchUp(ctx, c, keys, o, log)
	if caughtUp != "" && o.LoadConfig != nil {
		next, err := o.LoadConfig()
		if err == nil {
			err = config.MaterializeSecrets(&next, log)
		}
		if err == nil {
			err = discoverMembers(ctx, &next, &o, owner, 0, log)
		}
		if err != nil {
			return fmt.Errorf("agent: the configuration with the cluster's revision: %w", err)
		}
		c = next
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
	if caughtUp != "" {
		alerts.Send(report.Event{Event: string(event.ConfigApplied), Severity: report.SeverityInfo, Message: caughtUp})
	}
	// The appliance's firewall answers Galera, VRRP and the peer API for the members only: fill their set before
	// any of these start.
	if err := allowMembers(ctx, c, self, log); err != nil {
		return err
	}
	if self.IsArbitrator() {
		return runArbitrator(ctx, c, self, keys, o, alerts)
	}
	if o.Galera == nil {
		return errors.New("agent: no Galera: run with --galera systemd (a node) or --galera child (the lab)")
	}
	if o.Storage == nil {
		o.Storage = newVolume(c, log)
	}
	if o.Cloud == nil {
		cl, err := newCloud(c, owner, log)
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
		o: o, c: c, log: log, obs: make(chan failover.Observation, 64), started: time.Now(),
		peers:       map[int64]api.Peer{},
		membersKick: make(chan struct{}, 1),
		client:      &api.PeerClient{Keys: keys, Node: c.Node.Name},
		keys:        keys,
		waiters:     map[int64][]chan struct{}{},
		s:           failover.Initial(),
		alerts:      alerts,
		loopAt:      time.Now(),
		systemd:     &unit.Systemd{},
	}
	defer a.systemd.Close()
	a.metrics = report.NewMetrics(a.snapshot)
	a.hist = &history{metrics: a.metrics}
	a.p = failover.Params{
		Self: self.ServerID, Name: self.Name, Peers: map[int64]string{},
		CheckGrace: c.Failover.CheckGrace.D(), QuorumGrace: c.Failover.QuorumGrace.D(),
		FenceTimeout: c.Failover.FenceTimeout.D(), BreakerMax: c.Failover.Breaker.Max,
		BreakerWindow: c.Failover.Breaker.Window.D(), Sequential: c.Failover.Sequential,
		PowerOnFenced: c.Failover.PowerOnFenced,
	}
	nodes := map[string]bool{}
	for _, m := range c.Cluster.Nodes {
		nodes[m.Name] = true
		if m.Name == self.Name {
			continue
		}
		if !m.IsArbitrator() {
			a.p.Peers[m.ServerID] = m.Name
			a.peers[m.ServerID] = api.Peer{Name: m.Name, URL: c.PeerURL(m)}
		}
	}
	a.s.Takeovers = a.loadBreaker()

	a.exec = &Executor{
		Cloud: o.Cloud, Address: &vip.VIP{Link: pubIf}, Storage: o.Storage, Stack: o.Stack, Peers: a,
		Log: log, Self: self.ServerID, FloatingID: c.Hcloud.FloatingIPID, FloatingV6ID: c.Hcloud.FloatingIPv6ID, VolumeID: c.Hcloud.VolumeID,
		AddressCache: filepath.Join(c.Failover.StateDir, "floating-ip"),
		FenceTimeout: c.Failover.FenceTimeout.D(), Confirm: a.confirm, Report: a.report, Observe: a.observe,
		Extend:       func(d time.Duration) { o.Notifier.ExtendTimeout(d) },
		StartTimeout: c.Mailcow.StartTimeout.D(),
	}
	a.armVolumeRestore()
	if o.Stack == nil {
		var conf func() ([]byte, error)
		if c.Mailcow.Hostname != "" {
			conf = func() ([]byte, error) { return MailcowConf(c, owner, a.keys.Signing()) }
		}
		st, err := newStack(c, log, mountedGuard(o.Storage), a.exec.address, conf)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		a.o.Stack, a.exec.Stack = st, st
	}
	if units := c.Mailcow.WithUnits; len(units) > 0 {
		us := unitStack{Stack: a.o.Stack, Units: units, Systemd: a.systemd, Log: log.With("component", "units"),
			Alert: func(name event.Name, msg string) { a.alert(name, report.SeverityWarning, "", 0, msg, nil) }}
		a.o.Stack, a.exec.Stack = us, us
	}
	// A takeover's start waits while mailcow update lays a release over the tree (a tree half laid over is neither
	// release); the switch itself starts the stack below the guard.
	a.exec.Stack = treeGuard{Stack: a.o.Stack, mu: &a.relSwitch}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.tasks.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a.restart, a.bg = cancel, ctx
	a.loadClusterConfig()

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
	a.verifier = &api.Verifier{Keys: keys, Self: self.Name, Nodes: nodes}
	if a.membersLive(c) {
		a.verifier.OnUnknown = a.kickMembers
	}
	srv := api.Server(api.PeerHandler(a.verifier, a, log), api.PeerLimits, log)
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(api.Listener(ln, api.PeerLimits)) }()
	defer srv.Close()
	if err := a.servePublic(ctx, self, &wg); err != nil {
		return err
	}

	// keepalived, rendered from the configuration, with this agent as the only reader of its fifo.
	a.privIf = privIf
	if o.GaleraMode != GaleraNone {
		srv, err := a.startGalera(ctx, self, &wg)
		if err != nil {
			return err
		}
		defer srv.Stop(2 * time.Minute)
	}
	w, err := a.startWatcher(ctx, &wg)
	if err != nil {
		return err
	}
	a.watcher = w
	defer w.Stop(5 * time.Second)
	ka, err := a.startKeepalived(ctx, &wg)
	if err != nil {
		return err
	}
	a.ka = ka
	defer ka.Stop(context.Background(), 10*time.Second)

	// The members the API lists, read again now and then and applied live (cluster.discover = "hcloud"), once
	// everything that follows them runs.
	if api, ok := o.Cloud.(membership.API); ok && c.Cluster.Discover == config.DiscoverHcloud {
		wg.Add(1)
		go func() { defer wg.Done(); a.watchMembers(ctx, api, c.Cluster.DiscoverInterval.D()) }()
	}

	// The cluster's configuration: a revision missed while this node was down is fetched from a peer.
	wg.Add(1)
	go func() { defer wg.Done(); a.followConfig(ctx, 30*time.Second) }()
	// mailcow's release: a tree that alone holds another release than the other members' catches up.
	wg.Add(1)
	go func() { defer wg.Done(); a.followRelease(ctx) }()
	// The backups: this node's last copy, and on the MASTER the repository's newest copies.
	wg.Add(1)
	go func() { defer wg.Done(); a.watchBackups(ctx) }()

	log.Info("agent started", "node", self.Name, "server_id", self.ServerID, "private_interface", privIf,
		"public_interface", pubIf, "peer_api", peerAddr)
	err = a.loop(ctx)
	if errors.Is(context.Cause(ctx), ErrRestart) {
		return ErrRestart
	}
	return err
}

// allowMembers fills the appliance firewall's set of members with every other node's private address, and its
// admin sets with network.admin_cidrs when it is given (replacing what they held: the configuration is the truth).
// A machine
// without the appliance's firewall (the lab) is told so in the log; a firewall that refuses the set stops the
// agent: the cluster could not talk.
func allowMembers(ctx context.Context, c config.Config, self config.Member, log *slog.Logger) error {
	var members []netip.Addr
	for _, m := range c.Cluster.Nodes {
		if m.Name == self.Name {
			continue
		}
		a, err := netip.ParseAddr(m.PrivateIP)
		if err != nil {
			return fmt.Errorf("agent: cluster.nodes %s: %w", m.Name, err)
		}
		members = append(members, a)
	}
	applied, err := firewall.Peers(ctx, nil, members)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if applied {
		log.Info("firewall: Galera, VRRP and the peer API answer the members only", "members", len(members))
	} else {
		log.Info("firewall: no appliance firewall here (nft table inet mailcow_ha); the members' set is not filled")
		return nil
	}
	// SSH over the internet from network.admin_cidrs only. Without the key the sets are left as they are (an
	// operator may fill them by hand, as nftables.conf says).
	if len(c.Network.AdminCIDRs) == 0 {
		return nil
	}
	var admins []netip.Prefix
	for _, c := range c.Network.AdminCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("agent: network.admin_cidrs: %w", err)
		}
		admins = append(admins, p)
	}
	if _, err := firewall.Admins(ctx, nil, admins); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	log.Info("firewall: SSH from the internet", "admin_cidrs", c.Network.AdminCIDRs)
	return nil
}
