package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
)

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	projectRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	ifaceRE   = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)
	serviceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	// A host name with at least two labels, as MAILCOW_HOSTNAME must be.
	fqdnRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	instRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)
	unitRE = regexp.MustCompile(`^[A-Za-z0-9:_.@-]+\.(service|target|socket|timer)$`)
)

// validator collects problems with their lines.
type validator struct {
	file  string
	idx   lineIndex
	probs Problems
}

func (v *validator) add(key, format string, args ...any) {
	v.probs = append(v.probs, Problem{File: v.file, Line: v.idx.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func validate(file string, c *Config, idx lineIndex, fsys FileChecker) Problems {
	v := &validator{file: file, idx: idx}
	if c.Version != SchemaVersion {
		v.add("version", "unsupported schema version %d: this build reads version %d", c.Version, SchemaVersion)
	}
	v.cluster(c)
	v.hcloud(c)
	v.network(c)
	v.galera(c)
	v.keepalived(c)
	v.mailcow(c)
	v.failover(c)
	v.alerts(c)
	v.units(c)
	v.api(c)
	v.backup(c)
	if fsys != nil {
		v.secretFiles(c, fsys)
	}
	return v.probs
}

// CheckMembers checks cluster.nodes and node.name again, once agent/membership has filled them from the API.
func CheckMembers(name string, c *Config) Problems {
	v := &validator{file: name}
	v.members(c)
	return v.probs
}

func (v *validator) cluster(c *Config) {
	switch c.Cluster.Discover {
	case DiscoverStatic:
	case DiscoverHcloud:
		if c.Hcloud.NetworkID <= 0 {
			v.add("hcloud.network_id", "missing: with cluster.discover = \"hcloud\" the members' addresses are theirs in this network")
		}
		// Every node reads the servers once per interval: 3600 requests an hour are the whole project's.
		if d := c.Cluster.DiscoverInterval.D(); d < 10*time.Second {
			v.add("cluster.discover_interval", "%s is too short: at least 10s (every node asks the API once per interval)", d)
		}
	default:
		v.add("cluster.discover", "must be %q or %q, got %q", DiscoverStatic, DiscoverHcloud, c.Cluster.Discover)
	}
	if c.Cluster.Name == "" {
		v.add("cluster.name", "missing")
	} else if !nameRE.MatchString(c.Cluster.Name) {
		v.add("cluster.name", "%q: use lower-case letters, digits and '-' (at most 63)", c.Cluster.Name)
	}
	v.absPath("cluster.secret_file", c.Cluster.SecretFile)
	if c.Cluster.Secret.Set() {
		if why := weakSecret(c.Cluster.Secret.Reveal(), 32); why != "" {
			v.add("cluster.secret", "%s: use at least 32 random characters (openssl rand -hex 32)", why)
		}
	}
	if c.Discovers() {
		if c.Node.Name != "" && !nameRE.MatchString(c.Node.Name) {
			v.add("node.name", "%q: use lower-case letters, digits and '-'", c.Node.Name)
		}
		return // the members are checked when the API has named them (CheckMembers)
	}
	v.members(c)
}

// members checks node.name and cluster.nodes.
func (v *validator) members(c *Config) {
	if c.Node.Name == "" {
		v.add("node.name", "missing: name this node as in cluster.nodes")
	} else if _, ok := c.Self(); !ok {
		v.add("node.name", "%q is not in cluster.nodes", c.Node.Name)
	}
	names := map[string]int{}
	ips := map[netip.Addr]int{}
	ids := map[int64]int{}
	prios := map[int]int{}
	var members, arbitrators, bootstraps int
	for i, m := range c.Cluster.Nodes {
		k := fmt.Sprintf("cluster.nodes[%d]", i)
		switch {
		case m.Name == "":
			v.add(k+".name", "missing")
		case !nameRE.MatchString(m.Name):
			v.add(k+".name", "%q: use lower-case letters, digits and '-'", m.Name)
		default:
			if j, dup := names[m.Name]; dup {
				v.add(k+".name", "duplicate node %q (also cluster.nodes[%d])", m.Name, j)
			} else {
				names[m.Name] = i
			}
		}
		if ip, err := netip.ParseAddr(m.PrivateIP); err != nil || ip.Zone() != "" {
			v.add(k+".private_ip", "invalid IP address %q", m.PrivateIP)
		} else if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() {
			v.add(k+".private_ip", "%s cannot be a node's private address", ip)
		} else if j, dup := ips[ip]; dup {
			v.add(k+".private_ip", "duplicate private IP %s (also cluster.nodes[%d])", ip, j)
		} else {
			ips[ip] = i
		}
		switch m.Role {
		case "", RoleMember:
			members++
			if m.ServerID <= 0 {
				v.add(k+".server_id", "missing: the Hetzner server id is needed to fence this node")
			} else if j, dup := ids[m.ServerID]; dup {
				v.add(k+".server_id", "duplicate server id %d (also cluster.nodes[%d])", m.ServerID, j)
			} else {
				ids[m.ServerID] = i
			}
			if m.Priority < 1 || m.Priority > 254 {
				v.add(k+".priority", "must be 1..254, got %d", m.Priority)
			} else if j, dup := prios[m.Priority]; dup {
				v.add(k+".priority", "duplicate priority %d (also cluster.nodes[%d]): the order must be strict", m.Priority, j)
			} else {
				prios[m.Priority] = i
			}
			if m.Bootstrap {
				bootstraps++
			}
		case RoleArbitrator:
			arbitrators++
			if m.Bootstrap {
				v.add(k+".bootstrap", "an arbitrator (garbd) cannot bootstrap the cluster")
			}
			if m.Priority != 0 {
				v.add(k+".priority", "an arbitrator never becomes MASTER: leave priority out")
			}
		default:
			v.add(k+".role", "must be %q or %q, got %q", RoleMember, RoleArbitrator, m.Role)
		}
	}
	n := len(c.Cluster.Nodes)
	switch {
	case n == 0:
		v.add("cluster.nodes", "missing: list every node of the cluster")
	case n < 3 && arbitrators == 0:
		v.add("cluster.nodes", "%d node(s): a cluster needs at least 3 nodes, or 2 and an arbitrator, to keep quorum", n)
	case n < 3:
		v.add("cluster.nodes", "%d node(s): a cluster needs at least 3 voting nodes", n)
	case members < 2:
		v.add("cluster.nodes", "%d member(s): at least 2 nodes must be able to serve", members)
	}
	if n > 0 && bootstraps != 1 {
		v.add("cluster.nodes", "exactly one member must have bootstrap = true, found %d", bootstraps)
	}
}

func (v *validator) hcloud(c *Config) {
	h := c.Hcloud
	v.absPath("hcloud.token_file", h.TokenFile)
	if h.Token.Set() && placeholder(h.Token.Reveal()) {
		v.add("hcloud.token", "a placeholder, not a token: create one in the Hetzner Console (Security, API tokens)")
	} else if h.Token.Set() && len(h.Token.Reveal()) != 64 {
		v.add("hcloud.token", "a Hetzner API token has 64 characters, this one has %d", len(h.Token.Reveal()))
	}
	v.httpURL("hcloud.endpoint", h.Endpoint)
	v.httpURL("hcloud.metadata_url", h.MetadataURL)
	if h.FloatingIPID <= 0 {
		v.add("hcloud.floating_ip_id", "missing: the id of the Floating IP that follows the MASTER")
	}
	if h.FloatingIPv6ID < 0 {
		v.add("hcloud.floating_ipv6_id", "%d: the id of an IPv6 Floating IP, or leave it out", h.FloatingIPv6ID)
	} else if h.FloatingIPv6ID != 0 && h.FloatingIPv6ID == h.FloatingIPID {
		v.add("hcloud.floating_ipv6_id", "the same Floating IP as hcloud.floating_ip_id")
	}
	if h.VolumeID <= 0 {
		v.add("hcloud.volume_id", "missing: the id of the Volume that holds mailcow's data")
	}
}

func (v *validator) network(c *Config) {
	for k, name := range map[string]string{
		"network.public_interface":  c.Network.PublicInterface,
		"network.private_interface": c.Network.PrivateInterface,
	} {
		if name != "auto" && !ifaceRE.MatchString(name) {
			v.add(k, "%q is not an interface name (or \"auto\")", name)
		}
	}
	if c.Network.PublicInterface != "auto" && c.Network.PublicInterface == c.Network.PrivateInterface {
		v.add("network.private_interface", "the private and the public interface must differ")
	}
	for i, cidr := range c.Network.AdminCIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			v.add(fmt.Sprintf("network.admin_cidrs[%d]", i), "%q is not a network (198.51.100.7/32)", cidr)
		}
	}
}

func (v *validator) galera(c *Config) {
	g := c.Galera
	v.absPath("galera.data_dir", g.DataDir)
	v.absPath("galera.socket", g.Socket)
	v.absPath("galera.config_file", g.ConfigFile)
	v.absPath("galera.password_file", g.PasswordFile)
	if g.Password.Set() && placeholder(g.Password.Reveal()) {
		v.add("galera.password", "a placeholder, not a password: use random characters (openssl rand -hex 32)")
	}
	v.absPath("galera.volume_mount", g.VolumeMount)
	if g.DataVolume {
		if rel, err := filepath.Rel(g.VolumeMount, g.DataDir); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			v.add("galera.data_dir", "%q must be below galera.volume_mount (%q) when galera.data_volume is on", g.DataDir, g.VolumeMount)
		}
	}
	if g.SSTMethod != "rsync" && g.SSTMethod != "mariabackup" {
		v.add("galera.sst_method", "must be \"rsync\" or \"mariabackup\", got %q", g.SSTMethod)
	}
	ports := map[int]string{}
	for _, p := range []struct {
		key  string
		port int
	}{{"galera.group_port", g.GroupPort}, {"galera.ist_port", g.ISTPort}, {"galera.sst_port", g.SSTPort}} {
		if !v.port(p.key, p.port) {
			continue
		}
		if other, dup := ports[p.port]; dup {
			v.add(p.key, "port %d is also %s", p.port, other)
		}
		ports[p.port] = p.key
	}
}

