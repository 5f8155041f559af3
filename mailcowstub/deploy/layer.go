package deploy

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/mailcowstub"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

// LayerFile is the name of the stub layer next to mailcow's docker-compose.yml and the agent's override.
const LayerFile = "docker-compose.stub.json"

// LayerOptions describe the stub layer of one node.
type LayerOptions struct {
	Image     string // default Image
	Hostname  string // the name the stub services greet with
	DataMount string // the shared Volume's mount point: the stub postfix delivers into its vmail directory
	// HealthInterval and HealthTimeout are the Docker health check's for postfix, dovecot and nginx (defaults 2 s).
	HealthInterval, HealthTimeout time.Duration
	// MailImage, when set, is the mailservers image (Debian's postfix and dovecot) that plays postfix-mailcow and
	// dovecot-mailcow instead of the stub, with MailUsers as its mailboxes.
	MailImage string
	MailUsers []string
}

// mailLMTP is where dovecot-mailcow's LMTP listens on mailcow's network and postfix-mailcow delivers: dovecot's
// fixed address in mailcow's compose file (Compose fills in IPV4_NETWORK from mailcow.conf). Not a name: mailcow's
// postfix resolves through unbound-mailcow, a stub here.
const mailLMTP = "${IPV4_NETWORK:-172.22.1}.250:24"

// Layer is a compose file laid over mailcow's own docker-compose.yml and the agent's override, last, for tests
// that cannot pull mailcow's images: it swaps each service's image, entrypoint and command for the stub with that
// service's role, and its health check for the stub's (none for the roles that only sleep). Everything else stays
// mailcow's and the override's: services, networks and addresses, named volumes, binds, published ports, sysctls,
// depends_on, environment. One addition: the stub postfix delivers into the Maildirs itself (real postfix hands
// over to dovecot by LMTP), so it binds the Volume's vmail directory too. With o.MailImage, Debian's postfix and
// dovecot (the mailservers image) play postfix-mailcow and dovecot-mailcow instead (mailService). services are the
// service names of mailcow's compose file. The layer is JSON, which Compose reads as YAML.
func Layer(services []string, o LayerOptions) ([]byte, error) {
	o.Image, o.HealthInterval, o.HealthTimeout = stubDefaults(o.Image, o.HealthInterval, o.HealthTimeout)
	if !path.IsAbs(o.DataMount) || strings.ContainsAny(o.DataMount, "$:, \t\n") {
		return nil, fmt.Errorf("stub layer: data mount %q must be an absolute path without $, colons, commas or spaces", o.DataMount)
	}
	if strings.ContainsAny(o.Hostname, "$ \t\n") {
		return nil, fmt.Errorf("stub layer: hostname %q has a $ or a space", o.Hostname)
	}
	if len(services) == 0 {
		return nil, fmt.Errorf("stub layer: no services")
	}
	sorted := append([]string(nil), services...)
	sort.Strings(sorted)
	out := map[string]any{}
	for _, svc := range sorted {
		role := Role(svc)
		cmd := []string{role, "--vmail", "/var/vmail"}
		if o.Hostname != "" {
			cmd = append(cmd, "--hostname", o.Hostname)
		}
		s := map[string]any{
			"image":       o.Image,
			"pull_policy": "never",
			"entrypoint":  []string{"/mailcow-stub"},
			"command":     cmd,
			"healthcheck": map[string]any{"disable": true},
		}
		if role != mailcowstub.RoleSleep {
			s["healthcheck"] = map[string]any{
				"test":     []string{"CMD", "/mailcow-stub", "health", role},
				"interval": o.HealthInterval.String(), "timeout": o.HealthTimeout.String(), "retries": 2,
			}
		}
		if o.MailImage != "" && (role == mailcowstub.RolePostfix || role == mailcowstub.RoleDovecot) {
			ms, err := mailService(o, role)
			if err != nil {
				return nil, err
			}
			out[svc] = ms
			continue
		}
		if role == mailcowstub.RolePostfix {
			s["volumes"] = []map[string]any{{
				"type": "bind", "source": path.Join(o.DataMount, "vmail"), "target": "/var/vmail",
				"bind": map[string]any{"create_host_path": false},
			}}
		}
		out[svc] = s
	}
	b, err := json.MarshalIndent(map[string]any{"services": out}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("stub layer: %w", err)
	}
	return append(b, '\n'), nil
}

// mailService is the layer of postfix-mailcow or dovecot-mailcow with the mailservers image: its entry point's role,
// the node's environment (the greeting's name, the mailboxes, LMTP on mailcow's network) and its own health check.
// Real postfix hands mail to dovecot over LMTP, so it keeps mailcow's binds only; the container ports are mailcow's.
func mailService(o LayerOptions, role string) (map[string]any, error) {
	r := mailRole(role)
	env, err := mailservers.Config{Hostname: o.Hostname, Users: o.MailUsers, LMTPAddr: mailLMTP}.Env()
	if err != nil {
		return nil, fmt.Errorf("stub layer: %w", err)
	}
	return map[string]any{
		"image":       o.MailImage,
		"pull_policy": "never",
		"entrypoint":  []string{mailservers.EntryPoint},
		"command":     []string{r},
		"environment": env,
		"healthcheck": map[string]any{
			"test":     mailservers.HealthTest(r),
			"interval": o.HealthInterval.String(), "timeout": o.HealthTimeout.String(), "retries": 2,
		},
	}, nil
}
