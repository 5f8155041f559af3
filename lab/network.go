package lab

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

// ns names a namespace of this lab.
func (l *Lab) ns(role string) string { return l.id + "-" + role }

// topology makes the lab's namespaces and links: the switch (br0, the private network 10.99.0.0/24), the router
// (every node's public link, the client's, the Floating IP's route) and the client. The nodes come with the
// servers that `cluster create` makes (addNode).
func (l *Lab) topology() error {
	var err error
	must := func(e error) {
		if err == nil && e != nil {
			err = e
		}
	}
	if l.sw, err = netns.Add(l.ns("sw")); err != nil {
		return err
	}
	if l.rt, err = netns.Add(l.ns("rt")); err != nil {
		return err
	}
	if l.client, err = netns.Add(l.ns("client")); err != nil {
		return err
	}
	must(l.sw.IP("link", "add", "br0", "type", "bridge"))
	must(l.sw.IP("link", "set", "br0", "up"))
	must(l.sw.IP("addr", "add", "10.99.0.1/24", "dev", "br0"))
	must(sysctl(l.rt, "net.ipv4.ip_forward", "1"))
	must(netns.Veth(l.client, "eth0", l.rt, "cl"))
	must(l.client.IP("addr", "add", ClientIP+"/24", "dev", "eth0"))
	must(l.client.IP("route", "add", PublicNet, "via", RouterIP))
	must(l.client.IP("route", "add", "unreachable", "default")) // nothing leaves the lab (Node.publicRoutes)
	must(l.rt.IP("addr", "add", RouterIP+"/24", "dev", "cl"))
	must(l.rt.IP("route", "add", "unreachable", "default"))
	if err != nil {
		return fmt.Errorf("lab: network: %w", err)
	}
	return nil
}

// addNode makes the lab node of a server that `cluster create` made through the simulator: its namespace, eth1 on
// the switch with the server's address in the cluster's network, eth0 to the router with its public address. The
// node is off until the lab boots it. A node added after Up (Grow) is appended under the lab's lock while Grow
// waits: the tests read l.Nodes only between their steps.
func (l *Lab) addNode(s hcloudsim.Server) (*Node, error) {
	if len(s.PrivateNet) == 0 || s.PublicIPv4 == "" {
		return nil, fmt.Errorf("lab: server %s has no private network or no public IPv4", s.Name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.Nodes) >= MaxNodes {
		return nil, fmt.Errorf("lab: server %s: the lab has room for %d nodes", s.Name, MaxNodes)
	}
	name := s.Name
	n := &Node{Name: name, ID: s.ID, PrivIP: s.PrivateNet[0].IP, PubIP: s.PublicIPv4, UserData: s.UserData,
		Dir: filepath.Join(l.o.Dir, name), lab: l}
	var err error
	must := func(e error) {
		if err == nil && e != nil {
			err = e
		}
	}
	if n.NS, err = netns.Add(l.ns(name)); err != nil {
		return nil, err
	}
	l.Nodes = append(l.Nodes, n)
	must(netns.Veth(n.NS, "eth1", l.sw, "p"+name))
	must(l.sw.IP("link", "set", "p"+name, "master", "br0"))
	must(n.NS.IP("addr", "add", n.PrivIP+"/24", "dev", "eth1"))
	must(netns.Veth(n.NS, "eth0", l.rt, name))
	must(n.NS.IP("addr", "add", n.PubIP+"/32", "dev", "eth0"))
	must(n.publicRoutes())
	must(l.rt.IP("addr", "add", Gateway+"/32", "dev", name))
	must(l.rt.IP("route", "add", n.PubIP+"/32", "dev", name))
	if err != nil {
		return nil, fmt.Errorf("lab: network of %s: %w", name, err)
	}
	return n, nil
}

// sysctl sets a kernel parameter inside a namespace.
func sysctl(ns *netns.NS, key, value string) error {
	return ns.Do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
}

// serveInSwitch serves h on addr inside the switch namespace, where every node reaches it.
func (l *Lab) serveInSwitch(addr string, h http.Handler) (*http.Server, error) {
	var ln net.Listener
	if err := l.sw.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}
