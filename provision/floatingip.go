package provision

// This file makes the cluster's Floating IPs: the IPv4 one, and the IPv6 one with --ipv6, each with its reverse DNS.

import (
	"context"
	"fmt"
	"net/netip"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// floatingIP makes the Floating IP and sets its reverse DNS. An existing one keeps the name it has.
func (x *run) floatingIP(ctx context.Context, p *project) error {
	c, s := x.c, x.s
	switch {
	case p.fip == nil && !x.o.DryRun:
		res, _, err := c.FloatingIP.Create(ctx, hc.FloatingIPCreateOpts{Type: hc.FloatingIPTypeIPv4, Name: hc.Ptr(s.floatingIPName()),
			Description: hc.Ptr(s.Hostname), HomeLocation: &hc.Location{Name: s.Location}, Labels: s.Labels()})
		if err != nil {
			return apiErr("create the floating IP", err)
		}
		p.fip = res.FloatingIP
		x.r.Created++
		x.say(Step{Kind: "floating IP", Name: s.floatingIPName(), Detail: p.fip.IP.String()})
		a, _, err := c.FloatingIP.ChangeDNSPtr(ctx, p.fip, p.fip.IP.String(), hc.Ptr(s.Hostname))
		if err != nil {
			return apiErr("set the floating IP's reverse DNS", err)
		}
		if err := c.Action.WaitFor(ctx, a); err != nil {
			return apiErr("set the floating IP's reverse DNS", err)
		}
		x.say(Step{Kind: "reverse DNS", Name: p.fip.IP.String(), Detail: s.Hostname})
	case p.fip != nil:
		x.say(Step{Kind: "floating IP", Name: s.floatingIPName(), ID: p.fip.ID, Detail: p.fip.IP.String()})
		ptr, _ := p.fip.GetDNSPtrForIP(p.fip.IP)
		if ptr != s.Hostname && x.o.Log != nil {
			fmt.Fprintf(x.o.Log, "note     the floating IP's reverse DNS is %q, not %q: left as it is (hcloud floating-ip set-rdns)\n", ptr, s.Hostname)
		}
	default:
		x.say(Step{Kind: "floating IP", Name: s.floatingIPName(), Detail: "IPv4, reverse DNS " + s.Hostname})
	}
	if s.IPv6 {
		return x.floatingIPv6(ctx, p)
	}
	return nil
}

// floatingIPv6 makes the IPv6 Floating IP (--ipv6) and sets the reverse DNS of the address the nodes serve on (the
// /64's ::1). An existing one is left as it is.
func (x *run) floatingIPv6(ctx context.Context, p *project) error {
	c, s := x.c, x.s
	switch {
	case p.fip6 == nil && !x.o.DryRun:
		res, _, err := c.FloatingIP.Create(ctx, hc.FloatingIPCreateOpts{Type: hc.FloatingIPTypeIPv6, Name: hc.Ptr(s.floatingIPv6Name()),
			Description: hc.Ptr(s.Hostname), HomeLocation: &hc.Location{Name: s.Location}, Labels: s.Labels()})
		if err != nil {
			return apiErr("create the IPv6 floating IP", err)
		}
		p.fip6 = res.FloatingIP
		x.r.Created++
		addr := IPv6Address(p.fip6).String()
		x.say(Step{Kind: "floating IP", Name: s.floatingIPv6Name(), Detail: addr})
		a, _, err := c.FloatingIP.ChangeDNSPtr(ctx, p.fip6, addr, hc.Ptr(s.Hostname))
		if err != nil {
			return apiErr("set the IPv6 floating IP's reverse DNS", err)
		}
		if err := c.Action.WaitFor(ctx, a); err != nil {
			return apiErr("set the IPv6 floating IP's reverse DNS", err)
		}
		x.say(Step{Kind: "reverse DNS", Name: addr, Detail: s.Hostname})
	case p.fip6 != nil:
		x.say(Step{Kind: "floating IP", Name: s.floatingIPv6Name(), ID: p.fip6.ID, Detail: IPv6Address(p.fip6).String()})
	default:
		x.say(Step{Kind: "floating IP", Name: s.floatingIPv6Name(), Detail: "IPv6 /64, reverse DNS " + s.Hostname})
	}
	return nil
}

// IPv6Address is the address of an IPv6 Floating IP that the nodes serve on: the first of its /64 (::1), as
// agent/daemon puts it on the MASTER's interface.
func IPv6Address(f *hc.FloatingIP) netip.Addr {
	a, _ := netip.AddrFromSlice(f.IP.To16())
	return a.Next()
}
