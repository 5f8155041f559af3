package provision

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
)

// GaleraMount is where each node mounts its own Volume for the Galera datadir (galera.volume_mount).
const GaleraMount = "/var/lib/mailcow-ha/galera"

// The files of --out, every one mode 0600 in a 0700 directory.
const (
	ClusterSecretFile  = "cluster.secret"  // the peer API's HMAC key, VRRP's password and Galera's CA derive from it
	GaleraPasswordFile = "galera.password" // MariaDB's password for mailcow and the agent
	UserDataFile       = "user-data.toml"  // the one user-data of every node (it carries the secrets)
	// APIKeyFile is mailcow's API key for the sign-up portal (mailcow-signup), as every node's agent derives it from
	// the cluster secret and writes it to mailcow.conf: here for a portal that runs elsewhere.
	APIKeyFile = "mailcow-api.key"
)

// Secrets are a cluster's secrets in a directory (--out). They are made once, with crypto/rand, and read on every
// later run: a node created by a later run must get the same ones.
type Secrets struct {
	Dir string
	// Loaded by Ensure.
	cluster, galera string
}

// Exist says whether the directory holds the cluster's secrets.
func (s *Secrets) Exist() bool {
	for _, f := range []string{ClusterSecretFile, GaleraPasswordFile} {
		if _, err := os.Stat(filepath.Join(s.Dir, f)); err != nil {
			return false
		}
	}
	return true
}

// Ensure reads the secrets, making the ones that are missing (32 random bytes, hex).
func (s *Secrets) Ensure() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	for _, x := range []struct {
		file string
		val  *string
	}{{ClusterSecretFile, &s.cluster}, {GaleraPasswordFile, &s.galera}} {
		path := filepath.Join(s.Dir, x.file)
		if _, err := os.Lstat(path); err == nil {
			sec, err := config.SecretFiles{Owner: os.Geteuid()}.ReadSecret(path)
			if err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			*x.val = sec.Reveal()
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--out: %w", err)
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("random: %w", err)
		}
		*x.val = hex.EncodeToString(b)
		if err := config.WriteSecret(path, *x.val); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}

// WriteAPIKey writes mailcow's API key of the cluster (derived from its secret, as the agents derive it) to
// APIKeyFile, mode 0600. Ensure comes first.
func (s *Secrets) WriteAPIKey(cluster string) error {
	key, err := mailcowconf.Derive([]byte(s.cluster), cluster, "API_KEY", mailcowconf.APIKeyLen)
	if err != nil {
		return err
	}
	if err := config.WriteSecret(filepath.Join(s.Dir, APIKeyFile), key); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// UserData is what the one user-data names besides the secrets.
type UserData struct {
	Cluster, Hostname                 string
	NetworkID, VolumeID, FloatingIPID int64
	FloatingIPv6ID                    int64  // 0: none (--ipv6 not given)
	Endpoint                          string // "" or the public API's: left out
	Token                             string
	AdminCIDRs                        []string // network.admin_cidrs: where SSH may come from over the internet
	// Extra is --config's settings for every node (alerts, failover timings, mailcow's options), layered on what
	// cluster create writes (ReadSettings checked that it sets none of that).
	Extra map[string]any
}

// ownKeys are what cluster create writes into the user-data itself (a prefix ending in "." stands for every key
// below it): --config may not set them.
var ownKeys = []string{"version", "node.", "cluster.name", "cluster.discover", "cluster.secret", "cluster.secret_file",
	"cluster.nodes", "hcloud.", "galera.password", "galera.password_file", "galera.data_volume", "galera.volume_mount",
	"galera.data_dir", "network.admin_cidrs", "mailcow.hostname"}

// ReadSettings reads --config: TOML settings for every node, in the agent's configuration's keys. A syntax error
// names the line, an unknown key or one that cluster create writes itself names the key.
func ReadSettings(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(b), &doc); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	var probe config.Config
	md, err := toml.Decode(string(b), &probe)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("--config %s: unknown key %s", path, k))
	}
	for _, k := range config.Keys(doc) {
		for _, own := range ownKeys {
			if k == own || (strings.HasSuffix(own, ".") && strings.HasPrefix(k, own)) {
				errs = append(errs, fmt.Errorf("--config %s: %s is cluster create's own (it writes it into the user-data from its flags and the project)", path, k))
			}
		}
	}
	return doc, errors.Join(errs...)
}

