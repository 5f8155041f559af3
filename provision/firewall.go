package provision

import (
	"net"
	"strconv"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// PublicTCP are mailcow's public ports (SMTP, HTTP, POP3, IMAP, HTTPS, SMTPS, submission, IMAPS, POP3S,
// ManageSieve), the node firewall's set public_tcp in rootfs/etc/nftables.conf; a test keeps the two equal.
var PublicTCP = []int{25, 80, 110, 143, 443, 465, 587, 993, 995, 4190}

// FirewallRules are the Cloud Firewall's inbound rules: what the node firewall lets in from the internet, ICMP, and
// SSH from the admin networks only (none: no SSH from the internet). A Cloud Firewall filters the public interface
// only; the private network (Galera, VRRP, the peer API) is the node firewall's alone.
func FirewallRules(adminCIDRs []string) []hc.FirewallRule {
	anywhere := []net.IPNet{{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, {IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
	rules := []hc.FirewallRule{{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolICMP,
		SourceIPs: anywhere, Description: hc.Ptr("ICMP (path MTU, diagnostics)")}}
	for _, p := range PublicTCP {
		rules = append(rules, hc.FirewallRule{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolTCP,
			Port: hc.Ptr(strconv.Itoa(p)), SourceIPs: anywhere, Description: hc.Ptr("mailcow")})
	}
	var admin []net.IPNet
	for _, c := range adminCIDRs {
		if _, n, err := net.ParseCIDR(c); err == nil {
			admin = append(admin, *n)
		}
	}
	if len(admin) > 0 {
		rules = append(rules, hc.FirewallRule{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolTCP,
			Port: hc.Ptr("22"), SourceIPs: admin, Description: hc.Ptr("SSH from the admin networks")})
	}
	return rules
}
