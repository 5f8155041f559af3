package hcloudsim

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// This file creates servers (POST /v1/servers), as `cluster create` and `hcloud server create` do: their type,
// image, location, user-data, labels, SSH keys, placement group, firewalls, a private address in each network and
// public addresses; the create_server action hands the server to a ServerCreator backend to make it real.

// MaxUserData is the API's limit on a server's user-data (32 KiB).
const MaxUserData = 32 << 10

// ServerCreator is a Backend that makes a real machine for a server created through the API (POST /servers):
// the lab makes a node, the VM tests boot a VM with the server's user-data. It is called from the server's
// create_server action; an error fails the action, and the server stays "off". A Backend without it leaves the
// server a record that only the API knows.
type ServerCreator interface {
	ServerCreated(s Server) error
}

// ServerDeleter is a Backend that takes the real machine of a deleted server away (DELETE /servers/{id}): the lab
// powers its node off for good. It is called from the delete_server action; an error fails the action.
type ServerDeleter interface {
	ServerDeleted(s Server) error
}

// serverTypes are the server types the simulator knows, by name.
var serverTypes = map[string]schema.ServerType{
	"cx22":  {ID: 22, Name: "cx22", Description: "CX22", Cores: 2, Memory: 4, Disk: 40, StorageType: "local", CPUType: "shared", Architecture: "x86"},
	"cx32":  {ID: 23, Name: "cx32", Description: "CX32", Cores: 4, Memory: 8, Disk: 80, StorageType: "local", CPUType: "shared", Architecture: "x86"},
	"cx42":  {ID: 24, Name: "cx42", Description: "CX42", Cores: 8, Memory: 16, Disk: 160, StorageType: "local", CPUType: "shared", Architecture: "x86"},
	"cpx21": {ID: 9, Name: "cpx21", Description: "CPX 21", Cores: 3, Memory: 4, Disk: 80, StorageType: "local", CPUType: "shared", Architecture: "x86"},
	"cpx31": {ID: 10, Name: "cpx31", Description: "CPX 31", Cores: 4, Memory: 8, Disk: 160, StorageType: "local", CPUType: "shared", Architecture: "x86"},
}

func serverType(name string) schema.ServerType {
	if t, ok := serverTypes[name]; ok {
		return t
	}
	return serverTypes["cx22"]
}

// freeIPv4 is the first address of 203.0.113.0/24 from .from on that no server or Floating IP has.
func (s *Sim) freeIPv4(from int) string {
	used := map[string]bool{}
	for _, sv := range s.st.Servers {
		used[sv.PublicIPv4] = true
	}
	for _, f := range s.st.FloatingIPs {
		used[f.IP] = true
	}
	for i := from; i < 255; i++ {
		if ip := fmt.Sprintf("203.0.113.%d", i); !used[ip] {
			return ip
		}
	}
	return ""
}

// freePrivateIP is the first address of the network's subnet from .2 on that no server has (.1 is the gateway).
func (s *Sim) freePrivateIP(n Network) (string, error) {
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return "", apiError{http.StatusConflict, "no_subnet_available", fmt.Sprintf("network %d has no subnet", n.ID)}
	}
	used := map[string]bool{}
	for _, sv := range s.st.Servers {
		for _, pn := range sv.PrivateNet {
			used[pn.IP] = true
		}
	}
	for a := p.Masked().Addr().Next().Next(); p.Contains(a); a = a.Next() {
		if !used[a.String()] {
			return a.String(), nil
		}
	}
	return "", apiError{http.StatusConflict, "no_subnet_available", fmt.Sprintf("no address left in %s", n.Subnet)}
}

