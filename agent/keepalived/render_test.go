package keepalived

import (
	"flag"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func spec() Spec {
	return Spec{
		RouterName: "mx1", Instance: "VI_MAILCOW", Interface: "eth1", VirtualRouter: 51, Priority: 150,
		Version: 3, AdvertInterval: time.Second, Preempt: "off", SourceIP: "10.99.0.11", Peers: []string{"10.99.0.12", "10.99.0.13"},
		TrackFile: "/run/mailcow-ha/health", NotifyFIFO: "/run/mailcow-ha/keepalived.fifo",
		Placeholders: Placeholders([]byte("cluster-secret"), "mail"), PlaceholderLink: PlaceholderLink,
	}
}

// v2 makes a spec VRRPv2's: whole seconds, the password, no placeholders.
func v2(s *Spec) {
	s.Version, s.Placeholders, s.PlaceholderLink = 2, nil, ""
	s.AuthPass = AuthPass([]byte("cluster-secret"), "mail")
}

func TestRenderGolden(t *testing.T) {
	for name, mod := range map[string]func(*Spec){
		"nopreempt": func(*Spec) {},
		"delay":     func(s *Spec) { s.Preempt, s.PreemptDelay, s.AdvertInterval = "delay", 90*time.Second, 2*time.Second },
		"fast":      func(s *Spec) { s.AdvertInterval = 150 * time.Millisecond },
		"v2":        v2,
	} {
		s := spec()
		mod(&s)
		got, err := Render(s)
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", name+".conf")
		if *update {
			os.WriteFile(golden, got, 0o644)
		}
		want, _ := os.ReadFile(golden)
		if string(got) != string(want) {
			t.Errorf("%s differs from %s (run with -update and review):\n%s", name, golden, got)
		}
		// keepalived's only addresses are the placeholders, on their own link.
		words := tokens(string(got))
		for i, w := range words {
			if w == "dev" && (i+1 >= len(words) || strings.Trim(words[i+1], `"`) != PlaceholderLink) {
				t.Errorf("%s: a virtual address off the placeholder link: %v", name, words[i-1:])
			}
		}
	}
}

// TestKeepalivedAcceptsConfig runs keepalived's own configuration test on the rendered file, in a namespace
// that has the interface the file names.
func TestKeepalivedAcceptsConfig(t *testing.T) {
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed (Debian package keepalived; make deps installs it)")
	}
	ns := testNS(t)
	if err := ns.IP("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"); err != nil {
		t.Fatal(err)
	}
	placeholderLink(t, ns)
	dir := t.TempDir()
	s := spec()
	s.TrackFile = filepath.Join(dir, "health")
	s.NotifyFIFO = filepath.Join(dir, "fifo")
	for _, version := range []int{3, 2} {
		if version == 2 {
			v2(&s)
		}
		for _, preempt := range []string{"off", "on", "delay"} {
			s.Preempt, s.PreemptDelay = preempt, 30*time.Second
			conf, err := Render(s)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "keepalived.conf")
			os.WriteFile(path, conf, 0o600)
			// Anything keepalived says is a failure, a warning too; but VRRPv2's instance has no VIP by design, and
			// keepalived warns of it (and exits non-zero for the warning).
			out, err := ns.Command(bin, "--config-test", "--use-file", path).CombinedOutput()
			said := strings.TrimSpace(string(out))
			if version == 2 {
				var other []string
				for _, l := range strings.Split(said, "\n") {
					if l != "" && l != "(VI_MAILCOW) No VIP specified; at least one is sensible" {
						other = append(other, l)
					}
				}
				said, err = strings.Join(other, "\n"), nil
			}
			if err != nil || said != "" {
				t.Fatalf("keepalived --config-test (VRRPv%d, preempt %s): %v: %s\n%s", version, preempt, err, out, conf)
			}
		}
	}
}

// placeholderLink makes the placeholder link in ns as the agent does, twice (the second finds it), and checks it
// is up.
func placeholderLink(t *testing.T, ns *netns.NS) {
	t.Helper()
	h, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for range 2 {
		kind, err := EnsureLink(h, PlaceholderLink)
		if err != nil {
			t.Fatal(err)
		}
		if kind != "dummy" && kind != "ifb" {
			t.Fatalf("placeholder link of kind %q", kind)
		}
	}
	l, err := h.LinkByName(PlaceholderLink)
	if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("placeholder link not up: %v", err)
	}
}

