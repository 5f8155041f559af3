package provision

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Cloud Firewall lets in from the internet what the node firewall lets in, no more: its TCP ports are the set
// public_tcp of rootfs/etc/nftables.conf, and SSH only from the admin networks.
func TestCloudFirewallMirrorsTheNodeFirewall(t *testing.T) {
	b, err := os.ReadFile("../rootfs/etc/nftables.conf")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)set public_tcp \{.*?elements = \{([^}]*)\}`).FindSubmatch(b)
	if m == nil {
		t.Fatal("nftables.conf has no set public_tcp with elements")
	}
	var node []int
	for _, f := range strings.Split(string(m[1]), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("public_tcp element %q", f)
		}
		node = append(node, n)
	}
	slices.Sort(node)
	if !slices.Equal(node, PublicTCP) {
		t.Fatalf("the node firewall's public_tcp %v, the Cloud Firewall's %v", node, PublicTCP)
	}
	var ports []string
	for _, r := range FirewallRules(nil) {
		if r.Port != nil {
			ports = append(ports, *r.Port)
		}
	}
	if slices.Contains(ports, "22") || len(ports) != len(PublicTCP) {
		t.Fatalf("without admin networks: ports %v", ports)
	}
	rules := FirewallRules([]string{"198.51.100.0/24"})
	ssh := rules[len(rules)-1]
	if *ssh.Port != "22" || len(ssh.SourceIPs) != 1 || ssh.SourceIPs[0].String() != "198.51.100.0/24" {
		t.Fatalf("SSH: %+v", ssh)
	}
}

func TestSpecNamesEveryBadFlag(t *testing.T) {
	err := Spec{Name: "Mail", Hostname: "mail", Nodes: 4, Image: "x", VolumeSize: 5, IPRange: "8.8.0.0/16",
		AdminCIDRs: []string{"1.2.3.4"}}.Check()
	for _, w := range []string{"--name: \"Mail\"", "--hostname: \"mail\"", "--nodes: 4", "--location: missing", "--server-type: missing",
		"--image: \"x\"", "--admin-cidr: \"1.2.3.4\"", "--volume-size: 5 GB", "--ip-range: \"8.8.0.0/16\""} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("lacks %q: %v", w, err)
		}
	}
}
