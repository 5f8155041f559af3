package lab

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

// ns names a namespace of this lab.
func (l *Lab) ns(role string) string { return l.id + "-" + role }

// topology makes the lab's namespaces and links: the switch (br0, the private network 10.99.0.0/24), the router
// (every node's public link, the client's, the Floating IP's route), the client, and one namespace per node with
// eth1 on the switch and eth0 to the router.
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
	for i := 1; i <= l.o.Nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		n := &Node{Name: name, ID: int64(1000 + i), PrivIP: fmt.Sprintf("10.99.0.%d", 10+i), PubIP: fmt.Sprintf("203.0.113.%d", 10+i),
			Dir: filepath.Join(l.o.Dir, name), lab: l}
		if n.NS, err = netns.Add(l.ns(name)); err != nil {
			return err
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
			return fmt.Errorf("lab: network of %s: %w", name, err)
		}
	}
	return nil
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