func (v *validator) keepalived(c *Config) {
	k := c.Keepalived
	if k.RouterID < 1 || k.RouterID > 255 {
		v.add("keepalived.router_id", "must be 1..255, got %d", k.RouterID)
	}
	if !instRE.MatchString(k.Instance) {
		v.add("keepalived.instance", "%q: use letters, digits and '_' (at most 32)", k.Instance)
	}
	switch d := k.AdvertInterval.D(); k.VRRPVersion {
	case 3: // 12 bits of centiseconds
		if d != 0 && (d < 10*time.Millisecond || d > 40950*time.Millisecond || d%(10*time.Millisecond) != 0) {
			v.add("keepalived.advert_interval", "must be whole centiseconds from 10ms to 40.95s (VRRPv3), got %s", d)
		}
	case 2: // 8 bits of seconds
		if d != 0 && (d < time.Second || d > 255*time.Second || d%time.Second != 0) {
			v.add("keepalived.advert_interval", "must be whole seconds from 1s to 255s with vrrp_version = 2 (set vrrp_version = 3 for shorter ones), got %s", d)
		}
	default:
		v.add("keepalived.vrrp_version", "must be 2 or 3, got %d", k.VRRPVersion)
	}
	switch k.Preempt {
	case PreemptOff, PreemptOn:
	case PreemptDelay:
		if d := k.PreemptDelay.D(); d <= 0 || d > 1000e9 {
			v.add("keepalived.preempt_delay", "must be between 1s and 1000s with preempt = \"delay\", got %s", d)
		}
	default:
		v.add("keepalived.preempt", "must be %q, %q or %q, got %q", PreemptOff, PreemptOn, PreemptDelay, k.Preempt)
	}
	if d := k.CheckTimeout.D(); d < time.Second || d > 30*time.Second || d%time.Second != 0 {
		v.add("keepalived.check_timeout", "must be whole seconds from 1s to 30s, got %s", d)
	}
	if k.CheckFall < 1 || k.CheckFall > 10 {
		v.add("keepalived.check_fall", "must be 1..10, got %d", k.CheckFall)
	}
	v.absPath("keepalived.config_file", k.ConfigFile)
	v.absPath("keepalived.notify_fifo", k.NotifyFIFO)
}

