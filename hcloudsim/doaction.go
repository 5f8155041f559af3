package hcloudsim

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// doAction starts the action named by the URL (POST /v1/<resources>/<id>/actions/<name>) and answers 201 with it.
func (s *Sim) doAction(kind string, id int64, name string, body map[string]any) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		a   *action
		err error
	)
	switch kind + "/" + name {
	case "floating_ip/assign":
		a, err = s.assign(id, body)
	case "floating_ip/unassign":
		a, err = s.assignTo(id, 0, CmdUnassignFloatingIP)
	case "floating_ip/change_dns_ptr":
		a, err = s.changeDNSPtr(id, body)
	case "volume/attach":
		a, err = s.attach(id, body)
	case "volume/detach":
		a, err = s.detach(id)
	case "server/poweroff":
		a, err = s.power(id, CmdStopServer, false)
	case "server/shutdown":
		a, err = s.power(id, CmdShutdownServer, false)
	case "server/poweron":
		a, err = s.power(id, CmdStartServer, true)
	case "server/reset":
		a, err = s.reset(id)
	case "server/rebuild":
		a, err = s.rebuild(id, body)
	default:
		return 0, nil, notFound(fmt.Sprintf("action %q for %s", name, kind))
	}
	var le errLocked
	if errors.As(err, &le) {
		return 0, nil, apiError{http.StatusLocked, "locked", le.Error()}
	}
	if err != nil {
		return 0, nil, err
	}
	out := map[string]any{"action": actionJSON(a.snapshot(time.Now()))}
	if name == "rebuild" {
		out["root_password"] = nil // the API's answer when SSH keys are set; mailcow-ha never uses a root password
	}
	return http.StatusCreated, out, nil
}

// serverArg reads {"server": id} and checks that the server exists.
func (s *Sim) serverArg(body map[string]any) (*Server, error) {
	raw, ok := body["server"]
	if !ok {
		return nil, badInput("server is required")
	}
	f, ok := raw.(float64)
	if !ok || f <= 0 || f != float64(int64(f)) {
		return nil, badInput("server must be an id")
	}
	sv := s.server(int64(f))
	if sv == nil {
		return nil, notFound("server")
	}
	return sv, nil
}

func (s *Sim) assign(id int64, body map[string]any) (*action, error) {
	sv, err := s.serverArg(body)
	if err != nil {
		return nil, err
	}
	return s.assignTo(id, sv.ID, CmdAssignFloatingIP)
}

// assignTo routes a Floating IP to server (0: unassign). It locks only the Floating IP, so that a takeover can
// attach the Volume to the same server at the same time.
func (s *Sim) assignTo(id, server int64, cmd string) (*action, error) {
	f := s.floatingIP(id)
	if f == nil {
		return nil, notFound("floating IP")
	}
	snap := *f
	res := []resRef{{ID: id, Type: "floating_ip"}}
	if server != 0 {
		res = append(res, resRef{ID: server, Type: "server"})
	}
	return s.start(cmd, res, 1, func() error {
		return s.backend.FloatingIPRouted(snap, server)
	}, func() {
		if f := s.floatingIP(id); f != nil {
			f.Server = server
		}
	})
}

// changeDNSPtr sets (or, with "dns_ptr": null, resets) the reverse DNS name of the Floating IP's address, which
// "ip" must name.
func (s *Sim) changeDNSPtr(id int64, body map[string]any) (*action, error) {
	f := s.floatingIP(id)
	if f == nil {
		return nil, notFound("floating IP")
	}
	ip, _ := body["ip"].(string)
	if f.Type == "ipv6" {
		p, perr := netip.ParsePrefix(f.IP)
		a, aerr := netip.ParseAddr(ip)
		if perr != nil || aerr != nil || !p.Contains(a) {
			return nil, badInput("ip %q is not an address of floating IP %d (%s)", ip, id, f.IP)
		}
	} else if ip != f.IP {
		return nil, badInput("ip %q is not the address of floating IP %d", ip, id)
	}
	raw, ok := body["dns_ptr"]
	if !ok {
		return nil, badInput("dns_ptr is required (null resets it)")
	}
	ptr := ""
	if raw != nil {
		if ptr, ok = raw.(string); !ok || ptr == "" || strings.ContainsAny(ptr, " /") {
			return nil, badInput("dns_ptr must be a host name or null")
		}
	}
	return s.start(CmdChangeDNSPtr, []resRef{{ID: id, Type: "floating_ip"}}, 1, func() error { return nil }, func() {
		if f := s.floatingIP(id); f != nil {
			f.DNSPtr, f.DNSPtrIP = ptr, ""
			if f.Type == "ipv6" && ptr != "" {
				f.DNSPtrIP = ip
			}
		}
	})
}

