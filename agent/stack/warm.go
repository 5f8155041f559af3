package stack

// The warm start: during a takeover's move, the containers that need nothing of the Volume.

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/mount"
)

// Warm starts, while the Volume is still on its way, the containers that bind nothing of it (unbound, clamd,
// netfilter, memcached, ...) and depend on none that do, in compose's order; Start after the mount then has only
// the rest to start, and postfix's chain is shorter. It is called once the old owner is fenced (or there was none),
// so no other node runs mailcow meanwhile. It starts nothing when the containers are to be made first (a changed
// override or mailcow.conf, a service without a container: Start does that after the mount), and it refuses
// without DataMount: what counts as the Volume must be known, never guessed. A container whose bind's source is
// DataMount or under it, or that mounts a Docker volume mailcow-ha places on the Volume, never starts here.
func (s *Stack) Warm(ctx context.Context) error {
	if s.DataMount == "" || !filepath.IsAbs(s.DataMount) {
		return errors.New("stack: warm start: no data mount point known; nothing started")
	}
	begin := time.Now()
	cs, err := s.Discover(ctx)
	if err != nil {
		return err
	}
	if why := s.needCreate(cs); why != "" {
		s.log().Info("warm start skipped: the containers are made after the mount", "why", why)
		return nil
	}
	deps := s.deps(cs)
	cold := map[string]bool{} // needs the Volume, itself or through a dependency
	for svc, c := range cs {
		if s.needsVolume(c) {
			cold[svc] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for svc, ds := range deps {
			for _, d := range ds {
				if _, known := cs[d]; known && cold[d] && !cold[svc] {
					cold[svc], changed = true, true
				}
			}
		}
	}
	warm := map[string][]string{}
	for svc := range cs {
		if !cold[svc] {
			warm[svc] = deps[svc]
		}
	}
	var mu sync.Mutex
	var started []string
	err = inOrder(warm, func(svc string) error {
		ok, err := s.startOne(ctx, cs[svc])
		if ok {
			mu.Lock()
			started = append(started, svc)
			mu.Unlock()
		}
		return err
	})
	sort.Strings(started)
	s.log().Info("warm start: the containers that need nothing of the Volume", "started", strings.Join(started, " "),
		"left_for_the_mount", len(cs)-len(warm), "took", time.Since(begin).Round(time.Millisecond), "err", err)
	return err
}

// needsVolume: one of the container's mounts is on the Volume (a bind from DataMount or below it, or a Docker
// volume that Placements puts there).
func (s *Stack) needsVolume(c Container) bool {
	for _, m := range c.Mounts {
		switch m.Type {
		case mount.TypeBind:
			if m.Source == s.DataMount || strings.HasPrefix(m.Source, strings.TrimSuffix(s.DataMount, "/")+"/") {
				return true
			}
		case mount.TypeVolume:
			if p, ok := Placements[strings.TrimPrefix(m.Name, s.Project+"_")]; ok && p.Dir != "" && p.Dir != SocketDir {
				return true
			}
		default:
			// tmpfs, npipe, cluster: nothing of the Volume.
		}
	}
	return false
}