func testNS(t *testing.T) *netns.NS {
	t.Helper()
	if why := netns.Available(); why != "" {
		t.Skip(why)
	}
	ns, err := netns.Add(netns.Unique("mha-ka-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Del() })
	return ns
}

func TestRenderRefusesInjection(t *testing.T) {
	for name, mod := range map[string]func(*Spec){
		"quote in interface":  func(s *Spec) { s.Interface = `eth0" }` },
		"newline in name":     func(s *Spec) { s.RouterName = "mx1\nvirtual_ipaddress { 1.2.3.4 }" },
		"brace in instance":   func(s *Spec) { s.Instance = "VI}" },
		"comment in fifo":     func(s *Spec) { s.NotifyFIFO = "/run/x#y" },
		"bad peer":            func(s *Spec) { s.Peers = []string{"10.0.0.1 10.0.0.2"} },
		"relative track file": func(s *Spec) { s.TrackFile = "health" },
		"quote in track file": func(s *Spec) { s.TrackFile = `/run/x" }` },
		"router id":           func(s *Spec) { s.VirtualRouter = 256 },
		"advert":              func(s *Spec) { s.AdvertInterval = 1505 * time.Millisecond },
		"advert too long":     func(s *Spec) { s.AdvertInterval = 41 * time.Second },
		"no placeholder":      func(s *Spec) { s.Placeholders = nil },
		"v2 too fast":         func(s *Spec) { v2(s); s.AdvertInterval = 500 * time.Millisecond },
		"v2 placeholders":     func(s *Spec) { v2(s); s.Placeholders = spec().Placeholders },
		"v4":                  func(s *Spec) { s.Version = 4 },
		"foreign placeholder": func(s *Spec) { s.Placeholders = []netip.Addr{netip.MustParseAddr("10.0.0.1")} },
		"quote in link":       func(s *Spec) { s.PlaceholderLink = `x" }` },
	} {
		s := spec()
		mod(&s)
		if _, err := Render(s); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

// tokens reads keepalived.conf as keepalived's parser does: blank-separated words, "quoted strings" as one
// word, and '#' or '!' starting a comment outside quotes.
func tokens(conf string) []string {
	var out []string
	for _, line := range strings.Split(conf, "\n") {
		for i := 0; i < len(line); {
			c := line[i]
			switch {
			case c == ' ' || c == '\t':
				i++
			case c == '#' || c == '!':
				i = len(line)
			case c == '"':
				end := strings.IndexByte(line[i+1:], '"')
				if end < 0 {
					out = append(out, "UNTERMINATED:"+line[i+1:])
					i = len(line)
					continue
				}
				out = append(out, line[i+1:i+1+end])
				i += end + 2
			default:
				j := i
				for j < len(line) && line[j] != ' ' && line[j] != '\t' {
					j++
				}
				out = append(out, line[i:j])
				i = j
			}
		}
		out = append(out, "\n")
	}
	return out
}

// FuzzRender checks that no value can change the structure of the configuration: whatever it renders reads
// back, token by token, as the same configuration rendered with harmless placeholders, the values in their
// places.
func FuzzRender(f *testing.F) {
	f.Add("mx1", "VI_MAILCOW", "eth1", "/run/mailcow-ha/keepalived.fifo", "/run/mailcow-ha/health")
	f.Add("a\"b", "x y", "{", "#", "!")
	f.Fuzz(func(t *testing.T, name, inst, iface, fifo, track string) {
		s := spec()
		s.RouterName, s.Instance, s.Interface, s.NotifyFIFO = name, inst, iface, fifo
		s.TrackFile = track
		got, err := Render(s)
		if err != nil {
			return
		}
		ref := spec()
		ref.RouterName, ref.Instance, ref.Interface, ref.NotifyFIFO = "P1", "P2", "P3", "P4"
		ref.TrackFile = "/P5"
		want, err := Render(ref)
		if err != nil {
			t.Fatal(err)
		}
		repl := map[string]string{"P1": name, "P2": inst, "P3": iface, "P4": fifo, "/P5": track}
		gt, wt := tokens(string(got)), tokens(string(want))
		if len(gt) != len(wt) {
			t.Fatalf("structure changed: %d tokens, want %d:\n%s", len(gt), len(wt), got)
		}
		for i := range wt {
			w := wt[i]
			if r, ok := repl[w]; ok {
				w = r
			}
			if gt[i] != w {
				t.Fatalf("token %d = %q, want %q:\n%s", i, gt[i], w, got)
			}
		}
	})
}
