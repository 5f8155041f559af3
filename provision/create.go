package provision

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Step is one resource of the plan: what it is, its name, and whether it exists (with its id) or is to be made.
type Step struct {
	Kind   string // network, placement group, firewall, volume, floating IP, reverse DNS, server
	Name   string
	ID     int64 // 0: to be created
	Detail string
}

// Exists says whether the resource is there already.
func (s Step) Exists() bool { return s.ID != 0 }

// Result is what Create found or made.
type Result struct {
	Steps        []Step
	NetworkID    int64
	FloatingIPID int64
	FloatingIP   string
	// FloatingIPv6 is the address the IPv6 Floating IP's /64 serves on (its ::1; "" without --ipv6).
	FloatingIPv6ID int64
	FloatingIPv6   string
	VolumeID       int64
	ImageID        int64
	Servers        []int64
	Created        int // resources made by this run
}

// Options are Create's collaborators.
type Options struct {
	// Secrets is where the cluster's secrets and the user-data live (--out): read when there, made when not.
	Secrets *Secrets
	// Endpoint goes into the user-data when it is not the public API's (a simulator).
	Endpoint string
	// Token is the API token the agents use, inline in the user-data (written to a 0600 file at the first start).
	Token string
	// Settings are --config's, for every node (ReadSettings).
	Settings map[string]any
	DryRun   bool
	Log      io.Writer
}

// notOurs is the error for a resource of the right name without the cluster's labels.
func notOurs(kind, name string, labels map[string]string, s Spec) error {
	return fmt.Errorf("%s %q exists but is not labelled %s (its labels: %v): it is not this cluster's; "+
		"rename it, or choose another --name", kind, name, Selector(s.Name), labels)
}

func ours(labels map[string]string, s Spec) bool {
	return labels["app"] == "mailcow-ha" && labels["cluster"] == s.Name
}

// networkZone is the network zone of a location.
func networkZone(location string) hc.NetworkZone {
	switch strings.TrimRight(location, "0123456789") {
	case "ash":
		return hc.NetworkZoneUSEast
	case "hil":
		return hc.NetworkZoneUSWest
	case "sin":
		return hc.NetworkZoneAPSouthEast
	}
	return hc.NetworkZoneEUCentral
}

// project is what Create found in the project, and then made: the cluster's resources by kind (nil: missing).
type project struct {
	network *hc.Network
	pg      *hc.PlacementGroup
	fw      *hc.Firewall
	vol     *hc.Volume
	fip     *hc.FloatingIP
	fip6    *hc.FloatingIP // --ipv6
	dbVols  []*hc.Volume   // by node, 1-based
	servers []*hc.Server   // by node, 1-based
	arb     *hc.Server     // the arbitrator (Spec.Arbitrator)
	img     *hc.Image
	keys    []*hc.SSHKey
	// ids are the ids of what exists, by resource name (for the plan's lines).
	ids map[string]int64
}

// run is one Create: the spec, the client and the plan being written.
type run struct {
	c *hc.Client
	s Spec
	o Options
	r Result
}

// say records a step of the plan and prints it.
func (x *run) say(st Step) {
	x.r.Steps = append(x.r.Steps, st)
	if x.o.Log == nil {
		return
	}
	verb := "exists "
	switch {
	case !st.Exists() && x.o.DryRun:
		verb = "create "
	case !st.Exists():
		verb = "created"
	}
	fmt.Fprintf(x.o.Log, "%s  %-15s %-22s %s\n", verb, st.Kind, st.Name, st.Detail)
}

