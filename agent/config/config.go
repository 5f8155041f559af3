// Package config defines mailcow-ha's TOML configuration schema v1: its types, its defaults (kept in one place,
// Defaults), strict decoding that names the line of every unknown key or wrong type, validation that returns
// every problem at once, the sources a node reads its configuration from, and the handling of secrets.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SchemaVersion is the only configuration schema version this build understands.
const SchemaVersion = 1

// Default locations on an appliance node.
const (
	DefaultPath         = "/etc/mailcow-ha/config.toml"
	DefaultUserDataPath = "/var/lib/cloud/instance/user-data.txt"
	DefaultMetadataURL  = "http://169.254.169.254/hetzner/v1"
	DefaultSecretDir    = "/etc/mailcow-ha"
)

// Config is the whole configuration of one node. Every node of a cluster carries the same cluster-wide sections;
// only [node] differs.
type Config struct {
	Version    int        `toml:"version"`
	Node       Node       `toml:"node"`
	Cluster    Cluster    `toml:"cluster"`
	Hcloud     Hcloud     `toml:"hcloud"`
	Network    Network    `toml:"network"`
	Galera     Galera     `toml:"galera"`
	Keepalived Keepalived `toml:"keepalived"`
	Mailcow    Mailcow    `toml:"mailcow"`
	Failover   Failover   `toml:"failover"`
	Alerts     Alerts     `toml:"alerts"`
	API        API        `toml:"api"`
	Backup     Backup     `toml:"backup"`
}

// Backup is where the cluster's backups go (agent/backup): a restic repository, encrypted with a password of its
// own. With no repository there are no backups.
type Backup struct {
	// Repository is restic's: an absolute path (a mounted disk), sftp:user@host:/path (a Hetzner Storage Box: the
	// node's root needs its SSH key) or s3:https://host/bucket (S3-compatible; restic reads AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY from the agent's environment).
	Repository   string `toml:"repository"`
	PasswordFile string `toml:"password_file"`
	Password     Secret `toml:"password"` // inline (user-data): written to PasswordFile at start
	CacheDir     string `toml:"cache_dir"`
	// MaxAge is how old the newest copy of the Volume or of the database may be before the MASTER's agent alerts
	// (backup_stale).
	MaxAge Duration `toml:"max_age"`
	// KeepDaily, KeepWeekly and KeepMonthly are the retention (backup prune): the newest copy of each kind for
	// each of the last that many days, weeks and months.
	KeepDaily   int `toml:"keep_daily"`
	KeepWeekly  int `toml:"keep_weekly"`
	KeepMonthly int `toml:"keep_monthly"`
	// RestoreFrom makes a new cluster from the backups of the cluster of that name in Repository: at the new
	// cluster's first bootstrap its database is the newest database copy (instead of an empty one), and the first
	// MASTER fills the new, empty Volume with the newest Volume copy before mailcow starts. It never writes over
	// data: a datadir or a Volume that holds any is used as it is.
	RestoreFrom string `toml:"restore_from"`
	// RestoreBefore, an RFC 3339 time, makes the restore take the newest copies taken before it (a state before a
	// damage that the later copies hold too); empty: the newest copies.
	RestoreBefore string `toml:"restore_before"`
	// RestoreTimeout bounds the Volume's restore in the first MASTER's mount step.
	RestoreTimeout Duration `toml:"restore_timeout"`
}

// RestoreBeforeTime is backup.restore_before as a time; zero when it is not set (validation refuses a bad one).
func (b Backup) RestoreBeforeTime() time.Time {
	t, _ := time.Parse(time.RFC3339, b.RestoreBefore)
	return t
}

// Node names this node; the rest of its identity comes from its entry in cluster.nodes.
type Node struct {
	Name string `toml:"name"`
}

