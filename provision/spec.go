// Package provision makes a cluster's resources in a Hetzner Cloud project, on hcloud-go: the network and its
// subnet, a spread placement group, a Cloud Firewall, the shared Volume, the Floating IP with its reverse DNS, the
// secrets and the one user-data of every node, and the servers. It finds what exists by name and by the labels
// app=mailcow-ha and cluster=<name>, creates only what is missing (a larger node count adds nodes), never deletes
// but when asked to destroy or to remove a node, and never deletes the Volume unless told twice. It also lists
// clusters and prints the DNS records to set.
package provision

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Spec is what `mailcow-ha cluster create` is asked for.
type Spec struct {
	Name       string // the cluster's name: a label value, and the prefix of every resource's name
	Location   string // fsn1, nbg1, hel1
	Hostname   string // the mail server's FQDN (MAILCOW_HOSTNAME, the Floating IP's reverse DNS)
	Nodes      int    // members: 3, 5 or 7; with Arbitrator 2, 4 or 6
	ServerType string // cx32 …
	// Arbitrator adds a small server that runs only garbd (role=arbitrator): a vote for Galera's quorum, no mail and
	// no database, so that an even number of members keeps an odd number of votes.
	Arbitrator  bool
	ArbiterType string   // the arbitrator's server type
	Image       string   // a snapshot id, or "latest" (the newest of Channel)
	Channel     string   // the release channel "latest" picks from (stable)
	SSHKeys     []string // names of SSH keys in the project
	AdminCIDRs  []string // where SSH may come from (the Cloud Firewall); none: no SSH from the internet
	VolumeSize  int      // GB, the shared Volume (mailcow's data)
	DBSize      int      // GB, each node's own Volume for its Galera datadir
	IPRange     string   // the network's range; the subnet is its first /24
	// IPv6 adds an IPv6 Floating IP (a /64) that follows the MASTER with the IPv4 one.
	IPv6 bool
}

// Defaults for what the flags leave out.
const (
	DefaultLocation    = "fsn1"
	DefaultServerType  = "cx32"
	DefaultArbiterType = "cx22"
	DefaultVolumeSize  = 50
	DefaultDBSize      = 10
	DefaultIPRange     = "10.42.0.0/16"
	DefaultChannel     = "stable"
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$`)
	fqdnRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// Check returns every problem of the spec at once, each naming its flag.
func (s Spec) Check() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if !nameRE.MatchString(s.Name) {
		bad("name", "%q: lower-case letters, digits and '-', at most 42 characters", s.Name)
	}
	if s.Location == "" {
		bad("location", "missing")
	}
	if !fqdnRE.MatchString(s.Hostname) {
		bad("hostname", "%q is not a fully qualified host name (mail.example.org)", s.Hostname)
	}
	switch {
	case s.Arbitrator && s.Nodes != 2 && s.Nodes != 4 && s.Nodes != 6:
		bad("nodes", "%d with --arbitrator: 2, 4 or 6 (with the arbitrator's vote an odd number keeps Galera's quorum)", s.Nodes)
	case !s.Arbitrator && (s.Nodes == 2 || s.Nodes == 4 || s.Nodes == 6):
		bad("nodes", "%d: 3, 5 or 7 (an odd number keeps Galera's quorum: %d votes survive no more failures than %d, "+
			"and a split in halves stops both), or %d with --arbitrator (a small server that only votes, garbd)", s.Nodes, s.Nodes, s.Nodes-1, s.Nodes)
	case !s.Arbitrator && s.Nodes != 3 && s.Nodes != 5 && s.Nodes != 7:
		bad("nodes", "%d: 3, 5 or 7 (an odd number keeps Galera's quorum), or 2, 4 or 6 with --arbitrator", s.Nodes)
	}
	if s.ServerType == "" {
		bad("server-type", "missing")
	}
	if s.Arbitrator && s.ArbiterType == "" {
		bad("arbitrator-type", "missing")
	}
	if s.Image != "latest" {
		if id, err := strconv.ParseInt(s.Image, 10, 64); err != nil || id <= 0 {
			bad("image", "%q: a snapshot id, or latest", s.Image)
		}
	} else if s.Channel == "" {
		bad("channel", "missing")
	}
	for _, c := range s.AdminCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			bad("admin-cidr", "%q is not a CIDR (203.0.113.7/32)", c)
		}
	}
	if s.VolumeSize < 10 {
		bad("volume-size", "%d GB: a Volume has at least 10 GB", s.VolumeSize)
	}
	if s.DBSize < 10 {
		bad("db-size", "%d GB: a Volume has at least 10 GB", s.DBSize)
	}
	if p, err := netip.ParsePrefix(s.IPRange); err != nil || !p.Addr().Is4() || !p.Addr().IsPrivate() || p.Bits() > 24 {
		bad("ip-range", "%q: a private IPv4 range of /24 or larger", s.IPRange)
	}
	return errors.Join(errs...)
}

// Resource names: the cluster's name, alone or with a suffix.
func (s Spec) networkName() string        { return s.Name }
func (s Spec) placementGroupName() string { return s.Name }
func (s Spec) firewallName() string       { return s.Name }
func (s Spec) volumeName() string         { return s.Name + "-data" }
func (s Spec) floatingIPName() string     { return s.Name + "-ipv4" }
func (s Spec) floatingIPv6Name() string   { return s.Name + "-ipv6" }

// dbVolumeName is node i's own Volume for its Galera datadir.
func (s Spec) dbVolumeName(i int) string { return s.Name + "-db-" + strconv.Itoa(i) }

// dbVolumeLabels are the cluster's labels and what the agent finds its Volume by (purpose=galera), with the node.
func (s Spec) dbVolumeLabels(i int) map[string]string {
	l := s.Labels()
	l["purpose"] = "galera"
	l["node"] = s.ServerName(i)
	return l
}

// ServerName is the name of node i (1-based): <name>-<i>. It is also the node's name in the cluster.
func (s Spec) ServerName(i int) string { return s.Name + "-" + strconv.Itoa(i) }

// ArbiterName is the arbitrator's server name: <name>-arb.
func (s Spec) ArbiterName() string { return s.Name + "-arb" }

// arbiterLabels are the arbitrator's labels: the cluster's, and role=arbitrator (agent/membership reads it).
func (s Spec) arbiterLabels() map[string]string {
	l := s.Labels()
	l["role"] = "arbitrator"
	return l
}

// subnet is the network's first /24.
func (s Spec) subnet() string {
	p := netip.MustParsePrefix(s.IPRange).Masked()
	return netip.PrefixFrom(p.Addr(), 24).String()
}

// Labels are the two labels every resource of the cluster carries.
func (s Spec) Labels() map[string]string {
	return map[string]string{"app": "mailcow-ha", "cluster": s.Name}
}

// Selector selects every resource of the cluster.
func Selector(cluster string) string { return "app=mailcow-ha,cluster=" + cluster }

// serverLabels are node i's labels: the cluster's, and what agent/membership reads (role, priority, bootstrap on
// the first node).
func (s Spec) serverLabels(i int) map[string]string {
	l := s.Labels()
	l["role"] = "member"
	l["priority"] = strconv.Itoa(160 - 10*i)
	if i == 1 {
		l["bootstrap"] = "true"
	}
	return l
}

// domain is the hostname without its first label: the mail domain the DNS records are for.
func (s Spec) domain() string {
	_, d, _ := strings.Cut(s.Hostname, ".")
	return d
}

// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