func (v *validator) mailcow(c *Config) {
	m := c.Mailcow
	v.absPath("mailcow.dir", m.Dir)
	v.absPath("mailcow.data_mount", m.DataMount)
	if m.DataMount == "/" {
		v.add("mailcow.data_mount", "cannot be /")
	}
	if !projectRE.MatchString(m.ComposeProject) {
		v.add("mailcow.compose_project", "%q is not a compose project name", m.ComposeProject)
	}
	if len(m.CriticalServices) == 0 {
		v.add("mailcow.critical_services", "name at least one service, such as \"postfix-mailcow\"")
	}
	if !strings.HasPrefix(m.DockerHost, "unix://") && !strings.HasPrefix(m.DockerHost, "tcp://") {
		v.add("mailcow.docker_host", "%q: want unix:///path or tcp://host:port", m.DockerHost)
	}
	if len(m.CreateCommand) == 0 || m.CreateCommand[0] == "" {
		v.add("mailcow.create_command", "name a command, such as [\"docker\", \"compose\", \"create\"]")
	}
	if m.StartTimeout.D() < time.Second {
		v.add("mailcow.start_timeout", "must be at least 1s")
	}
	if m.Repo == "" || strings.HasPrefix(m.Repo, "-") {
		v.add("mailcow.repo", "%q: name mailcow's git repository, such as \"https://github.com/mailcow/mailcow-dockerized.git\"", m.Repo)
	}
	if len(m.PullCommand) == 0 || m.PullCommand[0] == "" {
		v.add("mailcow.pull_command", "name a command, such as [\"docker\", \"compose\", \"pull\", \"--quiet\"]")
	}
	v.absPath("mailcow.device_dir", m.DeviceDir)
	v.absPath("mailcow.api_key_file", m.APIKeyFile)
	switch {
	case m.Hostname == "" && m.UsesCompose():
		v.add("mailcow.hostname", "missing: the mail server's name (MAILCOW_HOSTNAME), such as \"mail.example.org\"")
	case m.Hostname != "" && !fqdnRE.MatchString(m.Hostname):
		v.add("mailcow.hostname", "%q is not a fully qualified host name such as \"mail.example.org\"", m.Hostname)
	}
	if _, err := time.LoadLocation(m.Timezone); err != nil || m.Timezone == "" || m.Timezone == "Local" {
		v.add("mailcow.timezone", "%q is not a time zone such as \"Europe/Berlin\" or \"Etc/UTC\"", m.Timezone)
	}
	for _, p := range mailcowconf.CheckSettings(m.Conf) {
		key, msg, _ := strings.Cut(p, ": ")
		v.add(key, "%s", msg)
	}
	seen := map[string]bool{}
	for i, s := range m.CriticalServices {
		k := fmt.Sprintf("mailcow.critical_services[%d]", i)
		switch {
		case !serviceRE.MatchString(s):
			v.add(k, "%q is not a compose service name", s)
		case seen[s]:
			v.add(k, "duplicate service %q", s)
		}
		seen[s] = true
	}
}