// Where a node learns the cluster's members (cluster.discover).
const (
	// DiscoverStatic: cluster.nodes lists every member, and node.name names this one.
	DiscoverStatic = "static"
	// DiscoverHcloud: one user-data for every node. The node knows itself from the metadata service (instance id,
	// host name) and its members from the Hetzner API: the servers labelled cluster=<cluster.name>, with their
	// addresses in the network hcloud.network_id (agent/membership). A cluster.nodes given as well is checked
	// against what the API says.
	DiscoverHcloud = "hcloud"
)

// Cluster describes the cluster and every node in it.
type Cluster struct {
	Name     string `toml:"name"`
	Discover string `toml:"discover"`
	// DiscoverInterval is how often a running agent with discover = "hcloud" reads the members from the API and
	// applies a change live (a node added, removed or readdressed).
	DiscoverInterval Duration `toml:"discover_interval"`
	SecretFile       string   `toml:"secret_file"`
	Secret           Secret   `toml:"secret"`
	Nodes            []Member `toml:"nodes"`
}

// Member roles.
const (
	RoleMember     = "member"
	RoleArbitrator = "arbitrator"
)

// Member is one entry of cluster.nodes.
type Member struct {
	Name      string `toml:"name"`
	Role      string `toml:"role"`
	PrivateIP string `toml:"private_ip"`
	ServerID  int64  `toml:"server_id"`
	Priority  int    `toml:"priority"`
	Bootstrap bool   `toml:"bootstrap"`
}

// Hcloud holds the Hetzner Cloud API settings and the ids of the shared resources.
type Hcloud struct {
	TokenFile    string `toml:"token_file"`
	Token        Secret `toml:"token"`
	Endpoint     string `toml:"endpoint"`
	MetadataURL  string `toml:"metadata_url"`
	FloatingIPID int64  `toml:"floating_ip_id"`
	// FloatingIPv6ID is an IPv6 Floating IP (a /64) that follows the MASTER with the IPv4 one (0: none).
	FloatingIPv6ID int64 `toml:"floating_ipv6_id"`
	VolumeID       int64 `toml:"volume_id"`
	// NetworkID is the cluster's private network, where cluster.discover = "hcloud" finds the members' addresses.
	NetworkID int64 `toml:"network_id"`
}

// Network names the interfaces ("auto" finds them at run time) and the networks SSH may come from over the
// internet (the node firewall's sets admin_v4 and admin_v6, which the agent fills at start).
type Network struct {
	PublicInterface  string   `toml:"public_interface"`
	PrivateInterface string   `toml:"private_interface"`
	AdminCIDRs       []string `toml:"admin_cidrs"`
}

// Galera configures the host's MariaDB Galera node.
type Galera struct {
	DataDir    string `toml:"data_dir"`
	Socket     string `toml:"socket"`
	ConfigFile string `toml:"config_file"`
	SSTMethod  string `toml:"sst_method"`
	// TLS encrypts and authenticates replication, IST and SST with certificates of a CA derived from the cluster
	// secret (default on; every member must agree: a cluster switches with a restart of all its members).
	TLS          bool   `toml:"tls"`
	GroupPort    int    `toml:"group_port"`
	ISTPort      int    `toml:"ist_port"`
	SSTPort      int    `toml:"sst_port"`
	PasswordFile string `toml:"password_file"`
	// Password given inline (user-data): written to PasswordFile with mode 0600 at start, like hcloud.token.
	Password Secret `toml:"password"`
	// DataVolume: the datadir lives on this node's own Hetzner Volume (the one attached to this server and labelled
	// purpose=galera), which the agent mounts at VolumeMount before MariaDB starts: a rebuilt server keeps its
	// database and rejoins by IST. DataDir must then be below VolumeMount.
	DataVolume  bool   `toml:"data_volume"`
	VolumeMount string `toml:"volume_mount"`
}

// Preempt policies for keepalived.
const (
	PreemptOff   = "off"
	PreemptOn    = "on"
	PreemptDelay = "delay"
)

// Advert is the advert interval in force: advert_interval, or the version's default: 200 ms for VRRPv3 (chosen by
// measurement, docs/lab.md), keepalived's 1 s for VRRPv2.
func (k Keepalived) Advert() time.Duration {
	if d := k.AdvertInterval.D(); d > 0 {
		return d
	}
	if k.VRRPVersion == 3 {
		return 200 * time.Millisecond
	}
	return time.Second
}

