package mailservers

import (
	"fmt"
	"sort"
	"strings"
)

// The image's roles: the first argument of its entry point.
const (
	RolePostfix = "postfix"
	RoleDovecot = "dovecot"
)

// EntryPoint is the image's entry point; "health ROLE" is its Docker health check.
const EntryPoint = "/usr/local/sbin/mailserver"

// Config is how one node runs the two servers: the environment of both containers (the entry point reads it).
type Config struct {
	Hostname string   // the name postfix greets with (MAIL_HOSTNAME)
	Users    []string // the mailboxes, as addresses; their domains are the ones postfix accepts mail for
	// Ports moves listeners from mailcow's ports, by mailcow.conf's variable (SMTP_PORT, IMAPS_PORT, …; the
	// agent's stack.ServicePorts); 0 turns one off. LMTPAddr is where dovecot's LMTP listens and postfix delivers
	// (default 127.0.0.1:24).
	Ports    map[string]int
	LMTPAddr string
}

// PortVars are the port variables the entry point reads, with mailcow's ports.
var PortVars = map[string]int{"SMTP_PORT": 25, "SMTPS_PORT": 465, "SUBMISSION_PORT": 587,
	"IMAP_PORT": 143, "IMAPS_PORT": 993, "POP_PORT": 110, "POPS_PORT": 995, "SIEVE_PORT": 4190}

// Env is the containers' environment for c.
func (c Config) Env() ([]string, error) {
	for _, u := range c.Users {
		if i := strings.IndexByte(u, '@'); i <= 0 || i == len(u)-1 || strings.ContainsAny(u, " \t\n:") {
			return nil, fmt.Errorf("mail servers: user %q is not an address (local@domain, no spaces or colons)", u)
		}
	}
	if strings.ContainsAny(c.Hostname, " \t\n$") {
		return nil, fmt.Errorf("mail servers: hostname %q has a space or a $", c.Hostname)
	}
	var env []string
	if c.Hostname != "" {
		env = append(env, "MAIL_HOSTNAME="+c.Hostname)
	}
	if len(c.Users) > 0 {
		env = append(env, "MAIL_USERS="+strings.Join(c.Users, " "))
	}
	vars := make([]string, 0, len(c.Ports))
	for v := range c.Ports {
		vars = append(vars, v)
	}
	sort.Strings(vars)
	for _, v := range vars {
		if _, ok := PortVars[v]; !ok {
			return nil, fmt.Errorf("mail servers: %s is not a port of the mail servers", v)
		}
		if p := c.Ports[v]; p < 0 || p > 65535 {
			return nil, fmt.Errorf("mail servers: %s = %d is not a port", v, p)
		}
		env = append(env, fmt.Sprintf("%s=%d", v, c.Ports[v]))
	}
	if c.LMTPAddr != "" {
		env = append(env, "LMTP_ADDR="+c.LMTPAddr)
	}
	return env, nil
}

// HealthTest is the Docker health check of role: its own port answers with its greeting.
func HealthTest(role string) []string { return []string{"CMD", EntryPoint, "health", role} }
