package config

// This file validates alerts: the webhooks and the e-mail targets.

import (
	"fmt"
	"maps"
	"mime"
	"net"
	"net/mail"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

func (v *validator) alerts(c *Config) {
	names := map[string]int{}
	for i, w := range c.Alerts.Webhooks {
		k := fmt.Sprintf("alerts.webhooks[%d]", i)
		if w.Name == "" {
			v.add(k+".name", "missing")
		} else if j, dup := names[w.Name]; dup {
			v.add(k+".name", "duplicate webhook %q (also alerts.webhooks[%d])", w.Name, j)
		} else {
			names[w.Name] = i
		}
		v.httpURL(k+".url", w.URL)
		if w.SecretFile != "" {
			v.absPath(k+".secret_file", w.SecretFile)
		}
		v.delivery(k, w.Name, w.MinSeverity, w.Template, w.DedupWindow)
		if w.ContentType != "" {
			if _, _, err := mime.ParseMediaType(w.ContentType); err != nil {
				v.add(k+".content_type", "not a media type: %v", err)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(w.Headers)) {
			hk := k + ".headers." + name
			switch {
			case !httpguts.ValidHeaderFieldName(name):
				v.add(hk, "not a valid header name")
			case slices.Contains([]string{"host", "content-length", "content-type", "transfer-encoding", "connection"}, strings.ToLower(name)):
				v.add(hk, "set by the agent; use content_type for the body's type")
			case strings.HasPrefix(strings.ToLower(name), "x-mailcow-ha-"):
				v.add(hk, "reserved for the agent's own headers")
			case !httpguts.ValidHeaderFieldValue(w.Headers[name]):
				v.add(hk, "the value holds a control character")
			}
		}
	}
	v.email(c, names)
}

// email checks alerts.email: a relay, one sender and at least one recipient, a TLS mode, and credentials only
// over TLS.
func (v *validator) email(c *Config, names map[string]int) {
	for i, e := range c.Alerts.Email {
		k := fmt.Sprintf("alerts.email[%d]", i)
		if e.Name == "" {
			v.add(k+".name", "missing")
		} else if _, dup := names[e.Name]; dup {
			v.add(k+".name", "duplicate alert target %q (a webhook or an earlier alerts.email has it)", e.Name)
		} else {
			names[e.Name] = i
		}
		if host, port, err := net.SplitHostPort(e.Relay); err != nil || host == "" {
			v.add(k+".relay", "%q: host:port of the SMTP relay (smtp.example.org:587)", e.Relay)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			v.add(k+".relay", "%q: the port must be 1-65535", e.Relay)
		}
		if a, err := mail.ParseAddress(e.From); err != nil || a.Name != "" {
			v.add(k+".from", "%q: one bare address (alerts@example.org)", e.From)
		}
		if len(e.To) == 0 {
			v.add(k+".to", "missing: at least one address")
		}
		for j, to := range e.To {
			if a, err := mail.ParseAddress(to); err != nil || a.Name != "" {
				v.add(fmt.Sprintf("%s.to[%d]", k, j), "%q: one bare address (ops@example.org)", to)
			}
		}
		switch e.TLS {
		case "", "starttls", "tls", "none":
		default:
			v.add(k+".tls", "must be \"starttls\", \"tls\" or \"none\", got %q", e.TLS)
		}
		if (e.Username == "") != (e.PasswordFile == "" && !e.Password.Set()) {
			v.add(k+".password_file", "a username needs password or password_file, and they need a username")
		}
		if e.Username != "" && e.TLS == "none" {
			v.add(k+".tls", "\"none\" with a username would send the password in clear: use starttls or tls")
		}
		if e.PasswordFile != "" {
			v.absPath(k+".password_file", e.PasswordFile)
		}
		v.delivery(k, e.Name, e.MinSeverity, e.Template, e.DedupWindow)
	}
}

// delivery checks what webhooks and e-mail targets share: the severity filter, the body's template and the
// deduplication window of the target at key k.
func (v *validator) delivery(k, name, minSeverity, template string, dedup Duration) {
	if minSeverity != "" && !slices.Contains(severities, minSeverity) {
		v.add(k+".min_severity", "must be one of %q, got %q", severities, minSeverity)
	}
	if template != "" {
		if _, err := report.ParseTemplate(name, template); err != nil {
			v.add(k+".template", "invalid Go template: %v", err)
		}
	}
	if dedup < 0 {
		v.add(k+".dedup_window", "must not be negative")
	}
}
