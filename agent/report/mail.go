package report

// This file delivers alerts by e-mail through an SMTP relay (alerts.email): the same events, severity filter,
// deduplication, queue and retries as a webhook; only the last step differs. The relay is one outside the cluster,
// whose own mailcow may be what is down. net/smtp (the standard library's client) speaks the protocol.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"net/textproto"
	"sort"
	"strings"
	"time"
)

// Mail TLS modes.
const (
	MailSTARTTLS = "starttls" // the relay must offer STARTTLS (submission, port 587)
	MailTLS      = "tls"      // TLS from the first byte (port 465)
	MailNone     = "none"     // plain text: a relay on a private network, and never with a password
)

// Mail is an e-mail target: its relay, envelope and credentials (the password already read).
type Mail struct {
	Relay    string // host:port
	From     string
	To       []string
	Username string
	Password string // never logged
	TLS      string // MailSTARTTLS (default), MailTLS or MailNone
	// TLSConfig is for tests (a relay with its own CA); nil verifies the relay's certificate against the system's
	// roots with the relay's host name.
	TLSConfig *tls.Config
	Timeout   time.Duration // per attempt; default 30 s
}

// sendMail makes one attempt to hand the event to the relay. It reports whether another attempt may help: a
// network error or a 4xx reply (try later), not a 5xx one (the relay refuses this mail).
func (a *Alerter) sendMail(h *hook, ev Event, body []byte) (retry bool, err error) {
	m := h.w.Mail
	msg := mailMessage(m, ev, body)
	err = m.send(msg)
	if err == nil {
		return false, nil
	}
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return false, err
	}
	return true, err
}

// send delivers msg: dial, TLS as the mode says, AUTH when a user is set, MAIL, RCPT for each recipient, DATA.
func (m *Mail) send(msg []byte) error {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	host, _, err := net.SplitHostPort(m.Relay)
	if err != nil {
		return fmt.Errorf("relay %q: %w", m.Relay, err)
	}
	cfg := m.TLSConfig
	if cfg == nil {
		cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	d := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	if m.TLS == MailTLS {
		conn, err = tls.DialWithDialer(d, "tcp", m.Relay, cfg)
	} else {
		conn, err = d.Dial("tcp", m.Relay)
	}
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("mailcow-ha"); err != nil {
		return err
	}
	if m.TLS == "" || m.TLS == MailSTARTTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("the relay offers no STARTTLS (alerts.email tls = \"starttls\")")
		}
		if err := c.StartTLS(cfg); err != nil {
			return err
		}
	}
	if m.Username != "" {
		if m.TLS == MailNone {
			return errors.New("no password is sent without TLS")
		}
		// PlainAuth itself refuses a connection without TLS (other than to localhost).
		if err := c.Auth(smtp.PlainAuth("", m.Username, m.Password, host)); err != nil {
			return err
		}
	}
	if err := c.Mail(m.From); err != nil {
		return err
	}
	for _, to := range m.To {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// mailMessage is the alert as an RFC 5322 message: a subject that says what and where, the event's text, then its
// fields. body is a template's output, or nil for the standard text.
func mailMessage(m *Mail, ev Event, body []byte) []byte {
	subject := fmt.Sprintf("[mailcow-ha %s] %s: %s on %s", ev.Severity, ev.Cluster, ev.Event, ev.Subject)
	if ev.Repeat > 1 {
		subject += fmt.Sprintf(" (%d times)", ev.Repeat)
	}
	if body == nil {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s\n\n", ev.Message)
		fields := [][2]string{{"event", ev.Event}, {"severity", ev.Severity}, {"cluster", ev.Cluster}, {"node", ev.Node},
			{"subject", ev.Subject}, {"time", ev.Time.UTC().Format(time.RFC3339)}, {"repeat", fmt.Sprint(ev.Repeat)}}
		if ev.TransitionID != 0 {
			fields = append(fields, [2]string{"transition_id", fmt.Sprint(ev.TransitionID)})
		}
		keys := make([]string, 0, len(ev.Details))
		for k := range ev.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fields = append(fields, [2]string{k, ev.Details[k]})
		}
		for _, f := range fields {
			fmt.Fprintf(&b, "%-14s %s\n", f[0]+":", f[1])
		}
		body = b.Bytes()
	}
	var b bytes.Buffer
	domain := "mailcow-ha.invalid"
	if i := strings.LastIndexByte(m.From, '@'); i >= 0 {
		domain = m.From[i+1:]
	}
	fmt.Fprintf(&b, "From: %s\r\n", m.From)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(m.To, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", ev.Time.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", ev.ID, domain)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
	fmt.Fprintf(&b, "%s: %s\r\n%s: %s\r\n\r\n", HeaderEvent, ev.Event, HeaderDelivery, ev.ID)
	for _, line := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		// A line of one dot is the DATA terminator's business (the client's dot-stuffing); bare CRs are not sent.
		b.WriteString(strings.ReplaceAll(line, "\r", ""))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
