package provision

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Inventory is every resource of one cluster, found by its labels.
type Inventory struct {
	Cluster         string
	Servers         []*hc.Server
	Volumes         []*hc.Volume
	FloatingIPs     []*hc.FloatingIP
	Firewalls       []*hc.Firewall
	PlacementGroups []*hc.PlacementGroup
	Networks        []*hc.Network
}

// Find returns the inventories of the clusters whose resources match selector (app=mailcow-ha for all of them,
// Selector(name) for one), sorted by cluster name.
func Find(ctx context.Context, c *hc.Client, selector string) ([]*Inventory, error) {
	by := map[string]*Inventory{}
	inv := func(labels map[string]string) *Inventory {
		name := labels["cluster"]
		if by[name] == nil {
			by[name] = &Inventory{Cluster: name}
		}
		return by[name]
	}
	lo := hc.ListOpts{LabelSelector: selector}
	servers, err := c.Server.AllWithOpts(ctx, hc.ServerListOpts{ListOpts: lo})
	if err != nil {
		return nil, apiErr("list the servers", err)
	}
	for _, x := range servers {
		i := inv(x.Labels)
		i.Servers = append(i.Servers, x)
	}
	vols, err := c.Volume.AllWithOpts(ctx, hc.VolumeListOpts{ListOpts: lo})
	if err != nil {
		return nil, apiErr("list the volumes", err)
	}
	for _, x := range vols {
		i := inv(x.Labels)
		i.Volumes = append(i.Volumes, x)
	}
	fips, err := c.FloatingIP.AllWithOpts(ctx, hc.FloatingIPListOpts{ListOpts: lo})
	if err != nil {
		return nil, apiErr("list the floating IPs", err)
	}
	for _, x := range fips {
		i := inv(x.Labels)
		i.FloatingIPs = append(i.FloatingIPs, x)
	}
	fws, err := c.Firewall.AllWithOpts(ctx, hc.FirewallListOpts{ListOpts: lo})
	if err != nil {
		return nil, apiErr("list the firewalls", err)
	}
	for _, x := range fws {
		i := inv(x.Labels)
		i.Firewalls = append(i.Firewalls, x)
	}
	pgs, err := c.PlacementGroup.AllWithOpts(ctx, hc.PlacementGroupListOpts{ListOpts: lo})
	if err != nil {
		return nil, apiErr("list the placement groups", err)
	}
	for _, x := range pgs {
		i := inv(x.Labels)
		i.PlacementGroups = append(i.PlacementGroups, x)
	}
	nets, err := c.Network.AllWithOpts(ctx, hc.NetworkListOpts{ListOpts: lo})
	if err != nil {
		return nil, apiErr("list the networks", err)
	}
	for _, x := range nets {
		i := inv(x.Labels)
		i.Networks = append(i.Networks, x)
	}
	out := make([]*Inventory, 0, len(by))
	for _, i := range by {
		out = append(out, i)
	}
	slices.SortFunc(out, func(a, b *Inventory) int { return strings.Compare(a.Cluster, b.Cluster) })
	return out, nil
}

// Empty says whether the cluster has no resource left.
func (i *Inventory) Empty() bool {
	return len(i.Servers)+len(i.Volumes)+len(i.FloatingIPs)+len(i.Firewalls)+len(i.PlacementGroups)+len(i.Networks) == 0
}

