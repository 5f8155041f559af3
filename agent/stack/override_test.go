package stack

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendering (go test -update rewrites it):\n%s", p, got)
	}
}

func TestOverrideGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		fip  string
	}{{"override-ipv4.golden.yml", "203.0.113.100"}, {"override-ipv6.golden.yml", "2001:db8::1"}, {"override-nosnat.golden.yml", ""}} {
		t.Run(c.name, func(t *testing.T) {
			o := OverrideOptions{DataMount: "/var/lib/mailcow-ha/data", SocketDir: "/run/mysqld"}
			if c.fip != "" {
				o.FloatingIP = netip.MustParseAddr(c.fip)
			}
			b, err := RenderOverride(o)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name, b)
		})
	}
}

func TestOverrideRefusesUnsafePaths(t *testing.T) {
	for _, dm := range []string{"relative", "/a b", "/a:b", "/a#b", ""} {
		if _, err := RenderOverride(OverrideOptions{DataMount: dm, SocketDir: "/run/mysqld"}); err == nil {
			t.Errorf("%q accepted", dm)
		}
	}
}

// TestOverrideMergesOverMailcow lets a real docker-compose merge the override over a compose file shaped like
// mailcow's (same services, named volumes and targets): every stateful target must end up bound to the Volume.
func TestOverrideMergesOverMailcow(t *testing.T) {
	dc, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("needs docker-compose (Debian: docker-compose) to check the merge")
	}
	dir := t.TempDir()
	var base strings.Builder
	base.WriteString("version: '2.1'\nservices:\n")
	named := map[string]string{"vmail": "vmail-vol-1", "vmail-index": "vmail-index-vol-1", "crypt": "crypt-vol-1",
		"redis": "redis-vol-1", "rspamd": "rspamd-vol-1", "postfix": "postfix-vol-1", "sogo": "sogo-userdata-backup-vol-1",
		SocketDir: "mysql-socket-vol-1"}
	for _, s := range Services {
		base.WriteString("  " + s.Name + ":\n    image: busybox\n    restart: always\n    environment:\n      - SNAT_TO_SOURCE=n\n")
		// As in mailcow's compose file: every service on mailcow-network, nginx with its alias.
		base.WriteString("    networks:\n      mailcow-network:\n")
		if s.Name == "nginx-mailcow" {
			base.WriteString("        aliases:\n          - nginx\n")
		}
		if ms := MountsOf(s.Name); len(ms) > 0 {
			base.WriteString("    volumes:\n")
			for _, m := range ms {
				src := named[m.Dir]
				if m.Dir == "ssl" {
					src = "./data/assets/ssl"
				}
				base.WriteString("      - " + src + ":" + m.Target + "\n")
			}
		}
	}
	base.WriteString("networks:\n  mailcow-network:\n    driver: bridge\n    ipam:\n      driver: default\n      config:\n        - subnet: ${IPV4_NETWORK:-172.22.1}.0/24\n")
	base.WriteString("volumes:\n")
	for _, v := range named {
		base.WriteString("  " + v + ":\n")
	}
	os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(base.String()), 0o644)
	ov, _ := RenderOverride(OverrideOptions{DataMount: "/var/lib/mailcow-ha/data", SocketDir: "/run/mysqld", FloatingIP: netip.MustParseAddr("203.0.113.100")})
	// Debian's docker-compose is v1: it needs a version line for the long syntax and does not know compose v2's
	// create_host_path (which mailcow's required compose v2 honours), so this copy drops those two lines.
	v1 := strings.ReplaceAll(string(ov), "        bind:\n          create_host_path: false\n", "")
	os.WriteFile(filepath.Join(dir, OverrideFile), []byte("version: '2.4'\n"+v1), 0o644)
	cmd := exec.Command(dc, "config")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Skipf("docker-compose %s cannot merge this pair (%v): %s", dc, err, out)
	}
	merged := string(out)
	// nginx keeps its alias and gets the address the portal and the firewall trust.
	var nginx strings.Builder
	in := false
	for _, l := range strings.Split(merged, "\n") {
		indent := len(l) - len(strings.TrimLeft(l, " "))
		switch {
		case strings.TrimSpace(l) == "nginx-mailcow:":
			in = true
		case in && indent <= 2:
			in = false
		}
		if in {
			nginx.WriteString(l + "\n")
		}
	}
	for _, want := range []string{"ipv4_address: 172.22.1.247", "- nginx"} {
		if !strings.Contains(nginx.String(), want) {
			t.Errorf("merged nginx-mailcow lacks %q:\n%s", want, nginx.String())
		}
	}
	for _, want := range []string{"source: /var/lib/mailcow-ha/data/vmail", "source: /run/mysqld", "SNAT_TO_SOURCE: 203.0.113.100"} {
		if !strings.Contains(merged, want) {
			t.Errorf("merged config lacks %q:\n%s", want, merged)
		}
	}
	if strings.Contains(merged, "source: vmail-vol-1") || strings.Contains(merged, "source: mysql-socket-vol-1") {
		t.Errorf("a named volume survived the merge:\n%s", merged)
	}
}

func TestLevels(t *testing.T) {
	deps := map[string][]string{}
	for _, s := range Services {
		deps[s.Name] = s.DependsOn
	}
	levels := Levels(deps)
	at := map[string]int{}
	for i, l := range levels {
		for _, n := range l {
			at[n] = i
		}
	}
	if len(at) != 18 {
		t.Fatalf("%d services placed", len(at))
	}
	for n, ds := range deps {
		for _, d := range ds {
			if at[d] >= at[n] {
				t.Errorf("%s (level %d) starts before its dependency %s (level %d)", n, at[n], d, at[d])
			}
		}
	}
	// A cycle still places everything.
	if l := Levels(map[string][]string{"a": {"b"}, "b": {"a"}, "c": nil}); len(l) != 2 || l[0][0] != "c" {
		t.Fatalf("cycle: %v", l)
	}
}

func TestPortsFrom(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mailcow.conf")
	os.WriteFile(p, []byte("# comment\nHTTPS_PORT=8443\nIMAP_PORT=127.0.0.1:1143\nSMTP_PORT=\n"), 0o600)
	ports, err := PortsFrom(p)
	if err != nil {
		t.Fatal(err)
	}
	if ports["nginx-mailcow"][0] != 8443 || ports["dovecot-mailcow"][0] != 1143 || ports["postfix-mailcow"][0] != 25 {
		t.Fatalf("%v", ports)
	}
	if d, _ := PortsFrom(filepath.Join(t.TempDir(), "none")); len(d["dovecot-mailcow"]) != 5 {
		t.Fatalf("defaults %v", d)
	}
	os.WriteFile(p, []byte("SIEVE_PORT=abc\n"), 0o600)
	if _, err := PortsFrom(p); err == nil || !strings.Contains(err.Error(), "SIEVE_PORT") {
		t.Fatalf("bad port: %v", err)
	}
}