// Create makes what the spec asks for and is missing, in order: network, placement group, firewall, Volumes,
// Floating IP (with its reverse DNS), then the servers with the one user-data, and each node's Volume attached to
// it. It changes nothing that exists. With DryRun it only finds out and returns the plan.
func Create(ctx context.Context, c *hc.Client, s Spec, o Options) (Result, error) {
	if err := s.Check(); err != nil {
		return Result{}, err
	}
	x := &run{c: c, s: s, o: o}
	p, err := x.find(ctx)
	if err != nil {
		return x.r, err
	}
	x.r.ImageID = p.img.ID
	if err := x.shared(ctx, p); err != nil {
		return x.r, err
	}
	if o.DryRun {
		for i := 1; i <= s.Nodes; i++ {
			x.say(Step{Kind: "server", Name: s.ServerName(i), ID: p.ids[s.ServerName(i)], Detail: serverDetail(s, i, p.img)})
		}
		if s.Arbitrator {
			x.say(Step{Kind: "server", Name: s.ArbiterName(), ID: p.ids[s.ArbiterName()], Detail: arbiterDetail(s, p.img)})
		}
		return x.r, nil
	}
	x.r.NetworkID, x.r.VolumeID, x.r.FloatingIPID, x.r.FloatingIP = p.network.ID, p.vol.ID, p.fip.ID, p.fip.IP.String()
	if p.fip6 != nil {
		x.r.FloatingIPv6ID, x.r.FloatingIPv6 = p.fip6.ID, IPv6Address(p.fip6).String()
	}
	if err := x.servers(ctx, p); err != nil {
		return x.r, err
	}
	for i := 1; i <= s.Nodes; i++ {
		x.r.Servers = append(x.r.Servers, p.servers[i].ID)
	}
	if p.arb != nil {
		x.r.Servers = append(x.r.Servers, p.arb.ID)
	}
	return x.r, nil
}

// find reads everything first: a wrong token, or a resource of the cluster's name that is not the cluster's,
// stops the run before anything is made.
func (x *run) find(ctx context.Context) (*project, error) {
	c, s := x.c, x.s
	p := &project{dbVols: make([]*hc.Volume, s.Nodes+1), servers: make([]*hc.Server, s.Nodes+1), ids: map[string]int64{}}
	// found checks and records one resource that exists.
	found := func(kind, name string, id int64, labels map[string]string) error {
		if !ours(labels, s) {
			return notOurs(kind, name, labels, s)
		}
		p.ids[name] = id
		return nil
	}
	var err error
	if p.network, _, err = c.Network.GetByName(ctx, s.networkName()); err != nil {
		return nil, apiErr("read the networks", err)
	} else if p.network != nil {
		if err := found("network", s.networkName(), p.network.ID, p.network.Labels); err != nil {
			return nil, err
		}
	}
	if p.pg, _, err = c.PlacementGroup.GetByName(ctx, s.placementGroupName()); err != nil {
		return nil, apiErr("read the placement groups", err)
	} else if p.pg != nil {
		if err := found("placement group", s.placementGroupName(), p.pg.ID, p.pg.Labels); err != nil {
			return nil, err
		}
	}
	if p.fw, _, err = c.Firewall.GetByName(ctx, s.firewallName()); err != nil {
		return nil, apiErr("read the firewalls", err)
	} else if p.fw != nil {
		if err := found("firewall", s.firewallName(), p.fw.ID, p.fw.Labels); err != nil {
			return nil, err
		}
	}
	if p.vol, _, err = c.Volume.GetByName(ctx, s.volumeName()); err != nil {
		return nil, apiErr("read the volumes", err)
	} else if p.vol != nil {
		if err := found("volume", s.volumeName(), p.vol.ID, p.vol.Labels); err != nil {
			return nil, err
		}
	}
	if p.fip, _, err = c.FloatingIP.GetByName(ctx, s.floatingIPName()); err != nil {
		return nil, apiErr("read the floating IPs", err)
	} else if p.fip != nil {
		if err := found("floating IP", s.floatingIPName(), p.fip.ID, p.fip.Labels); err != nil {
			return nil, err
		}
	}
	if s.IPv6 {
		if p.fip6, _, err = c.FloatingIP.GetByName(ctx, s.floatingIPv6Name()); err != nil {
			return nil, apiErr("read the floating IPs", err)
		} else if p.fip6 != nil {
			if err := found("floating IP", s.floatingIPv6Name(), p.fip6.ID, p.fip6.Labels); err != nil {
				return nil, err
			}
		}
	}
	existing := 0
	for i := 1; i <= s.Nodes; i++ {
		if p.dbVols[i], _, err = c.Volume.GetByName(ctx, s.dbVolumeName(i)); err != nil {
			return nil, apiErr("read the volumes", err)
		} else if v := p.dbVols[i]; v != nil {
			if err := found("volume", s.dbVolumeName(i), v.ID, v.Labels); err != nil {
				return nil, err
			}
		}
		if p.servers[i], _, err = c.Server.GetByName(ctx, s.ServerName(i)); err != nil {
			return nil, apiErr("read the servers", err)
		} else if sv := p.servers[i]; sv != nil {
			existing++
			if err := found("server", s.ServerName(i), sv.ID, sv.Labels); err != nil {
				return nil, err
			}
		}
	}
	if s.Arbitrator {
		if p.arb, _, err = c.Server.GetByName(ctx, s.ArbiterName()); err != nil {
			return nil, apiErr("read the servers", err)
		} else if p.arb != nil {
			existing++
			if err := found("server", s.ArbiterName(), p.arb.ID, p.arb.Labels); err != nil {
				return nil, err
			}
		}
	}
	if p.img, err = resolveImage(ctx, c, s); err != nil {
		return nil, err
	}
	for _, name := range s.SSHKeys {
		k, _, err := c.SSHKey.GetByName(ctx, name)
		if err != nil {
			return nil, apiErr("read the SSH keys", err)
		}
		if k == nil {
			return nil, fmt.Errorf("--ssh-key %q: no SSH key of that name in the project (hcloud ssh-key create)", name)
		}
		p.keys = append(p.keys, k)
	}
	// Servers that exist were made with secrets that only --out holds: without them, a missing node would get
	// others and never join, and --out would hold secrets that no node has.
	if existing > 0 && !x.o.DryRun && !x.o.Secrets.Exist() {
		return nil, fmt.Errorf("%d of %d servers exist, but %s has no secrets of this cluster: give --out the directory "+
			"of the first run (the missing servers need the same user-data)", existing, s.Nodes+btoi(s.Arbitrator), x.o.Secrets.Dir)
	}
	return p, nil
}

