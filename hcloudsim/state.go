package hcloudsim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// State is the simulated project: what a --state file describes and what the admin endpoint shows.
type State struct {
	Servers     []Server     `json:"servers" toml:"servers"`
	FloatingIPs []FloatingIP `json:"floating_ips" toml:"floating_ips"`
	Volumes     []Volume     `json:"volumes" toml:"volumes"`
	Images      []Image      `json:"images" toml:"images"`
	Networks    []Network    `json:"networks" toml:"networks"`
	// What `cluster create` makes besides: placement groups, Cloud Firewalls and the SSH keys servers are created
	// with.
	PlacementGroups []PlacementGroup `json:"placement_groups" toml:"placement_groups"`
	Firewalls       []Firewall       `json:"firewalls" toml:"firewalls"`
	SSHKeys         []SSHKey         `json:"ssh_keys" toml:"ssh_keys"`
}

// Server is a cloud server. Status is "running" or "off" (and "starting"/"stopping" while an action runs).
type Server struct {
	ID         int64             `json:"id" toml:"id"`
	Name       string            `json:"name" toml:"name"`
	Status     string            `json:"status" toml:"status"`
	PublicIPv4 string            `json:"public_ipv4" toml:"public_ipv4"`
	PublicIPv6 string            `json:"public_ipv6" toml:"public_ipv6"`
	PrivateNet []PrivateNet      `json:"private_net" toml:"private_net"`
	Labels     map[string]string `json:"labels" toml:"labels"`
	UserData   string            `json:"user_data" toml:"user_data"`
	Location   string            `json:"location" toml:"location"`
	Created    time.Time         `json:"created" toml:"created"`
	// Set when the server was created through the API: its type, image, placement group and Cloud Firewalls.
	ServerType     string  `json:"server_type,omitempty" toml:"server_type"`
	Image          int64   `json:"image,omitempty" toml:"image"`
	PlacementGroup int64   `json:"placement_group,omitempty" toml:"placement_group"`
	Firewalls      []int64 `json:"firewalls,omitempty" toml:"firewalls"`
	SSHKeys        []int64 `json:"ssh_keys,omitempty" toml:"ssh_keys"`
}

// PrivateNet is a server's attachment to a private network.
type PrivateNet struct {
	Network int64  `json:"network" toml:"network"`
	IP      string `json:"ip" toml:"ip"`
	MAC     string `json:"mac" toml:"mac"`
}

// FloatingIP routes to Server (0: to none).
type FloatingIP struct {
	ID       int64             `json:"id" toml:"id"`
	Name     string            `json:"name" toml:"name"`
	IP       string            `json:"ip" toml:"ip"`
	Type     string            `json:"type" toml:"type"` // ipv4 or ipv6
	Server   int64             `json:"server" toml:"server"`
	Labels   map[string]string `json:"labels" toml:"labels"`
	Location string            `json:"location" toml:"location"`
	Created  time.Time         `json:"created" toml:"created"`
	// DNSPtr is the reverse DNS name of the address ("": Hetzner's default, static.<ip>.clients.your-server.de).
	DNSPtr string `json:"dns_ptr,omitempty" toml:"dns_ptr"`
	// DNSPtrIP is the address DNSPtr is for: an IPv6 Floating IP is a /64, and its reverse DNS names one address
	// of it ("": the IPv4 address itself).
	DNSPtrIP string `json:"dns_ptr_ip,omitempty" toml:"dns_ptr_ip"`
}

// Route is what the router routes to the Floating IP's server: the IPv4 address as a /32, the IPv6 /64 as the API
// names it.
func (f FloatingIP) Route() string {
	if f.Type == "ipv6" {
		return f.IP
	}
	return f.IP + "/32"
}

// Volume is block storage attached to Server (0: to none).
type Volume struct {
	ID       int64             `json:"id" toml:"id"`
	Name     string            `json:"name" toml:"name"`
	Size     int               `json:"size" toml:"size"`
	Server   int64             `json:"server" toml:"server"`
	Labels   map[string]string `json:"labels" toml:"labels"`
	Location string            `json:"location" toml:"location"`
	Format   string            `json:"format" toml:"format"`
	Created  time.Time         `json:"created" toml:"created"`
}

