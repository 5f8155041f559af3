package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

const clusterUsage = `Usage:
  mailcow-ha cluster create --name N --hostname FQDN [--nodes 3|5|7] [--location fsn1] [--server-type cx32]
                            [--image ID|latest] [--ssh-key NAME]... [--admin-cidr CIDR]... [--config FILE] [--out DIR]
                            [--dry-run]
      make what the cluster needs and is missing: network, placement group, firewall, Volume, Floating IP, servers
  mailcow-ha cluster list
      show the clusters of the project and their resources
  mailcow-ha cluster remove-node --name N --node NODE --yes [--delete-volume]
      take one node out for good: refused while it serves the mail (switch over first) or when fewer than three
      would stay; shut it down, delete the server; its Galera Volume only with --delete-volume
  mailcow-ha cluster upgrade --image ID|latest [--channel stable] [--within 20m] [--dry-run] [--config PATH]
      on a node: rebuild every server that does not run the image, one at a time, each back as a Synced BACKUP
      before the next; arbitrators, then the BACKUPs, one switchover, the old MASTER, and this node last
  mailcow-ha cluster rotate-secret --secret-file FILE [--config PATH]
      on a node: a new cluster secret on every node, without a restart or a failover (every node must answer)
  mailcow-ha cluster destroy --name N --yes [--delete-volume]
      delete what carries the cluster's labels; the Volume (the mail) only with --delete-volume

The API token comes from $HCLOUD_TOKEN or --token-file (mode 0600), the endpoint from $HCLOUD_ENDPOINT, as for
the hcloud CLI (upgrade: from the node's configuration).
`

// Cluster runs the cluster subcommands.
func Cluster(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprint(stdio.Stderr, clusterUsage)
		return ExitUsage
	}
	switch args[0] {
	case "create":
		return clusterCreate(ctx, args[1:], stdio)
	case "list":
		return clusterList(ctx, args[1:], stdio)
	case "destroy":
		return clusterDestroy(ctx, args[1:], stdio)
	case "remove-node":
		return clusterRemoveNode(ctx, args[1:], stdio)
	case "upgrade":
		return clusterUpgrade(ctx, args[1:], stdio)
	case "rotate-secret":
		return clusterRotateSecret(ctx, args[1:], stdio)
	case "-h", "--help", "help":
		fmt.Fprint(stdio.Stdout, clusterUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Stderr, "mailcow-ha cluster: unknown command %q\n\n%s", args[0], clusterUsage)
	return ExitUsage
}

// apiFlags registers --token-file and --timeout and returns what makes the client.
func apiFlags(fs *flag.FlagSet) func() (*hc.Client, string, string, time.Duration, error) {
	tokenFile := fs.String("token-file", "", "file with the API token, mode 0600 (default: $HCLOUD_TOKEN)")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up after this long")
	return func() (*hc.Client, string, string, time.Duration, error) {
		token := os.Getenv("HCLOUD_TOKEN")
		if *tokenFile != "" {
			s, err := config.SecretFiles{Owner: os.Geteuid()}.ReadSecret(*tokenFile)
			if err != nil {
				return nil, "", "", 0, fmt.Errorf("--token-file: %w", err)
			}
			token = s.Reveal()
		}
		if token == "" {
			return nil, "", "", 0, errors.New("no API token: set HCLOUD_TOKEN or use --token-file")
		}
		endpoint := envOr("HCLOUD_ENDPOINT", hc.Endpoint)
		c := hc.NewClient(hc.WithToken(token), hc.WithEndpoint(endpoint), hc.WithApplication("mailcow-ha", ""),
			hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ExponentialBackoffWithOpts(hc.ExponentialBackoffOpts{
				Base: 200 * time.Millisecond, Multiplier: 1.5, Cap: 2 * time.Second})}))
		return c, token, endpoint, *timeout, nil
	}
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func clusterCreate(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("cluster create", "cluster create --name N --hostname FQDN [flags]", stdio)
	var s provision.Spec
	var keys, admin listFlag
	fs.StringVar(&s.Name, "name", "", "the cluster's name (label cluster=NAME, the prefix of every resource's name)")
	fs.StringVar(&s.Hostname, "hostname", "", "the mail server's FQDN (mailcow's hostname, the Floating IP's reverse DNS)")
	fs.IntVar(&s.Nodes, "nodes", 3, "how many mail servers: 3, 5 or 7; 2, 4 or 6 with --arbitrator")
	fs.BoolVar(&s.Arbitrator, "arbitrator", false, "add a small server <name>-arb that only votes (garbd): for an even --nodes")
	fs.StringVar(&s.ArbiterType, "arbitrator-type", provision.DefaultArbiterType, "the arbitrator's server type")
	fs.StringVar(&s.Location, "location", provision.DefaultLocation, "the location of every resource")
	fs.StringVar(&s.ServerType, "server-type", provision.DefaultServerType, "the servers' type")
	fs.StringVar(&s.Image, "image", "latest", "a snapshot id, or latest: the newest snapshot of --channel")
	fs.StringVar(&s.Channel, "channel", provision.DefaultChannel, "the release channel --image latest picks from")
	fs.Var(&keys, "ssh-key", "the name of an SSH key in the project (may be repeated)")
	fs.Var(&admin, "admin-cidr", "a network SSH may come from (may be repeated; none: no SSH from the internet)")
	fs.IntVar(&s.VolumeSize, "volume-size", provision.DefaultVolumeSize, "the shared Volume's size in GB")
	fs.IntVar(&s.DBSize, "db-size", provision.DefaultDBSize, "the size in GB of each node's own Volume for its Galera datadir")
	fs.StringVar(&s.IPRange, "ip-range", provision.DefaultIPRange, "the private network's range")
	fs.BoolVar(&s.IPv6, "ipv6", false, "an IPv6 Floating IP (a /64) too, with its reverse DNS; it follows the MASTER with the IPv4 one")
	out := fs.String("out", "", "where the secrets and the user-data go, mode 0600 (default ./mailcow-ha-NAME)")
	dry := fs.Bool("dry-run", false, "print the plan; create nothing, write nothing")
	settings := fs.String("config", "", "TOML settings for every node (alerts, failover timings…), layered on the user-data; give the same file on every run")
	client := apiFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	s.SSHKeys, s.AdminCIDRs = keys, admin
	if err := s.Check(); err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha cluster create: %v\n", strings.ReplaceAll(err.Error(), "\n", "\nmailcow-ha cluster create: "))
		return ExitUsage
	}
	var extra map[string]any
	if *settings != "" {
		var err error
		if extra, err = provision.ReadSettings(*settings); err != nil {
			fmt.Fprintf(stdio.Stderr, "mailcow-ha cluster create: %v\n", strings.ReplaceAll(err.Error(), "\n", "\nmailcow-ha cluster create: "))
			return ExitUsage
		}
	}
	c, token, endpoint, timeout, err := client()
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster create:", err)
		return ExitUsage
	}
	if *out == "" {
		*out = "mailcow-ha-" + s.Name
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := provision.Create(ctx, c, s, provision.Options{Secrets: &provision.Secrets{Dir: *out}, Endpoint: endpoint,
		Token: token, Settings: extra, DryRun: *dry, Log: stdio.Stdout})
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster create:", err)
		return ExitFailure
	}
	if *dry {
		fmt.Fprintln(stdio.Stdout, "dry run: nothing was created")
		return ExitOK
	}
	existed := 0
	for _, st := range res.Steps {
		if st.Exists() {
			existed++
		}
	}
	fmt.Fprintf(stdio.Stdout, "\ncluster %s: %d resources created, %d existed; the servers boot with %s/%s (secrets: %s, mode 0600)\n",
		s.Name, res.Created, existed, *out, provision.UserDataFile, *out)
	fmt.Fprintln(stdio.Stdout, "\nSet these DNS records at your domain's DNS provider:")
	provision.DNSRecords(stdio.Stdout, s, res.FloatingIP, res.FloatingIPv6)
	return ExitOK
}

