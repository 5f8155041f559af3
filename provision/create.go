package provision

import (
	"context"
	"fmt"
	"io"
	"maps"
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
	VolumeID     int64
	ImageID      int64
	Servers      []int64
	Created      int // resources made by this run
}

// Options are Create's collaborators.
type Options struct {
	// Secrets is where the cluster's secrets and the user-data live (--out): read when there, made when not.
	Secrets *Secrets
	// Endpoint goes into the user-data when it is not the public API's (a simulator).
	Endpoint string
	// Token is the API token the agents use, inline in the user-data (written to a 0600 file at the first start).
	Token  string
	DryRun bool
	Log    io.Writer
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

// Create makes what the spec asks for and is missing, in order: network, placement group, firewall, Volume,
// Floating IP (with its reverse DNS), then the servers with the one user-data. It changes nothing that exists.
// With DryRun it only finds out and returns the plan.
func Create(ctx context.Context, c *hc.Client, s Spec, o Options) (Result, error) {
	if err := s.Check(); err != nil {
		return Result{}, err
	}
	r := Result{}
	say := func(st Step) {
		r.Steps = append(r.Steps, st)
		if o.Log == nil {
			return
		}
		verb := "exists "
		switch {
		case !st.Exists() && o.DryRun:
			verb = "create "
		case !st.Exists():
			verb = "created"
		}
		fmt.Fprintf(o.Log, "%s  %-15s %-22s %s\n", verb, st.Kind, st.Name, st.Detail)
	}
	labels := s.Labels()

	// Read first: a wrong token or a resource of another's stops the run before anything is made.
	net0, _, err := c.Network.GetByName(ctx, s.networkName())
	if err != nil {
		return r, apiErr("read the networks", err)
	}
	pg, _, err := c.PlacementGroup.GetByName(ctx, s.placementGroupName())
	if err != nil {
		return r, apiErr("read the placement groups", err)
	}
	fw, _, err := c.Firewall.GetByName(ctx, s.firewallName())
	if err != nil {
		return r, apiErr("read the firewalls", err)
	}
	vol, _, err := c.Volume.GetByName(ctx, s.volumeName())
	if err != nil {
		return r, apiErr("read the volumes", err)
	}
	fip, _, err := c.FloatingIP.GetByName(ctx, s.floatingIPName())
	if err != nil {
		return r, apiErr("read the floating IPs", err)
	}
	dbVols := make([]*hc.Volume, s.Nodes+1)
	for i := 1; i <= s.Nodes; i++ {
		if dbVols[i], _, err = c.Volume.GetByName(ctx, s.dbVolumeName(i)); err != nil {
			return r, apiErr("read the volumes", err)
		}
		if dbVols[i] != nil && !ours(dbVols[i].Labels, s) {
			return r, notOurs("volume", s.dbVolumeName(i), dbVols[i].Labels, s)
		}
	}
	servers := make([]*hc.Server, s.Nodes+1)
	existing := 0
	for i := 1; i <= s.Nodes; i++ {
		if servers[i], _, err = c.Server.GetByName(ctx, s.ServerName(i)); err != nil {
			return r, apiErr("read the servers", err)
		}
		if servers[i] != nil {
			existing++
			if !ours(servers[i].Labels, s) {
				return r, notOurs("server", s.ServerName(i), servers[i].Labels, s)
			}
		}
	}
	for _, x := range []struct {
		kind, name string
		found      bool
		labels     map[string]string
	}{
		{"network", s.networkName(), net0 != nil, labelsOf(net0)},
		{"placement group", s.placementGroupName(), pg != nil, labelsOf(pg)},
		{"firewall", s.firewallName(), fw != nil, labelsOf(fw)},
		{"volume", s.volumeName(), vol != nil, labelsOf(vol)},
		{"floating IP", s.floatingIPName(), fip != nil, labelsOf(fip)},
	} {
		if x.found && !ours(x.labels, s) {
			return r, notOurs(x.kind, x.name, x.labels, s)
		}
	}
	img, err := resolveImage(ctx, c, s)
	if err != nil {
		return r, err
	}
	r.ImageID = img.ID
	var keys []*hc.SSHKey
	for _, name := range s.SSHKeys {
		k, _, err := c.SSHKey.GetByName(ctx, name)
		if err != nil {
			return r, apiErr("read the SSH keys", err)
		}
		if k == nil {
			return r, fmt.Errorf("--ssh-key %q: no SSH key of that name in the project (hcloud ssh-key create)", name)
		}
		keys = append(keys, k)
	}
	// Servers that exist were made with secrets that only --out holds: without them, a missing node would get
	// others and never join, and --out would hold secrets that no node has.
	if existing > 0 && !o.DryRun && !o.Secrets.Exist() {
		return r, fmt.Errorf("%d of %d servers exist, but %s has no secrets of this cluster: give --out the directory "+
			"of the first run (the missing servers need the same user-data)", existing, s.Nodes, o.Secrets.Dir)
	}

	// The network and its subnet.
	if net0 == nil && !o.DryRun {
		_, rng, _ := net.ParseCIDR(s.IPRange)
		_, sub, _ := net.ParseCIDR(s.subnet())
		if net0, _, err = c.Network.Create(ctx, hc.NetworkCreateOpts{Name: s.networkName(), IPRange: rng, Labels: labels,
			Subnets: []hc.NetworkSubnet{{Type: hc.NetworkSubnetTypeCloud, IPRange: sub, NetworkZone: networkZone(s.Location)}}}); err != nil {
			return r, apiErr("create the network", err)
		}
		r.Created++
		say(Step{Kind: "network", Name: s.networkName(), Detail: s.IPRange + ", subnet " + s.subnet()})
	} else {
		say(Step{Kind: "network", Name: s.networkName(), ID: idOf(net0), Detail: s.IPRange + ", subnet " + s.subnet()})
	}
	// The spread placement group: no two nodes on one host.
	if pg == nil && !o.DryRun {
		res, _, err := c.PlacementGroup.Create(ctx, hc.PlacementGroupCreateOpts{Name: s.placementGroupName(), Labels: labels,
			Type: hc.PlacementGroupTypeSpread})
		if err != nil {
			return r, apiErr("create the placement group", err)
		}
		pg = res.PlacementGroup
		r.Created++
		say(Step{Kind: "placement group", Name: s.placementGroupName(), Detail: "spread"})
	} else {
		say(Step{Kind: "placement group", Name: s.placementGroupName(), ID: idOf(pg), Detail: "spread"})
	}
	// The Cloud Firewall, a copy of the node firewall's public rules.
	rules := FirewallRules(s.AdminCIDRs)
	fwDetail := fmt.Sprintf("%d inbound rules, SSH from %s", len(rules), orNone(s.AdminCIDRs))
	if fw == nil && !o.DryRun {
		res, _, err := c.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: s.firewallName(), Labels: labels, Rules: rules})
		if err != nil {
			return r, apiErr("create the firewall", err)
		}
		fw = res.Firewall
		r.Created++
		say(Step{Kind: "firewall", Name: s.firewallName(), Detail: fwDetail})
	} else {
		say(Step{Kind: "firewall", Name: s.firewallName(), ID: idOf(fw), Detail: fwDetail})
	}
	// The shared Volume: the mail.
	if vol == nil && !o.DryRun {
		res, _, err := c.Volume.Create(ctx, hc.VolumeCreateOpts{Name: s.volumeName(), Size: s.VolumeSize, Labels: labels,
			Location: &hc.Location{Name: s.Location}, Format: hc.Ptr("ext4")})
		if err != nil {
			return r, apiErr("create the volume", err)
		}
		if err := c.Action.WaitFor(ctx, res.Action); err != nil {
			return r, apiErr("create the volume", err)
		}
		vol = res.Volume
		r.Created++
		say(Step{Kind: "volume", Name: s.volumeName(), Detail: fmt.Sprintf("%d GB, ext4", s.VolumeSize)})
	} else {
		say(Step{Kind: "volume", Name: s.volumeName(), ID: idOf(vol), Detail: fmt.Sprintf("%d GB", sizeOf(vol, s.VolumeSize))})
	}
	// Each node's own Volume for its Galera datadir: a rebuilt or replaced server keeps its database.
	for i := 1; i <= s.Nodes; i++ {
		detail := fmt.Sprintf("%d GB, Galera datadir of %s", s.DBSize, s.ServerName(i))
		if dbVols[i] != nil || o.DryRun {
			say(Step{Kind: "volume", Name: s.dbVolumeName(i), ID: idOf(dbVols[i]), Detail: detail})
			continue
		}
		res, _, err := c.Volume.Create(ctx, hc.VolumeCreateOpts{Name: s.dbVolumeName(i), Size: s.DBSize, Labels: s.dbVolumeLabels(i),
			Location: &hc.Location{Name: s.Location}, Format: hc.Ptr("ext4")})
		if err != nil {
			return r, apiErr("create volume "+s.dbVolumeName(i), err)
		}
		if err := c.Action.WaitFor(ctx, res.Action); err != nil {
			return r, apiErr("create volume "+s.dbVolumeName(i), err)
		}
		dbVols[i] = res.Volume
		r.Created++
		say(Step{Kind: "volume", Name: s.dbVolumeName(i), Detail: detail})
	}
	// The Floating IP and its reverse DNS. An existing one keeps the name it has.
	if fip == nil && !o.DryRun {
		res, _, err := c.FloatingIP.Create(ctx, hc.FloatingIPCreateOpts{Type: hc.FloatingIPTypeIPv4, Name: hc.Ptr(s.floatingIPName()),
			Description: hc.Ptr(s.Hostname), HomeLocation: &hc.Location{Name: s.Location}, Labels: labels})
		if err != nil {
			return r, apiErr("create the floating IP", err)
		}
		fip = res.FloatingIP
		r.Created++
		say(Step{Kind: "floating IP", Name: s.floatingIPName(), Detail: fip.IP.String()})
		a, _, err := c.FloatingIP.ChangeDNSPtr(ctx, fip, fip.IP.String(), hc.Ptr(s.Hostname))
		if err != nil {
			return r, apiErr("set the floating IP's reverse DNS", err)
		}
		if err := c.Action.WaitFor(ctx, a); err != nil {
			return r, apiErr("set the floating IP's reverse DNS", err)
		}
		say(Step{Kind: "reverse DNS", Name: fip.IP.String(), Detail: s.Hostname})
	} else if fip != nil {
		say(Step{Kind: "floating IP", Name: s.floatingIPName(), ID: fip.ID, Detail: fip.IP.String()})
		ptr, _ := fip.GetDNSPtrForIP(fip.IP)
		if ptr != s.Hostname && o.Log != nil {
			fmt.Fprintf(o.Log, "note     the floating IP's reverse DNS is %q, not %q: left as it is (hcloud floating-ip set-rdns)\n", ptr, s.Hostname)
		}
	} else {
		say(Step{Kind: "floating IP", Name: s.floatingIPName(), Detail: "IPv4, reverse DNS " + s.Hostname})
	}
	if o.DryRun {
		for i := 1; i <= s.Nodes; i++ {
			say(Step{Kind: "server", Name: s.ServerName(i), ID: idOf(servers[i]), Detail: serverDetail(s, i, img)})
		}
		return r, nil
	}
	r.NetworkID, r.VolumeID, r.FloatingIPID, r.FloatingIP = net0.ID, vol.ID, fip.ID, fip.IP.String()

	// The secrets and the one user-data, then the servers that are missing.
	if err := o.Secrets.Ensure(); err != nil {
		return r, err
	}
	ud, err := o.Secrets.WriteUserData(UserData{Cluster: s.Name, Hostname: s.Hostname, NetworkID: net0.ID, VolumeID: vol.ID,
		FloatingIPID: fip.ID, Endpoint: o.Endpoint, Token: o.Token, AdminCIDRs: s.AdminCIDRs})
	if err != nil {
		return r, err
	}
	var actions []*hc.Action
	for i := 1; i <= s.Nodes; i++ {
		if servers[i] != nil {
			say(Step{Kind: "server", Name: s.ServerName(i), ID: servers[i].ID, Detail: string(servers[i].Status)})
			continue
		}
		res, _, err := c.Server.Create(ctx, hc.ServerCreateOpts{Name: s.ServerName(i), ServerType: &hc.ServerType{Name: s.ServerType},
			Image: &hc.Image{ID: img.ID}, Location: &hc.Location{Name: s.Location}, SSHKeys: keys, UserData: ud,
			Labels: s.serverLabels(i), Networks: []*hc.Network{net0}, PlacementGroup: pg,
			Firewalls: []*hc.ServerCreateFirewall{{Firewall: *fw}}})
		if err != nil {
			return r, apiErr("create server "+s.ServerName(i), err)
		}
		servers[i] = res.Server
		actions = append(actions, res.Action)
		actions = append(actions, res.NextActions...)
		r.Created++
		say(Step{Kind: "server", Name: s.ServerName(i), Detail: serverDetail(s, i, img)})
	}
	if err := c.Action.WaitFor(ctx, actions...); err != nil {
		return r, apiErr("start the servers", err)
	}
	// Each node's Volume to its server; one attached elsewhere is left as it is, and said so.
	actions = actions[:0]
	for i := 1; i <= s.Nodes; i++ {
		v := dbVols[i]
		switch {
		case v.Server == nil:
			a, _, err := c.Volume.AttachWithOpts(ctx, v, hc.VolumeAttachOpts{Server: servers[i], Automount: hc.Ptr(false)})
			if err != nil {
				return r, apiErr("attach volume "+v.Name, err)
			}
			actions = append(actions, a)
			say(Step{Kind: "attach", Name: v.Name, Detail: "to " + s.ServerName(i)})
		case v.Server.ID != servers[i].ID && o.Log != nil:
			fmt.Fprintf(o.Log, "note     volume %s is attached to server %d, not to %s: left as it is\n", v.Name, v.Server.ID, s.ServerName(i))
		}
	}
	if err := c.Action.WaitFor(ctx, actions...); err != nil {
		return r, apiErr("attach the nodes' volumes", err)
	}
	for i := 1; i <= s.Nodes; i++ {
		r.Servers = append(r.Servers, servers[i].ID)
	}
	return r, nil
}

