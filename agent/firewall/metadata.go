package firewall

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
)

// Chain is the output chain that rootfs/etc/nftables.conf sends the node's own traffic to the metadata service
// (169.254.169.254) through. It is empty at boot (cloud-init reads the user-data then); MetadataOnly fills it.
const Chain = "metadata"

// cgroupRoot is where nft looks a "socket cgroupv2" path up.
const cgroupRoot = "/sys/fs/cgroup"

// Cgroup is a control group of the cgroup v2 hierarchy as nft's "socket cgroupv2" expression names it: Path is
// relative to /sys/fs/cgroup (where nft resolves it to the group's id when the rule is added), Level the group's
// depth below the hierarchy's root (system.slice/mailcow-ha.service is level 2).
type Cgroup struct {
	Path  string
	Level int
}

// OwnCgroup returns the calling process's cgroup v2 group, read from /proc/self/cgroup and the hierarchy's mount
// point in /proc/self/mountinfo (/sys/fs/cgroup on a unified system, /sys/fs/cgroup/unified on a hybrid one).
func OwnCgroup() (Cgroup, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return Cgroup{}, fmt.Errorf("own cgroup: %w", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Cgroup{}, fmt.Errorf("own cgroup: %w", err)
	}
	return parseCgroup(string(cg), string(mi))
}

// parseCgroup finds the v2 group ("0::/path") in a /proc/PID/cgroup text and places it below the cgroup2 mount
// of a mountinfo text.
func parseCgroup(procCgroup, mountinfo string) (Cgroup, error) {
	var group string
	found := false
	for _, l := range strings.Split(procCgroup, "\n") {
		if g, ok := strings.CutPrefix(l, "0::"); ok {
			group, found = g, true
			break
		}
	}
	if !found || !strings.HasPrefix(group, "/") {
		return Cgroup{}, errors.New("own cgroup: no cgroup v2 group in /proc/self/cgroup")
	}
	return groupIn(group, mountinfo)
}

// Group returns the cgroup v2 group at path (such as /system.slice/x.service, from the hierarchy's root) as nft
// names it, with the hierarchy's mount point read from /proc/self/mountinfo.
func Group(group string) (Cgroup, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup: %w", err)
	}
	return groupIn(group, string(mi))
}

// Dir is the group's directory.
func (c Cgroup) Dir() string { return path.Join(cgroupRoot, c.Path) }

func groupIn(group, mountinfo string) (Cgroup, error) {
	mount := ""
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 || g[0] != "cgroup2" {
			continue
		}
		if f[3] != "/" {
			return Cgroup{}, fmt.Errorf("cgroup: the cgroup2 hierarchy is mounted from %s, not its root (a cgroup namespace)", f[3])
		}
		mount = f[4]
		break
	}
	rel, ok := strings.CutPrefix(mount, cgroupRoot)
	if mount == "" || !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
		return Cgroup{}, fmt.Errorf("cgroup: no cgroup2 hierarchy mounted under %s", cgroupRoot)
	}
	group = path.Clean("/" + group)
	if group == "/" {
		return Cgroup{}, errors.New("cgroup: the process runs in the root group, which every process belongs to")
	}
	if strings.ContainsAny(group, "\"\\\n") {
		return Cgroup{}, fmt.Errorf("cgroup: %q cannot be written into an nft rule", group)
	}
	return Cgroup{Path: strings.TrimPrefix(rel+group, "/"), Level: strings.Count(group, "/")}, nil
}

// MetadataOnly lets the processes of cg alone reach the metadata service from the node, and rejects every other
// process (a container in the host's network namespace, such as mailcow's netfilter-mailcow, included). It replaces
// whom the chain let before in one nft transaction, so a restarted agent (whose new group has a new id) takes the
// place of the old one. Without the appliance firewall's chain (the lab, a test) it changes nothing and reports
// applied = false.
func MetadataOnly(ctx context.Context, nft []string, cg Cgroup) (applied bool, err error) {
	if !has(ctx, nft, "list", "chain", "inet", Table, Chain) {
		return false, nil
	}
	if cg.Level < 1 || cg.Path == "" || strings.ContainsAny(cg.Path, "\"\\\n") {
		return false, fmt.Errorf("firewall: metadata service: %+v is no group of its own", cg)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "flush chain inet %s %s\n", Table, Chain)
	fmt.Fprintf(&b, "add rule inet %s %s socket cgroupv2 level %d \"%s\" accept\n", Table, Chain, cg.Level, cg.Path)
	fmt.Fprintf(&b, "add rule inet %s %s counter reject comment \"not the agent: metadata service\"\n", Table, Chain)
	if err := apply(ctx, nft, b.String()); err != nil {
		return false, fmt.Errorf("firewall: metadata service: %w", err)
	}
	return true, nil
}