func clusterList(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("cluster list", "cluster list [--token-file FILE]", stdio)
	client := apiFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	c, _, _, timeout, err := client()
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster list:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	invs, err := provision.Find(ctx, c, "app=mailcow-ha")
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster list:", err)
		return ExitFailure
	}
	provision.Print(stdio.Stdout, invs)
	return ExitOK
}

func clusterDestroy(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("cluster destroy", "cluster destroy --name N --yes [--delete-volume]", stdio)
	name := fs.String("name", "", "the cluster to delete")
	yes := fs.Bool("yes", false, "delete: without it, only show what would be deleted")
	delVol := fs.Bool("delete-volume", false, "delete the Volume too (the mail)")
	client := apiFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	if *name == "" {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster destroy: --name is required")
		return ExitUsage
	}
	c, _, _, timeout, err := client()
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster destroy:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !*yes {
		invs, err := provision.Find(ctx, c, provision.Selector(*name))
		if err != nil {
			fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster destroy:", err)
			return ExitFailure
		}
		provision.Print(stdio.Stdout, invs)
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster destroy: nothing deleted: add --yes to delete the above (the Volume only with --delete-volume)")
		return ExitUsage
	}
	if err := provision.Destroy(ctx, c, *name, *delVol, stdio.Stdout); err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster destroy:", err)
		return ExitFailure
	}
	return ExitOK
}

func clusterRemoveNode(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("cluster remove-node", "cluster remove-node --name N --node NODE --yes [--delete-volume]", stdio)
	name := fs.String("name", "", "the cluster")
	nodeFlag := fs.String("node", "", "the node to remove (its server's name)")
	yes := fs.Bool("yes", false, "remove: without it, nothing is done")
	delVol := fs.Bool("delete-volume", false, "delete the node's Galera Volume too (its copy of the database)")
	wait := fs.Duration("shutdown-wait", 5*time.Minute, "how long the node gets to stop by itself before its power is cut")
	client := apiFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	node := *nodeFlag
	if *name == "" || node == "" {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster remove-node: --name and --node (a server's name) are required")
		return ExitUsage
	}
	if !*yes {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha cluster remove-node: nothing done: add --yes to shut %s down and delete it\n", node)
		return ExitUsage
	}
	c, _, _, timeout, err := client()
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster remove-node:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := provision.RemoveNode(ctx, c, *name, node, provision.RemoveOptions{DeleteVolume: *delVol, ShutdownWait: *wait, Log: stdio.Stdout}); err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha cluster remove-node:", err)
		return ExitFailure
	}
	return ExitOK
}
