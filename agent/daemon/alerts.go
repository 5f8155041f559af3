package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// newAlerter reads every webhook's secret file and starts the webhook workers (report.Alerter).
func newAlerter(c config.Config, owner config.SecretFiles, log *slog.Logger) (*report.Alerter, error) {
	var hooks []report.Webhook
	for i, w := range c.Alerts.Webhooks {
		h := report.Webhook{Name: w.Name, URL: w.URL, MinSeverity: w.MinSeverity, Template: w.Template,
			ContentType: w.ContentType, Headers: w.Headers, DedupWindow: w.DedupWindow.D()}
		if w.SecretFile != "" {
			s, err := owner.ReadSecret(w.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("alerts.webhooks[%d].secret_file: %w", i, err)
			}
			h.Secret = []byte(s.Reveal())
		}
		hooks = append(hooks, h)
	}
	for i, e := range c.Alerts.Email {
		m := &report.Mail{Relay: e.Relay, From: e.From, To: e.To, TLS: e.TLS, Username: e.Username}
		if e.PasswordFile != "" {
			s, err := owner.ReadSecret(e.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("alerts.email[%d].password_file: %w", i, err)
			}
			m.Password = s.Reveal()
		}
		hooks = append(hooks, report.Webhook{Name: e.Name, MinSeverity: e.MinSeverity, Template: e.Template,
			DedupWindow: e.DedupWindow.D(), Mail: m})
	}
	a, err := report.NewAlerter(c.Cluster.Name, c.Node.Name, hooks, report.AlerterOptions{UserAgent: "mailcow-ha"},
		log.With("component", "webhook"))
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return a, nil
}

// alert logs an event at its severity and sends it to the webhooks. subject is what it is about: "" for this
// node, or a peer's name.
func (a *Agent) alert(name event.Name, severity, subject string, tid int, msg string, details map[string]string) {
	lvl := slog.LevelInfo
	switch severity {
	case report.SeverityWarning:
		lvl = slog.LevelWarn
	case report.SeverityCritical:
		lvl = slog.LevelError
	}
	args := []any{"event", string(name), "severity", severity, "message_id", report.MessageID(name)}
	if role := details["role"]; role != "" {
		args = append(args, "role", role)
	}
	if tid != 0 {
		args = append(args, "transition_id", tid)
	}
	if subject != "" {
		args = append(args, "peer", subject)
	}
	if n := details["api_requests"]; n != "" {
		args = append(args, "api_requests", n)
	}
	a.log.Log(context.Background(), lvl, msg, args...)
	a.alerts.Send(report.Event{Event: string(name), Severity: severity, Subject: subject, TransitionID: tid, Message: msg, Details: details})
}