func (s *Sim) attach(id int64, body map[string]any) (*action, error) {
	v := s.volume(id)
	if v == nil {
		return nil, notFound("volume")
	}
	sv, err := s.serverArg(body)
	if err != nil {
		return nil, err
	}
	if v.Server != 0 {
		return nil, apiError{http.StatusUnprocessableEntity, "volume_already_attached",
			fmt.Sprintf("volume %d is already attached to server %d, detach first", id, v.Server)}
	}
	if sv.Location != v.Location && sv.Location != "" && v.Location != "" {
		return nil, badInput("server and volume must be in the same location")
	}
	snap, server := *v, sv.ID
	return s.start(CmdAttachVolume, []resRef{{ID: id, Type: "volume"}, {ID: server, Type: "server"}}, 2, func() error {
		return s.backend.VolumeAttached(snap, server)
	}, func() {
		if v := s.volume(id); v != nil {
			v.Server = server
		}
	})
}

// detach detaches a Volume. Detaching a Volume that is attached nowhere finishes as a successful no-op action
// (not verified against the real API).
func (s *Sim) detach(id int64) (*action, error) {
	v := s.volume(id)
	if v == nil {
		return nil, notFound("volume")
	}
	snap, server := *v, v.Server
	res := []resRef{{ID: id, Type: "volume"}}
	if server != 0 {
		res = append(res, resRef{ID: server, Type: "server"})
	}
	return s.start(CmdDetachVolume, res, len(res), func() error {
		if server == 0 {
			return nil
		}
		return s.backend.VolumeDetached(snap, server)
	}, func() {
		if v := s.volume(id); v != nil {
			v.Server = 0
		}
	})
}

// power switches a server off (poweroff, shutdown) or on. The new status shows when the action finishes; a
// server in Faults.NoPoweroff fails its poweroff.
func (s *Sim) power(id int64, cmd string, on bool) (*action, error) {
	sv := s.server(id)
	if sv == nil {
		return nil, notFound("server")
	}
	snap := *sv
	blocked := !on && slices.Contains(s.faults.NoPoweroff, id)
	return s.start(cmd, []resRef{{ID: id, Type: "server"}}, 1, func() error {
		if blocked {
			return actionError{"action_failed", fmt.Sprintf("server %d could not be powered off", id)}
		}
		return s.backend.ServerPower(snap, on)
	}, s.statusTo(id, map[bool]string{true: "running", false: "off"}[on]))
}

// rebuild gives the server a new root disk from body's image (a name or an id, required as in the API): it is
// "rebuilding" until the action ends, then "running".
func (s *Sim) rebuild(id int64, body map[string]any) (*action, error) {
	sv := s.server(id)
	if sv == nil {
		return nil, notFound("server")
	}
	var image string
	switch v := body["image"].(type) {
	case string:
		image = v
	case float64:
		if v > 0 && v == float64(int64(v)) {
			image = fmt.Sprint(int64(v))
		}
	}
	if image == "" {
		return nil, badInput("image is required: an image's name or id")
	}
	i := slices.IndexFunc(s.st.Images, func(im Image) bool { return fmt.Sprint(im.ID) == image || (im.Name != "" && im.Name == image) })
	if i < 0 {
		return nil, notFound("image")
	}
	sv.Image = s.st.Images[i].ID // the server now reports the image it was rebuilt from
	snap := *sv
	a, err := s.start(CmdRebuildServer, []resRef{{ID: id, Type: "server"}}, 1, func() error {
		if r, ok := s.backend.(Rebuilder); ok {
			return r.ServerRebuilt(snap, image)
		}
		return s.cycle(snap)
	}, s.statusTo(id, "running"))
	if err == nil {
		sv.Status = "rebuilding"
	}
	return a, err
}

// reset cuts the power and switches it on again.
func (s *Sim) reset(id int64) (*action, error) {
	sv := s.server(id)
	if sv == nil {
		return nil, notFound("server")
	}
	snap := *sv
	return s.start(CmdResetServer, []resRef{{ID: id, Type: "server"}}, 1, func() error { return s.cycle(snap) }, s.statusTo(id, "running"))
}

// cycle cuts the server's power and switches it on again, as the backend sees it.
func (s *Sim) cycle(snap Server) error {
	if err := s.backend.ServerPower(snap, false); err != nil {
		return err
	}
	return s.backend.ServerPower(snap, true)
}

// statusTo is an action's commit that sets the server's status.
func (s *Sim) statusTo(id int64, status string) func() {
	return func() {
		if sv := s.server(id); sv != nil {
			sv.Status = status
		}
	}
}
