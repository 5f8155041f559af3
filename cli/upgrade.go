package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

// clusterUpgrade is the rolling image upgrade (provision.Upgrade), run on a node like `mailcow-ha status`: it
// reads the node's configuration for the members, the cluster secret, the API token and the agent's socket, asks
// the members' state over the peer API (signed), and rebuilds the servers one at a time through the API.
func clusterUpgrade(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("cluster upgrade", "cluster upgrade --image ID|latest [--channel stable] [--within 20m] [--dry-run] [--config PATH]", stdio)
	src := sourceFlags(fs)
	image := fs.String("image", "", "the snapshot to run: an id, or latest (the newest of --channel)")
	channel := fs.String("channel", provision.DefaultChannel, "the release channel --image latest picks from")
	within := fs.Duration("within", 20*time.Minute, "how long one server may take from its rebuild to a Synced BACKUP")
	dry := fs.Bool("dry-run", false, "print the order; rebuild nothing")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha cluster upgrade: %v\n", err)
		return code
	}
	if *image == "" {
		return fail(ExitUsage, errors.New("--image is required: a snapshot id, or latest"))
	}
	src.Stdin = stdio.Stdin
	sess, code, err := openSession(ctx, *src)
	if err != nil {
		return fail(code, err)
	}
	cfg := sess.cfg
	token := cfg.Hcloud.Token.Reveal()
	if cfg.Hcloud.TokenFile != "" {
		if s, err := (config.SecretFiles{Owner: os.Geteuid()}).ReadSecret(cfg.Hcloud.TokenFile); err == nil {
			token = s.Reveal()
		} else if token == "" {
			return fail(ExitFailure, fmt.Errorf("hcloud.token_file: %w", err))
		}
	}
	c := hc.NewClient(hc.WithToken(token), hc.WithEndpoint(cfg.Hcloud.Endpoint), hc.WithApplication("mailcow-ha", ""),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ConstantBackoff(time.Second)}))
	img, err := provision.ResolveImage(ctx, c, *image, *channel)
	if err != nil {
		return fail(ExitFailure, err)
	}
	res, err := provision.Upgrade(ctx, c, provision.UpgradeOptions{Image: img, Roll: sess.roll(*within, *dry, stdio)})
	if err != nil {
		return fail(ExitFailure, err)
	}
	switch {
	case *dry:
		fmt.Fprintln(stdio.Stdout, "dry run: nothing was rebuilt")
	case res.SelfLast:
		fmt.Fprintf(stdio.Stdout, "rebuilt %s with image %d, this node last (%d switchover): it reboots now\n",
			strings.Join(res.Rebuilt, ", "), img.ID, res.Switchovers)
	default:
		fmt.Fprintf(stdio.Stdout, "rebuilt %d servers with image %d (%s), %d switchover; every member is back\n",
			len(res.Rebuilt), img.ID, strings.Join(res.Rebuilt, ", "), res.Switchovers)
	}
	return ExitOK
}

// localMember is the member whose private address is on this machine ("" when none is: run from elsewhere).
func localMember(members []config.Member) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		p, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		for _, m := range members {
			if m.PrivateIP == p.IP.String() {
				return m.Name
			}
		}
	}
	return ""
}