// shared makes the cluster's resources that are not a server's: the network and its subnet, the placement group,
// the Cloud Firewall, the Volumes, the Floating IP and its reverse DNS.
func (x *run) shared(ctx context.Context, p *project) error {
	c, s, dry := x.c, x.s, x.o.DryRun
	labels := s.Labels()
	// The network and its subnet.
	netDetail := s.IPRange + ", subnet " + s.subnet()
	if p.network == nil && !dry {
		_, rng, _ := net.ParseCIDR(s.IPRange)
		_, sub, _ := net.ParseCIDR(s.subnet())
		var err error
		if p.network, _, err = c.Network.Create(ctx, hc.NetworkCreateOpts{Name: s.networkName(), IPRange: rng, Labels: labels,
			Subnets: []hc.NetworkSubnet{{Type: hc.NetworkSubnetTypeCloud, IPRange: sub, NetworkZone: networkZone(s.Location)}}}); err != nil {
			return apiErr("create the network", err)
		}
		x.r.Created++
		x.say(Step{Kind: "network", Name: s.networkName(), Detail: netDetail})
	} else {
		x.say(Step{Kind: "network", Name: s.networkName(), ID: p.ids[s.networkName()], Detail: netDetail})
	}
	// The spread placement group: no two nodes on one host.
	if p.pg == nil && !dry {
		res, _, err := c.PlacementGroup.Create(ctx, hc.PlacementGroupCreateOpts{Name: s.placementGroupName(), Labels: labels,
			Type: hc.PlacementGroupTypeSpread})
		if err != nil {
			return apiErr("create the placement group", err)
		}
		p.pg = res.PlacementGroup
		x.r.Created++
		x.say(Step{Kind: "placement group", Name: s.placementGroupName(), Detail: "spread"})
	} else {
		x.say(Step{Kind: "placement group", Name: s.placementGroupName(), ID: p.ids[s.placementGroupName()], Detail: "spread"})
	}
	// The Cloud Firewall, a copy of the node firewall's public rules.
	rules := FirewallRules(s.AdminCIDRs)
	fwDetail := fmt.Sprintf("%d inbound rules, SSH from %s", len(rules), orNone(s.AdminCIDRs))
	if p.fw == nil && !dry {
		res, _, err := c.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: s.firewallName(), Labels: labels, Rules: rules})
		if err != nil {
			return apiErr("create the firewall", err)
		}
		p.fw = res.Firewall
		x.r.Created++
		x.say(Step{Kind: "firewall", Name: s.firewallName(), Detail: fwDetail})
	} else {
		x.say(Step{Kind: "firewall", Name: s.firewallName(), ID: p.ids[s.firewallName()], Detail: fwDetail})
	}
	if err := x.volumes(ctx, p); err != nil {
		return err
	}
	return x.floatingIP(ctx, p)
}

