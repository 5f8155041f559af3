package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
)

// ComposeFile is mailcow's own compose file in its tree.
const ComposeFile = "docker-compose.yml"

// Placement says where a named volume of mailcow's compose file lives in the cluster: on the shared Volume (Dir,
// one of DataDirs), the host's MariaDB socket directory (Dir == SocketDir), or on each node (Dir == "", with the
// reason why that loses nothing).
type Placement struct {
	Dir    string
	Reason string
}

// Placements decide every named volume of mailcow's compose file (release 2026-07a). The override refuses a
// compose file with a named volume missing here: a new release that adds state must be decided, not lost on the
// node that happened to be MASTER.
var Placements = map[string]Placement{
	"vmail-vol-1":                {Dir: "vmail"},
	"vmail-index-vol-1":          {Dir: "vmail-index"},
	"crypt-vol-1":                {Dir: "crypt"},
	"redis-vol-1":                {Dir: "redis"},
	"rspamd-vol-1":               {Dir: "rspamd"},
	"postfix-vol-1":              {Dir: "postfix"},
	"sogo-userdata-backup-vol-1": {Dir: "sogo"},
	// The MTA-STS policies postfix-tlspol has seen: a sender keeps them for their max_age so that an attacker on
	// the path cannot downgrade a known domain to plain text (RFC 8461, section 5). A new MASTER keeps them too.
	"postfix-tlspol-vol-1": {Dir: "postfix-tlspol"},
	"mysql-socket-vol-1":   {Dir: SocketDir},
	"mysql-vol-1":          {Reason: "mysql-mailcow is a stand-in: mailcow's database is the host's MariaDB Galera, and this volume stays empty"},
	"clamd-db-vol-1":       {Reason: "ClamAV's signatures, which each node's clamd downloads itself"},
	"sogo-web-vol-1":       {Reason: "SOGo's web files, which sogo-mailcow copies from its image at every start"},
}

// BindPlacements are host paths of mailcow's tree (as its compose file writes them, without a trailing slash)
// that hold state, with their directory on the Volume: the certificates that acme-mailcow obtains.
var BindPlacements = map[string]string{"./data/assets/ssl": "ssl"}

// Volume is one mount of a service, as compose-go reads it.
type Volume = types.ServiceVolumeConfig

// Compose is what the agent needs of mailcow's compose file: each service's mounts, in the file's order (for the
// override), and its image (for mailcow update's check that a staged release's images are all here).
type Compose struct {
	Services map[string][]Volume
	Images   map[string]string
}

// LoadCompose reads dir's docker-compose.yml with Compose's own loader. Relative paths stay relative (the override
// sits next to it), and variables mailcow.conf would set are not needed: only the mounts are used.
func LoadCompose(ctx context.Context, dir string) (Compose, error) {
	path := filepath.Join(dir, ComposeFile)
	if _, err := os.Stat(path); err != nil {
		return Compose{}, fmt.Errorf("mailcow's compose file: %w", err)
	}
	// mailcow.conf's variables with their defaults: the mounts use none, and an unset one would be a warning on the
	// agent's output for each use.
	env := types.Mapping{}
	for _, v := range mailcowconf.Vars {
		env[v.Name] = v.Default
	}
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: path}},
		Environment: env,
	}, func(o *loader.Options) {
		o.SetProjectName("mailcow", true)
		o.ResolvePaths = false
		o.SkipConsistencyCheck = true
		o.SkipResolveEnvironment = true
	})
	if err != nil {
		return Compose{}, fmt.Errorf("mailcow's compose file %s: %w", path, err)
	}
	c := Compose{Services: map[string][]Volume{}, Images: map[string]string{}}
	for name, s := range p.Services {
		c.Services[name] = s.Volumes
		c.Images[name] = s.Image
	}
	return c, nil
}

// StubCompose is the stub stack's layout (Services and Mounts) as if it were a compose file: the override of a
// node whose stack is the stub (the lab, the VM tests) is rendered from it.
func StubCompose() Compose {
	named := map[string]string{}
	for v, p := range Placements {
		if p.Dir != "" {
			named[p.Dir] = v
		}
	}
	c := Compose{Services: map[string][]Volume{}}
	for _, s := range Services {
		var vs []Volume
		for _, m := range MountsOf(s.Name) {
			v := Volume{Type: types.VolumeTypeVolume, Source: named[m.Dir], Target: m.Target, ReadOnly: m.ReadOnly}
			if m.Dir == "ssl" {
				v = Volume{Type: types.VolumeTypeBind, Source: "./data/assets/ssl", Target: m.Target, ReadOnly: m.ReadOnly}
			}
			vs = append(vs, v)
		}
		c.Services[s.Name] = vs
	}
	return c
}

// placed returns where a mount of mailcow's lives in the cluster: a directory on the Volume, SocketDir, or "" for
// a mount that stays as mailcow wrote it. An undecided named volume is an error.
func placed(v Volume) (string, error) {
	switch v.Type {
	case types.VolumeTypeVolume:
		p, ok := Placements[v.Source]
		if !ok {
			return "", fmt.Errorf("named volume %q at %s is neither bound to the Volume nor declared node-local (stack.Placements)", v.Source, v.Target)
		}
		return p.Dir, nil
	case types.VolumeTypeBind:
		return BindPlacements[strings.TrimSuffix(v.Source, "/")], nil
	}
	return "", nil
}

// Undecided lists the named volumes of c that Placements does not decide, as "service: volume".
func (c Compose) Undecided() []string {
	var out []string
	for name, vs := range c.Services {
		for _, v := range vs {
			if _, err := placed(v); err != nil {
				out = append(out, name+": "+v.Source)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
