package rootfs

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/firewall"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/signup"
)

const firewallConf = "etc/nftables.conf"

// The ports the test listens on inside the firewalled namespace.
var (
	publicTCP  = []int{25, 80, 110, 143, 443, 465, 587, 993, 995, 4190}
	privateTCP = []int{22, 4444, 4567, 4568, 7480, 7481}
	neverTCP   = []int{3306, 6379, 8080, 8740, 13306, 19991}
	// Published by the "container" through a Docker-like DNAT: one mailcow port, one that must stay internal.
	dnatTCP = []int{25, 6379}
)

// The appliance's firewall, loaded with the real nft into a namespace that plays the node: eth0 public, eth1 on
// the private network, and a "container" behind a Docker-style DNAT. The agent fills the set of members
// (agent/firewall) with one private address. From the public side only mail and web answer (also for a
// private-looking source arriving on eth0); from the member Galera, the agent's APIs and SSH answer too; from another
// server of the private network only SSH and the read-only health API; from the container only mail and web (mailcow's bridge lies inside
// RFC 1918); nothing else does, and a published container port that is not public is dropped in forward.
func TestFirewall(t *testing.T) {
	if why := netns.Available(); why != "" {
		t.Skip(why)
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("nft is not installed (Debian package nftables)")
	}
	if out, err := exec.Command(nft, "-c", "-f", firewallConf).CombinedOutput(); err != nil {
		t.Fatalf("nft -c: %v\n%s", err, out)
	}
	mk := func(role string) *netns.NS {
		ns, err := netns.Add(netns.Unique("fw" + role))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Del() })
		return ns
	}
	node, pub, priv, ctr, ngx := mk("n"), mk("p"), mk("q"), mk("c"), mk("x")
	steps := [][]string{
		{"node", "addr", "add", "203.0.113.10/24", "dev", "eth0"},
		{"pub", "addr", "add", "203.0.113.20/24", "dev", "eth0"},
		// A private-looking source that arrives on the public interface must be treated as public.
		{"pub", "addr", "add", "10.99.5.20/24", "dev", "eth0"},
		{"node", "addr", "add", "10.99.5.10/24", "dev", "eth0"},
		{"node", "addr", "add", "10.99.0.10/24", "dev", "eth1"},
		{"priv", "addr", "add", "10.99.0.20/24", "dev", "eth0"},
		// Another server of the project on the same private network: no member.
		{"priv", "addr", "add", "10.99.0.30/24", "dev", "eth0"},
		{"node", "addr", "add", "10.99.7.1/24", "dev", "docker0"},
		{"ctr", "addr", "add", "10.99.7.2/24", "dev", "eth0"},
		{"ctr", "route", "add", "default", "via", "10.99.7.1"},
		// mailcow's bridge: nginx (at the pinned address; the test's range stands in for 172.22.1.0/24) and another
		// container.
		{"node", "addr", "add", "10.99.8.1/24", "dev", "br-mailcow"},
		{"ngx", "addr", "add", "10.99.8.247/24", "dev", "eth0"},
		{"ngx", "addr", "add", "10.99.8.5/24", "dev", "eth0"},
		// Hetzner's DHCP server and gateway on the public side.
		{"pub", "addr", "add", "172.31.1.1/32", "dev", "eth0"},
		// The metadata service, out on the public side.
		{"pub", "addr", "add", "169.254.169.254/32", "dev", "eth0"},
		{"node", "route", "add", "169.254.169.254/32", "via", "203.0.113.20"},
		{"pub", "route", "add", "10.99.7.0/24", "via", "203.0.113.10"},
	}
	byName := map[string]*netns.NS{"node": node, "pub": pub, "priv": priv, "ctr": ctr, "ngx": ngx}
	for _, v := range []struct {
		a  *netns.NS
		an string
		b  *netns.NS
		bn string
	}{{node, "eth0", pub, "eth0"}, {node, "eth1", priv, "eth0"}, {node, "docker0", ctr, "eth0"}, {node, "br-mailcow", ngx, "eth0"}} {
		if err := netns.Veth(v.a, v.an, v.b, v.bn); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range steps {
		if err := byName[s[0]].IP(s[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	if err := node.Do(func() error { return sysctlW("net/ipv4/ip_forward", "1") }); err != nil {
		t.Fatal(err)
	}
	// Docker's side, as dockerd (iptables-nft) would have it: its own tables, a DNAT for published ports, and a
	// DOCKER-USER chain. Loaded first, so the test also shows that (re)loading the firewall leaves them alone.
	docker := `table ip nat {
	chain PREROUTING { type nat hook prerouting priority dstnat; policy accept; tcp dport { 25, 6379 } dnat to 10.99.7.2; }
}
table ip filter {
	chain DOCKER-USER { }
	chain FORWARD { type filter hook forward priority filter; policy drop; jump DOCKER-USER; ip daddr 10.99.7.2 accept; ip saddr 10.99.7.2 accept; }
}
`
	if out, err := nftIn(node, nft, "-f", "-", docker); err != nil {
		t.Fatalf("docker tables: %v\n%s", err, out)
	}
	// The file as shipped, with nginx's pinned address moved into the test's range.
	shipped, err := os.ReadFile(firewallConf)
	if err != nil {
		t.Fatal(err)
	}
	if signup.NginxMailcow != fmt.Sprintf("172.22.1.%d", stack.NginxHost) || !strings.Contains(string(shipped), "define NGINX_MAILCOW = "+signup.NginxMailcow+"\n") {
		t.Fatal("nftables.conf does not define NGINX_MAILCOW as 172.22.1.247 (signup.NginxMailcow, stack.NginxHost)")
	}
	conf := filepath.Join(t.TempDir(), "nftables.conf")
	if err := os.WriteFile(conf, []byte(strings.Replace(string(shipped), "172.22.1.247", "10.99.8.247", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // twice: a reload must work and must keep Docker's tables
		if out, err := nftIn(node, nft, "-f", conf, ""); err != nil {
			t.Fatalf("nft -f %s: %v\n%s", firewallConf, err, out)
		}
	}
	if out, err := nftIn(node, nft, "list", "tables", ""); err != nil || !strings.Contains(out, "table ip filter") || !strings.Contains(out, "table ip nat") {
		t.Fatalf("Docker's tables gone after loading the firewall: %v\n%s", err, out)
	}
	// The agent fills the members' set; a second fill replaces the first (10.99.0.30 was a member, is none now).
	inNode := []string{"ip", "netns", "exec", node.Name, nft}
	for _, members := range [][]netip.Addr{{netip.MustParseAddr("10.99.0.30")}, {netip.MustParseAddr("10.99.0.20")}} {
		if applied, err := firewall.Peers(context.Background(), inNode, members); !applied || err != nil {
			t.Fatalf("filling the members' set: %v %v", applied, err)
		}
	}
	// Without the appliance's table (the lab), filling the set changes nothing and is no error.
	if applied, err := firewall.Peers(context.Background(), []string{"ip", "netns", "exec", pub.Name, nft}, nil); applied || err != nil {
		t.Fatalf("no table: applied %v, %v", applied, err)
	}

	// Listeners: every port on the node, the published ones in the container.
	all := append(append(append([]int{}, publicTCP...), privateTCP...), neverTCP...)
	listen(t, node, "0.0.0.0", all)
	listen(t, ctr, "10.99.7.2", dnatTCP)
	listen(t, pub, "169.254.169.254", []int{80})
	listen(t, pub, "203.0.113.20", []int{8080})

	type probe struct {
		from     *netns.NS
		src, dst string
		port     int
		open     bool
	}
	var probes []probe
	for _, side := range []struct {
		ns       *netns.NS
		src, dst string
		private  bool // the forward path to published ports is Docker's
		member   bool // Galera, the APIs, VRRP
		ssh      bool // SSH and the read-only health API: any host of the private network
	}{
		{pub, "203.0.113.20", "203.0.113.10", false, false, false},
		{pub, "10.99.5.20", "10.99.5.10", false, false, false},
		{priv, "10.99.0.20", "10.99.0.10", true, true, true},
		{priv, "10.99.0.30", "10.99.0.10", true, false, true},
	} {
		for _, p := range publicTCP {
			probes = append(probes, probe{side.ns, side.src, side.dst, p, true})
		}
		for _, p := range privateTCP {
			probes = append(probes, probe{side.ns, side.src, side.dst, p, side.member || (side.ssh && (p == 22 || p == 7480))})
		}
		for _, p := range neverTCP {
			if p == 6379 {
				continue // published: below
			}
			probes = append(probes, probe{side.ns, side.src, side.dst, p, false})
		}
		// Published container ports: mailcow's 25 from everywhere; 6379 only from the private side, whose
		// forward path the firewall leaves to Docker.
		probes = append(probes, probe{side.ns, side.src, side.dst, 6379, side.private})
	}
	// The container, to the node's own address on its bridge: mailcow's public ports like anyone, nothing else.
	for _, p := range publicTCP {
		if !slices.Contains(dnatTCP, p) { // Docker's DNAT of published ports is not for the bridge's own traffic; this stand-in's is
			probes = append(probes, probe{ctr, "10.99.7.2", "10.99.7.1", p, true})
		}
	}
	for _, p := range append(append([]int{}, privateTCP...), neverTCP...) {
		probes = append(probes, probe{ctr, "10.99.7.2", "10.99.7.1", p, false})
	}
	// The sign-up portal: mailcow's nginx reaches it, another container on the same bridge does not.
	// So does the agent's health API, which nginx serves as /mailcow-ha/primary and /mailcow-ha/health.
	probes = append(probes, probe{ngx, "10.99.8.247", "10.99.8.1", 8740, true}, probe{ngx, "10.99.8.5", "10.99.8.1", 8740, false},
		probe{ngx, "10.99.8.247", "10.99.8.1", 7480, true}, probe{ngx, "10.99.8.5", "10.99.8.1", 7480, false})
	// The metadata service: the node reads it, a container does not; the container's other traffic out is Docker's.
	probes = append(probes, probe{node, "203.0.113.10", "169.254.169.254", 80, true},
		probe{ctr, "10.99.7.2", "169.254.169.254", 80, false},
		probe{ctr, "10.99.7.2", "203.0.113.20", 8080, true})
	var wg sync.WaitGroup
	errs := make([]string, len(probes))
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := dialFrom(p.from, p.src, net.JoinHostPort(p.dst, fmt.Sprint(p.port)))
			if open := err == nil; open != p.open {
				errs[i] = fmt.Sprintf("%s → %s:%d: open=%v, want %v (%v)", p.src, p.dst, p.port, open, p.open, err)
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, e := range errs {
		if e != "" {
			t.Error(e)
			n++
		}
	}
	t.Logf("%d probes, %d wrong", len(probes), n)

	// network.admin_cidrs: SSH from the internet for the admin network only, and the agent's sets replace what an
	// earlier start put there.
	for _, admins := range [][]netip.Prefix{{netip.MustParsePrefix("198.51.100.0/24")}, {netip.MustParsePrefix("203.0.113.20/32"), netip.MustParsePrefix("2001:db8::/32")}} {
		if applied, err := firewall.Admins(context.Background(), inNode, admins); !applied || err != nil {
			t.Fatalf("filling the admin sets: %v %v", applied, err)
		}
	}
	if out, err := nftIn(node, nft, "list", "set", "inet", "mailcow_ha", "admin_v6", ""); err != nil || !strings.Contains(out, "2001:db8::/32") {
		t.Fatalf("admin_v6: %v\n%s", err, out)
	}
	for _, p := range []probe{{pub, "203.0.113.20", "203.0.113.10", 22, true}, {pub, "10.99.5.20", "10.99.5.10", 22, false},
		{pub, "203.0.113.20", "203.0.113.10", 7481, false}} {
		if err := dialFrom(p.from, p.src, net.JoinHostPort(p.dst, fmt.Sprint(p.port))); (err == nil) != p.open {
			t.Errorf("with admin_cidrs: %s → %s:%d: open=%v, want %v (%v)", p.src, p.dst, p.port, err == nil, p.open, err)
		}
	}

	// DHCP answers (UDP 67 → 68): from Hetzner's server on eth0 and from the private network, not from another host
	// on the public side, nor from a container.
	got := make(chan string, 16)
	var dhcp *net.UDPConn
	if err := node.Do(func() error {
		var err error
		dhcp, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dhcp.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := dhcp.ReadFromUDP(buf)
			if err != nil {
				return
			}
			got <- from.IP.String()
		}
	}()
	for _, d := range []struct {
		from     *netns.NS
		src, dst string
		accepted bool
	}{
		{pub, "172.31.1.1", "203.0.113.10", true},
		{pub, "203.0.113.20", "203.0.113.10", false},
		{priv, "10.99.0.30", "10.99.0.10", true},
		{ctr, "10.99.7.2", "10.99.7.1", false},
	} {
		if err := d.from.Do(func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(d.src), Port: 67}, &net.UDPAddr{IP: net.ParseIP(d.dst), Port: 68})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("DHCPACK"))
			return err
		}); err != nil {
			t.Fatalf("DHCP from %s: %v", d.src, err)
		}
		select {
		case from := <-got:
			if !d.accepted || from != d.src {
				t.Errorf("a DHCP answer from %s reached the node (as %s)", d.src, from)
			}
		case <-time.After(500 * time.Millisecond):
			if d.accepted {
				t.Errorf("the DHCP answer from %s was dropped", d.src)
			}
		}
	}
	// After the agent started: the metadata service answers the agent's control group only.
	t.Run("metadata", func(t *testing.T) { checkMetadataChain(t, node, pub, nft) })
	// The drops were the firewall's: its counters moved.
	out, _ := nftIn(node, nft, "list", "table", "inet", "mailcow_ha", "")
	for _, rule := range []string{`"published port not public"`, `iifname "docker0" counter`, `iifname "docker0" ip daddr 169.254.169.254`, `"DHCP answer from elsewhere"`} {
		if line := lineWith(out, rule); line == "" || strings.Contains(line, "counter packets 0 bytes 0") {
			t.Errorf("the drop counter of %s did not move:\n%s", rule, out)
		}
	}
}

// lineWith returns the first line of s that contains sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

func nftIn(ns *netns.NS, nft string, args ...string) (string, error) {
	stdin := args[len(args)-1]
	cmd := ns.Command(nft, args[:len(args)-1]...)
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func sysctlW(key, v string) error { return os.WriteFile("/proc/sys/"+key, []byte(v), 0o644) }

// listen accepts (and closes) connections on the ports inside ns until the test ends.
func listen(t *testing.T, ns *netns.NS, addr string, ports []int) {
	t.Helper()
	for _, p := range ports {
		var ln net.Listener
		if err := ns.Do(func() error {
			var err error
			ln, err = net.Listen("tcp4", net.JoinHostPort(addr, fmt.Sprint(p)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
}

// dialFrom connects from src inside ns; a dropped SYN shows as a timeout.
func dialFrom(ns *netns.NS, src, addr string) error {
	var conn net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 700 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var err error
		conn, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}
