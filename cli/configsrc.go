package cli

import (
	"context"
	"flag"
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
// runs the command (root on a node). A read error comes back as is; invalid content as config.Problems.
func loadConfig(ctx context.Context, src config.Sources) (config.Config, config.Payload, error) {
	pl, err := src.Read(ctx)
	if err != nil {
		return config.Config{}, pl, err
	}
	cfg, probs := config.Check(pl.Name, pl.Data, config.SecretFiles{Owner: os.Geteuid()})
	return cfg, pl, probs.Err()
}
