package stack

import (
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/mount"
)

// stateOnDockerVolumes checks what the containers really mount, as the Engine reports it after compose made them:
// a named volume that Placements puts on the Volume (or the host's MariaDB socket) must reach the container as the
// override's bind, never as a Docker volume on the node's disk. A Compose that merged the override differently, an
// override that missed a service, or containers created by hand would otherwise write mail to a node-local volume,
// which the next failover leaves behind. It returns one line per such mount, sorted; none means start.
func (s *Stack) stateOnDockerVolumes(cs map[string]Container) []string {
	var bad []string
	for svc, c := range cs {
		for _, m := range c.Mounts {
			if m.Type != mount.TypeVolume {
				continue
			}
			name := strings.TrimPrefix(m.Name, s.Project+"_")
			if p, ok := Placements[name]; ok && p.Dir != "" {
				bad = append(bad, fmt.Sprintf("%s: %s is the Docker volume %s on this node's disk, not the bind to %s that the override makes",
					svc, m.Destination, m.Name, placeName(p.Dir)))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func placeName(dir string) string {
	if dir == SocketDir {
		return "the host's MariaDB socket directory"
	}
	return "the Volume's " + dir
}