// Print writes the inventories as one table.
func Print(w io.Writer, invs []*Inventory) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tKIND\tNAME\tID\tDETAIL")
	for _, i := range invs {
		for _, x := range i.Servers {
			var ips []string
			for _, p := range x.PrivateNet {
				ips = append(ips, p.IP.String())
			}
			fmt.Fprintf(tw, "%s\tserver\t%s\t%d\t%s, %s, priority %s%s\n", i.Cluster, x.Name, x.ID, x.Status,
				strings.Join(ips, " "), x.Labels["priority"], map[bool]string{true: ", bootstrap"}[x.Labels["bootstrap"] == "true"])
		}
		for _, x := range i.Volumes {
			at := "detached"
			if x.Server != nil {
				at = fmt.Sprintf("attached to server %d", x.Server.ID)
			}
			fmt.Fprintf(tw, "%s\tvolume\t%s\t%d\t%d GB, %s\n", i.Cluster, x.Name, x.ID, x.Size, at)
		}
		for _, x := range i.FloatingIPs {
			at := "unassigned"
			if x.Server != nil {
				at = fmt.Sprintf("on server %d", x.Server.ID)
			}
			ptr, _ := x.GetDNSPtrForIP(x.IP)
			fmt.Fprintf(tw, "%s\tfloating IP\t%s\t%d\t%s, %s, reverse DNS %s\n", i.Cluster, x.Name, x.ID, x.IP, at, ptr)
		}
		for _, x := range i.Firewalls {
			fmt.Fprintf(tw, "%s\tfirewall\t%s\t%d\t%d rules, applied to %d servers\n", i.Cluster, x.Name, x.ID, len(x.Rules), len(x.AppliedTo))
		}
		for _, x := range i.PlacementGroups {
			fmt.Fprintf(tw, "%s\tplacement group\t%s\t%d\t%s, %d servers\n", i.Cluster, x.Name, x.ID, x.Type, len(x.Servers))
		}
		for _, x := range i.Networks {
			fmt.Fprintf(tw, "%s\tnetwork\t%s\t%d\t%s, %d servers\n", i.Cluster, x.Name, x.ID, x.IPRange, len(x.Servers))
		}
	}
	tw.Flush()
}

// Destroy deletes what carries the cluster's labels: the servers first (and waits for them), then the Floating
// IPs, the firewalls, the placement groups and the networks. The Volumes hold the mail: they are deleted only with
// deleteVolumes, and are otherwise listed as kept.
func Destroy(ctx context.Context, c *hc.Client, cluster string, deleteVolumes bool, log io.Writer) error {
	invs, err := Find(ctx, c, Selector(cluster))
	if err != nil {
		return err
	}
	if len(invs) == 0 {
		fmt.Fprintf(log, "nothing carries the labels %s\n", Selector(cluster))
		return nil
	}
	i := invs[0]
	var actions []*hc.Action
	for _, x := range i.Servers {
		res, _, err := c.Server.DeleteWithResult(ctx, x)
		if err != nil {
			return apiErr("delete server "+x.Name, err)
		}
		actions = append(actions, res.Action)
		fmt.Fprintf(log, "deleted  server          %s (%d)\n", x.Name, x.ID)
	}
	if err := c.Action.WaitFor(ctx, actions...); err != nil {
		return apiErr("delete the servers", err)
	}
	for _, x := range i.FloatingIPs {
		if _, err := c.FloatingIP.Delete(ctx, x); err != nil {
			return apiErr("delete floating IP "+x.Name, err)
		}
		fmt.Fprintf(log, "deleted  floating IP     %s (%s)\n", x.Name, x.IP)
	}
	for _, x := range i.Firewalls {
		if _, err := c.Firewall.Delete(ctx, x); err != nil {
			return apiErr("delete firewall "+x.Name, err)
		}
		fmt.Fprintf(log, "deleted  firewall        %s\n", x.Name)
	}
	for _, x := range i.PlacementGroups {
		if _, err := c.PlacementGroup.Delete(ctx, x); err != nil {
			return apiErr("delete placement group "+x.Name, err)
		}
		fmt.Fprintf(log, "deleted  placement group %s\n", x.Name)
	}
	for _, x := range i.Networks {
		if _, err := c.Network.Delete(ctx, x); err != nil {
			return apiErr("delete network "+x.Name, err)
		}
		fmt.Fprintf(log, "deleted  network         %s\n", x.Name)
	}
	for _, x := range i.Volumes {
		if !deleteVolumes {
			fmt.Fprintf(log, "kept     volume          %s (%d, %d GB): it holds the mail; --delete-volume deletes it\n", x.Name, x.ID, x.Size)
			continue
		}
		if _, err := c.Volume.Delete(ctx, x); err != nil {
			return apiErr("delete volume "+x.Name, err)
		}
		fmt.Fprintf(log, "deleted  volume          %s (%d)\n", x.Name, x.ID)
	}
	return nil
}