// Image is a snapshot (or a system image).
type Image struct {
	ID          int64             `json:"id" toml:"id"`
	Type        string            `json:"type" toml:"type"`
	Name        string            `json:"name" toml:"name"` // empty for snapshots, as at Hetzner
	Description string            `json:"description" toml:"description"`
	Labels      map[string]string `json:"labels" toml:"labels"`
	Created     time.Time         `json:"created" toml:"created"`
	DiskSize    float32           `json:"disk_size" toml:"disk_size"`
}

// Network is a private network.
type Network struct {
	ID      int64             `json:"id" toml:"id"`
	Name    string            `json:"name" toml:"name"`
	IPRange string            `json:"ip_range" toml:"ip_range"`
	Subnet  string            `json:"subnet" toml:"subnet"`
	Zone    string            `json:"zone" toml:"zone"`
	Labels  map[string]string `json:"labels,omitempty" toml:"labels"`
	Created time.Time         `json:"created" toml:"created"`
}

// PlacementGroup keeps its servers on different hosts (type "spread", the only one the API has).
type PlacementGroup struct {
	ID      int64             `json:"id" toml:"id"`
	Name    string            `json:"name" toml:"name"`
	Type    string            `json:"type" toml:"type"`
	Labels  map[string]string `json:"labels" toml:"labels"`
	Created time.Time         `json:"created" toml:"created"`
}

// Firewall is a Cloud Firewall: inbound rules (everything else inbound is dropped) applied to servers.
type Firewall struct {
	ID      int64             `json:"id" toml:"id"`
	Name    string            `json:"name" toml:"name"`
	Rules   []FirewallRule    `json:"rules" toml:"rules"`
	Labels  map[string]string `json:"labels" toml:"labels"`
	Created time.Time         `json:"created" toml:"created"`
}

// FirewallRule allows traffic of Protocol (tcp, udp, icmp, esp, gre) to Port ("25", "80-443"; empty for icmp)
// from SourceIPs (CIDRs).
type FirewallRule struct {
	Direction   string   `json:"direction" toml:"direction"`
	Protocol    string   `json:"protocol" toml:"protocol"`
	Port        string   `json:"port,omitempty" toml:"port"`
	SourceIPs   []string `json:"source_ips" toml:"source_ips"`
	Description string   `json:"description,omitempty" toml:"description"`
}

// SSHKey is a public key servers can be created with.
type SSHKey struct {
	ID          int64             `json:"id" toml:"id"`
	Name        string            `json:"name" toml:"name"`
	PublicKey   string            `json:"public_key" toml:"public_key"`
	Fingerprint string            `json:"fingerprint" toml:"fingerprint"`
	Labels      map[string]string `json:"labels" toml:"labels"`
	Created     time.Time         `json:"created" toml:"created"`
}

// DemoToken is the demo project's API token: 64 characters, as real tokens and the official CLI expect.
const DemoToken = "mailcowhademo000000000000000000000000000000000000000000000000000"

// DemoState is the project the simulator starts with when it has no state file: three servers mx1..mx3 on a
// private network, one IPv4 Floating IP and one Volume, both unassigned, two snapshots labelled app=mailcow-ha and
// channel=stable, and a newer one of channel=testing.
func DemoState() State {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var st State
	st.Networks = []Network{{ID: 4001, Name: "mailcow-ha", IPRange: "10.99.0.0/16", Subnet: "10.99.0.0/24", Zone: "eu-central"}}
	for i := 1; i <= 3; i++ {
		st.Servers = append(st.Servers, Server{
			ID:         int64(1000 + i),
			Name:       fmt.Sprintf("mx%d", i),
			Status:     "running",
			PublicIPv4: fmt.Sprintf("203.0.113.%d", 10+i),
			PublicIPv6: fmt.Sprintf("2001:db8:%d::/64", i),
			PrivateNet: []PrivateNet{{Network: 4001, IP: fmt.Sprintf("10.99.0.%d", 10+i), MAC: fmt.Sprintf("86:00:00:00:00:%02x", i)}},
			Labels:     map[string]string{"cluster": "mailcow-ha"},
			Location:   "fsn1",
			Created:    t0,
		})
	}
	st.FloatingIPs = []FloatingIP{{ID: 2001, Name: "mail", IP: "203.0.113.100", Type: "ipv4", Location: "fsn1", Created: t0, Labels: map[string]string{}}}
	st.Volumes = []Volume{{ID: 3001, Name: "mailcow-data", Size: 10, Location: "fsn1", Format: "ext4", Created: t0, Labels: map[string]string{}}}
	st.Images = []Image{
		{ID: 5001, Type: "snapshot", Description: "mailcow-ha 2026.10", Labels: map[string]string{"app": "mailcow-ha", "version": "2026.10", "channel": "stable"}, Created: t0.AddDate(0, 9, 0), DiskSize: 20},
		{ID: 5002, Type: "snapshot", Description: "mailcow-ha 2026.11", Labels: map[string]string{"app": "mailcow-ha", "version": "2026.11", "channel": "stable"}, Created: t0.AddDate(0, 10, 0), DiskSize: 20},
		{ID: 5003, Type: "snapshot", Description: "unrelated", Labels: map[string]string{"app": "other"}, Created: t0.AddDate(0, 10, 5), DiskSize: 20},
		// A testing build, newer than every stable one: `image latest` and `cluster create` must not pick it.
		{ID: 5004, Type: "snapshot", Description: "mailcow-ha 2026.12-rc1", Labels: map[string]string{"app": "mailcow-ha", "version": "2026.12-rc1", "channel": "testing"}, Created: t0.AddDate(0, 10, 20), DiskSize: 20},
		{ID: 67794396, Type: "system", Name: "debian-12", Description: "Debian 12", Labels: map[string]string{}, Created: t0, DiskSize: 5},
	}
	return st
}