// Keepalived configures the VRRP instance that elects the MASTER.
type Keepalived struct {
	RouterID int    `toml:"router_id"`
	Instance string `toml:"instance"`
	// VRRPVersion is 3 (adverts in centiseconds, placeholder addresses from the cluster secret) or 2 (whole
	// seconds, the 8-character password), which every release before VRRPv3 spoke: absent means 2, so that a
	// node rebuilt into a cluster made earlier speaks its peers' protocol; `cluster create` writes 3.
	VRRPVersion int `toml:"vrrp_version"`
	// AdvertInterval 0 means the version's default (Advert).
	AdvertInterval Duration `toml:"advert_interval"`
	Preempt        string   `toml:"preempt"`
	PreemptDelay   Duration `toml:"preempt_delay"`
	ConfigFile     string   `toml:"config_file"`
	NotifyFIFO     string   `toml:"notify_fifo"`
	// The check watcher that asks the agent every second and keeps keepalived's track file: how long one answer
	// may take, and how many failures in a row put the instance in FAULT.
	CheckTimeout Duration `toml:"check_timeout"`
	CheckFall    int      `toml:"check_fall"`
}

// Mailcow locates the mailcow-dockerized installation and its data.
type Mailcow struct {
	Dir              string   `toml:"dir"`
	DataMount        string   `toml:"data_mount"`
	ComposeProject   string   `toml:"compose_project"`
	CriticalServices []string `toml:"critical_services"`
	SNAT             bool     `toml:"snat"`
	DockerHost       string   `toml:"docker_host"`
	CreateCommand    []string `toml:"create_command"`
	StartTimeout     Duration `toml:"start_timeout"`
	// Repo is mailcow's git repository, and PullCommand fetches a staged release's images in its tree (`mailcow-ha
	// mailcow update`).
	Repo        string   `toml:"repo"`
	PullCommand []string `toml:"pull_command"`
	DeviceDir   string   `toml:"device_dir"`
	WithUnits   []string `toml:"with_units"`
	// mailcow.conf, which the agent writes (agent/mailcowconf): the mail server's name (MAILCOW_HOSTNAME), its
	// time zone (TZ), further variables by their names in mailcow.conf, and where the API key it derives for the
	// sign-up portal goes (mode 0600).
	Hostname   string            `toml:"hostname"`
	Timezone   string            `toml:"timezone"`
	Conf       map[string]string `toml:"conf"`
	APIKeyFile string            `toml:"api_key_file"`
}

// UsesCompose says whether the create command is Docker Compose (the appliance), not a stand-in of the tests.
func (m Mailcow) UsesCompose() bool {
	cc := m.CreateCommand
	if len(cc) == 0 {
		return false
	}
	base := filepath.Base(cc[0])
	return base == "docker-compose" || (base == "docker" && len(cc) > 1 && cc[1] == "compose")
}

// Failover tunes the takeover protocol (docs/design.md §4).
type Failover struct {
	CheckGrace        Duration `toml:"check_grace"`
	QuorumGrace       Duration `toml:"quorum_grace"`
	FenceTimeout      Duration `toml:"fence_timeout"`
	ReconcileInterval Duration `toml:"reconcile_interval"`
	StateDir          string   `toml:"state_dir"`
	Breaker           Breaker  `toml:"breaker"`
	Sequential        bool     `toml:"sequential"`
	// PowerOnFenced: a new MASTER powers the node it fenced on again once its takeover succeeded.
	PowerOnFenced bool `toml:"power_on_fenced"`
}

// Breaker is the circuit breaker of the original scripts' security_wait: at most Max takeovers within Window.
type Breaker struct {
	Max    int      `toml:"max"`
	Window Duration `toml:"window"`
}

// Alerts lists where events are sent.
type Alerts struct {
	Webhooks []Webhook `toml:"webhooks"`
	Email    []Email   `toml:"email"`
}

