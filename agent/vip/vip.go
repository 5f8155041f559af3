// Package vip puts the Floating IP on the public interface and takes it off, through kernel netlink, and
// announces it: gratuitous ARP (request and reply) for IPv4, an unsolicited neighbour advertisement for IPv6.
package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VIP manages one address on one link.
type VIP struct {
	Link   string          // the public interface
	Handle *netlink.Handle // netlink in the node's namespace; nil: this process's namespace
	// InNS runs socket work in the node's namespace; nil runs it here. Tests hand in netns.NS.Do.
	InNS func(func() error) error
}

func (v *VIP) h() *netlink.Handle {
	if v.Handle != nil {
		return v.Handle
	}
	return &netlink.Handle{}
}

func (v *VIP) link() (netlink.Link, error) {
	l, err := v.h().LinkByName(v.Link)
	if err != nil {
		return nil, fmt.Errorf("vip: link %s: %w", v.Link, err)
	}
	return l, nil
}

// Prefix is the address as the interface holds it: IPv4 as /32, IPv6 as /64 (Hetzner routes a /64).
func Prefix(ip netip.Addr) netip.Prefix {
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	return netip.PrefixFrom(ip, 64)
}

func addr(ip netip.Addr) *netlink.Addr {
	p := Prefix(ip)
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(p.Bits(), ip.BitLen())}}
	if ip.Is6() {
		// No duplicate address detection: the address must be usable (and announceable) at once.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Add puts the address on the link (idempotent: AddrReplace).
func (v *VIP) Add(ip netip.Addr) error {
	l, err := v.link()
	if err != nil {
		return err
	}
	if err := v.h().AddrReplace(l, addr(ip)); err != nil {
		return fmt.Errorf("vip: add %s to %s: %w", Prefix(ip), v.Link, err)
	}
	return nil
}

// Remove takes the address off the link; an address that is not there is no error.
func (v *VIP) Remove(ip netip.Addr) error {
	l, err := v.link()
	if err != nil {
		return err
	}
	present, err := v.present(l, ip)
	if err != nil || !present {
		return err
	}
	if err := v.h().AddrDel(l, addr(ip)); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("vip: remove %s from %s: %w", Prefix(ip), v.Link, err)
	}
	return nil
}

// Present reports whether the link holds the address.
func (v *VIP) Present(ip netip.Addr) (bool, error) {
	l, err := v.link()
	if err != nil {
		return false, err
	}
	return v.present(l, ip)
}

func (v *VIP) present(l netlink.Link, ip netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := v.h().AddrList(l, family)
	if err != nil {
		return false, fmt.Errorf("vip: list addresses of %s: %w", v.Link, err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip.Unmap() {
			return true, nil
		}
	}
	return false, nil
}

// Announce tells the neighbours that the address lives here now: for IPv4 a gratuitous ARP request and reply,
// for IPv6 an unsolicited neighbour advertisement to all nodes.
func (v *VIP) Announce(ip netip.Addr) error {
	l, err := v.link()
	if err != nil {
		return err
	}
	attrs := l.Attrs()
	run := v.InNS
	if run == nil {
		run = func(f func() error) error { return f() }
	}
	return run(func() error {
		if ip.Is4() {
			return garp(attrs.Index, attrs.HardwareAddr, ip)
		}
		return unsolicitedNA(attrs.Index, attrs.HardwareAddr, ip)
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garp sends an ARP request and an ARP reply, both announcing ip at mac, to the broadcast address.
func garp(ifindex int, mac net.HardwareAddr, ip netip.Addr) error {
	if len(mac) != 6 {
		return fmt.Errorf("vip: gratuitous ARP: link has no Ethernet address")
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("vip: gratuitous ARP: %w", err)
	}
	defer unix.Close(fd)
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], bcast)
	ip4 := ip.As4()
	for _, op := range []uint16{1, 2} { // request, reply
		f := make([]byte, 0, 42)
		f = append(f, bcast...)
		f = append(f, mac...)
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_ARP)
		f = binary.BigEndian.AppendUint16(f, 1)      // Ethernet
		f = binary.BigEndian.AppendUint16(f, 0x0800) // IPv4
		f = append(f, 6, 4)
		f = binary.BigEndian.AppendUint16(f, op)
		f = append(f, mac...)
		f = append(f, ip4[:]...)
		if op == 1 {
			f = append(f, 0, 0, 0, 0, 0, 0)
		} else {
			f = append(f, bcast...)
		}
		f = append(f, ip4[:]...)
		if err := unix.Sendto(fd, f, 0, to); err != nil {
			return fmt.Errorf("vip: gratuitous ARP: %w", err)
		}
	}
	return nil
}

// unsolicitedNA sends a neighbour advertisement for ip to ff02::1 with the override flag, from ip itself.
func unsolicitedNA(ifindex int, mac net.HardwareAddr, ip netip.Addr) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("vip: neighbour advertisement: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return fmt.Errorf("vip: neighbour advertisement: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex); err != nil {
		return fmt.Errorf("vip: neighbour advertisement: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: ip.As16(), ZoneId: uint32(ifindex)}); err != nil {
		return fmt.Errorf("vip: neighbour advertisement: bind %s: %w", ip, err)
	}
	t := ip.As16()
	msg := []byte{136, 0, 0, 0} // type, code, checksum (the kernel fills it in)
	msg = binary.BigEndian.AppendUint32(msg, 0x20000000)
	msg = append(msg, t[:]...)
	if len(mac) == 6 {
		msg = append(msg, 2, 1) // target link-layer address option
		msg = append(msg, mac...)
	}
	all := netip.MustParseAddr("ff02::1").As16()
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet6{Addr: all, ZoneId: uint32(ifindex)}); err != nil {
		return fmt.Errorf("vip: neighbour advertisement: %w", err)
	}
	return nil
}
