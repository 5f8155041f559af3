// Package keepalived renders keepalived's configuration from the cluster's, reads its notify fifo, and runs it
// as a supervised child process. keepalived only elects the MASTER here: its virtual addresses are placeholders
// on a link of their own (placeholder.go), and the agent moves the Floating IP.
package keepalived

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Spec is what the configuration is rendered from.
type Spec struct {
	RouterName     string        // global router_id: the node's name
	Instance       string        // vrrp_instance name
	Interface      string        // the private interface
	VirtualRouter  int           // virtual_router_id, 1..255, the same on every node
	Priority       int           // this node's priority, 1..254
	AdvertInterval time.Duration // advert_int: VRRPv3, centiseconds from 0.01 s to 40.95 s
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
	// VRRPv3 advertises in centiseconds, 12 bits of them.
	if s.AdvertInterval < MinAdvert || s.AdvertInterval > MaxAdvert || s.AdvertInterval%(10*time.Millisecond) != 0 {
		errs = append(errs, fmt.Sprintf("advert_int %s is not whole centiseconds from %s to %s", s.AdvertInterval, MinAdvert, MaxAdvert))
	}
	if len(s.Placeholders) == 0 {
		errs = append(errs, "no placeholder address: VRRPv3 needs a virtual_ipaddress")
	}
	if !strings.HasPrefix(s.TrackFile, "/") {
		errs = append(errs, fmt.Sprintf("track file %q: an absolute path is needed", s.TrackFile))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Rendered by mailcow-ha from its configuration; changes here are overwritten.\n")
	fmt.Fprintf(&b, "# keepalived elects the MASTER only: its virtual addresses are placeholders, the agent moves the Floating IP.\n")
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

	fmt.Fprintf(&b, "    version 3\n")
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
	fmt.Fprintf(&b, "    unicast_peer {\n")
	for i, p := range s.Peers {
		fmt.Fprintf(&b, "        %s\n", ip(fmt.Sprintf("unicast_peer[%d]", i), p))
	}
	fmt.Fprintf(&b, "    }\n")
	fmt.Fprintf(&b, "    track_file {\n        mailcow_ha\n    }\n")
	// Placeholders on a link of their own, in every advert: an advert whose list differs (a host without the
	// cluster secret, also from a peer's address) is ignored.
	fmt.Fprintf(&b, "    virtual_ipaddress {\n")
	for i, a := range s.Placeholders {
		if !a.Is4() || !placeholderRange.Contains(a) {
			errs = append(errs, fmt.Sprintf("placeholder[%d]: %s is not in %s", i, a, placeholderRange))
		}
		fmt.Fprintf(&b, "        %s/32 dev %s\n", a, q("placeholder link", s.PlaceholderLink))
	}
	fmt.Fprintf(&b, "    }\n")
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
