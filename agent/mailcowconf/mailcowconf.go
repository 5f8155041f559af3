// Package mailcowconf is mailcow's own configuration, mailcow.conf (with .env, the link to it that mailcow's
// compose and scripts read), as the agent writes it from the node's TOML: the variables of the pinned release with
// their defaults in one table, the ones the cluster must own (the database, the project, the network, the secrets
// every node must share), and the render that every node makes alike from the same TOML.
package mailcowconf

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// File and Env are mailcow.conf and the link .env → mailcow.conf in mailcow's directory.
const (
	File = "mailcow.conf"
	Env  = ".env"
)

// Var is one variable of mailcow.conf.
type Var struct {
	Name    string
	Default string
	// Owner is the configuration key (or the reason) that sets a variable the cluster owns: such a variable cannot
	// be set under mailcow.conf.
	Owner string
	// Optional variables are written only when set (mailcow's own file has them commented out).
	Optional bool
}

// Vars are mailcow.conf's variables as mailcow's generate_config.sh writes them (release 2026-07a), in its order,
// with its defaults. A TOML sets the others under [mailcow.conf] by their names here.
var Vars = []Var{
	{Name: "MAILCOW_HOSTNAME", Owner: "mailcow.hostname"},
	{Name: "MAILCOW_PASS_SCHEME", Default: "BLF-CRYPT"},
	{Name: "DBNAME", Default: "mailcow", Owner: "the database the agent creates in Galera"},
	{Name: "DBUSER", Default: "mailcow", Owner: "the user the agent creates in Galera"},
	{Name: "DBPASS", Owner: "galera.password"},
	{Name: "DBROOT", Owner: "derived from cluster.secret"},
	{Name: "REDISPASS", Owner: "derived from cluster.secret (redis's data is on the Volume, so every node needs the same)"},
	{Name: "HTTP_PORT", Default: "80"},
	{Name: "HTTP_BIND"},
	{Name: "HTTPS_PORT", Default: "443"},
	{Name: "HTTPS_BIND"},
	{Name: "HTTP_REDIRECT", Default: "y"},
	{Name: "SMTP_PORT", Default: "25"},
	{Name: "SMTPS_PORT", Default: "465"},
	{Name: "SUBMISSION_PORT", Default: "587"},
	{Name: "IMAP_PORT", Default: "143"},
	{Name: "IMAPS_PORT", Default: "993"},
	{Name: "POP_PORT", Default: "110"},
	{Name: "POPS_PORT", Default: "995"},
	{Name: "SIEVE_PORT", Default: "4190"},
	{Name: "DOVEADM_PORT", Default: "127.0.0.1:19991"},
	{Name: "SQL_PORT", Default: "127.0.0.1:13306"},
	{Name: "REDIS_PORT", Default: "127.0.0.1:7654"},
	{Name: "TZ", Owner: "mailcow.timezone"},
	{Name: "COMPOSE_PROJECT_NAME", Default: "mailcowdockerized", Owner: "mailcow.compose_project"},
	{Name: "DOCKER_COMPOSE_VERSION", Default: "native", Owner: "the appliance runs Compose v2 as the docker plugin"},
	{Name: "ACL_ANYONE", Default: "disallow"},
	{Name: "MAILDIR_GC_TIME", Default: "7200"},
	{Name: "ADDITIONAL_SAN"},
	{Name: "AUTODISCOVER_SAN", Default: "y"},
	{Name: "ADDITIONAL_SERVER_NAMES"},
	{Name: "SKIP_LETS_ENCRYPT", Default: "n"},
	{Name: "ACME_DNS_CHALLENGE", Default: "n"},
	{Name: "ACME_DNS_PROVIDER", Default: "dns_xxx"},
	{Name: "ACME_ACCOUNT_EMAIL", Default: "me@example.com"},
	// The DNS-01 provider's variables of mailcow's own example (Azure DNS).
	{Name: "AZUREDNS_SUBSCRIPTIONID", Optional: true},
	{Name: "AZUREDNS_TENANTID", Optional: true},
	{Name: "AZUREDNS_APPID", Optional: true},
	{Name: "AZUREDNS_CLIENTSECRET", Optional: true},
	{Name: "AZUREDNS_RESOURCEGROUP", Optional: true},
	{Name: "AZUREDNS_ZONE", Optional: true},
	{Name: "ENABLE_SSL_SNI", Default: "n"},
	{Name: "SKIP_IP_CHECK", Default: "n"},
	{Name: "SKIP_HTTP_VERIFICATION", Default: "n"},
	{Name: "SKIP_UNBOUND_HEALTHCHECK", Default: "n"},
	{Name: "SKIP_CLAMD", Default: "n"},
	{Name: "SKIP_OLEFY", Default: "n"},
	{Name: "SKIP_SOGO", Default: "n"},
	{Name: "SKIP_FTS", Default: "n"},
	{Name: "FTS_HEAP", Default: "128"},
	{Name: "FTS_PROCS", Default: "1"},
	{Name: "ALLOW_ADMIN_EMAIL_LOGIN", Default: "n"},
	{Name: "USE_WATCHDOG", Default: "y"},
	{Name: "WATCHDOG_NOTIFY_EMAIL", Optional: true},
	{Name: "WATCHDOG_NOTIFY_WEBHOOK", Optional: true},
	{Name: "WATCHDOG_NOTIFY_WEBHOOK_BODY", Optional: true},
	{Name: "WATCHDOG_NOTIFY_BAN", Default: "n"},
	{Name: "WATCHDOG_NOTIFY_START", Default: "y"},
	{Name: "WATCHDOG_SUBJECT", Optional: true},
	{Name: "WATCHDOG_EXTERNAL_CHECKS", Default: "n"},
	{Name: "WATCHDOG_VERBOSE", Default: "n"},
	{Name: "LOG_LINES", Default: "9999"},
	{Name: "IPV4_NETWORK", Default: "172.22.1", Owner: "the appliance: its firewall and the sign-up portal trust nginx-mailcow at 172.22.1.247"},
	{Name: "IPV6_NETWORK", Default: "fd4d:6169:6c63:6f77::/64"},
	{Name: "SNAT_TO_SOURCE", Optional: true, Owner: "mailcow.snat (the override sets the Floating IP)"},
	{Name: "SNAT6_TO_SOURCE", Optional: true, Owner: "mailcow.snat (the override sets the Floating IP)"},
	{Name: "API_KEY", Owner: "derived from cluster.secret for the sign-up portal (mailcow.api_key_file)"},
	{Name: "API_KEY_READ_ONLY", Optional: true},
	{Name: "API_ALLOW_FROM", Owner: "the sign-up portal's address on mailcow's network (172.22.1.1)"},
	{Name: "MAILDIR_SUB", Default: "Maildir"},
	{Name: "SOGO_EXPIRE_SESSION", Default: "480"},
	{Name: "SOGO_URL_ENCRYPTION_KEY", Owner: "derived from cluster.secret (every node must decrypt SOGo's links alike)"},
	{Name: "DOVECOT_MASTER_USER"},
	{Name: "DOVECOT_MASTER_PASS"},
	{Name: "WEBAUTHN_ONLY_TRUSTED_VENDORS", Default: "n"},
	{Name: "SPAMHAUS_DQS_KEY"},
	{Name: "ENABLE_IPV6", Default: "true"},
	{Name: "DISABLE_NETFILTER_ISOLATION_RULE", Default: "n"},
}

