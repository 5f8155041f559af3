package vip

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

func TestPrefix(t *testing.T) {
	if p := Prefix(netip.MustParseAddr("203.0.113.100")); p.String() != "203.0.113.100/32" {
		t.Error(p)
	}
	if p := Prefix(netip.MustParseAddr("2001:db8::100")); p.String() != "2001:db8::100/64" {
		t.Error(p)
	}
}

// pair makes two namespaces joined by a veth: node (eth0) and neighbour (eth0).
func pair(t *testing.T) (node, nb *netns.NS) {
	t.Helper()
	if why := netns.Available(); why != "" {
		t.Skip(why)
	}
	var err error
	if node, err = netns.Add(netns.Unique("mha-vip-")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Del() })
	if nb, err = netns.Add(netns.Unique("mha-nb-")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nb.Del() })
	if err := netns.Veth(node, "eth0", nb, "eth0"); err != nil {
		t.Fatal(err)
	}
	return node, nb
}

func handle(t *testing.T, ns *netns.NS) *netlink.Handle {
	t.Helper()
	h, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// capture listens on the neighbour's eth0 for frames of one EtherType and returns them on a channel.
func capture(t *testing.T, ns *netns.NS, proto uint16) <-chan []byte {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(proto)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	out := make(chan []byte, 64)
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done; unix.Close(fd) })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == nil && n > 0 {
				select {
				case out <- bytes.Clone(buf[:n]):
				default:
				}
			}
		}
	}()
	return out
}

func TestIPv4AddRemoveAndGratuitousARP(t *testing.T) {
	node, nb := pair(t)
	frames := capture(t, nb, unix.ETH_P_ARP)
	v := &VIP{Link: "eth0", Handle: handle(t, node), InNS: node.Do}
	ip := netip.MustParseAddr("203.0.113.100")
	if ok, err := v.Present(ip); err != nil || ok {
		t.Fatalf("present before add: %v %v", ok, err)
	}
	for range 2 { // idempotent
		if err := v.Add(ip); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := v.Present(ip); !ok {
		t.Fatal("not present after add")
	}
	addrs, _ := v.Handle.AddrList(mustLink(t, v), netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "203.0.113.100/32" {
		t.Fatalf("addresses = %v", addrs)
	}
	if err := v.Announce(ip); err != nil {
		t.Fatal(err)
	}
	ops := map[uint16]bool{}
	deadline := time.After(3 * time.Second)
	for len(ops) < 2 {
		select {
		case f := <-frames:
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_ARP && netip.AddrFrom4([4]byte(f[28:32])) == ip && netip.AddrFrom4([4]byte(f[38:42])) == ip {
				ops[binary.BigEndian.Uint16(f[20:])] = true
				if !bytes.Equal(f[22:28], mustLink(t, v).Attrs().HardwareAddr) {
					t.Errorf("sender MAC %x", f[22:28])
				}
			}
		case <-deadline:
			t.Fatalf("gratuitous ARP seen: %v, want request and reply", ops)
		}
	}
	for range 2 {
		if err := v.Remove(ip); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := v.Present(ip); ok {
		t.Fatal("present after remove")
	}
}

func TestIPv6AddAndNeighbourAdvertisement(t *testing.T) {
	node, nb := pair(t)
	frames := capture(t, nb, unix.ETH_P_IPV6)
	v := &VIP{Link: "eth0", Handle: handle(t, node), InNS: node.Do}
	ip := netip.MustParseAddr("2001:db8:100::1")
	if err := v.Add(ip); err != nil {
		t.Fatal(err)
	}
	addrs, _ := v.Handle.AddrList(mustLink(t, v), netlink.FAMILY_V6)
	found := false
	for _, a := range addrs {
		if a.IPNet.String() == "2001:db8:100::1/64" {
			found = true
		}
	}
	if !found {
		t.Fatalf("addresses = %v", addrs)
	}
	if err := v.Announce(ip); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(3 * time.Second)
	for {
		select {
		case f := <-frames:
			// Ethernet 14, IPv6 40, then ICMPv6: type 136, flags, target.
			if len(f) >= 14+40+24 && f[14+6] == unix.IPPROTO_ICMPV6 && f[54] == 136 &&
				netip.AddrFrom16([16]byte(f[62:78])) == ip && f[14+7] == 255 {
				if f[58]&0x20 == 0 {
					t.Error("override flag not set")
				}
				if err := v.Remove(ip); err != nil {
					t.Fatal(err)
				}
				return
			}
		case <-deadline:
			t.Fatal("no unsolicited neighbour advertisement seen")
		}
	}
}

func mustLink(t *testing.T, v *VIP) netlink.Link {
	t.Helper()
	l, err := v.link()
	if err != nil {
		t.Fatal(err)
	}
	return l
}
