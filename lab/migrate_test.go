package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

// OldServerIP is the single-server mailcow's address in the migration scenario: on the client's network, routed
// by the lab's router like the client (the nodes reach it through their public links).
const OldServerIP = "10.99.1.3"

// oldServer is a single-server mailcow's host as `migrate --from` sees it: its own namespace, sshd (root by key,
// its host key known to the MASTER), mysql-mailcow's database on 127.0.0.1:13306 (a mariadbd with mailcow's
// database and user), and mailcow's tree and Docker's volumes in a directory. Only its containers are missing: the
// migration reads files, the database's published port and mailcow.conf, and stops mail with a command.
type oldServer struct {
	ns        *netns.NS
	dir       string
	tree      string // mailcow-dockerized
	volumes   string // Docker's volumes
	sshConfig string // for the MASTER's ssh: the key, the known host
	dbSocket  string
	dbPass    string
	procs     []*exec.Cmd
}

// volume is the old server's Docker volume's data directory.
func (o *oldServer) volume(name string) string {
	return filepath.Join(o.volumes, "mailcowdockerized_"+name, "_data")
}

// stop ends the old server's processes (by PID) and its namespace.
func (o *oldServer) stop() {
	for _, c := range o.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	_ = o.ns.Del()
}

// startOldServer makes the old server below dir.
func startOldServer(t *testing.T, ctx context.Context, l *Lab, dir string) *oldServer {
	t.Helper()
	o := &oldServer{dir: dir, tree: filepath.Join(dir, "mailcow-dockerized"), volumes: filepath.Join(dir, "volumes")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	must(os.MkdirAll(dir, 0o700))
	ns, err := netns.Add(l.ns("old"))
	must(err)
	o.ns = ns
	t.Cleanup(o.stop)
	must(netns.Veth(ns, "eth0", l.rt, "old"))
	must(ns.IP("addr", "add", OldServerIP+"/32", "dev", "eth0"))
	must(ns.IP("route", "add", RouterIP, "dev", "eth0"))
	must(ns.IP("route", "add", PublicNet, "via", RouterIP, "dev", "eth0"))
	must(l.rt.IP("route", "add", OldServerIP+"/32", "dev", "old"))

	// sshd: root by key only; the MASTER's ssh knows its host key (StrictHostKeyChecking=yes in migrate).
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_key"))
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "id_ed25519"))
	pub, err := os.ReadFile(filepath.Join(dir, "id_ed25519.pub"))
	must(err)
	must(os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
	hostPub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	must(err)
	must(os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(OldServerIP+" "+string(hostPub)), 0o600))
	o.sshConfig = filepath.Join(dir, "ssh_config")
	must(os.WriteFile(o.sshConfig, []byte(fmt.Sprintf("Host %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n",
		OldServerIP, filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts"))), 0o600))
	must(os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(fmt.Sprintf(`ListenAddress %s:22
HostKey %s
PidFile none
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
`, OldServerIP, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"))), 0o600))
	must(os.MkdirAll("/run/sshd", 0o755)) // sshd's privilege separation directory (Debian's unit makes it)
	o.start(t, ns.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config")), filepath.Join(dir, "sshd.log"))

	// mysql-mailcow's database, published on the host's 127.0.0.1:13306 as mailcow's compose file does.
	datadir := filepath.Join(dir, "mysql")
	o.dbSocket = filepath.Join(dir, "mysqld.sock")
	run("mariadb-install-db", "--no-defaults", "--user=root", "--datadir="+datadir, "--auth-root-authentication-method=socket", "--skip-test-db")
	o.start(t, ns.Command("mariadbd", "--no-defaults", "--user=root", "--datadir="+datadir, "--socket="+o.dbSocket,
		"--bind-address=127.0.0.1", "--port=13306", "--skip-log-bin", "--pid-file="+filepath.Join(dir, "mysqld.pid")), filepath.Join(dir, "mysqld.log"))
	o.dbPass = randomHex(12)
	var db interface{ Close() error }
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		d, err := galera.Open(o.dbSocket)
		if err == nil && d.PingContext(ctx) == nil {
			db = d
			for _, q := range []string{
				"CREATE DATABASE mailcow CHARACTER SET utf8mb4",
				fmt.Sprintf("CREATE USER 'mailcow'@'%%' IDENTIFIED BY '%s'", o.dbPass),
				"GRANT ALL PRIVILEGES ON mailcow.* TO 'mailcow'@'%'",
				"CREATE TABLE mailcow.mailbox (username VARCHAR(255) NOT NULL PRIMARY KEY, domain VARCHAR(255) NOT NULL, quota BIGINT NOT NULL, active TINYINT NOT NULL DEFAULT 1) ENGINE=InnoDB",
				"CREATE TABLE mailcow.alias (id INT AUTO_INCREMENT PRIMARY KEY, address VARCHAR(255) NOT NULL, goto TEXT NOT NULL) ENGINE=InnoDB",
			} {
				if _, err := d.ExecContext(ctx, q); err != nil {
					t.Fatalf("the old server's database: %s: %v", q, err)
				}
			}
			for i := range 200 {
				if _, err := d.ExecContext(ctx, "INSERT INTO mailcow.mailbox (username, domain, quota) VALUES (?, 'example.org', ?)", fmt.Sprintf("user%03d@example.org", i), 1<<30); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.ExecContext(ctx, "INSERT INTO mailcow.alias (address, goto) VALUES ('postmaster@example.org', 'lab@example.org')"); err != nil {
				t.Fatal(err)
			}
			break
		}
		if d != nil {
			d.Close()
		}
		if time.Now().After(end) {
			t.Fatalf("the old server's mariadbd did not answer: %v", err)
		}
	}
	db.Close()

	// mailcow's tree: mailcow.conf with choices of its own, and the certificate acme-mailcow keeps in data/assets/ssl.
	must(os.MkdirAll(filepath.Join(o.tree, "data", "assets", "ssl"), 0o755))
	must(os.WriteFile(filepath.Join(o.tree, "mailcow.conf"), []byte(fmt.Sprintf(`# mailcow.conf of the old server
MAILCOW_HOSTNAME=%s
MAILCOW_PASS_SCHEME=BLF-CRYPT
DBNAME=mailcow
DBUSER=mailcow
DBPASS=%s
DBROOT=%s
HTTP_PORT=80
SQL_PORT=127.0.0.1:13306
TZ=Europe/Berlin
COMPOSE_PROJECT_NAME=mailcowdockerized
SKIP_CLAMD=y
ADDITIONAL_SAN=imap.example.org
A_VARIABLE_OF_AN_OLD_RELEASE=1
`, Hostname, o.dbPass, randomHex(12))), 0o600))
	run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN="+Hostname,
		"-keyout", filepath.Join(o.tree, "data", "assets", "ssl", "key.pem"), "-out", filepath.Join(o.tree, "data", "assets", "ssl", "cert.pem"))
	// Docker's volumes (the local driver's layout): the mailbox, redis's dump (DKIM keys live in it), the rest as
	// mailcow leaves them; postfix-tlspol's is missing, as on a release before it.
	for _, v := range []string{"vmail-vol-1", "vmail-index-vol-1", "crypt-vol-1", "redis-vol-1", "rspamd-vol-1", "postfix-vol-1", "sogo-userdata-backup-vol-1"} {
		must(os.MkdirAll(o.volume(v), 0o755))
	}
	must(os.WriteFile(filepath.Join(o.volume("redis-vol-1"), "dump.rdb"), []byte("REDIS0011 DKIM_PRIV_KEYS example.org "+randomHex(32)), 0o600))
	must(os.WriteFile(filepath.Join(o.volume("crypt-vol-1"), "ecprivkey.pem"), []byte(randomHex(32)), 0o600))
	return o
}

// start runs a process of the old server, its output in a log file.
func (o *oldServer) start(t *testing.T, cmd *exec.Cmd, log string) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	o.procs = append(o.procs, cmd)
}

// addMail puts n messages into the old server's lab mailbox as dovecot keeps them, and returns their Message-IDs.
func (o *oldServer) addMail(t *testing.T, from, n int) []string {
	t.Helper()
	box := filepath.Join(o.volume("vmail-vol-1"), "example.org", "lab")
	for _, d := range []string{filepath.Dir(box), box, filepath.Join(box, "tmp"), filepath.Join(box, "new"), filepath.Join(box, "cur")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 5000, 5000); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("<old-%d@old.example.org>", i)
		f := filepath.Join(box, "cur", fmt.Sprintf("%d.M%dP7.oldserver:2,S", 1600000000+i, i))
		body := fmt.Sprintf("Message-ID: %s\r\nFrom: someone@example.net\r\nTo: lab@example.org\r\nSubject: old %d\r\n\r\nkept for years: %s\r\n", id, i, randomHex(200))
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f, 5000, 5000); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sameFile says whether two files hold the same bytes.
func sameFile(a, b string) bool {
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// migrateScenario: a single-server mailcow moved into the lab cluster. `migrate --from` on the MASTER copies it
// while it serves; more mail arrives there and one message is deleted; `migrate --final` stops its mail, copies
// what changed and its database, and the MASTER's agent switches (in maintenance, no MASTER change). Every message
// of the old server is read through the Floating IP, the deleted one is not; every row of its database is on every
// member; its certificate, redis dump (the DKIM keys) and crypt key are on the Volume; what the Volume held before
// is kept; the cluster takes new mail.
func migrateScenario(t *testing.T, ctx context.Context, l *Lab) {
	m, err := l.WaitSettled(ctx, 240*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	master := l.Node(m)
	old := startOldServer(t, ctx, l, filepath.Join(l.o.Dir, "old-server"))
	ids := old.addMail(t, 0, 300)
	cli := func(args ...string) (string, time.Duration, error) {
		args = append(args, "--from", OldServerIP, "--ssh-config", old.sshConfig, "--mailcow-dir", old.tree, "--volumes-dir", old.volumes,
			"--config", filepath.Join(master.Dir, "config.toml"))
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + master.NS.Name, l.o.Bin, "migrate"}, args...)...).CombinedOutput()
		return string(out), time.Since(t0), err
	}
	t0 := time.Now()
	out, took, err := cli()
	t.Logf("migrate (the first copy, the old server serving): %.2f s:\n%s", took.Seconds(), out)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for _, want := range []string{`SKIP_CLAMD = "y"`, `ADDITIONAL_SAN = "imap.example.org"`, `timezone = "Europe/Berlin"`, "A_VARIABLE_OF_AN_OLD_RELEASE: not a variable", "DBPASS: set by mailcow-ha", "not on the old server: " + old.volumes + "/mailcowdockerized_postfix-tlspol-vol-1/_data"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate's output lacks %q", want)
		}
	}
	if strings.Contains(out, old.dbPass) {
		t.Errorf("migrate printed the old server's database password")
	}
	// The old server goes on serving: mail arrives, a message is deleted.
	ids = append(ids, old.addMail(t, 300, 20)...)
	gone, _ := filepath.Glob(filepath.Join(old.volume("vmail-vol-1"), "example.org", "lab", "cur", "1600000007.*"))
	if len(gone) != 1 {
		t.Fatalf("the message to delete: %v", gone)
	}
	if err := os.Remove(gone[0]); err != nil {
		t.Fatal(err)
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return id == "<old-7@old.example.org>" })
	stopped := filepath.Join(old.dir, "mail-stopped")
	t1 := time.Now()
	out, took, err = cli("--final", "--stop-command", "touch "+stopped)
	t.Logf("migrate --final (the cut-over): %.2f s:\n%s", took.Seconds(), out)
	if err != nil {
		t.Fatalf("migrate --final: %v", err)
	}
	if _, err := os.Stat(stopped); err != nil {
		t.Errorf("the stop command did not run on the old server: %v", err)
	}
	if missing := l.Alerts.WaitAlerts(t1, 15*time.Second, Want{"maintenance_on", m, ""}, Want{"migrated", m, ""}, Want{"maintenance_off", m, ""}); len(missing) > 0 {
		t.Errorf("webhook alerts missing: %v; received:\n%s", missing, FormatAlerts(l.Alerts.Since(t1), t1))
	}
	if now, err := l.WaitSettled(ctx, 60*time.Second); err != nil || now != m {
		t.Errorf("after the switch: MASTER %s (%v), want %s unchanged", now, err, m)
	}
	// The old server's mail, read through the Floating IP; the deleted message is not there.
	missing, held, err := l.MissingMail(ctx, ids)
	if err != nil {
		t.Fatalf("reading the migrated mailbox: %v", err)
	}
	t.Logf("the cluster's mailbox holds %d messages after the migration, %d of the old server's %d missing", held, len(missing), len(ids))
	if len(missing) > 0 || held != len(ids) {
		t.Errorf("the migrated mailbox holds %d messages, want the old server's %d; missing %v", held, len(ids), missing)
	}
	// Its database on every member.
	for _, n := range l.Nodes {
		db, err := galera.Open(filepath.Join(n.Dir, "db", "mysqld.sock"))
		if err != nil {
			t.Fatal(err)
		}
		var boxes, aliases int
		for end := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			err = db.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM mailcow.mailbox), (SELECT COUNT(*) FROM mailcow.alias)").Scan(&boxes, &aliases)
			if (err == nil && boxes == 200 && aliases == 1) || time.Now().After(end) {
				break
			}
		}
		db.Close()
		if boxes != 200 || aliases != 1 {
			t.Errorf("%s holds %d mailboxes and %d aliases of the old server's 200 and 1 (%v)", n.Name, boxes, aliases, err)
		}
	}
	// Its certificate, redis's dump (mailcow keeps the DKIM keys in redis) and the mail crypt key, on the Volume.
	data := filepath.Join(master.Dir, "data")
	for from, to := range map[string]string{
		filepath.Join(old.tree, "data", "assets", "ssl", "cert.pem"): filepath.Join(data, "ssl", "cert.pem"),
		filepath.Join(old.volume("redis-vol-1"), "dump.rdb"):         filepath.Join(data, "redis", "dump.rdb"),
		filepath.Join(old.volume("crypt-vol-1"), "ecprivkey.pem"):    filepath.Join(data, "crypt", "ecprivkey.pem"),
	} {
		if !sameFile(from, to) {
			t.Errorf("%s is not on the Volume as %s", from, to)
		}
	}
	// What the Volume held is kept aside, and the dump with the old server's password hashes is gone.
	kept, _ := filepath.Glob(filepath.Join(data, ".migrate", "replaced-*", "vmail"))
	if len(kept) != 1 {
		t.Errorf("the Volume's mail before the switch is not kept: %v", kept)
	}
	if _, err := os.Stat(filepath.Join(data, ".migrate", "mailcow.sql")); err == nil {
		t.Errorf("the database's dump is still on the Volume after the import")
	}
	t.Logf("the cut-over took %.1f s from the old server's mail stopped to the cluster serving its state (the whole migration %.1f s)", took.Seconds(), time.Since(t0).Seconds())
	// The cluster takes new mail into the migrated mailbox.
	if _, err := l.SendOne(ctx, 0); err != nil {
		t.Errorf("a mail to the migrated cluster: %v", err)
	}
}