// EmptyProject is a project before `cluster create`: the demo project's images (the appliance snapshots of both
// channels and a system image) and nothing else.
func EmptyProject() State {
	return State{Images: DemoState().Images}
}

// LoadState reads a project from a JSON or TOML file (by its extension).
func LoadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return State{}, fmt.Errorf("state: %w", err)
	}
	var st State
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			return State{}, fmt.Errorf("state %s: %w", path, err)
		}
	case ".toml":
		md, err := toml.Decode(string(b), &st)
		if err != nil {
			return State{}, fmt.Errorf("state %s: %w", path, err)
		}
		if u := md.Undecoded(); len(u) > 0 {
			return State{}, fmt.Errorf("state %s: unknown key %s", path, u[0])
		}
	default:
		return State{}, fmt.Errorf("state %s: use a .json or .toml file", path)
	}
	return st, st.check()
}

// empty says whether the state holds nothing at all (New then starts the demo project). A project that is to
// start empty, as for `cluster create`, holds at least its images.
func (st State) empty() bool {
	return st.Servers == nil && st.FloatingIPs == nil && st.Volumes == nil && st.Images == nil && st.Networks == nil &&
		st.PlacementGroups == nil && st.Firewalls == nil && st.SSHKeys == nil
}

// check refuses a project that the API could not hold: duplicate ids, or owners that do not exist.
func (st State) check() error {
	ids := map[string]map[int64]bool{}
	seen := func(kind string, id int64) error {
		if id <= 0 {
			return fmt.Errorf("state: %s with id %d", kind, id)
		}
		if ids[kind] == nil {
			ids[kind] = map[int64]bool{}
		}
		if ids[kind][id] {
			return fmt.Errorf("state: duplicate %s id %d", kind, id)
		}
		ids[kind][id] = true
		return nil
	}
	for _, s := range st.Servers {
		if err := seen("server", s.ID); err != nil {
			return err
		}
		if s.Status != "running" && s.Status != "off" {
			return fmt.Errorf("state: server %d: status %q (want running or off)", s.ID, s.Status)
		}
	}
	for _, f := range st.FloatingIPs {
		if err := seen("floating_ip", f.ID); err != nil {
			return err
		}
		if f.Server != 0 && !ids["server"][f.Server] {
			return fmt.Errorf("state: floating IP %d assigned to unknown server %d", f.ID, f.Server)
		}
	}
	for _, v := range st.Volumes {
		if err := seen("volume", v.ID); err != nil {
			return err
		}
		if v.Server != 0 && !ids["server"][v.Server] {
			return fmt.Errorf("state: volume %d attached to unknown server %d", v.ID, v.Server)
		}
	}
	for _, im := range st.Images {
		if err := seen("image", im.ID); err != nil {
			return err
		}
	}
	for _, n := range st.Networks {
		if err := seen("network", n.ID); err != nil {
			return err
		}
	}
	for _, g := range st.PlacementGroups {
		if err := seen("placement_group", g.ID); err != nil {
			return err
		}
	}
	for _, f := range st.Firewalls {
		if err := seen("firewall", f.ID); err != nil {
			return err
		}
	}
	for _, k := range st.SSHKeys {
		if err := seen("ssh_key", k.ID); err != nil {
			return err
		}
	}
	return nil
}
