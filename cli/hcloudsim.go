package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// Hcloudsim runs the simulated Hetzner Cloud API as a command (cmd/hcloudsim):
// hcloudsim --listen ADDR [--state FILE] [--token TOKEN|--token-file F]. It serves until ctx ends.
func Hcloudsim(ctx context.Context, args []string, stdio Stdio) int {
	fs := flag.NewFlagSet("hcloudsim", flag.ContinueOnError)
	fs.SetOutput(stdio.Stderr)
	listen := fs.String("listen", "127.0.0.1:8480", "address to serve on")
	statePath := fs.String("state", "", "project file (.json or .toml); default: the demo project (mx1..mx3, one Floating IP, one Volume, two snapshots)")
	token := fs.String("token", "", "the API token clients must send (default: the 64-character demo token)")
	tokenFile := fs.String("token-file", "", "read the token from this file instead")
	scale := fs.Float64("latency-scale", 1, "multiply the default action latencies by this")
	rate := fs.Int("rate-limit", 3600, "API requests per hour")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: hcloudsim --listen ADDR [--state FILE] [--token TOKEN]\n\nServes a simulated Hetzner Cloud API at /v1, the metadata service at /_metadata/<server>/hetzner/v1 and /hetzner/v1 (by source address), and an admin endpoint at /_sim.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	o := hcloudsim.Options{Token: *token, RateLimit: *rate, Latencies: hcloudsim.DefaultLatencies().Scale(*scale),
		Logger: slog.New(slog.NewTextHandler(stdio.Stderr, nil))}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stdio.Stderr, "hcloudsim:", err)
			return ExitUsage
		}
		o.Token = strings.TrimSpace(string(b))
	}
	if *statePath != "" {
		st, err := hcloudsim.LoadState(*statePath)
		if err != nil {
			fmt.Fprintln(stdio.Stderr, "hcloudsim:", err)
			return ExitUsage
		}
		o.State = st
	}
	sim, err := hcloudsim.New(o)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "hcloudsim:", err)
		return ExitUsage
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "hcloudsim:", err)
		return ExitFailure
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdio.Stdout, "hcloudsim: API http://%s/v1 metadata http://%s/_metadata/<server>/hetzner/v1 admin http://%s/_sim/\n",
		ln.Addr(), ln.Addr(), ln.Addr())
	if o.Token == "" {
		fmt.Fprintf(stdio.Stdout, "hcloudsim: demo token %s\n", hcloudsim.DemoToken)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
		return ExitOK
	case err := <-errc:
		fmt.Fprintln(stdio.Stderr, "hcloudsim:", err)
		return ExitFailure
	}
}
