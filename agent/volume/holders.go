package volume

// Who still has a device's file system mounted, for the error that says it is still in use.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mountedBy names up to five processes, one per mount namespace, that still have dev's file system mounted (from
// /proc/PID/mountinfo), for the error that says the device is still in use: ", mounted for pid 123 (dockerd)".
func mountedBy(dev string) string {
	var st unix.Stat_t
	if unix.Stat(dev, &st) != nil {
		return ""
	}
	want := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	procs, _ := filepath.Glob("/proc/[0-9]*/mountinfo")
	seen := map[string]bool{}
	var out []string
	for _, mi := range procs {
		pid := filepath.Base(filepath.Dir(mi))
		ns, err := os.Readlink(filepath.Join("/proc", pid, "ns", "mnt"))
		if err != nil || seen[ns] {
			continue
		}
		b, err := os.ReadFile(mi)
		if err != nil {
			continue
		}
		seen[ns] = true
		for _, line := range strings.Split(string(b), "\n") {
			// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": the third field is the device.
			if f := strings.Fields(line); len(f) > 4 && f[2] == want {
				comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
				out = append(out, fmt.Sprintf("pid %s (%s) at %s", pid, strings.TrimSpace(string(comm)), f[4]))
				break
			}
		}
		if len(out) == 5 {
			break
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; mounted for " + strings.Join(out, ", ")
}
