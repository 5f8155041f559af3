package mailservers_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

const mailbox = "user@mailcow-ha.test"

// rig is one pair of mail server containers on the host's dockerd (host network, ports of their own), on three
// directories that play the Volume's binds.
type rig struct {
	t                            *testing.T
	c                            *client.Client
	tag                          string
	smtpPort, imapPort, lmtpPort int
	ports                        map[string]int // every listener's port, by mailcow.conf's variable
	env                          []string
	dirs                         map[string]string // container path → host path
	ids                          map[string]string // role → container id
	gen                          int
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start creates and starts both roles (a new generation of containers: what a new MASTER does with the same
// Volume), and returns how long each took from its start to its first greeting.
func (r *rig) start(ctx context.Context) map[string]time.Duration {
	r.t.Helper()
	r.gen++
	r.ids = map[string]string{}
	took := map[string]time.Duration{}
	for _, role := range []string{"dovecot", "postfix"} {
		var ms []mount.Mount
		for target, src := range r.dirs {
			if role == "postfix" && target != "/var/spool/postfix" || role == "dovecot" && target == "/var/spool/postfix" {
				continue
			}
			ms = append(ms, mount.Mount{Type: mount.TypeBind, Source: src, Target: target, ReadOnly: target == "/etc/dovecot"})
		}
		name := fmt.Sprintf("mailcow-ha-test-%s-%d-%d", role, os.Getpid(), r.gen)
		cfg := &container.Config{
			Image: r.tag, Cmd: []string{role}, Hostname: "mx-test",
			Env: r.env,
			Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/usr/local/sbin/mailserver", "health", role},
				Interval: time.Second, Timeout: 5 * time.Second, Retries: 3},
		}
		hc := &container.HostConfig{NetworkMode: "host", Mounts: ms}
		cr, err := r.c.ContainerCreate(ctx, cfg, hc, nil, nil, name)
		if err != nil {
			r.t.Fatalf("create %s: %v", role, err)
		}
		id := cr.ID
		r.ids[role] = id
		r.t.Cleanup(func() { r.c.ContainerRemove(context.Background(), id, container.RemoveOptions{Force: true}) })
		t0 := time.Now()
		if err := r.c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			r.t.Fatalf("start %s: %v", role, err)
		}
		port, want := r.smtpPort, "220 mx-test.mailcow-ha.test ESMTP"
		if role == "dovecot" {
			port, want = r.imapPort, "* OK"
		}
		for {
			if line, err := greeting(port); err == nil && strings.HasPrefix(line, want) {
				took[role] = time.Since(t0)
				break
			}
			if time.Since(t0) > 60*time.Second {
				r.t.Fatalf("%s: no greeting %q on %d after 60 s:\n%s", role, want, port, r.logs(role))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return took
}

func greeting(port int) (string, error) {
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 256)
	n, err := c.Read(b)
	return strings.TrimSpace(string(b[:n])), err
}

func (r *rig) logs(role string) string {
	out, _ := exec.Command("docker", "logs", "--tail", "30", r.ids[role]).CombinedOutput()
	return string(out)
}

// swaks sends one message with subject to rcpt; it returns swaks's transcript and whether the server said 250.
func (r *rig) swaks(rcpt, subject string) (string, bool) {
	out, err := exec.Command("swaks", "--server", "127.0.0.1", "--port", fmt.Sprint(r.smtpPort), "--from", "sender@example.org",
		"--to", rcpt, "--header", "Subject: "+subject, "--body", "mailcow-ha test: "+subject, "--timeout", "20").CombinedOutput()
	return string(out), err == nil
}

// imap runs one IMAP command on the INBOX with curl, as an operator would check by hand.
func (r *rig) imap(command string) (string, error) {
	out, err := exec.Command("curl", "-sS", "--max-time", "20", fmt.Sprintf("imap://127.0.0.1:%d/INBOX", r.imapPort),
		"-u", mailbox+":any-password", "-X", command).CombinedOutput()
	return string(out), err
}

// subjects waits up to d for the INBOX to list every subject of want (FETCH 1:* (ENVELOPE): curl prints the
// untagged answers of a custom command but not the literals in them, and the envelope's subject is a quoted string).
func (r *rig) subjects(want []string, d time.Duration) (string, bool) {
	deadline := time.Now().Add(d)
	for {
		out, err := r.imap("FETCH 1:* (ENVELOPE)")
		all := err == nil
		for _, s := range want {
			all = all && strings.Contains(out, fmt.Sprintf("%q", s))
		}
		if all || time.Now().After(deadline) {
			return out, all
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Debian's postfix and dovecot in the image built here: swaks sends, postfix hands over by LMTP, curl's IMAP reads
// with a sequence set, UID FETCH and a header section; an unknown mailbox is refused before the 250. Then a mail
// acknowledged while dovecot is down stays in postfix's queue on the "Volume"; postfix is killed (SIGKILL, as at a
// power loss), both containers are replaced by new ones on the same directories (a new MASTER), and the queued mail
// is delivered from the queue and read. The time from a container's start to its first greeting is logged.
func TestAcknowledgedMailSurvivesInTheQueue(t *testing.T) {
	if why := mailservers.Preflight(); why != "" {
		t.Skip(why)
	}
	for _, bin := range []string{"swaks", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (Debian package %s): the test sends and reads with real clients", bin, bin)
		}
	}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		t.Skipf("no dockerd to run the mail servers in: %v", err)
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	in := mailservers.Inputs{}
	t0 := time.Now()
	rootfs, err := mailservers.RootFS(ctx, in, mailservers.CacheDir(top), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if err := mailservers.Import(ctx, c, rootfs, in.Tag()); err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s ready in %.1f s", in.Tag(), time.Since(t0).Seconds())

	base := t.TempDir()
	r := &rig{t: t, c: c, tag: in.Tag(), lmtpPort: freePort(t), dirs: map[string]string{}, ports: map[string]int{}}
	for v := range mailservers.PortVars {
		r.ports[v] = freePort(t)
	}
	r.smtpPort, r.imapPort = r.ports["SMTP_PORT"], r.ports["IMAP_PORT"]
	r.env, err = mailservers.Config{Hostname: "mx-test.mailcow-ha.test", Users: []string{mailbox, "other@mailcow-ha.test"},
		Ports: r.ports, LMTPAddr: fmt.Sprintf("127.0.0.1:%d", r.lmtpPort)}.Env()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/var/spool/postfix", "/var/vmail", "/var/vmail_index"} {
		host := filepath.Join(base, filepath.Base(d))
		if err := os.Mkdir(host, 0o755); err != nil {
			t.Fatal(err)
		}
		r.dirs[d] = host
	}
	// mailcow binds its dovecot configuration (data/conf/dovecot) over /etc/dovecot: the image must neither read nor
	// write it. Here it is a read-only directory with a configuration dovecot would refuse.
	mailcowConf := filepath.Join(base, "conf-dovecot")
	if err := os.Mkdir(mailcowConf, 0o755); err != nil {
		t.Fatal(err)
	}
	decoy := []byte("mailcow's own dovecot.conf: not for this image\n")
	if err := os.WriteFile(filepath.Join(mailcowConf, "dovecot.conf"), decoy, 0o644); err != nil {
		t.Fatal(err)
	}
	r.dirs["/etc/dovecot"] = mailcowConf
	took := r.start(ctx)
	t.Logf("start to first greeting: dovecot %.2f s, postfix %.2f s", took["dovecot"].Seconds(), took["postfix"].Seconds())
	// postfix pauses until main.cf is at least a second old (1.7-2.2 s after the entry point's postconf, 2.0 s here
	// in all), unless the entry point dates it back; with that, 0.39 s here. A new MASTER's first banner waits for it.
	if took["postfix"] > 1500*time.Millisecond {
		t.Errorf("postfix greeted %.2f s after its start; want under 1.5 s (is main.cf dated back after postconf?)", took["postfix"].Seconds())
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(mailcowConf)
		b, _ := os.ReadFile(filepath.Join(mailcowConf, "dovecot.conf"))
		if len(ents) != 1 || string(b) != string(decoy) {
			t.Errorf("mailcow's dovecot configuration was changed: %d entries, dovecot.conf %q", len(ents), b)
		}
	})
	// Every port of mailcow's answers (the agent's health check connects to each), the TLS ones included.
	for v, p := range r.ports {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", p), 2*time.Second)
		if err != nil {
			t.Errorf("%s (%d): %v", v, p, err)
			continue
		}
		c.Close()
	}
	// SMTPS is implicit TLS (wrapper mode): the greeting comes inside the TLS session.
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp4", fmt.Sprintf("127.0.0.1:%d", r.ports["SMTPS_PORT"]), &tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Errorf("SMTPS: no TLS handshake: %v", err)
	} else {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 64)
		n, _ := c.Read(b)
		if !strings.HasPrefix(string(b[:n]), "220 ") {
			t.Errorf("SMTPS: greeting %q inside TLS, want 220", b[:n])
		}
		c.Close()
	}

	if out, ok := r.swaks(mailbox, "before"); !ok {
		t.Fatalf("swaks: no 250:\n%s\n%s", out, r.logs("postfix"))
	}
	if out, ok := r.swaks("nobody@mailcow-ha.test", "unknown"); ok || !strings.Contains(out, "550") {
		t.Errorf("an unknown mailbox was not refused with 550:\n%s", out)
	}
	if out, ok := r.subjects([]string{"before"}, 30*time.Second); !ok {
		t.Fatalf("IMAP FETCH 1:* does not list the mail:\n%s\n%s", out, r.logs("dovecot"))
	}
	if out, err := r.imap("UID FETCH 1:* (FLAGS)"); err != nil || !strings.Contains(out, "* 1 FETCH (UID 1 FLAGS") {
		t.Errorf("UID FETCH 1:* (FLAGS): %v\n%s", err, out)
	}
	// The operator's check by hand: one answer per message, each a literal of the Subject header's size (the
	// header line and the blank line that ends the section), not the whole message.
	if out, err := r.imap("FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])"); err != nil || strings.Count(out, "FETCH") != 1 ||
		!strings.Contains(out, fmt.Sprintf("BODY[HEADER.FIELDS (SUBJECT)] {%d}", len("Subject: before\r\n\r\n"))) {
		t.Errorf("FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)]): %v\n%s", err, out)
	}
	// The section itself, by URL: the header asked for and nothing of the body.
	out, err := exec.Command("curl", "-sS", "--max-time", "20", fmt.Sprintf("imap://127.0.0.1:%d/INBOX;MAILINDEX=1;SECTION=HEADER.FIELDS%%20(SUBJECT)", r.imapPort),
		"-u", mailbox+":any-password").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "Subject: before" {
		t.Errorf("the Subject header section of message 1: %v %q", err, out)
	}
	// The Maildir and its indexes are where mailcow keeps them: on the Volume's binds.
	if m, _ := filepath.Glob(filepath.Join(r.dirs["/var/vmail"], "mailcow-ha.test", "user", "cur", "*")); len(m) == 0 {
		if m, _ = filepath.Glob(filepath.Join(r.dirs["/var/vmail"], "mailcow-ha.test", "user", "new", "*")); len(m) == 0 {
			t.Error("no message file in the Maildir on /var/vmail")
		}
	}
	if m, _ := filepath.Glob(filepath.Join(r.dirs["/var/vmail_index"], mailbox, "*")); len(m) == 0 {
		t.Error("no index files on /var/vmail_index")
	}

	// Delivery held: LMTP is down, the mail is acknowledged and waits in the queue.
	if err := c.ContainerStop(ctx, r.ids["dovecot"], container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, ok := r.swaks(mailbox, "queued"); !ok {
		t.Fatalf("swaks with delivery held: no 250:\n%s", out)
	}
	queued := func() int {
		n := 0
		for _, q := range []string{"incoming", "active", "deferred"} {
			filepath.Walk(filepath.Join(r.dirs["/var/spool/postfix"], q), func(_ string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() {
					n++
				}
				return nil
			})
		}
		return n
	}
	if n := queued(); n != 1 {
		t.Fatalf("%d mails in the queue on the Volume after the 250, want 1:\n%s", n, r.logs("postfix"))
	}
	if err := c.ContainerKill(ctx, r.ids["postfix"], "KILL"); err != nil {
		t.Fatal(err)
	}
	old := r.ids
	for _, id := range old {
		if err := c.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	// The dovecot that held the mailbox died holding its uidlist dotlock (a MASTER hung, then fenced): a fresh lock
	// file, as dovecot writes it, naming a process of the other node. Left in place, it holds every delivery and
	// login on the mailbox for two minutes, longer than the wait below.
	lock := filepath.Join(r.dirs["/var/vmail"], "mailcow-ha.test", "user", "dovecot-uidlist.lock")
	if err := os.WriteFile(lock, []byte("4242:node-that-died\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	took = r.start(ctx)
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("the dead dovecot's uidlist lock is still there after the new dovecot started: %v", err)
	}
	t.Logf("after the kill, start to first greeting: dovecot %.2f s, postfix %.2f s", took["dovecot"].Seconds(), took["postfix"].Seconds())
	t1 := time.Now()
	if out, ok := r.subjects([]string{"before", "queued"}, 90*time.Second); !ok {
		t.Fatalf("the queued mail was not delivered from the queue by the new containers:\n%s\n%s", out, r.logs("postfix"))
	}
	t.Logf("the queued mail was delivered and read %.1f s after the new postfix greeted", time.Since(t1).Seconds())
	if n := queued(); n != 0 {
		t.Errorf("%d mails left in the queue", n)
	}
	// docker stop ends both within a second or two (a demotion stops the stack; postfix's master as PID 1 ignored
	// SIGTERM and was killed after Docker's 10 s).
	for _, role := range []string{"postfix", "dovecot"} {
		t0 := time.Now()
		if err := c.ContainerStop(ctx, r.ids[role], container.StopOptions{}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("docker stop %s took %.1f s: it did not end on SIGTERM", role, d.Seconds())
		} else {
			t.Logf("docker stop %s: %.2f s", role, d.Seconds())
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
