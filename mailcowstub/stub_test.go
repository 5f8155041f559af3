package mailcowstub

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/stdio"
)

func freeBase(tb testing.TB) int {
	tb.Helper()
	base, err := FreePortBase("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	return base
}

func startRole(t *testing.T, ctx context.Context, o Options) {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	deadline := time.Now().Add(5 * time.Second)
	for Health(ctx, o) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up", o.Role)
		}
		select {
		case err := <-done:
			t.Fatalf("%s ended: %v", o.Role, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", o.Role, err)
		}
	})
}

func TestMailRoundTrip(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	vmail := t.TempDir()
	base := freeBase(t)
	for _, role := range []string{RolePostfix, RoleDovecot, RoleNginx} {
		startRole(t, ctx, Options{Role: role, Bind: "127.0.0.1", PortBase: base, VmailDir: vmail, Hostname: "mx1.test"})
	}
	body := "Subject: hello\r\n\r\n.leading dot\r\nline two\r\n"
	err := smtp.SendMail(fmt.Sprintf("127.0.0.1:%d", base+25), nil, "alice@example.org", []string{"Bob@Example.org"}, []byte(body))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	md, _ := MailboxDir(vmail, "bob@example.org")
	msgs, err := md.Messages()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("messages: %v %v", msgs, err)
	}
	got, _ := os.ReadFile(msgs[0])
	if !strings.Contains(string(got), "\r\n.leading dot\r\nline two\r\n") || !strings.Contains(string(got), "Delivered-To: Bob@Example.org") {
		t.Fatalf("stored message:\n%s", got)
	}
	if fi, _ := os.Stat(filepath.Dir(msgs[0])); filepath.Base(filepath.Dir(msgs[0])) != "new" || fi == nil {
		t.Fatalf("message not in new/: %s", msgs[0])
	}

	// Implicit TLS on 465 answers with a greeting.
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", base+465), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("smtps: %v", err)
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "220 mx1.test") {
		t.Fatalf("smtps greeting %q", buf[:n])
	}

	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the IMAP half of the round trip needs a real client")
	}
	out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", "-u", "bob@example.org:x",
		fmt.Sprintf("imap://127.0.0.1:%d/INBOX;UID=1", base+143)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "line two") || !strings.Contains(string(out), "Subject: hello") {
		t.Fatalf("curl imap fetch: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", "-u", "bob@example.org:x",
		fmt.Sprintf("imap://127.0.0.1:%d/INBOX?ALL", base+143)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SEARCH 1") {
		t.Fatalf("curl imap search: %v\n%s", err, out)
	}
	// An operator's checks by hand (RFC 3501): sequence sets, header sections without the body, UID FETCH.
	imapCmd := func(command string) (string, error) {
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", "-u", "bob@example.org:x",
			fmt.Sprintf("imap://127.0.0.1:%d/INBOX", base+143), "-X", command).CombinedOutput()
		return string(out), err
	}
	section := fmt.Sprintf("BODY[HEADER.FIELDS (SUBJECT)] {%d}", len("Subject: hello\r\n\r\n"))
	if out, err := imapCmd("FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])"); err != nil || !strings.Contains(out, "* 1 FETCH ("+section) {
		t.Errorf("FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)]): %v\n%s", err, out)
	}
	if out, err := imapCmd("UID FETCH 1:* (FLAGS)"); err != nil || !strings.Contains(out, "* 1 FETCH (UID 1 FLAGS ())") {
		t.Errorf("UID FETCH 1:* (FLAGS): %v\n%s", err, out)
	}
	if out, err := imapCmd("FETCH 1 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); err != nil ||
		!strings.Contains(out, "* 1 FETCH (UID 1 RFC822.SIZE ") || !strings.Contains(out, section) {
		t.Errorf("FETCH 1 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)]): %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", "-u", "bob@example.org:x",
		fmt.Sprintf("imap://127.0.0.1:%d/INBOX;MAILINDEX=1;SECTION=HEADER.FIELDS%%20(SUBJECT)", base+143)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "Subject: hello" {
		t.Errorf("the Subject header section by URL: %v %q (want the header and nothing of the body)", err, out)
	}
	// What the stub does not serve is a BAD, never a wrong answer.
	for _, c := range []string{"FETCH 2 (FLAGS)", "FETCH 1 (ENVELOPE)", "FETCH 1:x (FLAGS)"} {
		if out, err := imapCmd(c); err == nil {
			t.Errorf("%s: answered, want a BAD:\n%s", c, out)
		}
	}
	out, err = exec.CommandContext(ctx, "curl", "-sS", "-k", "--max-time", "10",
		fmt.Sprintf("https://127.0.0.1:%d/health", base+443)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mx1.test: ok") {
		t.Fatalf("curl https: %v\n%s", err, out)
	}
}

func TestMailboxDirRefusesEscapes(t *testing.T) {
	for _, a := range []string{"../x@d", "a@..", "a/b@d", "nodomain", "@d", "a@"} {
		if _, err := MailboxDir("/v", a); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
	if md, err := MailboxDir("/v", " A@B.org "); err != nil || md != "/v/b.org/a/Maildir" {
		t.Errorf("got %q %v", md, err)
	}
}

func TestMainUsage(t *testing.T) {
	var errb strings.Builder
	if code := Main(context.Background(), []string{"bogus"}, stdioFor(&errb)); code != 1 || !strings.Contains(errb.String(), "unknown role") {
		t.Fatalf("code %d: %s", code, errb.String())
	}
	if code := Main(context.Background(), nil, stdioFor(&errb)); code != 2 {
		t.Fatalf("code %d", code)
	}
}

func stdioFor(w io.Writer) stdio.Stdio {
	return stdio.Stdio{Stdin: strings.NewReader(""), Stdout: w, Stderr: w}
}

// The client helpers the lab and the VM tests share: Send stores two messages, Mailbox reads both Message-IDs
// back over IMAP.
func TestClientSendAndMailbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	vmail := t.TempDir()
	base := freeBase(t)
	for _, role := range []string{RolePostfix, RoleDovecot} {
		startRole(t, ctx, Options{Role: role, Bind: "127.0.0.1", PortBase: base, VmailDir: vmail, Hostname: "mx1.test"})
	}
	dial := func(port int) net.Conn {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", base+port), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	want := []string{"<one@client.test>", "<two@client.test>"}
	for _, id := range want {
		if err := Send(dial(25), "mx1.test", "probe@client.test", "lab@example.org", id, "client test"); err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
	}
	got, err := Mailbox(dial(143), "lab@example.org", "lab")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("mailbox %v, want %v", got, want)
	}
	if got, err := Mailbox(dial(143), "empty@example.org", "x"); err != nil || len(got) != 0 {
		t.Errorf("an empty mailbox: %v %v", got, err)
	}
}
