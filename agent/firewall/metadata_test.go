package firewall

import (
	"strings"
	"testing"
)

// The agent's own group, as systemd places it on a unified system (Debian 13, the image) and on a hybrid one
// (this machine), and the cases that must not yield a rule.
func TestParseCgroup(t *testing.T) {
	const unified = "29 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
	const hybrid = "25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n" +
		"26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw\n" +
		"27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
	for _, c := range []struct {
		name, cgroup, mountinfo string
		want                    Cgroup
		err                     string
	}{
		{"unified", "0::/system.slice/mailcow-ha.service\n", unified, Cgroup{"system.slice/mailcow-ha.service", 2}, ""},
		{"hybrid", "12:pids:/system.slice/mailcow-ha.service\n1:name=systemd:/system.slice/mailcow-ha.service\n0::/system.slice/mailcow-ha.service\n",
			hybrid, Cgroup{"unified/system.slice/mailcow-ha.service", 2}, ""},
		{"root group", "0::/\n", unified, Cgroup{}, "root group"},
		{"v1 only", "1:name=systemd:/system.slice/x.service\n", unified, Cgroup{}, "no cgroup v2 group"},
		{"no cgroup2 mount", "0::/system.slice/x.service\n", "27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw\n", Cgroup{}, "no cgroup2 hierarchy"},
		{"elsewhere", "0::/a.service\n", "29 1 0:26 / /run/cg rw - cgroup2 cgroup2 rw\n", Cgroup{}, "no cgroup2 hierarchy"},
		{"namespace", "0::/a.service\n", "29 1 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", Cgroup{}, "cgroup namespace"},
		{"quote", "0::/a\"b.service\n", unified, Cgroup{}, "cannot be written"},
	} {
		got, err := parseCgroup(c.cgroup, c.mountinfo)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %+v, %v; want an error with %q", c.name, got, err, c.err)
		}
	}
}