// WriteUserData renders the user-data, writes it to the directory (mode 0600) and returns it.
func (s *Secrets) WriteUserData(u UserData) (string, error) {
	for k, v := range map[string]string{"the API token": u.Token, "the endpoint": u.Endpoint} {
		if strings.ContainsAny(v, "\"\\\n\r\t") || strings.TrimSpace(v) != v {
			return "", fmt.Errorf("%s holds quotes, backslashes or white space", k)
		}
	}
	if u.Token == "" {
		return "", errors.New("no API token for the agents")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n# The one user-data of every node of cluster %s, written by `mailcow-ha cluster create`.\n", config.Marker, u.Cluster)
	fmt.Fprintf(&b, "# It holds the cluster's secrets: keep it like them (mode 0600).\nversion = %d\n\n", config.SchemaVersion)
	fmt.Fprintf(&b, "[cluster]\nname = %q\ndiscover = %q\nsecret = %q\n\n", u.Cluster, config.DiscoverHcloud, s.cluster)
	fmt.Fprintf(&b, "[hcloud]\ntoken = %q\n", u.Token)
	if u.Endpoint != "" && strings.TrimRight(u.Endpoint, "/") != "https://api.hetzner.cloud/v1" {
		fmt.Fprintf(&b, "endpoint = %q\n", u.Endpoint)
	}
	fmt.Fprintf(&b, "network_id = %d\nfloating_ip_id = %d\n", u.NetworkID, u.FloatingIPID)
	if u.FloatingIPv6ID != 0 {
		fmt.Fprintf(&b, "floating_ipv6_id = %d\n", u.FloatingIPv6ID)
	}
	fmt.Fprintf(&b, "volume_id = %d\n\n", u.VolumeID)
	// Each node's datadir on its own Volume (purpose=galera), which the agent mounts before MariaDB starts.
	fmt.Fprintf(&b, "[galera]\npassword = %q\ndata_volume = true\nvolume_mount = %q\ndata_dir = %q\n\n", s.galera, GaleraMount, GaleraMount+"/mysql")
	if len(u.AdminCIDRs) > 0 {
		q := make([]string, len(u.AdminCIDRs))
		for i, c := range u.AdminCIDRs {
			q[i] = fmt.Sprintf("%q", c)
		}
		fmt.Fprintf(&b, "[network]\nadmin_cidrs = [%s]\n\n", strings.Join(q, ", "))
	}
	// A new cluster speaks VRRPv3 (adverts every 200 ms); the key's absence means VRRPv2, which the clusters made
	// before it speak (docs/upgrade.md).
	fmt.Fprintf(&b, "[keepalived]\nvrrp_version = 3\n\n")
	fmt.Fprintf(&b, "[mailcow]\nhostname = %q\n", u.Hostname)
	ud := b.String()
	if len(u.Extra) > 0 {
		var doc map[string]any
		if _, err := toml.Decode(ud, &doc); err != nil {
			return "", fmt.Errorf("the user-data: %w", err)
		}
		config.Layer(doc, u.Extra)
		var err error
		if ud, err = config.Encode(doc, strings.TrimPrefix(config.Marker, "# "),
			"The one user-data of every node of cluster "+u.Cluster+", written by `mailcow-ha cluster create` with --config's settings.",
			"It holds the cluster's secrets: keep it like them (mode 0600)."); err != nil {
			return "", fmt.Errorf("the user-data: %w", err)
		}
	}
	if len(ud) > config.MaxUserData {
		return "", fmt.Errorf("the user-data is %d bytes, over Hetzner's %d", len(ud), config.MaxUserData)
	}
	if _, probs := config.Parse(UserDataFile, []byte(ud)); len(probs) > 0 {
		return "", fmt.Errorf("the user-data does not validate: %w", probs.Err())
	}
	if err := config.WriteSecret(filepath.Join(s.Dir, UserDataFile), strings.TrimSuffix(ud, "\n")); err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	return ud, nil
}
