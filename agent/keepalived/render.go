// Package keepalived renders keepalived's configuration from the cluster's, reads its notify fifo, and runs it
// as a supervised child process. keepalived only elects the MASTER here: with VRRPv3 its virtual addresses are
// placeholders on a link of their own (placeholder.go), with VRRPv2 it has none; the agent moves the Floating IP.
package keepalived

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Spec is what the configuration is rendered from.
type Spec struct {
	RouterName    string // global router_id: the node's name
	Instance      string // vrrp_instance name
	Interface     string // the private interface
	VirtualRouter int    // virtual_router_id, 1..255, the same on every node
	Priority      int    // this node's priority, 1..254
	// Version is VRRP's: 3 (centisecond adverts, Placeholders) or 2 (whole seconds, AuthPass), which every node
	// of a cluster must share.
	Version        int
	AdvertInterval time.Duration // advert_int: VRRPv3 centiseconds from 0.01 s to 40.95 s, VRRPv2 seconds to 255
	Preempt        string        // "off" (nopreempt), "on", or "delay"
	PreemptDelay   time.Duration
	SourceIP       string   // unicast_src_ip: this node's private IP
	Peers          []string // unicast_peer: the other nodes' private IPs
	TrackFile      string   // the track_file that the agent's watcher keeps: 0 healthy, anything else FAULT
	NotifyFIFO     string   // vrrp_notify_fifo
	// Placeholders are the instance's virtual_ipaddress (Placeholders derives them from the cluster secret), put on
	// PlaceholderLink while MASTER. Every advert carries them, and keepalived ignores an advert whose list differs:
	// they are VRRPv3's stand-in for VRRPv2's password.
	Placeholders    []netip.Addr
	PlaceholderLink string
	// AuthPass is VRRPv2's password (PASS: 8 characters in every advert; AuthPass derives it from the cluster
	// secret): an advert without it is dropped, also from a peer's address.
	AuthPass string
}

