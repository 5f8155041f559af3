package hcloudsim

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// This file creates resources (POST /v1/<resources>), as `mailcow-ha cluster create` and `hcloud … create` do:
// networks with a subnet, spread placement groups, Cloud Firewalls, SSH keys, Volumes, Floating IPs, and servers
// (createserver.go).
// Names are unique per kind (uniqueness_error), as in a real project; labels are checked like the API checks them.

// create answers POST /v1/<resources>.
func (s *Sim) create(kind string, r *http.Request) (int, any, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return 0, nil, apiError{http.StatusBadRequest, "json_error", "request too large"}
	}
	decode := func(v any) error {
		if err := json.Unmarshal(b, v); err != nil {
			return apiError{http.StatusBadRequest, "json_error", "invalid JSON: " + err.Error()}
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC()
	switch kind {
	case "network":
		var req schema.NetworkCreateRequest
		if err := decode(&req); err != nil {
			return 0, nil, err
		}
		return s.createNetwork(req, now)
	case "placement_group":
		var req schema.PlacementGroupCreateRequest
		if err := decode(&req); err != nil {
			return 0, nil, err
		}
		return s.createPlacementGroup(req, now)
	case "firewall":
		var req schema.FirewallCreateRequest
		if err := decode(&req); err != nil {
			return 0, nil, err
		}
		return s.createFirewall(req, now)
	case "ssh_key":
		var req schema.SSHKeyCreateRequest
		if err := decode(&req); err != nil {
			return 0, nil, err
		}
		return s.createSSHKey(req, now)
	case "volume":
		var req schema.VolumeCreateRequest
		if err := decode(&req); err != nil {
			return 0, nil, err
		}
		return s.createVolume(req, now)
	case "floating_ip":
		var req schema.FloatingIPCreateRequest
		if err := decode(&req); err != nil {
			return 0, nil, err
		}
		return s.createFloatingIP(req, now)
	case "server":
		var req schema.ServerCreateRequest
		if err := decode(&req); err != nil {
			return 0, nil, err
		}
		return s.createServer(req, now)
	}
	return 0, nil, apiError{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
}

// nextID is one more than the highest id of a kind (ids stay apart by kind, as the demo project's do).
func nextID[T any](items []T, id func(T) int64, base int64) int64 {
	n := base
	for _, it := range items {
		n = max(n, id(it))
	}
	return n + 1
}

func uniqueness(kind, name string) error {
	return apiError{http.StatusConflict, "uniqueness_error", fmt.Sprintf("%s name %q is already used", kind, name)}
}

// checkName is the API's rule for resource names: 1 to 63 characters, letters, digits, '.', '-' and '_'
// (servers: a host name).
func checkName(name string) error {
	if name == "" || len(name) > 63 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "" {
		return badInput("invalid name %q", name)
	}
	return nil
}

// labelsArg checks labels as the API does: keys of at most 63 characters with an optional DNS prefix, values of at
// most 63 characters, both of letters, digits, '-', '_' and '.'.
func labelsArg(p *map[string]string) (map[string]string, error) {
	out := map[string]string{}
	if p == nil {
		return out, nil
	}
	ok := func(v string) bool {
		return len(v) <= 63 && strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == ""
	}
	for k, v := range *p {
		name := k
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			name = k[i+1:]
		}
		if name == "" || !ok(name) || !ok(v) {
			return nil, badInput("invalid label %q=%q", k, v)
		}
		out[k] = v
	}
	return out, nil
}

func (s *Sim) createNetwork(req schema.NetworkCreateRequest, now time.Time) (int, any, error) {
	if err := checkName(req.Name); err != nil {
		return 0, nil, err
	}
	if slices.ContainsFunc(s.st.Networks, func(n Network) bool { return n.Name == req.Name }) {
		return 0, nil, uniqueness("network", req.Name)
	}
	rng, err := netip.ParsePrefix(req.IPRange)
	if err != nil || !rng.Addr().Is4() || !rng.Addr().IsPrivate() || rng.Bits() > 24 {
		return 0, nil, badInput("ip_range %q: want a private IPv4 range of /24 or larger", req.IPRange)
	}
	labels, err := labelsArg(req.Labels)
	if err != nil {
		return 0, nil, err
	}
	n := Network{ID: nextID(s.st.Networks, func(n Network) int64 { return n.ID }, 4000), Name: req.Name,
		IPRange: rng.String(), Labels: labels, Created: now}
	if len(req.Subnets) > 1 {
		return 0, nil, badInput("the simulator keeps one subnet per network")
	}
	for _, sub := range req.Subnets {
		p, err := netip.ParsePrefix(sub.IPRange)
		if err != nil || !rng.Contains(p.Addr()) || p.Bits() < rng.Bits() || sub.Type != "cloud" {
			return 0, nil, badInput("subnet %q: want a cloud subnet inside %s", sub.IPRange, rng)
		}
		if _, ok := zoneLocations[sub.NetworkZone]; !ok {
			return 0, nil, badInput("subnet %q: unknown network_zone %q", sub.IPRange, sub.NetworkZone)
		}
		n.Subnet, n.Zone = p.String(), sub.NetworkZone
	}
	s.st.Networks = append(s.st.Networks, n)
	return http.StatusCreated, schema.NetworkCreateResponse{Network: s.networkJSON(n)}, nil
}

// zoneLocations are the network zones and their locations.
var zoneLocations = map[string][]string{"eu-central": {"fsn1", "nbg1", "hel1"}}

func (s *Sim) createPlacementGroup(req schema.PlacementGroupCreateRequest, now time.Time) (int, any, error) {
	if err := checkName(req.Name); err != nil {
		return 0, nil, err
	}
	if req.Type != "spread" {
		return 0, nil, badInput("placement group type %q: the API has only spread", req.Type)
	}
	if slices.ContainsFunc(s.st.PlacementGroups, func(g PlacementGroup) bool { return g.Name == req.Name }) {
		return 0, nil, uniqueness("placement group", req.Name)
	}
	labels, err := labelsArg(req.Labels)
	if err != nil {
		return 0, nil, err
	}
	g := PlacementGroup{ID: nextID(s.st.PlacementGroups, func(g PlacementGroup) int64 { return g.ID }, 6000),
		Name: req.Name, Type: req.Type, Labels: labels, Created: now}
	s.st.PlacementGroups = append(s.st.PlacementGroups, g)
	return http.StatusCreated, schema.PlacementGroupCreateResponse{PlacementGroup: s.placementGroupJSON(g)}, nil
}

func (s *Sim) createFirewall(req schema.FirewallCreateRequest, now time.Time) (int, any, error) {
	if err := checkName(req.Name); err != nil {
		return 0, nil, err
	}
	if slices.ContainsFunc(s.st.Firewalls, func(f Firewall) bool { return f.Name == req.Name }) {
		return 0, nil, uniqueness("firewall", req.Name)
	}
	labels, err := labelsArg(req.Labels)
	if err != nil {
		return 0, nil, err
	}
	if len(req.ApplyTo) > 0 {
		return 0, nil, badInput("apply_to: the simulator applies Firewalls when servers are created")
	}
	f := Firewall{ID: nextID(s.st.Firewalls, func(f Firewall) int64 { return f.ID }, 7000), Name: req.Name,
		Labels: labels, Created: now}
	for i, r := range req.Rules {
		rule := FirewallRule{Direction: r.Direction, Protocol: r.Protocol, SourceIPs: r.SourceIPs}
		if r.Port != nil {
			rule.Port = *r.Port
		}
		if r.Description != nil {
			rule.Description = *r.Description
		}
		if err := rule.check(); err != nil {
			return 0, nil, badInput("rules[%d]: %v", i, err)
		}
		f.Rules = append(f.Rules, rule)
	}
	s.st.Firewalls = append(s.st.Firewalls, f)
	return http.StatusCreated, schema.FirewallCreateResponse{Firewall: s.firewallJSON(f), Actions: []schema.Action{}}, nil
}

// check is the API's validation of an inbound rule.
func (r FirewallRule) check() error {
	if r.Direction != "in" {
		return fmt.Errorf("direction %q: only inbound rules are simulated", r.Direction)
	}
	switch r.Protocol {
	case "tcp", "udp":
		if r.Port == "" {
			return fmt.Errorf("protocol %s needs a port", r.Protocol)
		}
	case "icmp", "esp", "gre":
		if r.Port != "" {
			return fmt.Errorf("protocol %s takes no port", r.Protocol)
		}
	default:
		return fmt.Errorf("unknown protocol %q", r.Protocol)
	}
	if len(r.SourceIPs) == 0 {
		return errors.New("source_ips is empty")
	}
	for _, c := range r.SourceIPs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("source_ips: %q is not a CIDR", c)
		}
	}
	return nil
}