// volumes makes the shared Volume (the mail) and each node's own Volume for its Galera datadir (a rebuilt or
// replaced server keeps its database), all at once, and waits for them together.
func (x *run) volumes(ctx context.Context, p *project) error {
	c, s, dry := x.c, x.s, x.o.DryRun
	var actions []*hc.Action
	if p.vol == nil && !dry {
		res, _, err := c.Volume.Create(ctx, hc.VolumeCreateOpts{Name: s.volumeName(), Size: s.VolumeSize, Labels: s.Labels(),
			Location: &hc.Location{Name: s.Location}, Format: hc.Ptr("ext4")})
		if err != nil {
			return apiErr("create the volume", err)
		}
		actions = append(actions, res.Action)
		p.vol = res.Volume
		x.r.Created++
		x.say(Step{Kind: "volume", Name: s.volumeName(), Detail: fmt.Sprintf("%d GB, ext4", s.VolumeSize)})
	} else {
		size := s.VolumeSize
		if p.vol != nil {
			size = p.vol.Size
		}
		x.say(Step{Kind: "volume", Name: s.volumeName(), ID: p.ids[s.volumeName()], Detail: fmt.Sprintf("%d GB", size)})
	}
	for i := 1; i <= s.Nodes; i++ {
		detail := fmt.Sprintf("%d GB, Galera datadir of %s", s.DBSize, s.ServerName(i))
		if p.dbVols[i] != nil || dry {
			x.say(Step{Kind: "volume", Name: s.dbVolumeName(i), ID: p.ids[s.dbVolumeName(i)], Detail: detail})
			continue
		}
		res, _, err := c.Volume.Create(ctx, hc.VolumeCreateOpts{Name: s.dbVolumeName(i), Size: s.DBSize, Labels: s.dbVolumeLabels(i),
			Location: &hc.Location{Name: s.Location}, Format: hc.Ptr("ext4")})
		if err != nil {
			return apiErr("create volume "+s.dbVolumeName(i), err)
		}
		actions = append(actions, res.Action)
		p.dbVols[i] = res.Volume
		x.r.Created++
		x.say(Step{Kind: "volume", Name: s.dbVolumeName(i), Detail: detail})
	}
	if err := c.Action.WaitFor(ctx, actions...); err != nil {
		return apiErr("create the volumes", err)
	}
	return nil
}

