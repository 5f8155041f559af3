package keepalived

// The placeholder addresses. keepalived 2.2's VRRPv3 refuses an instance without a virtual_ipaddress, and VRRPv3
// is what advertises in centiseconds (VRRPv2: whole seconds). The agent keeps owning the Floating IP, so the
// instance gets addresses nobody uses, on a link nothing routes through: four IPv4 addresses in 198.18.0.0/15
// (RFC 2544's benchmarking range: never on the Internet, not a range Hetzner networks or Docker hand out), on a
// dummy link of their own, added by keepalived on MASTER and removed on BACKUP. keepalived puts the list in every
// advert and ignores an advert whose list differs from its own; derived from the cluster secret, the list does
// what VRRPv2's 8-character password did (VRRPv3 has no authentication): a host without the secret cannot hold
// the members in BACKUP, also from a peer's address.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
)

const (
	// MinAdvert and MaxAdvert bound VRRPv3's advert interval: 12 bits of centiseconds.
	MinAdvert = 10 * time.Millisecond
	MaxAdvert = 4095 * 10 * time.Millisecond
	// PlaceholderLink is the link the placeholders live on.
	PlaceholderLink = "mcha-vrrp"
	// placeholderCount addresses of 17 bits each: 68 bits of the secret's HMAC in every advert (VRRPv2's
	// password: 8 characters of 62, about 48 bits).
	placeholderCount = 4
)

var placeholderRange = netip.MustParsePrefix("198.18.0.0/15")

// Placeholders returns the cluster's placeholder addresses: four distinct addresses in 198.18.0.0/15 from an HMAC
// of the cluster secret, so every member computes the same list and nothing else has to be handed out.
func Placeholders(secret []byte, cluster string) []netip.Addr {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mailcow-ha vrrp placeholders v1\n" + cluster))
	sum := m.Sum(nil)
	base := binary.BigEndian.Uint32(placeholderRange.Addr().AsSlice())
	var out []netip.Addr
	for i := 0; len(out) < placeholderCount; i++ {
		if 4*i+4 > len(sum) { // a collision used up the digest: extend it
			m.Write([]byte{byte(i)})
			sum = append(sum, m.Sum(nil)...)
		}
		host := binary.BigEndian.Uint32(sum[4*i:]) & (1<<17 - 1)
		if host == 0 || host == 1<<17-1 {
			continue
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+host)
		a := netip.AddrFrom4(b)
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// EnsureLink makes the placeholder link if it is missing and sets it up; h nil works in this process's namespace.
// It is a dummy link; a kernel built without the dummy driver (this lab's, for one) gets an ifb link, which
// behaves the same for an address nobody routes to. It returns the link's kind.
func EnsureLink(h *netlink.Handle, name string) (string, error) {
	if h == nil {
		h = &netlink.Handle{}
	}
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return "", fmt.Errorf("keepalived: placeholder link %s: %w", name, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		if err = h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs}); err != nil {
			if err2 := h.LinkAdd(&netlink.Ifb{LinkAttrs: attrs}); err2 != nil {
				return "", fmt.Errorf("keepalived: placeholder link %s: dummy: %w; ifb: %w", name, err, err2)
			}
		}
		if l, err = h.LinkByName(name); err != nil {
			return "", fmt.Errorf("keepalived: placeholder link %s: %w", name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return "", fmt.Errorf("keepalived: placeholder link %s up: %w", name, err)
	}
	return l.Type(), nil
}