func (v *validator) failover(c *Config) {
	f := c.Failover
	for _, d := range []struct {
		key string
		d   Duration
	}{
		{"failover.check_grace", f.CheckGrace}, {"failover.quorum_grace", f.QuorumGrace},
		{"failover.fence_timeout", f.FenceTimeout}, {"failover.reconcile_interval", f.ReconcileInterval},
		{"failover.breaker.window", f.Breaker.Window},
	} {
		if d.d <= 0 {
			v.add(d.key, "must be positive, got %s", d.d)
		}
	}
	if f.Breaker.Max < 1 {
		v.add("failover.breaker.max", "must be at least 1, got %d", f.Breaker.Max)
	}
	if f.Breaker.Window > 0 && f.Breaker.Window < f.FenceTimeout {
		v.add("failover.breaker.window", "%s is shorter than failover.fence_timeout (%s): the breaker could never count a fenced takeover", f.Breaker.Window, f.FenceTimeout)
	}
	v.absPath("failover.state_dir", f.StateDir)
}

func (v *validator) units(c *Config) {
	for i, u := range c.Mailcow.WithUnits {
		if !unitRE.MatchString(u) {
			v.add(fmt.Sprintf("mailcow.with_units[%d]", i), "%q is not a systemd unit name such as mailcow-signup.service", u)
		}
	}
}

func (v *validator) api(c *Config) {
	if len(c.API.Listen) == 0 {
		v.add("api.listen", "name at least one address, such as \"127.0.0.1:7480\"")
	}
	for i, a := range c.API.Listen {
		k := fmt.Sprintf("api.listen[%d]", i)
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			v.add(k, "%q is not host:port", a)
			continue
		}
		if host != PrivateHost && host != MailcowHost && host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				v.add(k, "host %q must be an IP address, %q or %q", host, PrivateHost, MailcowHost)
			}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.add(k, "invalid port %q", port)
		}
	}
	v.port("api.peer_port", c.API.PeerPort)
	v.absPath("api.socket", c.API.Socket)
}

func (v *validator) absPath(key, p string) {
	if p == "" {
		v.add(key, "missing")
	} else if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		v.add(key, "%q must be a clean absolute path", p)
	}
}

func (v *validator) httpURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(key, "not an http(s) URL with a host") // the value is not shown: a webhook URL may hold a token
		return
	}
	if u.User != nil {
		v.add(key, "must not carry credentials in the URL")
	}
}

func (v *validator) port(key string, p int) bool {
	if p < 1 || p > 65535 {
		v.add(key, "must be a port 1..65535, got %d", p)
		return false
	}
	return true
}