func serverDetail(s Spec, i int, img *hc.Image) string {
	l := s.serverLabels(i)
	d := fmt.Sprintf("%s, image %d, priority %s", s.ServerType, img.ID, l["priority"])
	if l["bootstrap"] == "true" {
		d += ", bootstrap"
	}
	return d
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

type labelled interface {
	*hc.Network | *hc.PlacementGroup | *hc.Firewall | *hc.Volume | *hc.FloatingIP | *hc.Server
}

func labelsOf[T labelled](v T) map[string]string {
	switch x := any(v).(type) {
	case *hc.Network:
		if x != nil {
			return maps.Clone(x.Labels)
		}
	case *hc.PlacementGroup:
		if x != nil {
			return maps.Clone(x.Labels)
		}
	case *hc.Firewall:
		if x != nil {
			return maps.Clone(x.Labels)
		}
	case *hc.Volume:
		if x != nil {
			return maps.Clone(x.Labels)
		}
	case *hc.FloatingIP:
		if x != nil {
			return maps.Clone(x.Labels)
		}
	case *hc.Server:
		if x != nil {
			return maps.Clone(x.Labels)
		}
	}
	return nil
}

func idOf[T labelled](v T) int64 {
	switch x := any(v).(type) {
	case *hc.Network:
		if x != nil {
			return x.ID
		}
	case *hc.PlacementGroup:
		if x != nil {
			return x.ID
		}
	case *hc.Firewall:
		if x != nil {
			return x.ID
		}
	case *hc.Volume:
		if x != nil {
			return x.ID
		}
	case *hc.FloatingIP:
		if x != nil {
			return x.ID
		}
	case *hc.Server:
		if x != nil {
			return x.ID
		}
	}
	return 0
}

func sizeOf(v *hc.Volume, def int) int {
	if v == nil {
		return def
	}
	return v.Size
}

func orNone(cidrs []string) string {
	if len(cidrs) == 0 {
		return "nowhere"
	}
	return strings.Join(cidrs, ", ")
}
