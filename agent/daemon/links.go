package daemon

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// interfaces resolves network.private_interface and network.public_interface; "auto" finds the link that
// holds this node's private IP, and the link of the default route.
func interfaces(c config.Config, privateIP string) (priv, pub string, err error) {
	priv, pub = c.Network.PrivateInterface, c.Network.PublicInterface
	if priv == "auto" {
		if priv, err = linkWithAddress(privateIP); err != nil {
			return "", "", fmt.Errorf("network.private_interface auto: %w", err)
		}
	}
	if pub == "auto" {
		if pub, err = defaultRouteLink(); err != nil {
			return "", "", fmt.Errorf("network.public_interface auto: %w", err)
		}
	}
	return priv, pub, nil
}

func linkWithAddress(ip string) (string, error) {
	want := net.ParseIP(ip)
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if a.IP.Equal(want) {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return "", err
			}
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no interface holds %s", ip)
}

func defaultRouteLink() (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", err
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return "", err
			}
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no default route")
}
