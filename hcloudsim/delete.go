package hcloudsim

import (
	"net/http"
	"slices"
	"time"
)

// remove answers DELETE /v1/<resources>/{id} with the API's rules: a server is deleted by an action (its Volumes
// are detached and its Floating IPs unassigned when it is gone); a Volume must be detached first; a Floating IP
// goes at once; a Firewall still applied to a server is resource_in_use; a network keeps no servers; a placement
// group may still hold servers (they leave it). Nothing is deleted while an action holds it.
func (s *Sim) remove(kind string, id int64) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.locks[resRef{ID: id, Type: kind}]; busy {
		return 0, nil, apiError{http.StatusLocked, "locked", resRef{ID: id, Type: kind}.String() + " is locked by a running action"}
	}
	switch kind {
	case "server":
		if s.server(id) == nil {
			return 0, nil, notFound("server")
		}
		snap := *s.server(id)
		a, err := s.start(CmdDeleteServer, []resRef{{ID: id, Type: "server"}}, 1, func() error {
			if d, ok := s.backend.(ServerDeleter); ok {
				return d.ServerDeleted(snap)
			}
			return nil
		}, func() {
			s.st.Servers = slices.DeleteFunc(s.st.Servers, func(v Server) bool { return v.ID == id })
			for i := range s.st.Volumes {
				if s.st.Volumes[i].Server == id {
					s.st.Volumes[i].Server = 0
				}
			}
			for i := range s.st.FloatingIPs {
				if s.st.FloatingIPs[i].Server == id {
					s.st.FloatingIPs[i].Server = 0
				}
			}
		})
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"action": actionJSON(a.snapshot(time.Now()))}, nil
	case "volume":
		v := s.volume(id)
		if v == nil {
			return 0, nil, notFound("volume")
		}
		if v.Server != 0 {
			return 0, nil, apiError{http.StatusLocked, "locked", "volume is attached to a server: detach it first"}
		}
		s.st.Volumes = slices.DeleteFunc(s.st.Volumes, func(v Volume) bool { return v.ID == id })
	case "floating_ip":
		if s.floatingIP(id) == nil {
			return 0, nil, notFound("floating IP")
		}
		s.st.FloatingIPs = slices.DeleteFunc(s.st.FloatingIPs, func(f FloatingIP) bool { return f.ID == id })
	case "firewall":
		if !slices.ContainsFunc(s.st.Firewalls, func(f Firewall) bool { return f.ID == id }) {
			return 0, nil, notFound("firewall")
		}
		if slices.ContainsFunc(s.st.Servers, func(v Server) bool { return slices.Contains(v.Firewalls, id) }) {
			return 0, nil, apiError{http.StatusConflict, "resource_in_use", "firewall is still applied to a server"}
		}
		s.st.Firewalls = slices.DeleteFunc(s.st.Firewalls, func(f Firewall) bool { return f.ID == id })
	case "network":
		if !slices.ContainsFunc(s.st.Networks, func(n Network) bool { return n.ID == id }) {
			return 0, nil, notFound("network")
		}
		if slices.ContainsFunc(s.st.Servers, func(v Server) bool {
			return slices.ContainsFunc(v.PrivateNet, func(p PrivateNet) bool { return p.Network == id })
		}) {
			return 0, nil, apiError{http.StatusConflict, "resource_in_use", "network still has servers attached"}
		}
		s.st.Networks = slices.DeleteFunc(s.st.Networks, func(n Network) bool { return n.ID == id })
	case "placement_group":
		if !slices.ContainsFunc(s.st.PlacementGroups, func(g PlacementGroup) bool { return g.ID == id }) {
			return 0, nil, notFound("placement group")
		}
		s.st.PlacementGroups = slices.DeleteFunc(s.st.PlacementGroups, func(g PlacementGroup) bool { return g.ID == id })
		for i := range s.st.Servers {
			if s.st.Servers[i].PlacementGroup == id {
				s.st.Servers[i].PlacementGroup = 0
			}
		}
	case "ssh_key":
		if !slices.ContainsFunc(s.st.SSHKeys, func(k SSHKey) bool { return k.ID == id }) {
			return 0, nil, notFound("SSH key")
		}
		s.st.SSHKeys = slices.DeleteFunc(s.st.SSHKeys, func(k SSHKey) bool { return k.ID == id })
	default:
		return 0, nil, apiError{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
	}
	return http.StatusNoContent, nil, nil
}
