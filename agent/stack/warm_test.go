package stack_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"golang.org/x/sys/unix"
)

// The warm start, on a bare mount point (the Volume not there yet): every container that binds nothing of the
// Volume, and depends on none that does, runs; the others stay created, and nothing is written where the Volume will
// be. The start after the mount starts the rest. Without a data mount point nothing starts.
func TestWarmStartsOnlyWhatNeedsNoVolume(t *testing.T) {
	e := newEnv(t)
	s := e.stack()
	ctx := context.Background()
	if err := unix.Unmount(e.vol.MountPoint, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Warm(ctx); err == nil {
		t.Fatal("a warm start without a data mount point ran")
	}
	if bad := all(e.states(t, s), "created"); bad != "" {
		t.Fatalf("a refused warm start touched a container: %s", bad)
	}

	s.DataMount = e.vol.MountPoint
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	// What needs the Volume: a bind there (stack.Mounts, the host's MariaDB socket aside), or a dependency that does.
	cold := map[string]bool{}
	for _, m := range stack.Mounts {
		if m.Dir != stack.SocketDir {
			cold[m.Service] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, svc := range stack.Services {
			for _, d := range svc.DependsOn {
				if cold[d] && !cold[svc.Name] {
					cold[svc.Name], changed = true, true
				}
			}
		}
	}
	var warm []string
	for svc, st := range e.states(t, s) {
		want := "running"
		if cold[svc] {
			want = "created"
		} else {
			warm = append(warm, svc)
		}
		if st != want {
			t.Errorf("%s is %s after the warm start, want %s", svc, st, want)
		}
	}
	slices.Sort(warm)
	t.Logf("warm: %v; left for the mount: %d", warm, len(cold))
	if !slices.Contains(warm, "unbound-mailcow") || cold["unbound-mailcow"] || !cold["postfix-mailcow"] || !cold["dovecot-mailcow"] {
		t.Errorf("unbound must warm, postfix and dovecot must wait for the Volume: warm %v", warm)
	}
	if entries, err := os.ReadDir(e.vol.MountPoint); err != nil || len(entries) != 0 {
		t.Errorf("the bare mount point holds %d entries after the warm start (%v): something wrote where the Volume goes", len(entries), err)
	}

	e.mountVolume(t)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if bad := all(e.states(t, s), "running"); bad != "" {
		t.Errorf("after the start: %s", bad)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
