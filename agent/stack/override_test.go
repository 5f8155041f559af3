package stack

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
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
			b, err := RenderOverride(o, StubCompose())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name, b)
		})
	}
}

func TestOverrideRefusesUnsafePaths(t *testing.T) {
	for _, dm := range []string{"relative", "/a b", "/a:b", "/a#b", ""} {
		if _, err := RenderOverride(OverrideOptions{DataMount: dm, SocketDir: "/run/mysqld"}, StubCompose()); err == nil {
			t.Errorf("%q accepted", dm)
		}
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
