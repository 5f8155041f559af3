package hcloudsim

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The metadata service answers for one server, chosen in one of two ways:
//   - by path: /_metadata/<server id or name>/hetzner/v1/... (what tests and the lab use: point a node's
//     hcloud.metadata_url at http://SIM/_metadata/mx1/hetzner/v1);
//   - by source address: /hetzner/v1/... answers for the server whose public or private IP sent the request, as
//     169.254.169.254 does on a real server.
//
// Paths below /hetzner/v1: /metadata (YAML document), /metadata/hostname, /metadata/instance-id,
// /metadata/public-ipv4, /metadata/region, /metadata/availability-zone, /metadata/private-networks (YAML) and
// /userdata.

func (s *Sim) serveMetadataByPath(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/_metadata/")
	who, path, ok := strings.Cut(rest, "/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	sv, ok := s.findServer(func(sv Server) bool { return sv.Name == who || strconv.FormatInt(sv.ID, 10) == who })
	if !ok {
		http.Error(w, "no such server", http.StatusNotFound)
		return
	}
	s.serveMetadata(w, r, sv, "/"+path)
}

func (s *Sim) serveMetadataBySource(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	src, perr := netip.ParseAddr(host)
	if err != nil || perr != nil {
		http.Error(w, "bad source address", http.StatusBadRequest)
		return
	}
	ip := src.Unmap().String()
	sv, ok := s.findServer(func(sv Server) bool {
		return sv.PublicIPv4 == ip || slices.ContainsFunc(sv.PrivateNet, func(p PrivateNet) bool { return p.IP == ip })
	})
	if !ok {
		http.Error(w, "no server has the address "+src.String(), http.StatusNotFound)
		return
	}
	s.serveMetadata(w, r, sv, r.URL.Path)
}

// findServer returns a copy of the first server that match accepts.
func (s *Sim) findServer(match func(Server) bool) (Server, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sv := range s.st.Servers {
		if match(sv) {
			return sv, true
		}
	}
	return Server{}, false
}

func (s *Sim) serveMetadata(w http.ResponseWriter, r *http.Request, sv Server, path string) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	region := location(sv.Location).NetworkZone
	az := location(sv.Location).Name + "-dc14"
	w.Header().Set("Content-Type", "text/plain")
	switch strings.TrimSuffix(strings.TrimPrefix(path, "/hetzner/v1"), "/") {
	case "/userdata":
		if sv.UserData == "" {
			// A server without user-data answers with an empty body.
			return
		}
		fmt.Fprint(w, sv.UserData)
	case "/metadata/hostname":
		fmt.Fprint(w, sv.Name)
	case "/metadata/instance-id":
		fmt.Fprint(w, sv.ID)
	case "/metadata/public-ipv4":
		fmt.Fprint(w, sv.PublicIPv4)
	case "/metadata/region":
		fmt.Fprint(w, region)
	case "/metadata/availability-zone":
		fmt.Fprint(w, az)
	case "/metadata/private-networks":
		s.writePrivateNetworks(w, sv, "")
	case "/metadata":
		fmt.Fprintf(w, "availability-zone: %s\nhostname: %s\ninstance-id: %d\nlocal-ipv4: ''\npublic-ipv4: %s\nregion: %s\npublic-keys: []\nprivate-networks:\n",
			az, sv.Name, sv.ID, sv.PublicIPv4, region)
		s.writePrivateNetworks(w, sv, "  ")
	default:
		http.NotFound(w, r)
	}
}

// writePrivateNetworks writes the YAML list that the metadata service gives for private networks.
func (s *Sim) writePrivateNetworks(w http.ResponseWriter, sv Server, indent string) {
	s.mu.Lock()
	nets := map[int64]Network{}
	for _, n := range s.st.Networks {
		nets[n.ID] = n
	}
	s.mu.Unlock()
	if len(sv.PrivateNet) == 0 {
		fmt.Fprintf(w, "%s[]\n", indent)
		return
	}
	for i, p := range sv.PrivateNet {
		n := nets[p.Network]
		gw := ""
		if pfx, err := netip.ParsePrefix(n.Subnet); err == nil {
			gw = pfx.Masked().Addr().Next().String()
		}
		fmt.Fprintf(w, "%s- ip: %s\n%s  alias_ips: []\n%s  interface_num: %d\n%s  mac_address: %s\n%s  network_id: %d\n%s  network_name: %s\n%s  network: %s\n%s  subnet: %s\n%s  gateway: %s\n",
			indent, p.IP, indent, indent, i+1, indent, p.MAC, indent, p.Network, indent, n.Name, indent, n.IPRange, indent, n.Subnet, indent, gw)
	}
}
