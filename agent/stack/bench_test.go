package stack_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/stack"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
)

// BenchmarkStack measures stopping and starting the 18-service stub stack (start = until the critical services
// answer) for each variant: the agent's Engine-API path (restart policy changed, containers kept) and compose's
// down/up (containers removed and created again).
func BenchmarkStack(b *testing.B) {
	b.Run("api", func(b *testing.B) {
		e := newEnv(b)
		s := e.stack()
		ctx := context.Background()
		var stop, start time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := s.Start(ctx); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := s.Stop(ctx); err != nil {
				b.Fatal(err)
			}
			start += t1.Sub(t0)
			stop += time.Since(t1)
		}
		b.ReportMetric(start.Seconds()/float64(b.N), "start-s/op")
		b.ReportMetric(stop.Seconds()/float64(b.N), "stop-s/op")
	})
	b.Run("compose", func(b *testing.B) {
		dc, err := exec.LookPath("docker-compose")
		if err != nil {
			b.Skip("needs docker-compose (Debian: docker-compose)")
		}
		e := newEnv(b)
		ctx := context.Background()
		deploy.Remove(ctx, e.docker, e.project)
		dir := b.TempDir()
		os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(stubCompose(e)), 0o644)
		compose := func(args ...string) {
			cmd := exec.CommandContext(ctx, dc, append([]string{"-p", e.project}, args...)...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("docker-compose %v: %v\n%s", args, err, out)
			}
		}
		b.Cleanup(func() { compose("down", "--timeout", "10") })
		s := e.stack()
		var stop, start time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			compose("up", "-d")
			if failed, err := s.WaitHealthy(ctx, 60*time.Second); err != nil || failed != "" {
				b.Fatalf("after up: %q %v", failed, err)
			}
			t1 := time.Now()
			compose("down")
			start += t1.Sub(t0)
			stop += time.Since(t1)
		}
		b.ReportMetric(start.Seconds()/float64(b.N), "start-s/op")
		b.ReportMetric(stop.Seconds()/float64(b.N), "stop-s/op")
	})
}

// stubCompose writes the stub stack as a compose v1 file, with the same services, dependencies and binds.
func stubCompose(e *env) string {
	var w strings.Builder
	w.WriteString("version: '2.4'\nservices:\n")
	for _, s := range stack.Services {
		role := deploy.Role(s.Name)
		fmt.Fprintf(&w, "  %s:\n    image: %s\n    network_mode: host\n    restart: always\n", s.Name, imageTag)
		fmt.Fprintf(&w, "    command: [%q, \"--vmail\", \"/var/vmail\", \"--port-base\", \"%d\"]\n", role, e.base)
		if len(s.DependsOn) > 0 {
			w.WriteString("    depends_on:\n")
			for _, d := range s.DependsOn {
				w.WriteString("      - " + d + "\n")
			}
		}
		ms := stack.MountsOf(s.Name)
		if s.Name == "postfix-mailcow" {
			ms = append(ms, stack.Mount{Service: s.Name, Target: "/var/vmail", Dir: "vmail"})
		}
		if len(ms) > 0 {
			w.WriteString("    volumes:\n")
			for _, m := range ms {
				fmt.Fprintf(&w, "      - type: bind\n        source: %s\n        target: %s\n", m.Source(e.opts.DataMount, e.opts.SocketDir), m.Target)
			}
		}
	}
	return w.String()
}
