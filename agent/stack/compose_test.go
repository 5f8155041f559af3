package stack

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
)

// realTree returns mailcow's release tree that the manifest pins, or skips with the reason.
func realTree(t *testing.T) string {
	t.Helper()
	dir, err := mailcowtree.Dir(context.Background(), "../..")
	if err != nil {
		t.Skipf("needs mailcow's release tree: %v", err)
	}
	return dir
}

// realCompose is LoadCompose of the release tree, read once for every test (the loader validates against
// Compose's schema, which takes seconds under -race).
func realCompose(t *testing.T, tree string) Compose {
	t.Helper()
	composeOnce.Do(func() { composeReal, composeErr = LoadCompose(context.Background(), tree) })
	if composeErr != nil {
		t.Fatal(composeErr)
	}
	return composeReal
}

var (
	composeOnce sync.Once
	composeReal Compose
	composeErr  error
)

var testOptions = OverrideOptions{DataMount: "/var/lib/mailcow-ha/data", SocketDir: "/run/mysqld", FloatingIP: netip.MustParseAddr("203.0.113.100")}

// merged is what Compose makes of mailcow's compose file with the override: each service's mounts, nginx-mailcow's
// address and netfilter-mailcow's SNAT, as testdata/composemerge prints it.
type merged struct {
	Mounts map[string][]mergedMount `json:"mounts"`
	Nginx  string                   `json:"nginx_mailcow-network"`
	SNAT   string                   `json:"netfilter_SNAT_TO_SOURCE"`
}

type mergedMount struct {
	Type     string `json:"type"`
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only"`
}

// mergeHere merges with the compose-go the agent links (the newest).
func mergeHere(t *testing.T, dir, base, override string) merged {
	t.Helper()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir: dir, ConfigFiles: []types.ConfigFile{{Filename: base}, {Filename: override}}, Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("mailcow", true)
		o.SkipConsistencyCheck = true
		o.SkipValidation = true
	})
	if err != nil {
		t.Fatalf("compose-go merge: %v", err)
	}
	m := merged{Mounts: map[string][]mergedMount{}}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			m.Mounts[name] = append(m.Mounts[name], mergedMount{v.Type, v.Source, v.Target, v.ReadOnly})
		}
		if c := s.Networks["mailcow-network"]; name == "nginx-mailcow" && c != nil {
			m.Nginx = c.Ipv4Address
		}
		if v := s.Environment["SNAT_TO_SOURCE"]; name == "netfilter-mailcow" && v != nil {
			m.SNAT = *v
		}
	}
	return m
}

// writeOverride renders the override for the tree and writes it next to a copy of its compose file.
func writeOverride(t *testing.T, tree string) (dir, base, override string) {
	t.Helper()
	ov, err := RenderOverride(testOptions, realCompose(t, tree))
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	b, err := os.ReadFile(filepath.Join(tree, ComposeFile))
	if err != nil {
		t.Fatal(err)
	}
	base, override = filepath.Join(dir, ComposeFile), filepath.Join(dir, OverrideFile)
	os.WriteFile(base, b, 0o644)
	os.WriteFile(override, ov, 0o644)
	return dir, base, override
}

// The override of mailcow's real compose file (the pinned release), merged by Compose's own loader: every mount that
// Placements and BindPlacements move is a bind to the Volume (or to the host's MariaDB socket), every other mount of
// mailcow's stays as it was, no moved named volume survives, nginx-mailcow has its fixed address and
// netfilter-mailcow the Floating IP to leave from.
func TestOverrideOverRealCompose(t *testing.T) {
	tree := realTree(t)
	dir, base, override := writeOverride(t, tree)
	ov, _ := os.ReadFile(override)
	golden(t, "override-2026-07a.golden.yml", ov)
	before := realCompose(t, tree)
	m := mergeHere(t, dir, base, override)
	checkMerged(t, before, m)
}

func checkMerged(t *testing.T, before Compose, m merged) {
	t.Helper()
	if m.Nginx != "172.22.1.247" {
		t.Errorf("nginx-mailcow's address %q, want 172.22.1.247", m.Nginx)
	}
	if m.SNAT != "203.0.113.100" {
		t.Errorf("netfilter-mailcow's SNAT_TO_SOURCE %q", m.SNAT)
	}
	moved := 0
	for name, vs := range before.Services {
		got := m.Mounts[name]
		if len(got) != len(vs) {
			t.Errorf("%s: %d mounts after the merge, mailcow's file has %d: %+v", name, len(got), len(vs), got)
			continue
		}
		byTarget := map[string]mergedMount{}
		for _, g := range got {
			byTarget[strings.TrimSuffix(g.Target, "/")] = g
		}
		for _, v := range vs {
			g, ok := byTarget[strings.TrimSuffix(v.Target, "/")]
			if !ok {
				t.Errorf("%s: %s is not mounted after the merge", name, v.Target)
				continue
			}
			dir, _ := placed(v)
			switch {
			case dir == SocketDir:
				moved++
				if g.Type != "bind" || g.Source != "/run/mysqld" {
					t.Errorf("%s: %s from %s %q, want the host's MariaDB socket directory", name, v.Target, g.Type, g.Source)
				}
			case dir != "":
				moved++
				if g.Type != "bind" || g.Source != filepath.Join(testOptions.DataMount, dir) || g.ReadOnly != v.ReadOnly {
					t.Errorf("%s: %s from %s %q (read-only %v), want the Volume's %s (read-only %v)", name, v.Target, g.Type, g.Source, g.ReadOnly, dir, v.ReadOnly)
				}
			default:
				if g.Type != v.Type || g.ReadOnly != v.ReadOnly || (v.Type == "volume" && g.Source != v.Source) ||
					(v.Type == "bind" && filepath.Base(g.Source) != filepath.Base(v.Source)) {
					t.Errorf("%s: mailcow's %s %s:%s became %+v", name, v.Type, v.Source, v.Target, g)
				}
			}
		}
	}
	if moved < 20 {
		t.Errorf("only %d mounts moved to the Volume or the socket", moved)
	}
}

