package deploy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub"
	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

// The stub layer over mailcow's real compose file (the pinned release) and the agent's override, merged by Compose's
// own loader: every service runs the stub with its role, and everything else is what mailcow's file and the
// override make of it (mounts on the Volume, published ports, networks, depends_on, sysctls).
func TestLayerOverRealCompose(t *testing.T) {
	tree, err := mailcowtree.Dir(context.Background(), "../..")
	if err != nil {
		t.Skipf("needs mailcow's release tree: %v", err)
	}
	ctx := context.Background()
	c, err := stack.LoadCompose(ctx, tree)
	if err != nil {
		t.Fatal(err)
	}
	const data = "/var/lib/mailcow-ha/data"
	ov, err := stack.RenderOverride(stack.OverrideOptions{DataMount: data, SocketDir: "/run/mysqld", FloatingIP: netip.MustParseAddr("203.0.113.100")}, c)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	layer, err := Layer(names, LayerOptions{Hostname: "vm1", DataMount: data, HealthInterval: 15 * time.Second, HealthTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base, _ := os.ReadFile(filepath.Join(tree, stack.ComposeFile))
	for name, b := range map[string][]byte{stack.ComposeFile: base, stack.OverrideFile: ov, LayerFile: layer} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := types.Mapping{}
	for _, v := range mailcowconf.Vars {
		env[v.Name] = v.Default
	}
	load := func(files ...string) *types.Project {
		var cfs []types.ConfigFile
		for _, f := range files {
			cfs = append(cfs, types.ConfigFile{Filename: filepath.Join(dir, f)})
		}
		p, err := loader.LoadWithContext(ctx, types.ConfigDetails{WorkingDir: dir, ConfigFiles: cfs, Environment: env}, func(o *loader.Options) {
			o.SetProjectName("mailcowdockerized", true)
		})
		if err != nil {
			t.Fatalf("compose-go: %v", err)
		}
		return p
	}
	real := load(stack.ComposeFile, stack.OverrideFile)
	stub := load(stack.ComposeFile, stack.OverrideFile, LayerFile)
	if len(stub.Services) != len(real.Services) || len(stub.Services) < 18 {
		t.Fatalf("%d services with the layer, %d without; want the same, at least mailcow's 18", len(stub.Services), len(real.Services))
	}
	for name, r := range real.Services {
		s := stub.Services[name]
		role := Role(name)
		if s.Image != Image || s.PullPolicy != "never" || !slices.Equal(s.Entrypoint, []string{"/mailcow-stub"}) ||
			len(s.Command) < 1 || s.Command[0] != role || !slices.Contains(s.Command, "vm1") {
			t.Errorf("%s: image %q pull %q entrypoint %q command %q; want the stub as %s, greeting as vm1", name, s.Image, s.PullPolicy, s.Entrypoint, s.Command, role)
		}
		wantHealth := role != mailcowstub.RoleSleep
		if h := s.HealthCheck; h == nil || h.Disable == wantHealth || (wantHealth && (len(h.Test) < 4 || h.Test[3] != role || h.Interval == nil || time.Duration(*h.Interval) != 15*time.Second)) {
			t.Errorf("%s: health check %+v; want the stub's (%v)", name, h, wantHealth)
		}
		// Everything but the image's part is mailcow's and the override's.
		if !slices.Equal(ports(s), ports(r)) || !slices.Equal(nets(s), nets(r)) || !slices.Equal(deps(s), deps(r)) ||
			len(s.Sysctls) != len(r.Sysctls) || s.NetworkMode != r.NetworkMode || s.Privileged != r.Privileged {
			t.Errorf("%s: ports %v nets %v deps %v sysctls %v; without the layer %v %v %v %v", name, ports(s), nets(s), deps(s), s.Sysctls, ports(r), nets(r), deps(r), r.Sysctls)
		}
		want := mounts(r)
		if role == mailcowstub.RolePostfix {
			want = append(want, data+"/vmail:/var/vmail")
			sort.Strings(want)
		}
		if got := mounts(s); !slices.Equal(got, want) {
			t.Errorf("%s: mounts\n%q\nwant\n%q", name, got, want)
		}
	}
	// The mounts that matter for the VM test's mail: dovecot reads the Maildirs from the Volume (the override's bind),
	// where the stub postfix writes them (the layer's).
	if !slices.Contains(mounts(stub.Services["dovecot-mailcow"]), data+"/vmail:/var/vmail") {
		t.Errorf("dovecot-mailcow: %q; want vmail on the Volume", mounts(stub.Services["dovecot-mailcow"]))
	}
	if got := ports(stub.Services["postfix-mailcow"]); !slices.Contains(got, ":25:25/tcp") {
		t.Errorf("postfix-mailcow publishes %q; want 25", got)
	}

	// With the mailservers image, Debian's postfix and dovecot play postfix-mailcow and dovecot-mailcow: the image's
	// entry point and role, the mailboxes, LMTP at dovecot's fixed address on mailcow's network, their own health
	// check, and nothing but mailcow's mounts (no vmail bind for postfix, which delivers over LMTP).
	mail, err := Layer(names, LayerOptions{Hostname: "vm1", DataMount: data, MailImage: "mailcow-ha/mailservers:test", MailUsers: []string{"user@vm.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, LayerFile), mail, 0o644); err != nil {
		t.Fatal(err)
	}
	real = load(stack.ComposeFile, stack.OverrideFile)
	withMail := load(stack.ComposeFile, stack.OverrideFile, LayerFile)
	dovecotIP := withMail.Services["dovecot-mailcow"].Networks["mailcow-network"].Ipv4Address
	for name, role := range map[string]string{"postfix-mailcow": mailservers.RolePostfix, "dovecot-mailcow": mailservers.RoleDovecot} {
		s, r := withMail.Services[name], real.Services[name]
		if s.Image != "mailcow-ha/mailservers:test" || !slices.Equal(s.Entrypoint, []string{mailservers.EntryPoint}) || !slices.Equal(s.Command, []string{role}) {
			t.Errorf("%s: image %q entrypoint %q command %q; want the mailservers image as %s", name, s.Image, s.Entrypoint, s.Command, role)
		}
		if lmtp := s.Environment["LMTP_ADDR"]; dovecotIP == "" || lmtp == nil || *lmtp != dovecotIP+":24" {
			t.Errorf("%s: LMTP_ADDR %v; want dovecot's address %q on mailcow's network, port 24", name, lmtp, dovecotIP)
		}
		if u := s.Environment["MAIL_USERS"]; u == nil || *u != "user@vm.test" || s.Environment["DBPASS"] == nil {
			t.Errorf("%s: MAIL_USERS %v, DBPASS kept: %v", name, u, s.Environment["DBPASS"] != nil)
		}
		if h := s.HealthCheck; h == nil || !slices.Equal(h.Test, mailservers.HealthTest(role)) {
			t.Errorf("%s: health check %+v; want %q", name, h, mailservers.HealthTest(role))
		}
		if got, want := mounts(s), mounts(r); !slices.Equal(got, want) || !slices.Equal(ports(s), ports(r)) {
			t.Errorf("%s: mounts %q ports %q; want mailcow's %q %q", name, got, ports(s), want, ports(r))
		}
	}
	if s := withMail.Services["nginx-mailcow"]; s.Image != Image {
		t.Errorf("nginx-mailcow: image %q; want the stub's", s.Image)
	}
}

// ports are a service's published ports as host address:published:target/protocol.
func ports(s types.ServiceConfig) []string {
	var out []string
	for _, p := range s.Ports {
		out = append(out, fmt.Sprintf("%s:%s:%d/%s", p.HostIP, p.Published, p.Target, p.Protocol))
	}
	sort.Strings(out)
	return out
}

// nets are a service's networks with their fixed addresses.
func nets(s types.ServiceConfig) []string {
	var out []string
	for name, c := range s.Networks {
		if c != nil {
			name += "=" + c.Ipv4Address
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// deps are a service's depends_on with their conditions.
func deps(s types.ServiceConfig) []string {
	var out []string
	for name, d := range s.DependsOn {
		out = append(out, name+":"+d.Condition)
	}
	sort.Strings(out)
	return out
}

// mounts are a service's mounts as source:target.
func mounts(s types.ServiceConfig) []string {
	var out []string
	for _, v := range s.Volumes {
		out = append(out, v.Source+":"+v.Target)
	}
	sort.Strings(out)
	return out
}
