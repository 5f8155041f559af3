package provision

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// DNSRecords prints the records the operator sets at the domain's DNS provider, outside Hetzner Cloud, as a table
// to copy: the host name to the Floating IP, mail for the domain to it, SPF, DMARC, the autodiscover names, and
// where the DKIM key comes from (mailcow makes it at its first start).
func DNSRecords(w io.Writer, s Spec, floatingIP, floatingIPv6 string) {
	d, h := s.domain(), s.Hostname
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tVALUE")
	records := [][3]string{{h + ".", "A", floatingIP}}
	if floatingIPv6 != "" {
		records = append(records, [3]string{h + ".", "AAAA", floatingIPv6})
	}
	for _, r := range append(records, [][3]string{
		{d + ".", "MX", "10 " + h + "."},
		{d + ".", "TXT", `"v=spf1 mx a -all"`},
		{"_dmarc." + d + ".", "TXT", `"v=DMARC1; p=quarantine"`},
		{"autodiscover." + d + ".", "CNAME", h + "."},
		{"autoconfig." + d + ".", "CNAME", h + "."},
		{"_autodiscover._tcp." + d + ".", "SRV", "0 1 443 " + h + "."},
		{"dkim._domainkey." + d + ".", "TXT", "mailcow's key, once it made it: its UI, Configuration > ARC/DKIM keys"},
	}...) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	tw.Flush()
	addrs := floatingIP
	if floatingIPv6 != "" {
		addrs += " and " + floatingIPv6
	}
	fmt.Fprintf(w, "(The reverse DNS of %s is set in Hetzner Cloud: cluster create sets it to %s when it makes the address.)\n", addrs, h)
}