// The same merge under the compose-go of Debian 13's Compose (2.26.1: v2.0.2) and of the Compose plugin the
// Hetzner build on Debian 12 downloads (2.29.7: v2.2.0) gives what the newest gives: !override makes the result
// independent of how each version merges lists. The older versions come from the Go module proxy, built from
// testdata/composemerge.
func TestOverrideMergesAlikeInComposeVersions(t *testing.T) {
	tree := realTree(t)
	dir, base, override := writeOverride(t, tree)
	want := mergeHere(t, dir, base, override)
	before := realCompose(t, tree)
	for _, c := range []struct{ compose, modfile string }{{"2.26.1 (Debian 13)", "go.mod"}, {"2.29.7", "go.v2.2.0.mod"}} {
		t.Run(c.compose, func(t *testing.T) {
			cmd := exec.Command("go", "run", "-modfile="+c.modfile, ".", dir, base, override)
			cmd.Dir = filepath.Join("testdata", "composemerge")
			cmd.Env = append(os.Environ(), "GOWORK=off")
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				if strings.Contains(stderr, "proxy.golang.org") || strings.Contains(stderr, "dial tcp") {
					t.Skipf("the Go module proxy is not reachable for compose-go: %s", stderr)
				}
				t.Fatalf("composemerge: %v: %s", err, stderr)
			}
			var got merged
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			checkMerged(t, before, got)
			for name, w := range want.Mounts {
				g := got.Mounts[name]
				key := func(ms []mergedMount) []string {
					var k []string
					for _, m := range ms {
						k = append(k, strings.Join([]string{m.Type, m.Source, strings.TrimSuffix(m.Target, "/")}, " "))
					}
					sort.Strings(k)
					return k
				}
				if !slices.Equal(key(g), key(w)) {
					t.Errorf("%s: mounts differ from the newest compose-go's:\n got %v\nwant %v", name, key(g), key(w))
				}
			}
		})
	}
}

// A release that adds a named volume nobody decided is refused, with the service and the volume named.
func TestOverrideRefusesUndecidedVolume(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ComposeFile), []byte("services:\n  new-mailcow:\n    image: x\n    volumes:\n      - new-vol-1:/var/lib/new\n      - vmail-vol-1:/var/vmail\nvolumes:\n  new-vol-1:\n  vmail-vol-1:\n"), 0o644)
	c, err := LoadCompose(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = RenderOverride(testOptions, c)
	if err == nil || !strings.Contains(err.Error(), "new-mailcow: new-vol-1") {
		t.Fatalf("an undecided named volume: %v", err)
	}
	if _, err := LoadCompose(context.Background(), t.TempDir()); err == nil || !strings.Contains(err.Error(), ComposeFile) {
		t.Errorf("no compose file: %v", err)
	}
}

// Every named volume of the pinned release is decided, and the stub stack's layout (its services, their
// dependencies, and its binds to the Volume) is the real file's: the stub cannot fall behind a release.
func TestStubLayoutIsMailcows(t *testing.T) {
	tree := realTree(t)
	real := realCompose(t, tree)
	if u := real.Undecided(); len(u) > 0 {
		t.Errorf("undecided named volumes: %v", u)
	}
	for v, p := range Placements {
		if p.Dir == "" && p.Reason == "" {
			t.Errorf("Placements[%s]: node-local without a reason", v)
		}
		if p.Dir != "" && p.Dir != SocketDir && !slices.Contains(DataDirs, p.Dir) {
			t.Errorf("Placements[%s]: %s is not one of DataDirs", v, p.Dir)
		}
	}
	key := func(c Compose) []string {
		var k []string
		for name, vs := range c.Services {
			for _, v := range vs {
				if dir, _ := placed(v); dir != "" {
					k = append(k, strings.Join([]string{name, strings.TrimSuffix(v.Target, "/"), dir, map[bool]string{true: "ro", false: "rw"}[v.ReadOnly]}, " "))
				}
			}
		}
		sort.Strings(k)
		return k
	}
	if got, want := key(StubCompose()), key(real); !slices.Equal(got, want) {
		t.Errorf("the stub's binds to the Volume differ from the release's:\n stub %v\n real %v", got, want)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir: tree, ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(tree, ComposeFile)}}, Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("mailcow", true)
		o.SkipConsistencyCheck = true
		o.SkipValidation = true
	})
	if err != nil {
		t.Fatal(err)
	}
	stub := map[string][]string{}
	for _, s := range Services {
		stub[s.Name] = slices.Sorted(slices.Values(s.DependsOn))
	}
	for name, s := range p.Services {
		d, ok := stub[name]
		if !ok {
			t.Errorf("the release's %s is not in stack.Services", name)
			continue
		}
		var deps []string
		for dep := range s.DependsOn {
			deps = append(deps, dep)
		}
		sort.Strings(deps)
		if !slices.Equal(d, deps) {
			t.Errorf("%s depends on %v in the release, on %v in stack.Services", name, deps, d)
		}
		delete(stub, name)
	}
	for name := range stub {
		t.Errorf("stack.Services has %s, which the release does not", name)
	}
}