func (s *Sim) createSSHKey(req schema.SSHKeyCreateRequest, now time.Time) (int, any, error) {
	if err := checkName(strings.ReplaceAll(req.Name, " ", "_")); err != nil {
		return 0, nil, err
	}
	if slices.ContainsFunc(s.st.SSHKeys, func(k SSHKey) bool { return k.Name == req.Name }) {
		return 0, nil, uniqueness("SSH key", req.Name)
	}
	f := strings.Fields(req.PublicKey)
	if len(f) < 2 || !strings.HasPrefix(f[0], "ssh-") && !strings.HasPrefix(f[0], "ecdsa-") {
		return 0, nil, badInput("public_key is not an OpenSSH public key")
	}
	raw, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return 0, nil, badInput("public_key is not an OpenSSH public key")
	}
	labels, err := labelsArg(req.Labels)
	if err != nil {
		return 0, nil, err
	}
	sum := md5.Sum(raw)
	var fp []string
	for _, b := range sum {
		fp = append(fp, fmt.Sprintf("%02x", b))
	}
	k := SSHKey{ID: nextID(s.st.SSHKeys, func(k SSHKey) int64 { return k.ID }, 8000), Name: req.Name,
		PublicKey: req.PublicKey, Fingerprint: strings.Join(fp, ":"), Labels: labels, Created: now}
	s.st.SSHKeys = append(s.st.SSHKeys, k)
	return http.StatusCreated, schema.SSHKeyCreateResponse{SSHKey: sshKeyJSON(k)}, nil
}