func (s *Sim) createServer(req schema.ServerCreateRequest, now time.Time) (int, any, error) {
	if err := checkName(req.Name); err != nil {
		return 0, nil, err
	}
	if slices.ContainsFunc(s.st.Servers, func(v Server) bool { return v.Name == req.Name }) {
		return 0, nil, uniqueness("server", req.Name)
	}
	if _, ok := serverTypes[req.ServerType.Name]; !ok {
		return 0, nil, badInput("server_type %q not found", req.ServerType.Name)
	}
	img, ok := s.imageArg(req.Image)
	if !ok {
		ref := req.Image.Name
		if ref == "" {
			ref = strconv.FormatInt(req.Image.ID, 10)
		}
		return 0, nil, badInput("image %s not found", ref)
	}
	loc := req.Location
	if loc == "" {
		loc = "fsn1"
	}
	if _, ok := locations[loc]; !ok {
		return 0, nil, badInput("unknown location %q", loc)
	}
	if len(req.UserData) > MaxUserData {
		return 0, nil, badInput("user_data is %d bytes, over the limit of %d", len(req.UserData), MaxUserData)
	}
	labels, err := labelsArg(req.Labels)
	if err != nil {
		return 0, nil, err
	}
	if len(req.Volumes) > 0 {
		return 0, nil, badInput("volumes: the simulator attaches Volumes after the server is created")
	}
	sv := Server{ID: nextID(s.st.Servers, func(v Server) int64 { return v.ID }, 1000), Name: req.Name,
		Status: "initializing", Labels: labels, UserData: req.UserData, Location: loc, Created: now,
		ServerType: req.ServerType.Name, Image: img, PlacementGroup: req.PlacementGroup}
	for _, k := range req.SSHKeys {
		if !slices.ContainsFunc(s.st.SSHKeys, func(x SSHKey) bool { return x.ID == k }) {
			return 0, nil, badInput("ssh key %d not found", k)
		}
		sv.SSHKeys = append(sv.SSHKeys, k)
	}
	if g := req.PlacementGroup; g != 0 {
		if !slices.ContainsFunc(s.st.PlacementGroups, func(x PlacementGroup) bool { return x.ID == g }) {
			return 0, nil, badInput("placement group %d not found", g)
		}
		n := 0
		for _, o := range s.st.Servers {
			if o.PlacementGroup == g {
				n++
			}
		}
		if n >= 10 {
			return 0, nil, apiError{http.StatusConflict, "placement_error", "a spread placement group holds at most 10 servers"}
		}
	}
	for _, f := range req.Firewalls {
		if !slices.ContainsFunc(s.st.Firewalls, func(x Firewall) bool { return x.ID == f.Firewall }) {
			return 0, nil, badInput("firewall %d not found", f.Firewall)
		}
		sv.Firewalls = append(sv.Firewalls, f.Firewall)
	}
	for i, nid := range req.Networks {
		j := slices.IndexFunc(s.st.Networks, func(n Network) bool { return n.ID == nid })
		if j < 0 {
			return 0, nil, badInput("network %d not found", nid)
		}
		n := s.st.Networks[j]
		if ls := zoneLocations[n.Zone]; n.Zone != "" && !slices.Contains(ls, loc) {
			return 0, nil, badInput("network %d is in zone %s, location %s is not", nid, n.Zone, loc)
		}
		ip, err := s.freePrivateIP(n)
		if err != nil {
			return 0, nil, err
		}
		sv.PrivateNet = append(sv.PrivateNet, PrivateNet{Network: nid, IP: ip,
			MAC: fmt.Sprintf("86:00:00:%02x:%02x:%02x", sv.ID>>8&0xff, sv.ID&0xff, i)})
	}
	if req.PublicNet == nil || req.PublicNet.EnableIPv4 {
		if sv.PublicIPv4 = s.freeIPv4(20); sv.PublicIPv4 == "" {
			return 0, nil, apiError{http.StatusConflict, "resource_unavailable", "no IPv4 address left"}
		}
	}
	if req.PublicNet == nil || req.PublicNet.EnableIPv6 {
		sv.PublicIPv6 = fmt.Sprintf("2001:db8:%x::/64", sv.ID)
	}
	start := req.StartAfterCreate == nil || *req.StartAfterCreate
	s.st.Servers = append(s.st.Servers, sv)
	ref := resRef{ID: sv.ID, Type: "server"}
	a, err := s.start(CmdCreateServer, []resRef{ref}, 1, func() error {
		c, ok := s.backend.(ServerCreator)
		if !ok || !start {
			return nil
		}
		err := c.ServerCreated(sv)
		if err != nil {
			s.mu.Lock()
			if p := s.server(sv.ID); p != nil {
				p.Status = "off"
			}
			s.mu.Unlock()
		}
		return err
	}, func() {
		if p := s.server(sv.ID); p != nil {
			p.Status = "off"
			if start {
				p.Status = "running"
			}
		}
	})
	if err != nil {
		return 0, nil, err
	}
	// The server with its datacenter (serverJSON), which Debian's hcloud CLI reads.
	return http.StatusCreated, map[string]any{"server": s.serverJSON(sv), "action": actionJSON(a.snapshot(now)),
		"root_password": nil, "next_actions": []schema.Action{}}, nil
}

// imageArg finds an image by id or by name (system images).
func (s *Sim) imageArg(ref schema.IDOrName) (int64, bool) {
	for _, im := range s.st.Images {
		if (ref.ID != 0 && im.ID == ref.ID) || (ref.Name != "" && im.Name == ref.Name) {
			return im.ID, true
		}
	}
	return 0, false
}
