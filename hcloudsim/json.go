package hcloudsim

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// The answers use hcloud-go's schema types, which mirror the public API, so the shapes are what clients parse.

var locations = map[string]schema.Location{
	"fsn1": {ID: 1, Name: "fsn1", Description: "Falkenstein DC Park 1", Country: "DE", City: "Falkenstein", Latitude: 50.47612, Longitude: 12.370071, NetworkZone: "eu-central"},
	"nbg1": {ID: 2, Name: "nbg1", Description: "Nuremberg DC Park 1", Country: "DE", City: "Nuremberg", Latitude: 49.452102, Longitude: 11.076665, NetworkZone: "eu-central"},
	"hel1": {ID: 3, Name: "hel1", Description: "Helsinki DC Park 1", Country: "FI", City: "Helsinki", Latitude: 60.169855, Longitude: 24.938379, NetworkZone: "eu-central"},
}

func location(name string) schema.Location {
	if l, ok := locations[name]; ok {
		return l
	}
	return locations["fsn1"]
}

// serverJSON adds the datacenter, which the API deprecated in 2026 but older clients (Debian's hcloud CLI among
// them) still read.
type serverJSON struct {
	schema.Server
	Datacenter datacenterJSON `json:"datacenter"`
}

type datacenterJSON struct {
	ID          int64           `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Location    schema.Location `json:"location"`
}

var debianImage = func() schema.Image {
	name, ver, t := "debian-12", "12", time.Date(2023, 6, 13, 0, 0, 0, 0, time.UTC)
	return schema.Image{ID: 114690387, Status: "available", Type: "system", Name: &name, Description: "Debian 12",
		DiskSize: 5, Created: &t, OSFlavor: "debian", OSVersion: &ver, Architecture: "x86", RapidDeploy: true, Labels: map[string]string{}}
}()

func (s *Sim) serverJSON(v Server) serverJSON {
	loc := location(v.Location)
	out := schema.Server{
		ID: v.ID, Name: v.Name, Status: v.Status, Created: v.Created,
		PublicNet: schema.ServerPublicNet{
			IPv4:        schema.ServerPublicNetIPv4{ID: v.ID + 100000, IP: v.PublicIPv4, DNSPtr: "static." + v.PublicIPv4 + ".clients.your-server.de"},
			IPv6:        schema.ServerPublicNetIPv6{ID: v.ID + 200000, IP: v.PublicIPv6, DNSPtr: []schema.ServerPublicNetIPv6DNSPtr{}},
			FloatingIPs: []int64{},
			Firewalls:   []schema.ServerFirewall{},
		},
		PrivateNet:      []schema.ServerPrivateNet{},
		ServerType:      serverType(v.ServerType),
		IncludedTraffic: 21990232555520,
		Location:        loc,
		Image:           &debianImage,
		Labels:          labelsOrEmpty(v.Labels),
		Volumes:         []int64{},
		PrimaryDiskSize: 40,
		LoadBalancers:   []int64{},
	}
	if v.Image != 0 {
		for _, im := range s.st.Images {
			if im.ID == v.Image {
				j := imageJSON(im)
				out.Image = &j
			}
		}
	}
	for _, g := range s.st.PlacementGroups {
		if g.ID == v.PlacementGroup {
			j := s.placementGroupJSON(g)
			out.PlacementGroup = &j
		}
	}
	for _, f := range v.Firewalls {
		out.PublicNet.Firewalls = append(out.PublicNet.Firewalls, schema.ServerFirewall{ID: f, Status: "applied"})
	}
	for _, p := range v.PrivateNet {
		out.PrivateNet = append(out.PrivateNet, schema.ServerPrivateNet{Network: p.Network, IP: p.IP, AliasIPs: []string{}, MACAddress: p.MAC})
	}
	for _, f := range s.st.FloatingIPs {
		if f.Server == v.ID {
			out.PublicNet.FloatingIPs = append(out.PublicNet.FloatingIPs, f.ID)
		}
	}
	for _, vol := range s.st.Volumes {
		if vol.Server == v.ID {
			out.Volumes = append(out.Volumes, vol.ID)
		}
	}
	_, out.Locked = s.locks[resRef{ID: v.ID, Type: "server"}]
	return serverJSON{Server: out, Datacenter: datacenterJSON{ID: loc.ID, Name: loc.Name + "-dc14", Description: loc.Description + " DC14", Location: loc}}
}

func (s *Sim) floatingIPJSON(v FloatingIP) schema.FloatingIP {
	name := v.Name
	out := schema.FloatingIP{
		ID: v.ID, Name: name, Description: &name, Created: v.Created, IP: v.IP, Type: v.Type,
		DNSPtr: []schema.FloatingIPDNSPtr{}, HomeLocation: location(v.Location), Labels: labelsOrEmpty(v.Labels),
	}
	if ptr := v.DNSPtr; ptr != "" {
		out.DNSPtr = append(out.DNSPtr, schema.FloatingIPDNSPtr{IP: cmp.Or(v.DNSPtrIP, v.IP), DNSPtr: ptr})
	} else if v.Type == "ipv4" {
		out.DNSPtr = append(out.DNSPtr, schema.FloatingIPDNSPtr{IP: v.IP, DNSPtr: "static." + v.IP + ".clients.your-server.de"})
	}
	if v.Server != 0 {
		id := v.Server
		out.Server = &id
	}
	return out
}

// LinuxDevice is where a Volume appears on its server, as Hetzner names it.
func LinuxDevice(id int64) string { return fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", id) }

func (s *Sim) volumeJSON(v Volume) schema.Volume {
	out := schema.Volume{
		ID: v.ID, Name: v.Name, Status: "available", Location: location(v.Location), Size: v.Size,
		Labels: labelsOrEmpty(v.Labels), LinuxDevice: LinuxDevice(v.ID), Created: v.Created,
	}
	if v.Format != "" {
		f := v.Format
		out.Format = &f
	}
	if v.Server != 0 {
		id := v.Server
		out.Server = &id
	}
	return out
}

func imageJSON(v Image) schema.Image {
	created := v.Created
	out := schema.Image{
		ID: v.ID, Status: "available", Type: v.Type, Description: v.Description, DiskSize: v.DiskSize,
		Created: &created, OSFlavor: "debian", Architecture: "x86", Labels: labelsOrEmpty(v.Labels),
	}
	ver := "12"
	out.OSVersion = &ver
	if v.Name != "" {
		n := v.Name
		out.Name = &n
	}
	if v.Type == "snapshot" {
		size := v.DiskSize / 4
		out.ImageSize = &size
		out.CreatedFrom = &schema.ImageCreatedFrom{ID: 1001, Name: "mx1"}
	}
	return out
}

func (s *Sim) networkJSON(v Network) schema.Network {
	out := schema.Network{
		ID: v.ID, Name: v.Name, IPRange: v.IPRange, Routes: []schema.NetworkRoute{}, Servers: []int64{},
		LoadBalancers: []int64{}, Labels: labelsOrEmpty(v.Labels), Created: v.Created,
	}
	out.Subnets = []schema.NetworkSubnet{}
	if v.Subnet != "" {
		sub := schema.NetworkSubnet{Type: "cloud", IPRange: v.Subnet, NetworkZone: v.Zone}
		if p, err := netip.ParsePrefix(v.Subnet); err == nil {
			sub.Gateway = p.Masked().Addr().Next().String()
		}
		out.Subnets = append(out.Subnets, sub)
	}
	for _, sv := range s.st.Servers {
		for _, p := range sv.PrivateNet {
			if p.Network == v.ID {
				out.Servers = append(out.Servers, sv.ID)
			}
		}
	}
	return out
}

func (s *Sim) placementGroupJSON(v PlacementGroup) schema.PlacementGroup {
	out := schema.PlacementGroup{ID: v.ID, Name: v.Name, Type: v.Type, Labels: labelsOrEmpty(v.Labels),
		Created: v.Created, Servers: []int64{}}
	for _, sv := range s.st.Servers {
		if sv.PlacementGroup == v.ID {
			out.Servers = append(out.Servers, sv.ID)
		}
	}
	return out
}

func (s *Sim) firewallJSON(v Firewall) schema.Firewall {
	out := schema.Firewall{ID: v.ID, Name: v.Name, Labels: labelsOrEmpty(v.Labels), Created: v.Created,
		Rules: []schema.FirewallRule{}, AppliedTo: []schema.FirewallResource{}}
	for _, r := range v.Rules {
		rule := schema.FirewallRule{Direction: r.Direction, Protocol: r.Protocol, SourceIPs: r.SourceIPs,
			DestinationIPs: []string{}}
		if r.Port != "" {
			p := r.Port
			rule.Port = &p
		}
		if r.Description != "" {
			d := r.Description
			rule.Description = &d
		}
		out.Rules = append(out.Rules, rule)
	}
	for _, sv := range s.st.Servers {
		if slices.Contains(sv.Firewalls, v.ID) {
			out.AppliedTo = append(out.AppliedTo, schema.FirewallResource{Type: "server", Server: &schema.FirewallResourceServer{ID: sv.ID}})
		}
	}
	return out
}

func sshKeyJSON(v SSHKey) schema.SSHKey {
	return schema.SSHKey{ID: v.ID, Name: v.Name, Fingerprint: v.Fingerprint, PublicKey: v.PublicKey,
		Labels: labelsOrEmpty(v.Labels), Created: v.Created}
}

func actionJSON(a action) schema.Action {
	out := schema.Action{ID: a.ID, Status: a.Status, Command: a.Command, Progress: a.Progress, Started: a.Started,
		Resources: []schema.ActionResourceReference{}}
	if !a.Finished.IsZero() {
		f := a.Finished
		out.Finished = &f
	}
	if a.Status == "error" {
		out.Error = &schema.ActionError{Code: a.ErrCode, Message: a.ErrMsg}
	}
	for _, r := range a.Resources {
		out.Resources = append(out.Resources, schema.ActionResourceReference{ID: r.ID, Type: r.Type})
	}
	return out
}

func labelsOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