// Email is one alert recipient list behind an SMTP relay outside the cluster (the cluster's own mailcow may be
// what is down).
type Email struct {
	Name         string   `toml:"name"`
	Relay        string   `toml:"relay"` // host:port
	From         string   `toml:"from"`
	To           []string `toml:"to"`
	TLS          string   `toml:"tls"` // starttls (default), tls, none
	Username     string   `toml:"username"`
	PasswordFile string   `toml:"password_file"`
	Password     Secret   `toml:"password"` // inline (user-data): written to PasswordFile (default alerts-email-N.password) at start
	MinSeverity  string   `toml:"min_severity"`
	Template     string   `toml:"template"`
	DedupWindow  Duration `toml:"dedup_window"`
}

// Severities, from least to most severe.
var severities = []string{"info", "warning", "critical"}

// Webhook is one alert receiver.
type Webhook struct {
	Name        string            `toml:"name"`
	URL         string            `toml:"url"`
	SecretFile  string            `toml:"secret_file"`
	MinSeverity string            `toml:"min_severity"`
	Template    string            `toml:"template"`
	ContentType string            `toml:"content_type"`
	Headers     map[string]string `toml:"headers"`
	DedupWindow Duration          `toml:"dedup_window"`
}

// API configures the agent's HTTP endpoints.
type API struct {
	Listen   []string `toml:"listen"`
	PeerPort int      `toml:"peer_port"`
	Socket   string   `toml:"socket"`
}

// PrivateHost is the host part in api.listen that stands for this node's private IP.
const PrivateHost = "private"

// MailcowHost is the host part in api.listen that stands for the node's address on mailcow's Docker network
// (172.22.1.1), where mailcow's nginx reaches the health API for https://<hostname>/mailcow-ha/primary. The address
// exists only while mailcow's network does (on the MASTER): the agent binds it all the same (IP_FREEBIND).
const MailcowHost = "mailcow"

// Defaults returns a configuration holding every default. Decoding starts from it, so a key left out of the file
// keeps the value given here, and nowhere else.
func Defaults() Config {
	return Config{
		Version: SchemaVersion,
		Cluster: Cluster{SecretFile: DefaultSecretDir + "/cluster.secret", Discover: DiscoverStatic, DiscoverInterval: Duration(2 * time.Minute)},
		Hcloud: Hcloud{
			TokenFile:   DefaultSecretDir + "/hcloud.token",
			Endpoint:    "https://api.hetzner.cloud/v1",
			MetadataURL: DefaultMetadataURL,
		},
		Network: Network{PublicInterface: "auto", PrivateInterface: "auto"},
		Backup: Backup{PasswordFile: DefaultSecretDir + "/backup.password", CacheDir: "/var/cache/mailcow-ha/restic", MaxAge: Duration(26 * time.Hour),
			KeepDaily: 7, KeepWeekly: 5, KeepMonthly: 12, RestoreTimeout: Duration(6 * time.Hour)},
		Galera: Galera{
			DataDir:      "/var/lib/mysql",
			Socket:       "/run/mysqld/mysqld.sock",
			ConfigFile:   "/etc/mysql/mariadb.conf.d/60-mailcow-ha.cnf",
			SSTMethod:    "rsync",
			TLS:          true,
			GroupPort:    4567,
			ISTPort:      4568,
			SSTPort:      4444,
			PasswordFile: DefaultSecretDir + "/db.password",
			VolumeMount:  "/var/lib/mailcow-ha/galera",
		},
		Keepalived: Keepalived{
			RouterID:     51,
			Instance:     "VI_MAILCOW",
			VRRPVersion:  2,
			Preempt:      PreemptOff,
			PreemptDelay: Duration(60 * time.Second),
			ConfigFile:   "/etc/keepalived/keepalived.conf",
			NotifyFIFO:   "/run/mailcow-ha/keepalived.fifo",
			CheckTimeout: Duration(time.Second),
			CheckFall:    2,
		},
		Mailcow: Mailcow{
			Dir:            "/opt/mailcow-dockerized",
			DataMount:      "/var/lib/mailcow-ha/data",
			ComposeProject: "mailcowdockerized",
			CriticalServices: []string{
				"postfix-mailcow", "dovecot-mailcow", "nginx-mailcow", "rspamd-mailcow",
				"php-fpm-mailcow", "redis-mailcow", "unbound-mailcow",
			},
			SNAT:          true,
			DockerHost:    "unix:///var/run/docker.sock",
			CreateCommand: []string{"docker", "compose", "create"},
			StartTimeout:  Duration(2 * time.Minute),
			Repo:          "https://github.com/mailcow/mailcow-dockerized.git",
			PullCommand:   []string{"docker", "compose", "pull", "--quiet"},
			DeviceDir:     "/dev/disk/by-id",
			Timezone:      "Etc/UTC",
			APIKeyFile:    "/etc/mailcow-ha/mailcow-api.key",
		},
		Failover: Failover{
			CheckGrace:        Duration(30 * time.Second),
			QuorumGrace:       Duration(15 * time.Second),
			FenceTimeout:      Duration(20 * time.Second),
			ReconcileInterval: Duration(5 * time.Second),
			StateDir:          "/var/lib/mailcow-ha",
			Breaker:           Breaker{Max: 2, Window: Duration(time.Hour)},
			PowerOnFenced:     true,
		},
		API: API{
			Listen:   []string{"127.0.0.1:7480", PrivateHost + ":7480", MailcowHost + ":7480"},
			PeerPort: 7481,
			Socket:   "/run/mailcow-ha/agent.sock",
		},
	}
}