// AuthPass is the cluster's VRRPv2 password: 8 letters and digits from an HMAC of the cluster secret, so that every
// node computes the same one and nothing else has to be handed out. keepalived reads only the first 8 characters.
func AuthPass(secret []byte, cluster string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mailcow-ha vrrp auth v1\n" + cluster))
	sum := m.Sum(nil)
	out := make([]byte, 8)
	for i := range out {
		out[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	return string(out)
}

// Render returns keepalived.conf for s. Every value is quoted, and a value that could break out of its quotes
// (a quote, a backslash, a newline, a control character) is refused: no configuration value can inject
// keepalived syntax.
func Render(s Spec) ([]byte, error) {
	var errs []string
	q := func(what, v string) string {
		if err := safe(v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", what, err))
		}
		return `"` + v + `"`
	}
	ip := func(what, v string) string {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Sprintf("%s: %q is not an IP address", what, v))
			return `"invalid"`
		}
		return a.String()
	}
	if s.VirtualRouter < 1 || s.VirtualRouter > 255 {
		errs = append(errs, fmt.Sprintf("virtual_router_id %d out of 1..255", s.VirtualRouter))
	}
	if s.Priority < 1 || s.Priority > 254 {
		errs = append(errs, fmt.Sprintf("priority %d out of 1..254", s.Priority))
	}
	switch s.Version {
	case 3: // centiseconds, 12 bits of them
		if s.AdvertInterval < MinAdvert || s.AdvertInterval > MaxAdvert || s.AdvertInterval%(10*time.Millisecond) != 0 {
			errs = append(errs, fmt.Sprintf("advert_int %s is not whole centiseconds from %s to %s", s.AdvertInterval, MinAdvert, MaxAdvert))
		}
		if len(s.Placeholders) == 0 {
			errs = append(errs, "no placeholder address: VRRPv3 needs a virtual_ipaddress")
		}
	case 2: // seconds, 8 bits of them
		if s.AdvertInterval < time.Second || s.AdvertInterval > 255*time.Second || s.AdvertInterval%time.Second != 0 {
			errs = append(errs, fmt.Sprintf("advert_int %s is not a whole number of seconds from 1 to 255 (VRRPv2)", s.AdvertInterval))
		}
		if len(s.Placeholders) > 0 {
			errs = append(errs, "placeholder addresses with VRRPv2: keepalived would manage them; VRRPv2 has its password")
		}
	default:
		errs = append(errs, fmt.Sprintf("VRRP version %d: 2 or 3", s.Version))
	}
	if !strings.HasPrefix(s.TrackFile, "/") {
		errs = append(errs, fmt.Sprintf("track file %q: an absolute path is needed", s.TrackFile))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Rendered by mailcow-ha from its configuration; changes here are overwritten.\n")
	if s.Version == 3 {
		fmt.Fprintf(&b, "# keepalived elects the MASTER only: its virtual addresses are placeholders, the agent moves the Floating IP.\n")
	} else {
		fmt.Fprintf(&b, "# keepalived elects the MASTER only: no virtual_ipaddress, the agent moves the Floating IP.\n")
	}
	fmt.Fprintf(&b, "global_defs {\n")
	fmt.Fprintf(&b, "    router_id %s\n", q("router_id", s.RouterName))
	fmt.Fprintf(&b, "    vrrp_notify_fifo %s\n", q("vrrp_notify_fifo", s.NotifyFIFO))
	// Adverts every few hundred milliseconds must not wait behind a busy node's other work: a MASTER that sends
	// late, or a BACKUP that reads late, makes a false failover. keepalived's VRRP process runs at nice -10.
	fmt.Fprintf(&b, "    vrrp_priority -10\n")
	fmt.Fprintf(&b, "}\n\n")
	// The agent's watcher (mailcow-ha-check --watch) writes the verdict here; keepalived reads it when it changes
	// (inotify). No script runs: nothing is forked per check.
	fmt.Fprintf(&b, "track_file mailcow_ha {\n")
	fmt.Fprintf(&b, "    file %s\n", q("track_file", s.TrackFile))
	fmt.Fprintf(&b, "    # weight 0: any value but 0 puts the instance in FAULT.\n")
	fmt.Fprintf(&b, "    weight 0\n")
	fmt.Fprintf(&b, "    # A missing file is created holding 1: FAULT until the watcher has seen the verdict pass.\n")
	fmt.Fprintf(&b, "    init_file 1\n")
	fmt.Fprintf(&b, "}\n\n")
	fmt.Fprintf(&b, "vrrp_instance %s {\n", q("vrrp_instance", s.Instance))
	fmt.Fprintf(&b, "    state BACKUP\n")

	fmt.Fprintf(&b, "    version %d\n", s.Version)
	fmt.Fprintf(&b, "    interface %s\n", q("interface", s.Interface))
	fmt.Fprintf(&b, "    virtual_router_id %d\n", s.VirtualRouter)
	fmt.Fprintf(&b, "    priority %d\n", s.Priority)
	fmt.Fprintf(&b, "    advert_int %s\n", seconds(s.AdvertInterval))
	switch s.Preempt {
	case "on":
	case "delay":
		fmt.Fprintf(&b, "    preempt_delay %s\n", seconds(s.PreemptDelay))
	default:
		fmt.Fprintf(&b, "    nopreempt\n")
	}
	fmt.Fprintf(&b, "    unicast_src_ip %s\n", ip("unicast_src_ip", s.SourceIP))
	// Adverts from anyone but the peers are dropped: one foreign host sending a higher priority would otherwise
	// keep every node in BACKUP.
	fmt.Fprintf(&b, "    check_unicast_src\n")
	if s.Version == 2 && s.AuthPass != "" {
		if len(s.AuthPass) != 8 {
			errs = append(errs, "auth_pass: 8 characters")
		}
		// In every advert, and checked on every advert received: a host that takes a peer's address but lacks the
		// cluster secret is ignored like any foreign one. (keepalived's other type, AH, is deprecated.)
		fmt.Fprintf(&b, "    authentication {\n        auth_type PASS\n        auth_pass %s\n    }\n", q("auth_pass", s.AuthPass))
	}
	fmt.Fprintf(&b, "    unicast_peer {\n")
	for i, p := range s.Peers {
		fmt.Fprintf(&b, "        %s\n", ip(fmt.Sprintf("unicast_peer[%d]", i), p))
	}
	fmt.Fprintf(&b, "    }\n")
	fmt.Fprintf(&b, "    track_file {\n        mailcow_ha\n    }\n")
	// Placeholders on a link of their own, in every advert: an advert whose list differs (a host without the
	// cluster secret, also from a peer's address) is ignored.
	if s.Version == 3 {
		fmt.Fprintf(&b, "    virtual_ipaddress {\n")
		for i, a := range s.Placeholders {
			if !a.Is4() || !placeholderRange.Contains(a) {
				errs = append(errs, fmt.Sprintf("placeholder[%d]: %s is not in %s", i, a, placeholderRange))
			}
			fmt.Fprintf(&b, "        %s/32 dev %s\n", a, q("placeholder link", s.PlaceholderLink))
		}
		fmt.Fprintf(&b, "    }\n")
	}
	fmt.Fprintf(&b, "}\n")
	if len(errs) > 0 {
		return nil, fmt.Errorf("keepalived config: %s", strings.Join(errs, "; "))
	}
	return b.Bytes(), nil
}

// safe refuses what could end a quoted keepalived string or a line: quotes, backslashes, control characters,
// and the comment markers keepalived honours even inside words.
func safe(v string) error {
	if v == "" {
		return fmt.Errorf("empty")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == '#' || r == '!' || r == '{' || r == '}' {
			return fmt.Errorf("%q holds a character keepalived would read as syntax", v)
		}
	}
	return nil
}

// seconds writes a duration as keepalived's decimal seconds.
func seconds(d time.Duration) string {
	s := fmt.Sprintf("%.2f", d.Seconds())
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" {
		return "0"
	}
	return s
}