func (s *Sim) createVolume(req schema.VolumeCreateRequest, now time.Time) (int, any, error) {
	if err := checkName(req.Name); err != nil {
		return 0, nil, err
	}
	if slices.ContainsFunc(s.st.Volumes, func(v Volume) bool { return v.Name == req.Name }) {
		return 0, nil, uniqueness("volume", req.Name)
	}
	if req.Size < 10 || req.Size > 10240 {
		return 0, nil, badInput("size %d: a Volume has 10 to 10240 GB", req.Size)
	}
	if req.Server != nil {
		return 0, nil, badInput("server: the simulator creates Volumes detached (give location)")
	}
	if req.Location == nil || req.Location.Name == "" {
		return 0, nil, badInput("location is required")
	}
	if _, ok := locations[req.Location.Name]; !ok {
		return 0, nil, badInput("unknown location %q", req.Location.Name)
	}
	format := ""
	if req.Format != nil {
		if format = *req.Format; format != "ext4" && format != "xfs" {
			return 0, nil, badInput("format %q: ext4 or xfs", format)
		}
	}
	labels, err := labelsArg(req.Labels)
	if err != nil {
		return 0, nil, err
	}
	v := Volume{ID: nextID(s.st.Volumes, func(v Volume) int64 { return v.ID }, 3000), Name: req.Name, Size: req.Size,
		Location: req.Location.Name, Format: format, Labels: labels, Created: now}
	s.st.Volumes = append(s.st.Volumes, v)
	a, err := s.start(CmdCreateVolume, []resRef{{ID: v.ID, Type: "volume"}}, 1, func() error { return nil }, func() {})
	if err != nil {
		return 0, nil, err
	}
	act := actionJSON(a.snapshot(now))
	return http.StatusCreated, schema.VolumeCreateResponse{Volume: s.volumeJSON(v), Action: &act, NextActions: []schema.Action{}}, nil
}

func (s *Sim) createFloatingIP(req schema.FloatingIPCreateRequest, now time.Time) (int, any, error) {
	name := ""
	if req.Name != nil {
		name = *req.Name
	} else if req.Description != nil {
		name = *req.Description
	}
	if name != "" && slices.ContainsFunc(s.st.FloatingIPs, func(f FloatingIP) bool { return f.Name == name }) {
		return 0, nil, uniqueness("floating IP", name)
	}
	if req.Server != nil {
		return 0, nil, badInput("server: the simulator creates Floating IPs unassigned (give home_location)")
	}
	if req.HomeLocation == nil {
		return 0, nil, badInput("home_location is required")
	}
	if _, ok := locations[*req.HomeLocation]; !ok {
		return 0, nil, badInput("unknown location %q", *req.HomeLocation)
	}
	labels, err := labelsArg(req.Labels)
	if err != nil {
		return 0, nil, err
	}
	id := nextID(s.st.FloatingIPs, func(f FloatingIP) int64 { return f.ID }, 2000)
	var ip string
	switch req.Type {
	case "ipv4":
		ip = s.freeIPv4(100)
	case "ipv6":
		ip = fmt.Sprintf("2001:db8:f%03x::/64", id%0x1000) // the API names an IPv6 Floating IP by its /64
	default:
		return 0, nil, badInput("type %q: ipv4 or ipv6", req.Type)
	}
	if ip == "" {
		return 0, nil, apiError{http.StatusConflict, "resource_unavailable", "no IPv4 address left"}
	}
	f := FloatingIP{ID: id, Name: name, IP: ip, Type: req.Type, Labels: labels, Location: *req.HomeLocation, Created: now}
	s.st.FloatingIPs = append(s.st.FloatingIPs, f)
	return http.StatusCreated, schema.FloatingIPCreateResponse{FloatingIP: s.floatingIPJSON(f)}, nil
}
