// Package firewall fills the appliance firewall's set of cluster members (table inet mailcow_ha, set peers_v4)
// from the configuration, so that Galera, VRRP and the agent's APIs answer the cluster's own members and no other
// host of the private network, nor a container; and it keeps the metadata service (the user-data) to the agent's
// own control group (chain metadata), so that no other process of the node reads it.
package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// Table and Set name what rootfs/etc/nftables.conf declares.
const (
	Table = "mailcow_ha"
	Set   = "peers_v4"
)

// Peers writes the members' addresses into the set, replacing what it held, in one nft transaction (nft -f -:
// the set is never seen empty). Nft is the nft command and its leading arguments (default "nft"). When the
// table does not exist (a machine without the appliance firewall: the lab, a test), it changes nothing and
// reports applied = false.
func Peers(ctx context.Context, nft []string, members []netip.Addr) (applied bool, err error) {
	if !has(ctx, nft, "list", "set", "inet", Table, Set) {
		return false, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "flush set inet %s %s\n", Table, Set)
	var elems []string
	for _, a := range members {
		if !a.Is4() {
			return false, fmt.Errorf("firewall: %s is not an IPv4 address", a)
		}
		elems = append(elems, a.String())
	}
	if len(elems) > 0 {
		fmt.Fprintf(&b, "add element inet %s %s { %s }\n", Table, Set, strings.Join(elems, ", "))
	}
	if err := apply(ctx, nft, b.String()); err != nil {
		return false, fmt.Errorf("firewall: %w", err)
	}
	return true, nil
}

// The sets of the networks SSH may come from over the internet (network.admin_cidrs).
const (
	AdminSetV4 = "admin_v4"
	AdminSetV6 = "admin_v6"
)

// Admins writes the networks that SSH may come from over the public interface into admin_v4 and admin_v6,
// replacing what they held, in one nft transaction. Like Peers, it changes nothing on a machine without the
// appliance's table and then reports applied = false.
func Admins(ctx context.Context, nft []string, nets []netip.Prefix) (applied bool, err error) {
	if !has(ctx, nft, "list", "set", "inet", Table, AdminSetV4) {
		return false, nil
	}
	var v4, v6 []string
	for _, p := range nets {
		if p.Addr().Is4() {
			v4 = append(v4, p.Masked().String())
		} else {
			v6 = append(v6, p.Masked().String())
		}
	}
	var b strings.Builder
	for _, set := range []struct {
		name  string
		elems []string
	}{{AdminSetV4, v4}, {AdminSetV6, v6}} {
		fmt.Fprintf(&b, "flush set inet %s %s\n", Table, set.name)
		if len(set.elems) > 0 {
			fmt.Fprintf(&b, "add element inet %s %s { %s }\n", Table, set.name, strings.Join(set.elems, ", "))
		}
	}
	if err := apply(ctx, nft, b.String()); err != nil {
		return false, fmt.Errorf("firewall: %w", err)
	}
	return true, nil
}

// command returns nft, or the default "nft": the nft command and its leading arguments.
func command(nft []string) []string {
	if len(nft) == 0 {
		return []string{"nft"}
	}
	return nft
}

// has says whether `nft probe...` succeeds: whether the appliance firewall's table holds what a caller changes
// (a machine without it, the lab or a test, has nothing to change).
func has(ctx context.Context, nft []string, probe ...string) bool {
	nft = command(nft)
	return child.Command(ctx, nft[0], append(nft[1:], probe...)...).Run() == nil
}

// apply runs script with nft -f -, in one transaction.
func apply(ctx context.Context, nft []string, script string) error {
	nft = command(nft)
	cmd := child.Command(ctx, nft[0], append(nft[1:], "-f", "-")...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
