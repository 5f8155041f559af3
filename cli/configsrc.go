package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// sourceFlags registers --config and --metadata-url on fs and returns the sources they fill.
func sourceFlags(fs *flag.FlagSet) *config.Sources {
	src := config.DefaultSources()
	fs.StringVar(&src.Path, "config", "", "configuration file, or - for stdin (default: "+config.DefaultPath+
		", then cloud-init's user-data, then the metadata service)")
	fs.StringVar(&src.MetadataURL, "metadata-url", src.MetadataURL, "base URL of the Hetzner metadata service")
	return &src
}

// loadConfig reads the configuration and checks it with its secret files, which must belong to the user that
// runs the command (root on a node). The cluster's configuration that the node keeps (config apply) is layered
// on it. A read error comes back as is; invalid content as config.Problems. The payload is the node's own
// configuration, without the cluster's.
func loadConfig(ctx context.Context, src config.Sources) (config.Config, config.Payload, error) {
	pl, err := src.Read(ctx)
	if err != nil {
		return config.Config{}, pl, err
	}
	owner := config.SecretFiles{Owner: os.Geteuid()}
	cfg, probs := config.Check(pl.Name, pl.Data, owner)
	if err := probs.Err(); err != nil {
		return cfg, pl, err
	}
	path := config.ClusterDocPath(cfg.Failover.StateDir)
	d, err := config.ReadClusterDoc(path)
	if err != nil || d.Revision == 0 {
		return cfg, pl, err
	}
	cfg, probs = config.CheckCluster(fmt.Sprintf("%s (cluster configuration revision %d)", path, d.Revision),
		[]byte(d.TOML), pl.Name, pl.Data, owner)
	return cfg, pl, probs.Err()
}