// Discovers says whether the members come from the Hetzner API and are not yet known (cluster.discover = "hcloud"
// and no cluster.nodes): agent/membership fills cluster.nodes and node.name, and CheckMembers checks them.
func (c *Config) Discovers() bool {
	return c.Cluster.Discover == DiscoverHcloud && len(c.Cluster.Nodes) == 0
}

// Self returns this node's entry in cluster.nodes.
func (c *Config) Self() (Member, bool) { return c.Member(c.Node.Name) }

// PeerURL is the base URL of a member's peer API (on its private address and api.peer_port).
func (c *Config) PeerURL(m Member) string {
	return "http://" + net.JoinHostPort(m.PrivateIP, strconv.Itoa(c.API.PeerPort))
}

// Member returns the entry of cluster.nodes with the given name.
func (c *Config) Member(name string) (Member, bool) {
	for _, m := range c.Cluster.Nodes {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Peers returns every other entry of cluster.nodes, in file order.
func (c *Config) Peers() []Member {
	var out []Member
	for _, m := range c.Cluster.Nodes {
		if m.Name != c.Node.Name {
			out = append(out, m)
		}
	}
	return out
}

// IsArbitrator reports whether the member only votes (garbd) and never serves.
func (m Member) IsArbitrator() bool { return m.Role == RoleArbitrator }

// DataMembers are the members that hold data and serve (not the arbitrators), in cluster.nodes' order.
func (c Config) DataMembers() []Member {
	var out []Member
	for _, m := range c.Cluster.Nodes {
		if !m.IsArbitrator() {
			out = append(out, m)
		}
	}
	return out
}

// Duration is a time.Duration written in TOML as a string such as "30s" or "1h".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration as Go does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a number with a unit, such as \"30s\" or \"1h\"", string(b))
	}
	*d = Duration(v)
	return nil
}

// Secret holds a token or key given inline. It never prints its value: not with fmt, not in slog, not in JSON.
type Secret string

const redacted = "[redacted]"

// Set reports whether a value is present.
func (s Secret) Set() bool { return s != "" }

// Reveal returns the value itself, for the one place that uses it.
func (s Secret) Reveal() string { return string(s) }

// String redacts the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts the value for %#v.
func (s Secret) GoString() string { return s.String() }

// MarshalText redacts the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue redacts the value in slog records.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// UnmarshalText stores the value.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }
