package report

import (
	"bytes"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer runs Python's own SMTP server (the standard library's smtpd, in Debian's python3) on a free loopback
// port, printing every message it accepts; it offers no STARTTLS.
func smtpServer(t *testing.T) (addr string, received func() string) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: no SMTP server to deliver to")
	}
	if err := exec.Command("python3", "-W", "ignore", "-c", "import smtpd").Run(); err != nil {
		t.Skip("python3 has no smtpd module (it left the standard library in 3.12): no SMTP server to deliver to")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	var out syncBuffer
	cmd := exec.Command("python3", "-u", "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer", addr)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(end) {
			t.Fatalf("python3 -m smtpd did not listen on %s: %s", addr, out.String())
		}
	}
	return addr, out.String
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An alert by e-mail reaches a real SMTP server: subject, headers, the message and its fields; the severity filter
// applies as for a webhook.
func TestMailDelivered(t *testing.T) {
	addr, received := smtpServer(t)
	m := &Mail{Relay: addr, From: "alerts@example.org", To: []string{"ops@example.org", "oncall@example.org"}, TLS: MailNone}
	a, err := NewAlerter("mail", "mx1", []Webhook{{Name: "ops", MinSeverity: SeverityWarning, Mail: m}}, AlerterOptions{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.Send(Event{Event: "fence_failed", Severity: SeverityCritical, Subject: "mx2", Message: "mx2 could not be powered off",
		TransitionID: 7, Details: map[string]string{"role": "master"}})
	a.Send(Event{Event: "config_reloaded", Severity: SeverityInfo, Message: "filtered away"})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(received(), "END MESSAGE") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	a.Close(time.Second)
	got := received()
	for _, want := range []string{"b'Subject: [mailcow-ha critical] mail: fence_failed on mx2'", "b'From: alerts@example.org'",
		"b'To: ops@example.org, oncall@example.org'", "b'X-Mailcow-HA-Event: fence_failed'", "b'mx2 could not be powered off'",
		"b'transition_id: 7'", "b'role:          master'"} {
		if !strings.Contains(got, want) {
			t.Errorf("the relay's copy lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "filtered away") || strings.Count(got, "MESSAGE FOLLOWS") != 1 {
		t.Errorf("the info event passed the warning filter:\n%s", got)
	}
	if st := a.Stats()[0]; st.Sent != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// tls = "starttls" (the default) delivers nothing to a relay that offers no STARTTLS: tried again, then dropped and
// counted; the relay never sees the message.
func TestMailRequiresSTARTTLS(t *testing.T) {
	addr, received := smtpServer(t)
	m := &Mail{Relay: addr, From: "alerts@example.org", To: []string{"ops@example.org"}}
	a, err := NewAlerter("mail", "mx1", []Webhook{{Name: "ops", Mail: m}},
		AlerterOptions{MaxAttempts: 2, Backoff: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.Send(Event{Event: "fence_failed", Severity: SeverityCritical, Message: "secret details"})
	deadline := time.Now().Add(10 * time.Second)
	for a.Stats()[0].Dropped[DropExhausted] == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	a.Close(time.Second)
	if st := a.Stats()[0]; st.Sent != 0 || st.Dropped[DropExhausted] != 1 || st.Retries != 1 {
		t.Errorf("stats: %+v", st)
	}
	if got := received(); strings.Contains(got, "secret details") {
		t.Errorf("the message went out in clear:\n%s", got)
	}
	if err := m.send([]byte("x")); err == nil || !strings.Contains(err.Error(), "offers no STARTTLS") {
		t.Errorf("send without STARTTLS: %v", err)
	}
	// A password is never sent without TLS, whatever the configuration says.
	m2 := &Mail{Relay: addr, From: "alerts@example.org", To: []string{"ops@example.org"}, TLS: MailNone, Username: "u", Password: "p"}
	if err := m2.send([]byte("x")); err == nil || !strings.Contains(err.Error(), "without TLS") {
		t.Errorf("AUTH without TLS: %v", err)
	}
}