// servers writes the secrets and the one user-data, makes the servers that are missing, and attaches each node's
// own Volume to it.
func (x *run) servers(ctx context.Context, p *project) error {
	c, s, o := x.c, x.s, x.o
	if err := o.Secrets.Ensure(); err != nil {
		return err
	}
	if err := o.Secrets.WriteAPIKey(s.Name); err != nil {
		return err
	}
	var fip6 int64
	if p.fip6 != nil {
		fip6 = p.fip6.ID
	}
	ud, err := o.Secrets.WriteUserData(UserData{Cluster: s.Name, Hostname: s.Hostname, NetworkID: p.network.ID, VolumeID: p.vol.ID,
		FloatingIPID: p.fip.ID, FloatingIPv6ID: fip6, Endpoint: o.Endpoint, Token: o.Token, AdminCIDRs: s.AdminCIDRs, Extra: o.Settings})
	if err != nil {
		return err
	}
	var actions []*hc.Action
	// create makes one server, or says that it exists.
	create := func(have **hc.Server, name, typ string, labels map[string]string, detail string) error {
		if sv := *have; sv != nil {
			x.say(Step{Kind: "server", Name: name, ID: sv.ID, Detail: string(sv.Status)})
			return nil
		}
		res, _, err := c.Server.Create(ctx, hc.ServerCreateOpts{Name: name, ServerType: &hc.ServerType{Name: typ},
			Image: &hc.Image{ID: p.img.ID}, Location: &hc.Location{Name: s.Location}, SSHKeys: p.keys, UserData: ud,
			Labels: labels, Networks: []*hc.Network{p.network}, PlacementGroup: p.pg,
			Firewalls: []*hc.ServerCreateFirewall{{Firewall: *p.fw}}})
		if err != nil {
			return apiErr("create server "+name, err)
		}
		*have = res.Server
		actions = append(actions, res.Action)
		actions = append(actions, res.NextActions...)
		x.r.Created++
		x.say(Step{Kind: "server", Name: name, Detail: detail})
		return nil
	}
	for i := 1; i <= s.Nodes; i++ {
		if err := create(&p.servers[i], s.ServerName(i), s.ServerType, s.serverLabels(i), serverDetail(s, i, p.img)); err != nil {
			return err
		}
	}
	if s.Arbitrator {
		if err := create(&p.arb, s.ArbiterName(), s.ArbiterType, s.arbiterLabels(), arbiterDetail(s, p.img)); err != nil {
			return err
		}
	}
	if err := c.Action.WaitFor(ctx, actions...); err != nil {
		return apiErr("start the servers", err)
	}
	// Each node's Volume to its server; one attached elsewhere is left as it is, and said so.
	actions = actions[:0]
	for i := 1; i <= s.Nodes; i++ {
		v := p.dbVols[i]
		switch {
		case v.Server == nil:
			a, _, err := c.Volume.AttachWithOpts(ctx, v, hc.VolumeAttachOpts{Server: p.servers[i], Automount: hc.Ptr(false)})
			if err != nil {
				return apiErr("attach volume "+v.Name, err)
			}
			actions = append(actions, a)
			x.say(Step{Kind: "attach", Name: v.Name, Detail: "to " + s.ServerName(i)})
		case v.Server.ID != p.servers[i].ID && o.Log != nil:
			fmt.Fprintf(o.Log, "note     volume %s is attached to server %d, not to %s: left as it is\n", v.Name, v.Server.ID, s.ServerName(i))
		}
	}
	if err := c.Action.WaitFor(ctx, actions...); err != nil {
		return apiErr("attach the nodes' volumes", err)
	}
	return nil
}

func serverDetail(s Spec, i int, img *hc.Image) string {
	l := s.serverLabels(i)
	d := fmt.Sprintf("%s, image %d, priority %s", s.ServerType, img.ID, l["priority"])
	if l["bootstrap"] == "true" {
		d += ", bootstrap"
	}
	return d
}

func arbiterDetail(s Spec, img *hc.Image) string {
	return fmt.Sprintf("%s, image %d, arbitrator (garbd: a vote, no mail, no database)", s.ArbiterType, img.ID)
}

// resolveImage finds the snapshot: the newest of the channel for "latest", else the one with the id.
func resolveImage(ctx context.Context, c *hc.Client, s Spec) (*hc.Image, error) {
	if s.Image == "latest" {
		list, _, err := c.Image.List(ctx, hc.ImageListOpts{ListOpts: hc.ListOpts{LabelSelector: "app=mailcow-ha,channel=" + s.Channel, PerPage: 1},
			Type: []hc.ImageType{hc.ImageTypeSnapshot}, Sort: []string{"created:desc"}})
		if err != nil {
			return nil, apiErr("read the images", err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("--image latest: no snapshot labelled app=mailcow-ha,channel=%s in the project (build one with packer)", s.Channel)
		}
		return list[0], nil
	}
	id, _ := strconv.ParseInt(s.Image, 10, 64)
	img, _, err := c.Image.GetByID(ctx, id)
	if err != nil {
		return nil, apiErr("read the images", err)
	}
	if img == nil {
		return nil, fmt.Errorf("--image %d: no such image in the project", id)
	}
	return img, nil
}

// apiErr names what was being done, and says plainly when the token is the problem.
func apiErr(doing string, err error) error {
	if hc.IsError(err, hc.ErrorCodeUnauthorized) {
		return fmt.Errorf("%s: the API refused the token (unauthorized): check HCLOUD_TOKEN or --token-file: %w", doing, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

func orNone(cidrs []string) string {
	if len(cidrs) == 0 {
		return "nowhere"
	}
	return strings.Join(cidrs, ", ")
}