// PortalAddress is the address the sign-up portal reaches mailcow's API from: the host's on mailcow's network.
const PortalAddress = "172.22.1.1"

// Lookup returns the variable called name.
func Lookup(name string) (Var, bool) {
	i := slices.IndexFunc(Vars, func(v Var) bool { return v.Name == name })
	if i < 0 {
		return Var{}, false
	}
	return Vars[i], true
}

var safeValue = regexp.MustCompile(`^[^\n\r"'$\\` + "`" + `]*$`)

// CheckSettings returns one problem per bad entry of [mailcow.conf]: a name mailcow.conf does not have, a variable
// the cluster owns, or a value that a shell, Compose's .env or mailcow's scripts would read otherwise (newlines,
// quotes, $, backslashes, backticks). Keys come sorted.
func CheckSettings(settings map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		v, ok := Lookup(k)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("mailcow.conf.%s: not a variable of mailcow.conf (release 2026-07a)", k))
		case v.Owner != "":
			out = append(out, fmt.Sprintf("mailcow.conf.%s: set by mailcow-ha (%s)", k, v.Owner))
		case !safeValue.MatchString(settings[k]):
			out = append(out, fmt.Sprintf("mailcow.conf.%s: newlines, quotes, $, \\ and ` cannot be written to mailcow.conf", k))
		}
	}
	return out
}

