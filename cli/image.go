package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
)

// Image runs the image subcommands. "latest" prints the id of the newest appliance snapshot, for
// hcloud server create --image $(mailcow-ha image latest) ...
func Image(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 || args[0] != "latest" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stdio.Stdout, "Usage: mailcow-ha image latest [--selector LABELS] [--endpoint URL] [--token-file FILE]")
			return ExitOK
		}
		fmt.Fprintln(stdio.Stderr, "Usage: mailcow-ha image latest [--selector LABELS] [--endpoint URL] [--token-file FILE]")
		return ExitUsage
	}
	return imageLatest(ctx, args[1:], stdio)
}

func imageLatest(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("image latest", "image latest [--selector LABELS] [--endpoint URL] [--token-file FILE]", stdio)
	selector := fs.String("selector", "app=mailcow-ha", "label selector of the appliance snapshots")
	endpoint := fs.String("endpoint", envOr("HCLOUD_ENDPOINT", "https://api.hetzner.cloud/v1"), "API endpoint (default $HCLOUD_ENDPOINT)")
	tokenFile := fs.String("token-file", "", "file with the API token, mode 0600 (default: $HCLOUD_TOKEN)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	token := os.Getenv("HCLOUD_TOKEN")
	if *tokenFile != "" {
		s, err := config.SecretFiles{Owner: os.Geteuid()}.ReadSecret(*tokenFile)
		if err != nil {
			fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest:", err)
			return ExitUsage
		}
		token = s.Reveal()
	}
	if token == "" {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest: no API token: set HCLOUD_TOKEN or use --token-file")
		return ExitUsage
	}
	c, err := hcloud.New(hcloud.Options{Endpoint: *endpoint, Token: token})
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	img, err := c.LatestImage(ctx, *selector)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest:", err)
		return ExitFailure
	}
	fmt.Fprintln(stdio.Stdout, img.ID)
	return ExitOK
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