// Values are what the render needs from the node's TOML.
type Values struct {
	Hostname       string
	Timezone       string
	ComposeProject string
	DBPassword     string
	// Secret is the cluster secret, and Cluster the cluster's name: the shared secrets mailcow needs are derived from
	// them, so that every node writes the same file and a rotated secret changes them on every node.
	Secret   []byte
	Cluster  string
	Settings map[string]string // [mailcow.conf]
}

// Derive returns the shared secret called name: n letters and digits derived from the cluster secret (HKDF-SHA256,
// with the cluster's name), the alphabet mailcow's generate_config.sh draws from.
func Derive(secret []byte, cluster, name string, n int) (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	raw, err := hkdf.Key(sha256.New, secret, []byte("mailcow-ha mailcow.conf v1"), cluster+"/"+name, 2*n)
	if err != nil {
		return "", fmt.Errorf("mailcowconf: %w", err)
	}
	out := make([]byte, n)
	for i := range out {
		// Two bytes per letter: the bias of 65536 mod 62 is under 0.1 %.
		out[i] = alphabet[(int(raw[2*i])<<8|int(raw[2*i+1]))%len(alphabet)]
	}
	return string(out), nil
}

// Shared are the secrets every node derives alike, by variable, with their lengths (those of generate_config.sh).
var Shared = []struct {
	Var string
	Len int
}{{"DBROOT", 28}, {"REDISPASS", 28}, {"SOGO_URL_ENCRYPTION_KEY", 16}, {"API_KEY", APIKeyLen}}

// APIKeyLen is the length of the API key derived for the sign-up portal.
const APIKeyLen = 32

// Render returns mailcow.conf. The output depends only on v.
func Render(v Values) ([]byte, error) {
	if problems := CheckSettings(v.Settings); len(problems) > 0 {
		return nil, fmt.Errorf("mailcowconf: %s", strings.Join(problems, "; "))
	}
	set := map[string]string{
		"MAILCOW_HOSTNAME":     v.Hostname,
		"DBPASS":               v.DBPassword,
		"TZ":                   v.Timezone,
		"COMPOSE_PROJECT_NAME": v.ComposeProject,
		"API_ALLOW_FROM":       PortalAddress,
	}
	for k, val := range set {
		if val == "" {
			return nil, fmt.Errorf("mailcowconf: %s is empty", k)
		}
		if !safeValue.MatchString(val) {
			return nil, fmt.Errorf("mailcowconf: %s: newlines, quotes, $, \\ and ` cannot be written to mailcow.conf", k)
		}
	}
	if len(v.Secret) == 0 {
		return nil, fmt.Errorf("mailcowconf: no cluster secret to derive the shared secrets from")
	}
	for _, s := range Shared {
		d, err := Derive(v.Secret, v.Cluster, s.Var, s.Len)
		if err != nil {
			return nil, err
		}
		set[s.Var] = d
	}
	var b bytes.Buffer
	b.WriteString("# Written by mailcow-ha from the node's configuration (mailcow.hostname, mailcow.timezone, [mailcow.conf],\n" +
		"# galera.password and secrets derived from cluster.secret); every node writes the same. Edits here are lost:\n" +
		"# set variables under [mailcow.conf] instead. Mode 0600: it holds the database password and the API key.\n")
	for _, vr := range Vars {
		val, ok := set[vr.Name]
		if !ok {
			val, ok = v.Settings[vr.Name]
		}
		if !ok {
			if vr.Optional {
				continue
			}
			val = vr.Default
		}
		fmt.Fprintf(&b, "%s=%s\n", vr.Name, val)
	}
	return b.Bytes(), nil
}
